"""Residents and their faces: enroll, enroll-folder, residents, show, suspend, resume, rename, edit,
remove, identify."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path

import click

from ..enroll import (Analysed, analyse_photos, camera_photos, duplicate_check_gallery, enroll, enroll_folder,
                      event_photo, worker_count)
from ..errors import CaptureError, InvalidValue, LotControlError, ResidentNotFound
from ..phrases import Phrase, error, json_line, of_error
from .. import residents as changes
from ..hub.store import lots_of, set_lots
from .. import policy
from ..store import ACCESS_MODES, ANTIPASSBACK, Resident
from . import App, cli, echo_json, pass_app
from ..residents import refuse_hub_copy
from .hub import chosen_lots, lot_option

photo_paths = click.argument(
    "photos", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


EDITABLE = changes.EDITABLE  # the options _resident_fields adds


def _resident_fields(function):
    for option in reversed([
        click.option("--unit", help="Flat or unit, e.g. 4B."),
        click.option("--phone", help="Phone number."),
        click.option("--note", help="A note for staff."),
        click.option("--valid-from", metavar="YYYY-MM-DD", help="First day the gate admits them."),
        click.option("--valid-until", metavar="YYYY-MM-DD", help="Last day the gate admits them."),
    ]):
        function = option(function)
    return function


access_mode_option = click.option(
    "--access-mode", type=click.Choice([*ACCESS_MODES, "site"]),
    help="How they enter (overrides access.mode): face, face_or_card, card_and_pin, face_and_card, face_and_pin; "
    "site: the site's access.mode.")


groups_option = click.option(
    "--groups", metavar="A,B",
    help="The access groups ([access.groups.NAME]) whose windows let them in; \"\": none (any time).")
antipassback_option = click.option(
    "--antipassback", type=click.Choice([*ANTIPASSBACK, "site"]),
    help="Their own anti-passback (overrides access.antipassback): off, log, enforce; site: the site's.")


def _groups(app: App, text: str | None) -> list[str] | None:
    """--groups as a list, each a group the configuration has; None when not given."""
    if text is None:
        return None
    try:
        return changes.check_groups(text.split(","), app.config.access.groups)
    except InvalidValue as exc:
        raise click.BadParameter(str(exc), param_hint="--groups") from None


def _set_access(store, name: str, groups: list[str] | None, antipassback: str | None) -> None:
    if groups is not None:
        store.set_groups(name, groups)
    if antipassback is not None:
        store.set_antipassback(name, antipassback)


@cli.command(name="enroll")
@click.argument("name")
@click.argument("photos", nargs=-1, metavar="PHOTOS...", type=click.Path(exists=True, dir_okay=False))
@click.option("--camera", is_flag=False, flag_value="", default=None, metavar="[SRC]",
              help="Take the face at a camera instead of from photos: SRC as `run --camera` takes it "
              "(default camera.source).")
@click.option("--seconds", type=click.FloatRange(0, 120, min_open=True), metavar="N",
              help="With --camera: watch at most N seconds. [default: enroll.camera_seconds]")
@click.option("--from-event", type=click.IntRange(min=1), metavar="ID",
              help="Take the face from the snapshot of refused passage ID (`lotcontrol events` shows IDs).")
@click.option("--confirm-same-person", is_flag=True,
              help="Staff have checked that the faces are one person: enroll them even though they are "
              "further apart than enroll.camera_same_person (logged as resident.same_person_confirmed).")
@_resident_fields
@access_mode_option
@groups_option
@antipassback_option
@lot_option
@click.option("--by", hidden=True, help="Who asked (the web console's user), for the event log.")
@click.option("--preview-fd", type=click.IntRange(min=3), hidden=True,
              help="With --camera: write the live picture to this pipe (the web console's preview).")
@click.option("--codes", is_flag=True, hidden=True,
              help="Print each line, the error too, as JSON on stdout: {code, params, text} (lotcontrol.phrases), "
              "for the web console to say in its language.")
@pass_app
def enroll_command(app: App, name: str, photos: tuple[str, ...], camera: str | None, seconds: float | None,
                   from_event: int | None, confirm_same_person: bool, lots: tuple[str, ...],
                   access_mode: str | None, groups: str | None, antipassback: str | None, by: str | None,
                   preview_fd: int | None, codes: bool, **fields: str | None) -> None:
    """Put NAME on file with the faces in PHOTOS, or add faces to a resident already on file.

    Each photo must be a JPEG or PNG showing exactly one face, large and sharp enough to match well.
    Photos that fail, and copies of a photo on file (the same face), are reported and skipped; the
    command exits 1 if any failed, and a new resident none of whose photos passed is not created. The
    faces must be one person's (within enroll.camera_same_person of the resident's templates and of the
    photos before): otherwise nothing is enrolled unless staff give --confirm-same-person. A face near
    another resident's is enrolled and the pair flagged as look-alikes (see `lotcontrol residents check`).

    On the hub (--hub DIR), --lots A,B lets them in at those lots only (default: every lot).

    Example: lotcontrol enroll "Anna Berg" anna1.jpg anna2.jpg --unit 4B --phone "+46 70 123 45 67"

    Instead of PHOTOS, --camera watches the resident at a camera for a few seconds, says what it
    still needs, and keeps a spread of good frames as templates (no photo is stored); it refuses,
    enrolling nothing, if two faces are in view or the face changes person. --from-event ID enrolls
    the face of a refused passage once staff have checked who it is, then erases its snapshot:
    lotcontrol enroll "Anna Berg" --camera --seconds 10; lotcontrol enroll "Anna Berg" --from-event 17
    """
    tell = Teller(codes)
    try:
        _enroll(app, tell, name, photos, camera, seconds, from_event, confirm_same_person, lots, access_mode, groups,
                antipassback, by, preview_fd, fields)
    except LotControlError as exc:
        if not codes:
            raise
        tell(of_error(exc), error=True)
        raise click.exceptions.Exit(1) from None


class Teller:
    """How enroll says each line: in English (stdout, or stderr with ``err``), or with ``codes`` as a
    JSON line on stdout (lotcontrol.phrases), all in one stream and in order, for the web console."""

    def __init__(self, codes: bool):
        self.codes = codes

    def __call__(self, phrase: Phrase, err: bool = False, error: bool = False) -> None:
        if self.codes:
            click.echo(json_line(phrase, **({"error": True} if error else {})))
        else:
            click.echo(phrase, err=err)

    def need(self, phrase: Phrase) -> None:
        """An instruction at the camera ("turn a little left"): indented on stderr as it comes."""
        if self.codes:
            self(phrase)
        else:
            click.echo(f"  {phrase}", err=True)


def _enroll(app: App, tell: Teller, name: str, photos: tuple[str, ...], camera: str | None, seconds: float | None,
            from_event: int | None, confirm_same_person: bool, lots: tuple[str, ...], access_mode: str | None,
            groups: str | None, antipassback: str | None, by: str | None, preview_fd: int | None,
            fields: dict[str, str | None]) -> None:
    store, config = app.store, app.config
    assigned = chosen_lots(app, lots)  # an unknown lot is refused before any face work
    access_groups = _groups(app, groups)  # and an unknown access group
    with contextlib.suppress(ResidentNotFound):
        refuse_hub_copy(store, store.resident(name))
    from ..vision.encoders import require

    require(config.vision.encoder)  # a face enrolled without the space's encoder would not be matched in it
    analysed, what = _faces_to_enroll(app, photos, camera, seconds, from_event, preview_fd, tell)
    with store.transaction():
        result = enroll(store, duplicate_check_gallery(store, config), name, analysed, config,
                        confirm_same_person=confirm_same_person, by=by, **fields)
        if assigned is not None and result.resident is not None:
            set_lots(store, result.resident.name, assigned, list(config.hub.lots))
        if access_mode is not None and result.resident is not None:
            store.set_access_mode(result.resident.name, access_mode)
        if result.resident is not None:
            _set_access(store, result.resident.name, access_groups, antipassback)
    for path in result.enrolled:
        tell(Phrase("enroll.enrolled", path=path))
    _say_lookalikes(result, tell)
    if result.confirmed_same_person:
        tell(Phrase("enroll.confirmed", photos=", ".join(p for p, _ in result.not_one_person)), err=True)
    for path, owner in result.already:
        tell(Phrase("enroll.already", path=path, owner=owner), err=True)
    for path, copy in result.duplicates:
        tell(Phrase("enroll.skipped", path=path, reason=copy), err=True)
    for path, reason in result.rejected + ([] if result.confirmed_same_person else result.not_one_person):
        tell(Phrase("enroll.rejected", path=path, reason=reason), err=True)
    if result.enrolled:
        tell(Phrase("enroll.added" if result.created else "enroll.updated", name=result.resident.name,
                    count=len(result.enrolled), what=what, templates=result.resident.templates))
        if from_event is not None:
            store.erase_snapshot(from_event)
            store.log_event("snapshot.enrolled", result.resident.id, {"event": from_event})
            tell(Phrase("enroll.snapshot_erased", event=from_event))
    if len(result.enrolled) < len(analysed):
        outcome = _outcome(result, len(analysed), what)
        raise LotControlError(outcome, code=outcome.code, **outcome.params)


def _outcome(result, given: int, what: Phrase) -> Phrase:
    """The error line of an enrollment that left some of the ``given`` faces out: who was (not)
    changed, and which faces were refused and why (the one refused, or a count of those listed)."""
    unchanged = (Phrase("enroll.not_added", name=result.name) if result.resident is None
                 else Phrase("enroll.nothing_added", name=result.resident.name))
    if result.not_one_person and not result.confirmed_same_person:
        path, reason = result.not_one_person[0]
        return Phrase("enroll.not_one_person", who=unchanged, what=what, path=path, reason=reason)
    refused = result.refused
    if not result.enrolled:
        who = unchanged
    else:
        who = Phrase("enroll.added_some" if result.created else "enroll.updated_some", name=result.resident.name,
                     count=len(result.enrolled), given=given, what=what)
    if len(refused) == 1:
        path, reason = refused[0]
        return Phrase("enroll.only_refused" if given == 1 else "enroll.one_refused", who=who, what=what, path=path,
                      reason=reason)
    if len(refused) == given:
        return Phrase("enroll.all_refused", who=who, given=given, what=what)
    return Phrase("enroll.some_refused", who=who, count=len(refused), given=given, what=what)


def _faces_to_enroll(app: App, photos: tuple[str, ...], camera: str | None, seconds: float | None,
                     from_event: int | None, preview_fd: int | None, tell: Teller) -> tuple[list[Analysed], Phrase]:
    """The faces ``enroll`` is given, from exactly one of photos, a camera or an event's snapshot, and
    what to call them."""
    store, config = app.store, app.config
    if sum((bool(photos), camera is not None, from_event is not None)) != 1:
        raise click.UsageError("give PHOTOS, --camera or --from-event ID: exactly one of them")
    if seconds is not None and camera is None:
        raise click.UsageError("--seconds goes with --camera")
    if preview_fd is not None and camera is None:
        raise click.UsageError("--preview-fd goes with --camera")
    if camera is not None:
        return _camera_faces(app, camera or config.camera.source, seconds or config.enroll.camera_seconds,
                             preview_fd, tell), Phrase("what.frame")
    if from_event is not None:
        return [event_photo(store, from_event, config.enroll)], Phrase("what.snapshot")
    return list(analyse_photos(photos, config.enroll)), Phrase("what.photo")


#: s: how long enroll --camera waits for a starting vision worker's tap (it loads its models first)
TAP_WAIT = 30.0


def _appears(path: Path, seconds: float, waiting) -> bool:
    """Whether ``path`` exists, or comes within ``seconds`` (``waiting()`` is told once)."""
    import time

    deadline = time.monotonic() + seconds
    if not path.exists():
        waiting()
    while not path.exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def _camera_faces(app: App, source: str, seconds: float, preview_fd: int | None, tell: Teller) -> list[Analysed]:
    """The resident's face at camera ``source``: the frames FaceCapture chose, live instructions on
    stderr (and the live picture on pipe ``preview_fd``, for the web console). The camera of a
    controller running on this data directory is its vision worker's: its frames come through the
    worker's tap (vision/tap.py)."""
    from ..control_socket import ControllerNotRunning, request
    from ..vision.camera import SourceError, open_source
    from ..vision.capture import FaceCapture, PreviewPipe, capture
    from ..vision.tap import TapSource, tap_path
    from ..vision.pipeline import warm_up

    config = app.config
    tap = None
    if source == config.camera.source:
        try:
            request(app.data_dir, "status")
        except ControllerNotRunning:
            pass
        else:  # the running vision worker owns the camera: its frames come through its tap
            tap = tap_path(app.data_dir)
            if not _appears(tap, TAP_WAIT, lambda: tell(Phrase("camera.waiting"), err=True)):
                raise error(CaptureError, "camera.no_tap", dir=app.data_dir, source=source, tap=tap,
                            seconds=f"{TAP_WAIT:g}")
    warm_up()  # the face models checked and loaded before the seconds start counting
    preview = PreviewPipe(preview_fd) if preview_fd is not None else None
    try:
        # a recording is enrolled from every frame in order: there is no live scene to keep up with
        with (TapSource(tap) if tap is not None else open_source(source, as_fast_as_possible=True)) as frames:
            tell(Phrase("camera.look", source=source, seconds=f"{seconds:g}"), err=True)
            chosen = capture(frames, FaceCapture(config), seconds, say=tell.need, preview=preview)
    except SourceError as exc:
        raise error(CaptureError, "camera.failed", source=source, error=exc) from None
    finally:
        if preview is not None:
            preview.close()
    return camera_photos(chosen)


@cli.command(name="enroll-folder")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@lot_option
@pass_app
def enroll_folder_command(app: App, folder: Path, lots: tuple[str, ...]) -> None:
    """Enroll every FOLDER/<resident name>/*.jpg|jpeg|png, encoding on all CPU cores.

    Safe to run again: photos already on file are skipped.

    Example: lotcontrol enroll-folder /media/usb/residents
    """
    from ..enroll import folder_photos

    store, config = app.store, app.config
    assigned = chosen_lots(app, lots)
    total = sum(len(p) for p in folder_photos(folder)[0].values())
    workers = worker_count(config.enroll)
    with click.progressbar(length=total, label=f"Encoding on {workers} core(s)", file=sys.stderr,
                           show_pos=True) as bar:
        summary = enroll_folder(store, folder, config, workers=workers, progress=bar.update)
    if assigned is not None:
        for result in summary.results:
            if result.resident is not None:
                set_lots(store, result.resident.name, assigned, list(config.hub.lots))
    for path, reason in summary.rejected:
        click.echo(f"rejected {path}: {reason}", err=True)
    for result in summary.results:
        for path, owner in result.already:
            if owner != (result.resident.name if result.resident else None):
                click.echo(f"skipped {path}: the same photo is enrolled for {owner!r}", err=True)
        for path, copy in result.duplicates:
            click.echo(f"skipped {path}: {copy}", err=True)
    for result in summary.not_one_person:
        click.echo(f"refused {result.name!r}: the photos do not show one person (see above), nothing was enrolled "
                   "for them; once checked, enroll them with `lotcontrol enroll NAME PHOTOS --confirm-same-person`",
                   err=True)
    for result in summary.results:
        _say_lookalikes(result, Teller(False))
    for path, reason in summary.refused_names:
        click.echo(f"rejected folder {path}: {reason}", err=True)
    for path in summary.ignored:
        click.echo(f"ignored {path}: not a .jpg, .jpeg or .png in a resident's folder", err=True)
    click.echo(
        f"{summary.residents_added} resident(s) added, {summary.photos_enrolled} photo(s) enrolled, "
        f"{summary.photos_skipped} already on file or copies, {len(summary.rejected)} rejected"
        + (f", {len(summary.refused_names)} folder(s) refused" if summary.refused_names else "")
        + (f", {len(summary.not_one_person)} resident(s) refused as not one person" if summary.not_one_person else "")
    )


def _say_lookalikes(result, tell: Teller) -> None:
    for other, distance in result.lookalikes:
        tell(Phrase("enroll.lookalike", name=result.name, other=other, distance=f"{distance:.2f}"), err=True)


def _resident_json(resident: Resident) -> dict:
    return {
        "name": resident.name, "unit": resident.unit, "phone": resident.phone, "note": resident.note,
        "status": resident.status, "valid_from": resident.valid_from, "valid_until": resident.valid_until,
        "templates": resident.templates, "created": resident.created, "updated": resident.updated,
        "access_mode": resident.access_mode,  # None: the site's access.mode
        "groups": list(resident.groups), "antipassback": resident.antipassback,  # None: the site's
    }


@cli.group(name="residents", invoke_without_command=True)
@json_option
@click.pass_context
def residents_command(ctx: click.Context, as_json: bool) -> None:
    """List every resident on file (a flag marks look-alikes staff have not checked yet).

    Example: lotcontrol residents --json
    """
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    residents = app.reader.residents()
    flagged: dict[str, list[str]] = {}
    for pair in app.reader.lookalikes():
        flagged.setdefault(pair.first, []).append(pair.second)
        flagged.setdefault(pair.second, []).append(pair.first)
    lots = lots_of(app.reader) if app.on_hub else None
    if as_json:
        echo_json([{**_resident_json(r), "lookalike_of": flagged.get(r.name, []),
                    **({"lots": lots[r.id]} if lots is not None else {})} for r in residents])
        return
    if not residents:
        click.echo("no residents on file")
        return
    width = max(len(r.name) for r in residents)
    grouped = any(r.groups for r in residents)  # the GROUPS column only where schedules are used
    click.echo((f"{'NAME':<{width}}  {'UNIT':<8}  {'STATUS':<9}  {'FACES':>5}  "
                + (f"{'VALID':<22}" if lots or grouped else "VALID") + (f"  {'GROUPS':<12}" if grouped else "")
                + ("  LOTS" if lots else "")).rstrip())
    for r in residents:
        valid = f"{r.valid_from or ''}..{r.valid_until or ''}" if (r.valid_from or r.valid_until) else "always"
        groups = f"  {','.join(r.groups) or '-':<12}" if grouped else ""
        where = f"  {'every lot' if lots[r.id] is None else ','.join(lots[r.id]) or 'none'}" if lots else ""
        flag = f"  LOOK-ALIKE of {', '.join(flagged[r.name])}" if r.name in flagged else ""
        passback = f"  anti-passback {r.antipassback}" if r.antipassback else ""
        click.echo(f"{r.name:<{width}}  {r.unit or '-':<8}  {r.status:<9}  {r.templates:>5}  {valid:<22}"
                   f"{groups}{where}{passback}{flag}".rstrip())
    click.echo(f"{len(residents)} resident(s)" + (f", {len(flagged)} flagged as look-alikes" if flagged else ""))


@residents_command.command(name="check")
@json_option
@pass_app
def residents_check_command(app: App, as_json: bool) -> None:
    """The gallery's risks: its accept limit and expected stranger rate, look-alike pairs, "magnet"
    faces that other residents' faces (and so strangers') land on, residents whose own faces are
    too far apart to be one person (enroll.camera_same_person), and residents with faces that lack
    the faceres encoder (enrolled before it: matched on dlib alone), who need new photos or a camera
    enrollment to gain it.

    Example: lotcontrol residents check
    """
    from ..vision.matcher import GateGallery, SamePerson
    from .status import gallery_line

    store, config = app.reader, app.config
    whole = GateGallery.from_store(store, config.match, config.vision.encoder)
    summary = whole.summary()
    galleries = [g for g in (whole.main, whole.dlib_only) if g is not None]  # each compared in its own space
    residents = store.residents()
    names = {r.id: r.name for r in residents}
    pairs = [{"first": names[a], "second": names[b], "distance": d} for g in galleries for a, b, d in g.lookalikes()]
    flagged = {frozenset((p.first, p.second)): p for p in store.lookalikes(cleared=True)}
    with_pin = {names[rid] for rid in store.credentials()[1] if rid in names}
    by_name = {r.name: r for r in residents}
    for pair in pairs:
        known = flagged.get(frozenset((pair["first"], pair["second"])))
        pair["flag"] = "not flagged" if known is None else ("cleared " + known.cleared if known.cleared else "flagged")
        # how each enters (lotcontrol.policy.mode_of): face_and_pin by default once either has a PIN
        on_file = known is not None and bool(with_pin & {pair["first"], pair["second"]})
        pair["modes"] = {name: policy.mode_of(by_name[name], config.access.mode, on_file)
                         for name in (pair["first"], pair["second"])}
        pair["without_pin"] = sorted(n for n, mode in pair["modes"].items()
                                     if mode in (policy.FACE_AND_PIN, policy.CARD_AND_PIN) and n not in with_pin)
    magnets = [{"resident": names[r], "others": n} for g in galleries for r, n in g.magnets()]
    limit = config.enroll.camera_same_person
    spaces = [whole.space, "dlib"]  # main's, dlib_only's
    found = [(names[r], d, SamePerson(limit, space).described) for g, space in zip(galleries, spaces)
             for r, d in g.not_one_person(limit, space)]
    split = [{"resident": who, "distance": d} for who, d, _ in found]
    lacking = store.lacking("faceres")
    old = [{"resident": names[r], "without_faceres": missing, "faces": total}
           for r, (missing, total) in sorted(lacking.items(), key=lambda item: names[item[0]])]
    gaining = {"residents": len(old), "faces": sum(o["without_faceres"] for o in old),
               "residents_on_file": sum(1 for r in residents if r.templates)}
    if as_json:
        echo_json({"gallery": summary, "lookalikes": pairs, "magnets": magnets, "not_one_person": split,
                   "without_faceres": old, "without_faceres_summary": gaining})
        return
    click.echo(gallery_line(summary))
    for pair in pairs:
        modes = ", ".join(f"{name!r} {mode}" for name, mode in pair["modes"].items())
        click.echo(f"look-alike  {pair['first']!r} and {pair['second']!r}: distance {pair['distance']:.2f} "
                   f"({pair['flag']}; {modes})")
        for name in pair["without_pin"]:
            click.echo(f"            {name!r} has no PIN and cannot enter in that mode: `lotcontrol pin set {name!r}`")
    for magnet in magnets:
        click.echo(f"magnet      {magnet['resident']!r}: {magnet['others']} other resident(s) would be taken for them; "
                   "enroll them again from sharper, frontal photos")
    for who, distance, rule in found:
        click.echo(f"two people? {who!r}: a template is {distance:.2f} from their first ones "
                   f"(more than {rule}); check their photos (`lotcontrol show`), "
                   "remove and enroll each person under their own name")
    for entry in old:
        click.echo(f"no faceres  {entry['resident']!r}: {entry['without_faceres']} of {entry['faces']} face(s) lack it "
                   "(matched on dlib alone); enroll new photos, or at the camera (`lotcontrol enroll NAME --camera`)")
    if not pairs and not magnets and not split:
        click.echo("no look-alikes, no magnets, no resident with two people's faces")
    click.echo(f"faceres: {gaining['residents']} of {gaining['residents_on_file']} resident(s) with faces on file "
               f"need new photos or a camera enrollment to gain it ({gaining['faces']} face(s) without it)")


@residents_command.command(name="clear-lookalike")
@click.argument("first")
@click.argument("second")
@pass_app
def residents_clear_lookalike_command(app: App, first: str, second: str) -> None:
    """Record that FIRST and SECOND, flagged as look-alikes, were checked and are different people.

    The flag leaves the lists; the gate's stricter limit for the pair stays while their faces are
    this near (it follows the faces, not the flag).

    Example: lotcontrol residents clear-lookalike "Anna Berg" "Eva Berg"
    """
    pair = changes.clear_lookalike(app.store, first, second)
    click.echo(f"cleared: {pair.first!r} and {pair.second!r} (distance {pair.distance:.2f}) checked as different people")


@cli.command(name="show")
@click.argument("name")
@json_option
@pass_app
def show_command(app: App, name: str, as_json: bool) -> None:
    """Show one resident: details, faces on file and the newest events.

    Example: lotcontrol show "Anna Berg"
    """
    resident = app.reader.resident(name)
    events = [e for e in app.reader.events() if e.resident == resident.name][-10:]
    record = _resident_json(resident)
    if app.on_hub:
        record["lots"] = lots_of(app.reader)[resident.id]
    if as_json:
        echo_json({**record, "events": [e.as_json() for e in events]})
        return
    for key, value in record.items():
        if key == "lots":
            value = "every lot" if value is None else ", ".join(value) or "none"
        elif key == "groups":
            value = ", ".join(value) or "none (any time)"
        click.echo(f"{key.replace('_', ' '):>12}: {'-' if value is None else value}")
    for event in events:
        click.echo(f"{event.time}  {event.type}  {json.dumps(event.details, ensure_ascii=False)}")


def _status_command(command_name: str, status: str, verb: str):
    @cli.command(name=command_name)
    @click.argument("name")
    @pass_app
    def command(app: App, name: str) -> None:
        resident = changes.set_status(app.store, name, status)
        click.echo(f"{verb} {resident.name!r}")

    return command


suspend = _status_command("suspend", "suspended", verb="suspended")
suspend.help = """Refuse NAME at the gate until resumed; their faces stay on file.

    Example: lotcontrol suspend "Anna Berg"
    """
resume = _status_command("resume", "active", verb="resumed")
resume.help = """Admit a suspended resident NAME again.

    Example: lotcontrol resume "Anna Berg"
    """


@cli.command(name="rename")
@click.argument("old")
@click.argument("new")
@pass_app
def rename_command(app: App, old: str, new: str) -> None:
    """Change a resident's name from OLD to NEW; faces and history stay with them.

    Example: lotcontrol rename "Anna Berg" "Anna Lind"
    """
    store = app.store
    with store.transaction():
        before = store.resident(old)
        refuse_hub_copy(store, before)
        resident = store.rename(old, new)
        store.log_event("resident.renamed", resident.id)
    click.echo(f"renamed {before.name!r} to {resident.name!r}")


@cli.command(name="edit")
@click.argument("name")
@_resident_fields
@access_mode_option
@groups_option
@antipassback_option
@click.option("--reset-presence", is_flag=True,
              help="Count them out of this lot (anti-passback): their next entry is not a second one.")
@pass_app
def edit_command(app: App, name: str, access_mode: str | None, groups: str | None, antipassback: str | None,
                 reset_presence: bool, **fields: str | None) -> None:
    """Change NAME's unit, phone, note, the days the gate admits them, how they enter, their access
    groups or anti-passback; faces stay as they are. --reset-presence counts them out of the lot.

    Each value is checked as enroll checks it; an empty value ("") clears the field. Nothing changes
    if any value is refused. On the hub (--hub DIR) the change goes to the lots; presence is each
    lot's own (--reset-presence on the lot, also for a resident from the hub).

    Example: lotcontrol edit "Anna Berg" --unit 5C --valid-until 2027-06-30 --phone "" --groups day,weekend
    """
    given = {field: value for field, value in fields.items() if value is not None}
    if not given and access_mode is None and groups is None and antipassback is None and not reset_presence:
        raise click.UsageError(f"give at least one of {', '.join('--' + f.replace('_', '-') for f in EDITABLE)}, "
                               "--access-mode, --groups, --antipassback, --reset-presence")
    if reset_presence and app.on_hub:
        raise click.UsageError("--reset-presence: presence is kept by each lot; run it on the lot")
    after, changed = changes.edit(app.store, name, access_mode=access_mode, groups=_groups(app, groups),
                                  antipassback=antipassback, reset_presence=reset_presence, **given)
    if not changed:
        click.echo(f"{after.name!r} already has these details: nothing changed")
        return
    click.echo(f"changed {', '.join(field.replace('_', ' ') for field in changed)} of {after.name!r}")


@cli.command(name="remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def remove_command(app: App, name: str, yes: bool) -> None:
    """Erase NAME and every face template on file for them.

    Their past events stay in the log without their name.

    Example: lotcontrol remove "Anna Berg" --yes
    """
    store = app.store
    resident = store.resident(name)
    refuse_hub_copy(store, resident)
    if not yes:
        click.confirm(f"Erase {resident.name!r} and their {resident.templates} face template(s)?", abort=True)
    removed = changes.remove(store, resident.name)
    click.echo(f"removed {removed.name!r} and {removed.templates} face template(s)")


@cli.command(name="identify")
@photo_paths
@json_option
@pass_app
def identify_command(app: App, photos: tuple[str, ...], as_json: bool) -> None:
    """Say who is in each photo, with the matcher and thresholds the gate uses for one frame.

    Many photos are read on every core (enroll.workers), reported in the order given. Exits 0 when
    every photo could be read.

    Example: lotcontrol identify --json visitor.jpg
    """
    from ..enroll import faces_of_photos
    from ..vision.encoders import require
    from ..vision.matcher import GateGallery

    store, config = app.reader, app.config
    require(config.vision.encoder)
    gallery = GateGallery.from_store(store, config.match, config.vision.encoder)
    names = {r.id: r.name for r in store.residents()}
    report, unreadable = [], 0
    workers = worker_count(config.enroll) if len(photos) > 1 else 1
    for path, (faces, error) in zip(photos, faces_of_photos(photos, config.enroll, workers)):
        if error is not None:
            unreadable += 1
            report.append({"photo": path, "faces": [], "error": error})
            continue
        entries = []
        for face, embeddings in faces:
            match = gallery.match(embeddings)
            entries.append({
                "resident": names.get(match.resident_id),
                "distance": round(match.distance, 4) if math.isfinite(match.distance) else None,
                "box": face.box.as_list(),
                "_match": match,
            })
        report.append({"photo": path, "faces": entries})
    if as_json:
        clean = [{**r, "faces": [{k: v for k, v in f.items() if k != "_match"} for f in r["faces"]]}
                 for r in report]
        echo_json(clean)
    else:
        for entry in report:
            if "error" in entry:
                click.echo(f"{entry['photo']}: cannot be read: {entry['error']}")
            elif not entry["faces"]:
                click.echo(f"{entry['photo']}: no face found")
            for face in entry["faces"]:
                click.echo(f"{entry['photo']}: {_describe(face['_match'], names)} at {face['box']}")
    if unreadable:
        raise click.ClickException(f"{unreadable} of {len(photos)} photo(s) could not be read")


def _describe(match, names: dict[int, str]) -> str:
    if match.accepted:
        return f"{names[match.resident_id]} (distance {match.distance:.2f})"
    if match.reason == "no_residents":
        return "unknown (no residents on file)"
    nearest = names.get(match.nearest_id, "?")
    if match.reason == "ambiguous":
        return (f"unknown: too close to call between {nearest!r} ({match.distance:.2f}) and another "
                f"resident ({match.second_distance:.2f})")
    return f"unknown (nearest resident {nearest!r} at {match.distance:.2f}, needs {match.limit:.2f} or less)"


@cli.command(name="export")
@click.argument("name")
@pass_app
def export_command(app: App, name: str) -> None:
    """Print everything stored about NAME as JSON: details, face templates, events.

    Example: lotcontrol export "Anna Berg" > anna.json
    """
    echo_json(app.reader.export(name))
