"""The residents pages of the web console: the list and search, one resident, look-alike review, the
staff changes (suspend, resume, edit, remove with the name typed; cards, the PIN, the access mode,
groups and anti-passback), and enrollment by photo upload or at the camera with a live picture.

Viewers read; staff change. The pages read the database read-only. A change goes through
``lotcontrol.residents``, the command line's own path, on the database opened to write for that one
change (``Console.writer``), with ``by`` = the user in its event; an enrollment runs the command line's
``enroll`` itself (web/enrolling.py). A refusal is logged as ``web.refused`` with the user.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import residents as changes
from ..credentials import check_pin, hash_pin_apart
from ..errors import InvalidValue, LotControlError, ResidentNotFound, too_large
from ..phrases import Phrase, of_answer
from ..store import ACCESS_MODES, ANTIPASSBACK, isotime
from .enrolling import MAX_PHOTOS, CameraBusy, command, enroll_photos
from .security import Session
from .server import LOGOUT, Console, page, plain, sse, sse_event
from .users import User

SHOWN = 200  # residents listed at most (a search narrows them): a village's 1,400 are too many for a phone
SHOWN_EVENTS = 10  # a resident's newest events on their page (as `lotcontrol show`)
EVENT_DAYS = 90  # looked back for them
FIELDS = ("unit", "phone", "valid_from", "valid_until")  # edited on the page (the note too)
POLL = 0.1  # s: how often a camera enrollment's page stream looks for news (the job is in this process)
CARD_SECONDS = 30.0  # s: how long "Read a card at the reader" waits for the card (`card add --read`'s default)
CARD_POLL = 0.5  # s: how often the controller is asked whether the card came (as `card add --read` asks)


def _read(console: Console, work) -> tuple[Any, Exception | None]:
    """``work(store)`` on the database opened read-only; (its value, None) or (None, why not: the
    error, which the page says in its language, web/said.py)."""
    try:
        with console.reader() as store, store.lock_errors():
            return work(store), None
    except (LotControlError, OSError) as exc:
        return None, exc


def _listing(store, query: str) -> dict[str, Any]:
    mark = store.residents_mark()  # first: a change made while the list is read moves the mark past it
    flagged: dict[str, list[str]] = {}
    for pair in store.lookalikes():
        flagged.setdefault(pair.first, []).append(pair.second)
        flagged.setdefault(pair.second, []).append(pair.first)
    wanted = query.casefold()
    found = [r for r in store.residents()
             if not wanted or any(wanted in (value or "").casefold() for value in (r.name, r.unit, r.phone))]
    return {"residents": found[:SHOWN], "total": len(found), "flagged": flagged, "pairs": len(store.lookalikes()),
            "mark": mark}


@page()
async def residents_page(request, console: Console, user: User, session: Session, lang: str,
                         result: dict | None = None, status_code: int = 200) -> Response:
    query = request.query_params.get("q", "").strip()[:100]
    found, error = await run_in_threadpool(_read, console, lambda store: _listing(store, query))
    found = found or {"residents": [], "total": 0, "flagged": {}, "pairs": 0, "mark": ""}
    return console.render("residents.html", request, lang, status_code, user=user, session=session, q=query,
                          error=error, result=result, shown=SHOWN, **found)


@page()
async def residents_live(request, console: Console, user: User, session: Session, lang: str) -> Response:
    """The list's live part (``?q=`` its search), sent whenever the residents' mark the feed reads in its
    one poll moves (added, removed, suspended or resumed, edited, a face) from ``?mark=``, the one the
    page was rendered at (none: sent when it starts too)."""
    query = request.query_params.get("q", "").strip()[:100]

    async def parts():
        async for found in _on_residents_mark(request, console, session, lambda store: _listing(store, query)):
            yield found if isinstance(found, str) else console.envs[lang].get_template("_residents_live.html").render(
                lang=lang, when=console.when(lang), user=user, shown=SHOWN, **found)
    return sse(parts())


async def _on_residents_mark(request: Request, console: Console, session: Session, read):
    """What ``read(store)`` (read-only; a dict with the ``mark`` it read first) returns each time the
    residents' mark the feed reads in its one poll moves from ``?mark=``, the one the page was rendered
    at (none: when it starts too); the logout event (a str) once the session ended, and no more."""
    shown = request.query_params.get("mark") or None
    async for snapshot in console.feed.listen():
        if console.user(console.sessions.get(session.token)) is None:
            yield LOGOUT
            return
        mark = (snapshot.marks or {}).get("residents")
        if shown is not None and mark in (None, shown):  # unchanged, or not read this poll
            continue
        found, error = await run_in_threadpool(_read, console, read)
        if error is not None:
            continue  # the database is busy: the page stays as it is until the next poll
        shown = found["mark"]
        yield found


def _one(store, name: str, timezone: str, events: bool = True) -> dict[str, Any]:
    """A resident's page (``events``: their newest events too, which its live part leaves out), with the
    residents' mark read first: a change made while it is read moves the mark past it, and is sent."""
    mark = store.residents_mark()
    resident = store.resident(name)
    cards, pin = store.credential_counts(resident.id)
    encoders = store.encoder_counts(resident.id)
    since = isotime(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=EVENT_DAYS))
    recent = [e for e in store.events(since=since) if e.resident == resident.name][-SHOWN_EVENTS:][::-1] if events else []
    pairs = [p for p in store.lookalikes() if resident.name in (p.first, p.second)]
    on_file = [(changes.card_tag(digest), added) for digest, added in store.cards_of(resident.name)]
    return {"r": resident, "cards": cards, "pin": pin, "encoders": encoders, "events": recent, "pairs": pairs,
            "card_list": on_file, "refusal": resident.refusal(dt.datetime.now(ZoneInfo(timezone)).date()), "mark": mark}


@page()
async def resident_page(request, console: Console, user: User, session: Session, lang: str,
                        result: dict | None = None, status_code: int = 200, name: str | None = None) -> Response:
    name = name if name is not None else request.query_params.get("name", "")
    found, error = await run_in_threadpool(_read, console, lambda store: _one(store, name, console.config.site.timezone))
    if found is None:
        return console.render("residents.html", request, lang, 404, user=user, session=session, q="",
                              error=error, result=result, residents=[], total=0, flagged={}, pairs=0, shown=SHOWN,
                              mark="")
    return console.render("resident.html", request, lang, status_code, user=user, session=session, error=None,
                          result=result, groups_known=list(console.config.access.groups), modes=ACCESS_MODES,
                          card_reader=console.config.wiegand.d0_pin is not None, card_seconds=f"{CARD_SECONDS:g}",
                          antipassback_modes=ANTIPASSBACK, **found)


@page()
async def resident_live(request, console: Console, user: User, session: Session, lang: str) -> Response:
    """A resident's live part (``?name=``): read again, for this page, whenever the residents' mark the
    feed reads in its one poll moves from ``?mark=`` (the one the page was rendered at), and sent when it
    differs from what the page shows (a change to another resident moves the mark too); once they are
    removed, that, and the stream ends."""
    name = request.query_params.get("name", "")
    timezone = console.config.site.timezone

    def read(store):
        try:
            return _one(store, name, timezone, events=False)
        except ResidentNotFound:
            return {"r": None, "mark": store.residents_mark()}

    async def parts():
        sent = None
        async for found in _on_residents_mark(request, console, session, read):
            if isinstance(found, str):  # logged out
                yield found
                return
            html = console.envs[lang].get_template("_resident_live.html").render(
                lang=lang, when=console.when(lang), user=user, session=session, name=name, **found)
            if html != sent:
                sent = html
                yield html
            if found["r"] is None:
                yield sse_event("end", "removed")
                return
    return sse(parts())


def _form(request: Request, key: str) -> str:
    return str(request.state.form.get(key, "")).strip()


def _changed(request: Request, key: str, value: str | None = None) -> str | None:
    """The form's ``key`` (or ``value``, its normal form) if the user changed it from what their page
    showed (the form's ``was_KEY``), else None: a field they left alone keeps what it is now. The page
    shows another user's changes live, but its forms keep what they first showed; sent whole, they
    would put the old values back."""
    value = _form(request, key) if value is None else value
    was = f"was_{key}"
    return None if was in request.state.form and value == _form(request, was) else value


async def _change(console: Console, user: User, request_name: str, resident: str, work) -> dict[str, Any]:
    """``work(store)`` on the database opened to write; the result the page shows. A refusal is logged
    with the user (the change itself is logged by lotcontrol.residents, with ``by``)."""
    def run():
        with console.writer() as store, store.lock_errors():
            return work(store)
    try:
        value = await run_in_threadpool(run)
    except (LotControlError, ValueError, OSError) as exc:
        console.audit.log_event("web.refused", {"user": user.name, "request": request_name, "resident": resident,
                                                "reason": str(exc)[:300]})
        return {"ok": False, "message": str(exc), "error": exc}
    return {"ok": True, "message": "", "value": value}


async def _resident_change(request, console: Console, user: User, session: Session, lang: str, request_name: str,
                           action: str, work) -> Response:
    """A staff change to the resident named in the form (``work(store, name)``), then their page with its
    result (``action``, and ``value``: what the change returned)."""
    name = _form(request, "name")
    result = await _change(console, user, request_name, name, lambda store: work(store, name))
    if result["ok"]:
        result["action"] = action
    return await resident_page.__wrapped__(request, console, user, session, lang, result,
                                           200 if result["ok"] else 409, name=name)


@page("staff", post=True)
async def resident_status(request, console: Console, user: User, session: Session, lang: str) -> Response:
    name = _form(request, "name")
    status = "suspended" if request.url.path.endswith("/suspend") else "active"
    result = await _change(console, user, f"resident.{'suspend' if status == 'suspended' else 'resume'}", name,
                           lambda store: changes.set_status(store, name, status, by=user.name))
    result["action"] = status
    return await resident_page.__wrapped__(request, console, user, session, lang, result,
                                           200 if result["ok"] else 409, name=name)


@page("staff", post=True)
async def resident_edit(request, console: Console, user: User, session: Session, lang: str) -> Response:
    fields = {key: _changed(request, key) for key in (*FIELDS, "note")}
    return await _resident_change(request, console, user, session, lang, "resident.edit", "edited",
                                  lambda store, name: changes.edit(store, name, by=user.name, **fields)[1])


@page("staff", post=True)
async def resident_access(request, console: Console, user: User, session: Session, lang: str) -> Response:
    """The access mode, groups and anti-passback (as ``lotcontrol edit --access-mode --groups
    --antipassback --reset-presence``): the groups ticked are the resident's, none ticked is none."""
    form = request.state.form
    ticked = sorted(str(g) for g in form.getlist("groups"))
    groups = _changed(request, "groups", ",".join(ticked))
    mode, passback, reset = _changed(request, "access_mode"), _changed(request, "antipassback"), bool(_form(request, "reset_presence"))

    def work(store, name):
        return changes.edit(store, name, access_mode=mode or None, antipassback=passback or None,
                            groups=None if groups is None else changes.check_groups(ticked, console.config.access.groups),
                            reset_presence=reset, by=user.name)[1]
    return await _resident_change(request, console, user, session, lang, "resident.access", "edited", work)


@page("staff", post=True)
async def card_add(request, console: Console, user: User, session: Session, lang: str) -> Response:
    """A card typed by its number (FORMAT:NUMBER, as ``lotcontrol card add --uid``): kept as its keyed
    digest; the number is never shown back nor logged."""
    uid = _form(request, "uid")
    return await _resident_change(request, console, user, session, lang, "card.add", "card_added",
                                  lambda store, name: changes.add_card(store, name, uid=uid, by=user.name))


async def _card_at_reader(console: Console, name: str) -> tuple[str | None, Exception | None]:
    """The keyed digest of the next card shown at the lot's reader (as ``lotcontrol card add --read``:
    the controller keeps it instead of deciding an entry), or why not: (digest, None) or (None, error).
    A resident not on file, or the hub's, is refused before the controller is asked."""
    def check(store):
        changes.refuse_hub_copy(store, store.resident(name))
    _, refused = await run_in_threadpool(_read, console, check)
    if refused is not None:
        return None, refused
    try:
        answer = await asyncio.to_thread(console.ask, "card.read", seconds=CARD_SECONDS)
        while answer.get("ok") and not answer.get("digest"):
            await asyncio.sleep(CARD_POLL)
            answer = await asyncio.to_thread(console.ask, "card.read")
    except LotControlError as exc:  # the controller not running, busy, silent: said by its code
        return None, exc
    if not answer.get("ok"):  # none in time (naming the reader's pins), no reader: said by its code
        said = of_answer(answer)
        return None, LotControlError(said, code=said.code, **said.params)
    return str(answer["digest"]), None


@page("staff", post=True)
async def card_read(request, console: Console, user: User, session: Session, lang: str) -> Response:
    """A card shown at the lot's reader, put on file as its keyed digest (``lotcontrol card add NAME
    --read``): the page waits up to CARD_SECONDS for it. Its number never reaches the console, and the
    digest is neither shown nor logged."""
    digest, refused = await _card_at_reader(console, _form(request, "name"))

    def work(store, name):
        if refused is not None:
            raise refused
        return changes.add_card(store, name, digest=digest, by=user.name)
    return await _resident_change(request, console, user, session, lang, "card.read", "card_added", work)


@page("staff", post=True)
async def card_remove(request, console: Console, user: User, session: Session, lang: str) -> Response:
    tag = _form(request, "card")
    return await _resident_change(request, console, user, session, lang, "card.remove", "card_removed",
                                  lambda store, name: changes.remove_cards(store, name, tag=tag, by=user.name))


@page("staff", post=True)
async def pin_set(request, console: Console, user: User, session: Session, lang: str) -> Response:
    """A PIN typed twice (password fields; never shown back nor logged), hashed with argon2id by
    ``lotcontrol pin set``'s own code in a child process (credentials.hash_pin_apart)."""
    form = request.state.form
    pin, again = str(form.get("pin", "")), str(form.get("pin_again", ""))

    def work(store, name):
        store.resident(name)  # a name not on file is said before the PIN is checked
        if pin != again:
            raise InvalidValue("the PIN and the PIN typed again differ", code="pin.mismatch")
        return changes.set_pin(store, name, hashed=hash_pin_apart(check_pin(pin)), by=user.name)
    return await _resident_change(request, console, user, session, lang, "pin.set", "pin_set", work)


@page("staff", post=True)
async def pin_clear(request, console: Console, user: User, session: Session, lang: str) -> Response:
    return await _resident_change(request, console, user, session, lang, "pin.clear", "pin_cleared",
                                  lambda store, name: changes.clear_pin(store, name, by=user.name))


@page("staff", post=True)
async def resident_remove(request, console: Console, user: User, session: Session, lang: str) -> Response:
    name, typed = _form(request, "name"), _form(request, "confirm")
    if not name or typed != name:
        result = {"ok": False, "message": "confirm", "expected": name}
        return await resident_page.__wrapped__(request, console, user, session, lang, result, 409, name=name)
    result = await _change(console, user, "resident.remove", name, lambda store: changes.remove(store, name, by=user.name))
    if not result["ok"]:
        return await resident_page.__wrapped__(request, console, user, session, lang, result, 409, name=name)
    result.update(action="removed", name=result["value"].name, templates=result["value"].templates)
    return await residents_page.__wrapped__(request, console, user, session, lang, result)


@page()
async def lookalikes_page(request, console: Console, user: User, session: Session, lang: str,
                          result: dict | None = None, status_code: int = 200) -> Response:
    def work(store):
        pairs = store.lookalikes()
        people = {r.name: r for r in store.residents()}
        return [(p, people.get(p.first), people.get(p.second)) for p in pairs]
    pairs, error = await run_in_threadpool(_read, console, work)
    return console.render("lookalikes.html", request, lang, status_code, user=user, session=session,
                          pairs=pairs or [], error=error, result=result)


@page("staff", post=True)
async def lookalike_clear(request, console: Console, user: User, session: Session, lang: str) -> Response:
    first, second = _form(request, "first"), _form(request, "second")
    result = await _change(console, user, "resident.clear_lookalike", f"{first}, {second}",
                           lambda store: changes.clear_lookalike(store, first, second, by=user.name))
    result.update(action="cleared", first=first, second=second)
    return await lookalikes_page.__wrapped__(request, console, user, session, lang, result, 200 if result["ok"] else 409)


# --- enrollment ---

def _camera(console: Console) -> str:
    return console.config.web.enroll_camera or console.config.camera.source


@page("staff")
async def enroll_page(request, console: Console, user: User, session: Session, lang: str,
                      outcome=None, status_code: int = 200, error: str | None = None, sent: dict | None = None) -> Response:
    return console.render("enroll.html", request, lang, status_code, user=user, session=session, outcome=outcome,
                          error=error, sent=sent or {}, camera=_camera(console), max_photos=MAX_PHOTOS,
                          max_mb=console.config.enroll.max_file_mb, running=console.jobs.running(),
                          seconds=console.config.enroll.camera_seconds)


def _details(request: Request) -> tuple[str, dict[str, str]]:
    return _form(request, "name"), {key: _form(request, key) for key in FIELDS}


def _enroll_args(console: Console, user: User, fields: dict[str, str]) -> list[str]:
    return command(console.config_path, console.data_dir, user.name, fields)


@page("staff", post=True, files=MAX_PHOTOS)
async def enroll_upload(request, console: Console, user: User, session: Session, lang: str) -> Response:
    name, fields = _details(request)
    uploads = [item for item in request.state.form.getlist("photos") if hasattr(item, "read") and item.filename]
    limit = console.config.enroll.max_file_mb

    def refuse(message: str, status_code: int) -> Response:
        console.audit.log_event("web.refused", {"user": user.name, "request": "enroll", "resident": name,
                                                "reason": message[:300]})
        return console.render("enroll.html", request, lang, status_code, user=user, session=session, outcome=None,
                              error=message, sent={"name": name, **fields}, camera=_camera(console),
                              max_photos=MAX_PHOTOS, max_mb=limit, running=console.jobs.running(),
                              seconds=console.config.enroll.camera_seconds)
    if not uploads:
        return refuse(Phrase("web.no_photo"), 400)
    for item in uploads:
        if item.size is not None and item.size > limit * 1e6:
            return refuse(Phrase("web.upload_refused", reason=too_large(item.filename, item.size, limit)), 413)
    photos = [(item.filename, await item.read()) for item in uploads]
    for item in uploads:
        await item.close()
    outcome = await run_in_threadpool(enroll_photos, _enroll_args(console, user, fields), name, photos, console.data_dir)
    if not outcome.ok:
        console.audit.log_event("web.refused", {"user": user.name, "request": "enroll", "resident": name,
                                                "reason": str(outcome.error)[:300]})
    return await enroll_page.__wrapped__(request, console, user, session, lang, outcome, 200 if outcome.ok else 422,
                                         sent={"name": name, **fields})


@page("staff", post=True)
async def enroll_camera(request, console: Console, user: User, session: Session, lang: str) -> Response:
    name, fields = _details(request)
    if not name:
        return await enroll_page.__wrapped__(request, console, user, session, lang, None, 400,
                                             error=Phrase("web.no_name"), sent=fields)
    try:
        job = await run_in_threadpool(console.jobs.start, _enroll_args(console, user, fields), user.name, name,
                                      _camera(console), console.config.enroll.camera_seconds)
    except CameraBusy as exc:
        console.audit.log_event("web.refused", {"user": user.name, "request": "enroll --camera", "resident": name,
                                                "reason": str(exc)})
        return await enroll_page.__wrapped__(request, console, user, session, lang, None, 409, error=exc.args[0],
                                             sent={"name": name, **fields})
    return RedirectResponse(f"/residents/enroll/camera/{job.id}", status_code=303)


def _job(request: Request, console: Console):
    return console.jobs.get(request.path_params["job"])


@page("staff")
async def camera_job(request, console: Console, user: User, session: Session, lang: str) -> Response:
    job = _job(request, console)
    if job is None:
        return plain(lang, Phrase("web.no_job"), 404)
    fragment = console.envs[lang].get_template("_enroll_job.html").render(job=job)
    return console.render("enroll_camera.html", request, lang, user=user, session=session, job=job, fragment=fragment)


@page("staff")
async def camera_job_live(request, console: Console, user: User, session: Session, lang: str) -> Response:
    job = _job(request, console)
    if job is None:
        return plain(lang, Phrase("web.no_job"), 404)
    template = console.envs[lang].get_template("_enroll_job.html")

    async def stream():
        shown = -1
        while True:
            if console.user(console.sessions.get(session.token)) is None:
                yield LOGOUT
                return
            if job.version != shown:
                shown = job.version
                yield sse_event(None, template.render(job=job))
            if job.done:
                yield sse_event("end", "done")
                return
            await asyncio.sleep(POLL)
    return StreamingResponse(stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})


BOUNDARY = "lotcontrolframe"


@page("staff")
async def camera_job_preview(request, console: Console, user: User, session: Session, lang: str) -> Response:
    """The live picture (MJPEG): the newest frame whenever there is a new one, until the enrollment
    ends. Frames are never written anywhere."""
    job = _job(request, console)
    if job is None:
        return plain(lang, Phrase("web.no_job"), 404)

    async def stream():
        shown = 0
        while not job.done and console.user(console.sessions.get(session.token)) is not None:
            frame, count = job.frame, job.frames
            if frame is not None and count != shown:
                shown = count
                yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame)}\r\n\r\n").encode() \
                    + frame + b"\r\n"
            await asyncio.sleep(POLL)
    return StreamingResponse(stream(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")


ROUTES = [
    Route("/residents", residents_page),
    Route("/residents/live", residents_live),
    Route("/resident", resident_page),
    Route("/resident/live", resident_live),
    Route("/resident/suspend", resident_status, methods=["POST"]),
    Route("/resident/resume", resident_status, methods=["POST"]),
    Route("/resident/edit", resident_edit, methods=["POST"]),
    Route("/resident/remove", resident_remove, methods=["POST"]),
    Route("/resident/access", resident_access, methods=["POST"]),
    Route("/resident/card/add", card_add, methods=["POST"]),
    Route("/resident/card/read", card_read, methods=["POST"]),
    Route("/resident/card/remove", card_remove, methods=["POST"]),
    Route("/resident/pin/set", pin_set, methods=["POST"]),
    Route("/resident/pin/clear", pin_clear, methods=["POST"]),
    Route("/residents/lookalikes", lookalikes_page),
    Route("/residents/lookalikes/clear", lookalike_clear, methods=["POST"]),
    Route("/residents/enroll", enroll_page),
    Route("/residents/enroll/photos", enroll_upload, methods=["POST"]),
    Route("/residents/enroll/camera", enroll_camera, methods=["POST"]),
    Route("/residents/enroll/camera/{job}", camera_job),
    Route("/residents/enroll/camera/{job}/live", camera_job_live),
    Route("/residents/enroll/camera/{job}/preview.mjpg", camera_job_preview),
]
