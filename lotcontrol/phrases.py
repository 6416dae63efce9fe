"""What enrollment, the web console, the controller's answers and the store's errors say, by code: one table of code → English sentence for the command line and the web console.

The command line prints a ``Phrase`` as its English sentence; ``lotcontrol enroll --codes`` (hidden: the
web console's child process, web/enrolling.py) prints it as a JSON line ``{"code", "params", "text"}``
instead, and the console says it in the page's language through its gettext catalogue, the English
sentence below being the catalogue's message id and the fallback (web/said.py). Values that are
themselves phrases (a photo's reason inside "rejected PATH: REASON") are nested the same way, so each
part is translated. A sentence is written here once: the command line's wording and the page's catalogue
entry cannot drift apart (tests/test_phrases.py checks every code has a Chinese message naming the same
values).

Values are shown as given (a distance already written ``0.42``); names are quoted by the sentence.
"""

from __future__ import annotations

import json
from typing import Any


def N_(message: str) -> str:
    """Marks a message for the web console's catalogue (pybabel's default keyword, babel.cfg)."""
    return message


#: code → the English sentence, its values as ``%(name)s``.
PHRASES: dict[str, str] = {
    # enroll --camera: the instructions (vision/capture.py), said live
    "need.no_face": N_("step in front of the camera"),
    "need.closer": N_("come closer"),
    "need.centre": N_("step into the middle of the picture"),
    "need.still": N_("hold still"),
    "need.too_turned": N_("turn back towards the camera"),
    "need.front": N_("look straight at the camera"),
    "need.left": N_("turn a little left"),  # the resident's own left
    "need.right": N_("turn a little right"),
    "need.done": N_("done, thank you"),
    # enroll --camera: progress and refusals (cli/residents.py, vision/capture.py)
    "camera.waiting": N_("waiting for the vision worker's camera (it is starting)"),
    "camera.look": N_("camera %(source)s: look at the camera (at most %(seconds)s s)"),
    "camera.no_tap": N_("the controller running on %(dir)s owns camera '%(source)s' and its vision worker offers no "
                        "frames (%(tap)s did not appear within %(seconds)s s: the worker is down or restarting); try "
                        "again in a moment, enroll from a refused passage (--from-event ID, with events.snapshots "
                        "on) or at another camera (--camera /dev/video1)"),
    "camera.failed": N_("camera '%(source)s': %(error)s; nothing was enrolled"),
    "camera.two_faces": N_("two faces in view at %(at)s s: only the resident may stand in front of the camera while "
                           "they enroll; nothing was enrolled"),
    "camera.changed_person": N_("the face changed person at %(at)s s (distance %(distance)s from the first frames, "
                                "more than %(limit)s); nothing was enrolled"),
    "camera.too_few": N_("only %(count)s good frame(s) of the face (at least %(needed)s needed); last instruction: "
                         "'%(last)s'. Try again in better light, closer, or with more --seconds; nothing was "
                         "enrolled"),
    # what was enrolled (the ``what`` of the sentences below)
    "what.photo": N_("photo"),
    "what.frame": N_("camera frame"),
    "what.snapshot": N_("snapshot"),
    # enroll: each face, and the outcome (cli/residents.py)
    "enroll.enrolled": N_("enrolled %(path)s"),
    "enroll.lookalike": N_("look-alike: '%(name)s' and '%(other)s' (distance %(distance)s) are both on file and "
                           "flagged: check they are different people, then `lotcontrol residents clear-lookalike`; "
                           "until then each is admitted only on a face much nearer them than the other"),
    "enroll.confirmed": N_("confirmed by staff as one person: %(photos)s (logged as resident.same_person_confirmed)"),
    "enroll.already": N_("skipped %(path)s: already enrolled for '%(owner)s'"),
    "enroll.skipped": N_("skipped %(path)s: %(reason)s"),
    "enroll.rejected": N_("rejected %(path)s: %(reason)s"),
    "enroll.added": N_("added resident '%(name)s': %(count)s %(what)s(s) enrolled, %(templates)s template(s) on file"),
    "enroll.updated": N_("updated resident '%(name)s': %(count)s %(what)s(s) enrolled, %(templates)s template(s) "
                         "on file"),
    "enroll.snapshot_erased": N_("erased the snapshot of event #%(event)s: its face is a template now"),
    # enroll: the error line when faces were left out (cli/residents.py, _outcome)
    "enroll.not_added": N_("'%(name)s' was not added"),
    "enroll.nothing_added": N_("nothing was added to '%(name)s'"),
    "enroll.added_some": N_("'%(name)s' was added with %(count)s of %(given)s %(what)ss"),
    "enroll.updated_some": N_("'%(name)s' was updated with %(count)s of %(given)s %(what)ss"),
    "enroll.not_one_person": N_("%(who)s: the %(what)ss do not show one person: %(path)s: %(reason)s Check them: "
                                "enroll each person under their own name, or run again with --confirm-same-person "
                                "if they are one person"),
    "enroll.only_refused": N_("%(who)s: its only %(what)s was refused: %(path)s: %(reason)s"),
    "enroll.one_refused": N_("%(who)s: 1 %(what)s was refused: %(path)s: %(reason)s"),
    "enroll.all_refused": N_("%(who)s: all %(given)s %(what)ss were refused (each is listed above with why)"),
    "enroll.some_refused": N_("%(who)s: %(count)s of %(given)s %(what)ss were refused (each is listed above with why)"),
    # a photo's reasons (vision/faces.py, enroll.py): the photo's name is said before them
    "photo.format": N_("a %(format)s image; only JPEG and PNG photos are accepted"),
    "photo.megapixels": N_("%(width)sx%(height)s is %(megapixels)s megapixels, more than enroll.max_megapixels = "
                           "%(limit)s allows; scale it down"),
    "photo.not_image": N_("not a JPEG or PNG image"),
    "photo.damaged": N_("the image is damaged or truncated (%(error)s)"),
    "photo.unreadable": N_("cannot be read (%(error)s)"),
    "photo.too_large": N_("the file is %(size)s MB, more than enroll.max_file_mb = %(limit)s allows"),
    "photo.grew": N_("the file is larger, more than enroll.max_file_mb = %(limit)s allows"),
    "photo.empty": N_("the file is empty"),
    "photo.folder": N_("is a folder, not a photo"),
    "photo.not_file": N_("not a regular file (a device, FIFO or socket), not a photo"),
    "photo.no_face": N_("no face found"),
    "photo.too_small": N_("the face is too small (%(width)s px wide, at least %(needed)s needed)"),
    "photo.faces": N_("%(count)s faces; an enrollment photo must show one person"),
    "photo.blurry": N_("the face is too blurry (sharpness %(sharpness)s, at least %(needed)s needed)"),
    "photo.same_file": N_("the same photo as %(other)s"),
    "photo.already": N_("already enrolled for '%(owner)s'"),
    "photo.named": N_("%(path)s: %(reason)s"),
    "copy.on_file": N_("the same face as a photo already enrolled for '%(name)s' (distance %(distance)s)"),
    "copy.other": N_("the same face as a photo enrolled for '%(name)s' (distance %(distance)s)"),
    "copy.given": N_("the same face as %(path)s (distance %(distance)s)"),
    "person.far": N_("its face is %(distance)s from %(before)s, more than %(limit)s: not the same person?"),
    "person.on_file": N_("the templates on file for '%(name)s'"),
    "person.before": N_("the photos before it"),
    # the web console running enroll (web/enrolling.py, web/residents.py)
    "web.enroll_exit": N_("enroll ended with exit code %(code)s"),
    "web.enroll_start": N_("enroll could not be started: %(error)s"),
    "web.enroll_timeout": N_("enroll did not end within %(seconds)s s; nothing is known to be enrolled"),
    "web.enroll_stopped": N_("enroll did not end within %(seconds)s s and was stopped"),
    "web.camera_busy": N_("the camera is in use: %(user)s is enrolling '%(name)s'; try again when it ends"),
    "web.no_photo": N_("choose at least one photo (JPEG or PNG): nothing was enrolled"),
    "web.no_name": N_("the resident's name is missing: nothing was enrolled"),
    "web.upload_refused": N_("%(reason)s; nothing was enrolled"),
    # the web console's own plain answers (web/server.py, web/residents.py), in the request's language
    "web.log_in": N_("log in first"),
    "web.upload_too_large": N_("the upload is larger than %(files)s photos of enroll.max_file_mb = %(limit)s MB each: "
                               "nothing was enrolled"),
    "web.bad_form": N_("the form cannot be read: %(error)s; nothing was changed"),
    "web.bad_date": N_("%(field)s: '%(value)s' is not a date (2026-12-04)"),
    "web.bad_severity": N_("severity: '%(value)s' is not one of %(allowed)s"),
    "web.bad_month": N_("month: '%(value)s' is not a month (YYYY-MM, e.g. 2026-12)"),
    "web.bad_action": N_("action: '%(value)s' is not one of %(allowed)s"),
    "web.bad_language": N_("language '%(value)s': one of %(allowed)s"),
    "web.no_snapshot": N_("no such snapshot (deleted after events.retention_days, or with its resident)"),
    "web.no_job": N_("no such enrollment (the console keeps the last few)"),
    # the controller's answers to staff commands (controller.py, charging/): the command line prints them
    "gate.opened": N_("gate open for %(seconds)s s"),
    "bays.set": N_("zone '%(zone)s': %(n)s occupied"),
    "fire.reset_refused": N_("reset refused, inputs still in alarm: %(inputs)s"),
    "fire.reset": N_("reset %(n)s zone(s)"),
    "fire.none_in_alarm": N_("no zone was in alarm"),
    "fire.no_zone": N_("no fire zone '%(zone)s' (zones: %(known)s)"),
    "fire.no_zones": N_("no fire zone '%(zone)s' (zones: none configured)"),
    "fire.drill": N_("drill in zone '%(zone)s': alarm actions on; end it with `lotcontrol fire reset`"),
    "port.unknown": N_("no charging port '%(port)s' (ports: %(known)s)"),
    "port.none": N_("no charging port '%(port)s' (ports: none configured)"),
    "port.stopped": N_("port '%(port)s' stopped"),
    "port.stopped_session": N_("port '%(port)s' stopped (its session ended)"),
    "port.disabled": N_("port '%(port)s' disabled"),
    "port.disabled_session": N_("port '%(port)s' disabled (its session ended)"),
    "port.faulty": N_("port '%(port)s' is faulty (%(fault)s); it can be enabled once its meter answers"),
    "port.already_ready": N_("port '%(port)s' is already ready"),
    "port.already_charging": N_("port '%(port)s' is already charging"),
    "port.enabled": N_("port '%(port)s' enabled"),
    "port.enabled_session": N_("port '%(port)s' enabled (a session started)"),
    "port.enabled_cut": N_("port '%(port)s' enabled (its zone is cut by the fire watch: it comes on when power may "
                           "return)"),
    "controller.failed": N_("the controller could not do '%(command)s': %(error)s"),
    "controller.late": N_("the controller did not answer within %(seconds)s s"),
    # a card read at the lot's reader (`lotcontrol card add --read`, the resident's page): controller.py
    "card.no_reader": N_("this lot has no card reader (wiegand.d0_pin and d1_pin)"),
    "card.not_started": N_("no card read was started"),
    "card.too_late": N_("no card was shown at the reader (D0 %(d0)s, D1 %(d1)s) within %(seconds)s s: check the "
                        "reader's wiring to those pins, then show the card again"),
    "card.read_waiting": N_("show the card at the reader (waiting up to %(seconds)s s)..."),
    # the store's and the residents' errors (LotControlError.code, set where each is raised): the page's
    # wording; the command line prints the error's own English, which may add a hint (``fuser -v``)
    "resident.not_found": N_("no resident named '%(name)s'"),
    "resident.hub_copy": N_("resident '%(name)s' comes from the hub: change them there; this lot follows "
                            "within seconds"),
    "name.empty": N_("a resident's name cannot be empty"),
    "name.too_long": N_("a resident's name can have at most %(limit)s characters, not %(length)s"),
    "name.char": N_("a resident's name cannot contain '%(char)s': '%(name)s'"),
    "name.invisible": N_("a resident's name cannot contain the invisible or control character %(char)s: '%(name)s'"),
    "value.invisible": N_("%(field)s cannot contain control or invisible characters"),
    "value.too_long": N_("%(field)s can have at most %(limit)s characters, not %(length)s"),
    "value.phone": N_("phone '%(value)s' is not a phone number (digits, spaces, + ( ) - . / only)"),
    "value.date": N_("%(field)s '%(value)s' is not a date (YYYY-MM-DD)"),
    "value.validity": N_("valid from %(valid_from)s is after valid until %(valid_until)s"),
    "value.choice": N_("%(field)s must be one of %(allowed)s or site, not '%(value)s'"),
    "database.locked": N_("the database is locked by another process (waited %(seconds)s s): try again in a moment"),
    "card.uid": N_("a card's number is FORMAT:NUMBER, the format 26 or 34 and the number in decimal "
                   "(e.g. 26:1234567)"),
    "card.range": N_("a %(bits)s-bit card's number is below %(limit)s"),
    "card.taken": N_("this card is already %(owner)s's"),
    "card.on_file": N_("this card is already on file for %(name)s"),
    "card.no_such": N_("%(name)s has no such card on file"),
    "card.no_such_tag": N_("%(name)s has no card %(tag)s on file"),
    "card.none": N_("%(name)s has no card on file"),
    "pin.digits": N_("a PIN is %(low)s to %(high)s digits (0-9), as typed at the keypad"),
    "pin.mismatch": N_("the PIN and the PIN typed again differ"),
    "pin.none": N_("%(name)s has no PIN on file"),
    "group.name": N_("access group '%(group)s' is not a group name (letters, digits, _ . -)"),
    "group.unknown": N_("no access group '%(group)s' in the configuration (groups: %(known)s)"),
    "lookalike.not_flagged": N_("%(first)s and %(second)s are not flagged as look-alikes"),
    # the control socket, between the page and the controller (control_socket.request)
    "controller.not_running": N_("the controller is not running on %(dir)s (no answer on %(path)s); start it with "
                                 "`lotcontrol run`"),
    "controller.busy": N_("the controller on %(dir)s is busy: %(path)s took no connection within %(seconds)s s; "
                          "try again"),
    "controller.silent": N_("the controller on %(dir)s did not answer on %(path)s within %(seconds)s s"),
    "controller.unreachable": N_("the controller on %(dir)s cannot be reached on %(path)s: %(error)s"),
    "controller.no_answer": N_("the controller on %(dir)s hung up on %(path)s without an answer"),
    "controller.hung_up": N_("the controller on %(dir)s hung up on %(path)s: %(error)s"),
    "controller.garbled": N_("the controller on %(dir)s gave an answer that cannot be read: %(answer)s (on %(path)s)"),
}


class Phrase(str):
    """A sentence of ``PHRASES`` (or a coded error's, ``text`` given): a ``str`` in English, so the
    command line and every f-string use it as they did, that keeps its ``code`` and ``params``."""

    code: str | None
    params: dict[str, Any]

    def __new__(cls, code: str | None, /, text: str | None = None, **params: Any) -> "Phrase":
        if text is None:
            text = PHRASES[code] % {key: str(value) for key, value in params.items()}
        self = super().__new__(cls, text)
        self.code, self.params = code, params
        return self

    def __reduce__(self):  # through a worker process's pipe (enroll.analyse_photos): code and values kept
        return _rebuilt, (self.code, str(self), self.params)

    def coded(self) -> dict[str, Any]:
        """As ``enroll --codes`` prints it: {"code", "params", "text"}, nested phrases likewise."""
        return {"code": self.code, "params": {key: coded(value) for key, value in self.params.items()},
                "text": str(self)}

    @classmethod
    def parsed(cls, data: Any) -> Any:
        """``coded``'s output read back (a JSON line of ``enroll --codes``); other values as they are."""
        if isinstance(data, dict) and "text" in data and "code" in data:
            params = data.get("params") if isinstance(data.get("params"), dict) else {}
            return cls(data["code"] if isinstance(data["code"], str) else None, str(data["text"]),
                       **{str(key): cls.parsed(value) for key, value in params.items()})
        return data


def _rebuilt(code: str | None, text: str, params: dict[str, Any]) -> Phrase:
    return Phrase(code, text, **params)


def coded(value: Any) -> Any:
    """A value as JSON carries it: a phrase as its code, values and English; anything else as it is."""
    if isinstance(value, Phrase):
        return value.coded()
    return value if isinstance(value, (int, float, bool, type(None))) else str(value)


def of_error(exc: BaseException) -> Phrase:
    """An error as a phrase: its code and values where it has them (LotControlError), its English always."""
    code = getattr(exc, "code", None)
    return Phrase(code, str(exc), **(getattr(exc, "params", None) or {}))


def json_line(phrase: Phrase, **extra: Any) -> str:
    """One line of ``enroll --codes``."""
    return json.dumps({**phrase.coded(), **extra}, ensure_ascii=False)


def answer(ok: bool, phrase: Phrase, **extra: Any) -> dict[str, Any]:
    """A controller's answer on the control socket saying ``phrase``: its English as ``message`` (as the
    command line prints it) with its ``code`` and ``params``, which the web console says in its language."""
    return {"ok": ok, "message": str(phrase), "code": phrase.code,
            "params": {key: coded(value) for key, value in phrase.params.items()}, **extra}


def of_answer(answer: dict[str, Any]) -> Phrase:
    """The phrase of a controller's answer (``answer``): by its code where it carries one, else its message."""
    message = str(answer.get("message", ""))
    code = answer.get("code")
    params = answer.get("params")
    if not isinstance(code, str):
        return Phrase(None, message)
    return Phrase.parsed({"code": code, "params": params if isinstance(params, dict) else {}, "text": message})


def error(kind: type[Exception], code: str, **params: Any) -> Exception:
    """An error of ``kind`` (a LotControlError) saying phrase ``code``, carrying its code and values."""
    return kind(Phrase(code, **params), code=code, **params)
