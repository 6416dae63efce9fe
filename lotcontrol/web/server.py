"""The web console's Starlette application: pages, live updates (server-sent events) and actions.

Every request but ``/healthz`` and the static files needs a login; every POST a CSRF token; every
action the role it needs, checked here on the server (``ROLE_FOR``). What the controller does is
asked through the control socket (with ``by`` = the user, so its event names them); what is read
comes from the database, opened read-only for each request.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import logging
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable
from zoneinfo import ZoneInfo

import anyio
import anyio.to_thread
import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import (FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response,
                                 StreamingResponse)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import control_socket
from ..alerts import SEVERITY
from ..config import SEVERITIES, Config
from ..errors import LotControlError
from ..phrases import Phrase, of_answer
from ..store import Store, isotime
from . import charging as energy
from . import i18n, said
from .audit import Audit
from .enrolling import CameraJob, CameraJobs
from .feed import Snapshot, StatusFeed
from .security import COOKIE, HEADERS, LoginLimit, Session, Sessions, csrf_ok
from .users import User, UserError, Users

log = logging.getLogger("lotcontrol")

HERE = Path(__file__).parent
READ_TIMEOUT = 2.0  # s: a read-only open waits this long for an exclusive lock, then says so
WRITE_TIMEOUT = 10.0  # s: a staff change waits this long for another writer (the command line's wait)
SHOWN_EVENTS = 500  # rows on the events page (the CSV has them all)
CONFIRM_RESET = "RESET"  # typed to reset the fire alarm
SHOWN_SESSIONS = 100  # rows on the charging page (the month's sessions CSV has them all)
#: The pages that update live: their live part's template (sent whole on every server-sent event).
LIVE_PARTS = {"overview": "_live.html", "charging": "_charging_live.html", "fire": "_fire_live.html"}
SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}\.jpg$")  # as writer.snapshot_name makes them

#: The least role each action needs (viewer < staff < safety).
ROLE_FOR = {"gate.open": "staff", "fire.drill": "safety", "fire.reset": "safety", "charging.port": "staff"}
PORT_ACTIONS = ("stop", "enable", "disable")  # charging.stop, charging.enable, charging.disable


class SecurityHeaders:
    """Adds HEADERS (the Content-Security-Policy first) to every response, errors and files too."""

    def __init__(self, app, tls: bool):
        self.app = app
        self.extra = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
        if tls:
            self.extra.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *self.extra]
            await send(message)
        await self.app(scope, receive, with_headers)


@dataclass
class Console:
    """What every request works with: the settings, the accounts, the sessions, the feed, the audit."""

    config: Config
    data_dir: Path
    users: Users
    sessions: Sessions
    limit: LoginLimit
    feed: StatusFeed
    audit: Audit
    tls: bool
    ask: Callable[..., dict[str, Any]]
    config_path: str | None = None  # the configuration file, for the enrollments it runs (web/enrolling.py)

    def __post_init__(self) -> None:
        self.envs = {lang: _environment(lang) for lang in i18n.LANGUAGES}
        self._live: dict[tuple[int, str, str], asyncio.Future[str]] = {}
        self._new_events: dict[tuple[int, int], asyncio.Future] = {}
        self.jobs = CameraJobs(on_done=self._enrolled)
        self._checking: anyio.CapacityLimiter | None = None

    def password_thread(self) -> anyio.CapacityLimiter:
        """The one thread password checks run on (made in the event loop, at the first login). They take
        turns anyway (users.ONE_HASH); waiting for that on the shared pool's threads instead, 40 logins at
        once would hold every thread the pages' reads and the live streams need."""
        if self._checking is None:
            self._checking = anyio.CapacityLimiter(1)
        return self._checking

    def _enrolled(self, job: CameraJob) -> None:
        """An enrollment at the camera ended: a refusal is logged with the user (a success is logged by
        enroll itself, ``resident.enrolled`` with ``by``)."""
        if not job.result.ok:
            self.audit.log_event("web.refused", {"user": job.user, "request": "enroll --camera",
                                                 "resident": job.name, "reason": str(job.result.error)[:300]})

    # --- the request's user, language and page ---

    def session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def user(self, session: Session | None) -> User | None:
        if session is None or session.user is None:
            return None
        try:
            return self.users.get(session.user)  # removed, or its role changed: seen at once
        except UserError as exc:
            log.error("web: %s", exc)
            return None

    def language(self, request: Request, user: User | None) -> str:
        if user is not None and user.language in i18n.LANGUAGES:
            return user.language
        return i18n.from_header(request.headers.get("accept-language"))

    def render(self, template: str, request: Request, lang: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        env = self.envs[lang]
        html = env.get_template(template).render(lang=lang, when=self.when(lang), path=request.url.path, **context)
        return HTMLResponse(html, status_code=status_code)

    def when(self, lang: str) -> Callable[..., str]:
        return lambda moment, fmt="medium": i18n.when(moment, lang, self.config.site.timezone, fmt)

    def cookie(self, response: Response, session: Session) -> Response:
        response.set_cookie(COOKIE, session.token, max_age=int(self.sessions.hours * 3600), path="/",
                            httponly=True, samesite="strict", secure=self.tls)
        return response

    def reader(self) -> Store:
        return Store.in_dir(self.data_dir, read_only=True, busy_timeout=READ_TIMEOUT)

    def writer(self) -> Store:
        """The database opened to write, for one staff change to the residents (web/residents.py) and
        closed after it: the pages themselves only read."""
        return Store.in_dir(self.data_dir, busy_timeout=WRITE_TIMEOUT)

    async def live_html(self, snapshot: Snapshot, lang: str, part: str = "overview") -> str:
        """A page's live part (``LIVE_PARTS``) for one answer of the controller, rendered once per
        language: the browsers that ask for it meanwhile wait for that one rendering (and its one read
        of the database while a zone is in alarm), not each their own."""
        key = (snapshot.seq, lang, part)
        if key not in self._live:
            if len(self._live) > 16:
                for old in [k for k, task in self._live.items() if task.done()]:
                    del self._live[old]
            self._live[key] = asyncio.ensure_future(self._render_live(snapshot, lang, part))
        return await asyncio.shield(self._live[key])

    async def _render_live(self, snapshot: Snapshot, lang: str, part: str) -> str:
        since, db_error = {}, None
        if part == "overview":
            zones = (snapshot.status or {}).get("fire", [])
            if not all(zone.get("state") == "normal" for zone in zones):
                since, db_error = await run_in_threadpool(self.alarm_times)
        return self.envs[lang].get_template(LIVE_PARTS[part]).render(
            lang=lang, when=self.when(lang), s=snapshot.status, error=snapshot.error, since=since,
            db_error=db_error, severity=SEVERITY)

    async def new_events(self, after: int, newest: int) -> tuple[list, Exception | None]:
        """The events numbered above ``after`` up to ``newest`` (oldest first), read once for every events
        page streaming at that moment: each applies its own filters."""
        key = (after, newest)
        if key not in self._new_events:
            if len(self._new_events) > 16:
                for old in [k for k, task in self._new_events.items() if task.done()]:
                    del self._new_events[old]
            self._new_events[key] = asyncio.ensure_future(run_in_threadpool(self._read_new_events, after, newest))
        return await asyncio.shield(self._new_events[key])

    def _read_new_events(self, after: int, newest: int) -> tuple[list, Exception | None]:
        try:
            with self.reader() as store, store.lock_errors():
                return [e for e in store.events(after=after) if e.id <= newest], None
        except (LotControlError, OSError) as exc:
            return [], exc

    def alarm_times(self) -> tuple[dict[str, str], Exception | None]:
        """When each zone's standing alarm, pre-alarm or drill began, from the event log."""
        since: dict[str, str] = {}
        try:
            with self.reader() as store, store.lock_errors():
                month = isotime(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=31))
                for event in store.events(since=month, type="fire"):
                    zone = event.details.get("zone")
                    if event.type in ("fire.reset", "fire.cleared"):
                        since.pop(zone, None)
                    elif event.type in ("fire.alarm", "fire.prealarm", "fire.drill", "fire.alarm.restored"):
                        since.setdefault(zone, event.time)
        except (LotControlError, OSError) as exc:
            return since, exc  # said in the page's language (web/said.py)
        return since, None


def read_marks(data_dir: Path) -> dict[str, Any] | None:
    """The database's change marks, read in the feed's poll (read-only): the newest event's number and
    the residents' mark. None when the database cannot be read now (the pages keep what they show)."""
    try:
        with Store.in_dir(data_dir, read_only=True, busy_timeout=READ_TIMEOUT) as store, store.lock_errors():
            return {"events": store.newest_event_id(), "residents": store.residents_mark()}
    except (LotControlError, OSError):
        return None


def _environment(lang: str) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             extensions=["jinja2.ext.i18n"], undefined=jinja2.StrictUndefined)
    env.install_gettext_translations(i18n.translations(lang), newstyle=True)
    env.globals["CONFIRM_RESET"] = CONFIRM_RESET
    gettext = i18n.translations(lang).gettext
    env.globals["said"] = lambda text: said.error(text, gettext)  # the controller's sentences, the store's errors
    return env


# --- the gate every page and action goes through ---

Handler = Callable[[Request, "Console", User, Session, str], Awaitable[Response]]


class TooLarge(Exception):
    """A request body past its limit: refused before the rest is read."""


def limited(request: Request, limit: int) -> Request:
    """The request, its body cut off with TooLarge past ``limit`` bytes (a length said or not)."""
    said = request.headers.get("content-length", "")
    if said.isdigit() and int(said) > limit:
        raise TooLarge()
    seen = 0
    receive = request.receive

    async def counted():
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise TooLarge()
        return message
    return Request(request.scope, counted)


def page(role: str = "viewer", post: bool = False, files: int = 0,
         ) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """A login, ``role`` and (for a POST) the CSRF token, checked before the handler runs. ``files``:
    a POST that uploads at most so many files (multipart), each at most ``enroll.max_file_mb``; its
    role is checked before its body is read."""
    def wrap(handler: Handler):
        async def endpoint(request: Request) -> Response:
            console: Console = request.app.state.console
            session = console.session(request)
            user = console.user(session)
            lang = console.language(request, user)
            if user is None:
                if request.method == "GET" and not request.url.path.endswith("/live"):
                    return RedirectResponse("/login", status_code=303)
                return plain(lang, Phrase("web.log_in"), 401)
            if files and not user.may(role):
                return refuse_role(request, console, user, session, lang, role)
            if post:
                try:
                    if files:
                        limit = int(files * console.config.enroll.max_file_mb * 1e6) + (1 << 20)
                        form = await limited(request, limit).form(max_files=files, max_fields=20)
                    else:
                        form = await request.form(max_files=0, max_fields=20)
                except TooLarge:
                    return plain(lang, Phrase("web.upload_too_large", files=files,
                                              limit=f"{console.config.enroll.max_file_mb:g}"), 413)
                except (MultiPartException, HTTPException) as exc:  # Starlette's own 400 for a multipart it refuses
                    return plain(lang, Phrase("web.bad_form", error=getattr(exc, "detail", None) or exc), 400)
                if not csrf_ok(session, form.get("csrf")):
                    console.audit.log_event("web.refused", {"user": user.name, "request": f"POST {request.url.path}",
                                                      "reason": "csrf"})
                    return console.render("refused.html", request, lang, 403, user=user, session=session,
                                          reason="csrf")
                request.state.form = form
            if not user.may(role):
                return refuse_role(request, console, user, session, lang, role)
            return await handler(request, console, user, session, lang)
        endpoint.__wrapped__ = handler  # an action shows its page through the page's own handler
        return endpoint
    return wrap


def plain(lang: str, message: Phrase | BaseException | str, status_code: int) -> PlainTextResponse:
    """A plain-text answer (a request no page answers: a bad query, a form that cannot be read, a login
    missing) in the request's language: by its code (lotcontrol.phrases, web/said.py), else as it came."""
    return PlainTextResponse(said.error(message, i18n.translations(lang).gettext), status_code=status_code)


def refuse_role(request: Request, console: Console, user: User, session: Session, lang: str, role: str) -> Response:
    console.audit.log_event("web.refused", {"user": user.name, "request": f"{request.method} {request.url.path}",
                                            "reason": f"role {user.role}, needs {role}"})
    return console.render("refused.html", request, lang, 403, user=user, session=session, reason="role", needed=role)


# --- pages ---

async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def login_form(request: Request) -> Response:
    console: Console = request.app.state.console
    session = console.session(request)
    if console.user(session) is not None:
        return RedirectResponse("/", status_code=303)
    session = session or console.sessions.new()
    return console.cookie(console.render("login.html", request, console.language(request, None), user=None,
                                         session=session, error=None, name=""), session)


async def login(request: Request) -> Response:
    console: Console = request.app.state.console
    session = console.session(request)
    lang = console.language(request, None)
    form = await request.form(max_files=0, max_fields=10)
    name, password = str(form.get("name", ""))[:100], str(form.get("password", ""))[:1000]
    address = request.client.host if request.client else "?"
    if not csrf_ok(session, form.get("csrf")):
        console.audit.log_event("web.refused", {"user": name, "request": "POST /login", "reason": "csrf", "address": address})
        return console.render("refused.html", request, lang, 403, user=None, session=None, reason="csrf")
    if console.limit.blocked(name, address):
        console.audit.log_event("web.login_failed", {"user": name, "address": address, "reason": "rate limit"})
        return console.render("login.html", request, lang, 429, user=None, session=session, error="limited", name=name)
    user = await anyio.to_thread.run_sync(console.users.check, name, password, limiter=console.password_thread())
    if user is None:
        console.limit.failed(name, address)
        console.audit.log_event("web.login_failed", {"user": name, "address": address, "reason": "password"})
        return console.render("login.html", request, lang, 401, user=None, session=session, error="wrong", name=name)
    console.sessions.end(session.token)
    console.audit.log_event("web.login", {"user": user.name, "address": address})
    return console.cookie(RedirectResponse("/", status_code=303), console.sessions.new(user.name))


@page(post=True)
async def logout(request, console: Console, user: User, session: Session, lang: str) -> Response:
    console.sessions.end(session.token)
    console.audit.log_event("web.logout", {"user": user.name})
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@page(post=True)
async def set_language(request, console: Console, user: User, session: Session, lang: str) -> Response:
    language = str(request.state.form.get("language", ""))
    try:
        await run_in_threadpool(console.users.set_language, user.name, language)
    except UserError as exc:
        return plain(lang, exc, 400)
    console.audit.log_event("web.language", {"user": user.name, "language": language})
    back = str(request.state.form.get("back", "/"))
    return RedirectResponse(back if back.startswith("/") and not back.startswith("//") else "/", status_code=303)


@page()
async def overview(request, console: Console, user: User, session: Session, lang: str,
                   result: dict | None = None, status_code: int = 200) -> Response:
    snapshot = await console.feed.current()
    live = await console.live_html(snapshot, lang)
    return console.render("overview.html", request, lang, status_code, user=user, session=session, live=live,
                          result=result)


def _stream(console: Console, session: Session, lang: str, part: str) -> Response:
    """A page's live part on every new answer of the controller (server-sent events)."""
    async def parts():
        async for snapshot in console.feed.listen():
            if console.user(console.sessions.get(session.token)) is None:
                yield LOGOUT
                return
            yield await console.live_html(snapshot, lang, part)
    return sse(parts())


def sse_event(name: str | None, text: str) -> str:
    """One server-sent event carrying ``text``: named ``name`` (live.js listens for it), or, with None,
    the unnamed message a page's live part arrives in."""
    return (f"event: {name}\n" if name else "") + "".join(f"data: {line}\n" for line in text.strip().splitlines()) + "\n"


#: What a live stream sends once the session has ended: live.js goes to the login page.
LOGOUT = sse_event("logout", "/login")


def sse(htmls) -> Response:
    """Server-sent events: each HTML ``htmls`` yields as one message (a text that already is an event,
    the logout, as it is)."""
    async def stream():
        async for html in htmls:
            yield html if html.startswith("event: ") else sse_event(None, html)
    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"X-Accel-Buffering": "no"})


@page()
async def live(request, console: Console, user: User, session: Session, lang: str) -> Response:
    return _stream(console, session, lang, "overview")


async def _action(console: Console, user: User, command: str, **args: Any) -> dict:
    """The controller's answer to a staff command given from the page; a refusal is logged with the user."""
    try:
        answer = await asyncio.to_thread(console.ask, command, by=user.name, **args)
    except LotControlError as exc:
        answer = {"ok": False, "message": str(exc), "error": exc}  # said by its code (web/said.py)
    if not answer.get("ok"):
        console.audit.log_event("web.refused", {"user": user.name, "request": command,
                                          "reason": str(answer.get("message", "refused"))[:300]})
    return {"command": command, "ok": bool(answer.get("ok")), "message": of_answer(answer),  # said by its code
            "error": answer.get("error")}


@page(ROLE_FOR["gate.open"], post=True)
async def gate_open(request, console: Console, user: User, session: Session, lang: str) -> Response:
    result = await _action(console, user, "gate.open")
    console.feed.latest = None  # the next page shows the gate as it is now
    return await overview.__wrapped__(request, console, user, session, lang, result, 200 if result["ok"] else 409)


@page()
async def fire(request, console: Console, user: User, session: Session, lang: str,
               result: dict | None = None, status_code: int = 200) -> Response:
    snapshot = await console.feed.current()
    zones = (snapshot.status or {}).get("fire", [])
    live = await console.live_html(snapshot, lang, "fire")  # the zones, updated live as the overview is
    history, db_error = await run_in_threadpool(_recent_fire, console)
    return console.render("fire.html", request, lang, status_code, user=user, session=session, zones=zones,
                          live=live, history=history, db_error=db_error, result=result,
                          may_act=user.may(ROLE_FOR["fire.reset"]))


@page()
async def fire_live(request, console: Console, user: User, session: Session, lang: str) -> Response:
    return _stream(console, session, lang, "fire")


def _recent_fire(console: Console) -> tuple[list, Exception | None]:
    try:
        with console.reader() as store, store.lock_errors():
            return store.events(type="fire")[-20:][::-1], None
    except (LotControlError, OSError) as exc:
        return [], exc


@page(ROLE_FOR["fire.drill"], post=True)
async def fire_drill(request, console: Console, user: User, session: Session, lang: str) -> Response:
    zone, typed = str(request.state.form.get("zone", "")), str(request.state.form.get("confirm", "")).strip()
    if not zone or typed != zone:
        result = {"command": "fire.drill", "ok": False, "message": "confirm", "expected": zone}
    else:
        result = await _action(console, user, "fire.drill", zone=zone)
    console.feed.latest = None
    return await fire.__wrapped__(request, console, user, session, lang, result, 200 if result["ok"] else 409)


@page(ROLE_FOR["fire.reset"], post=True)
async def fire_reset(request, console: Console, user: User, session: Session, lang: str) -> Response:
    if str(request.state.form.get("confirm", "")).strip() != CONFIRM_RESET:
        result = {"command": "fire.reset", "ok": False, "message": "confirm", "expected": CONFIRM_RESET}
    else:
        result = await _action(console, user, "fire.reset")
    console.feed.latest = None
    return await fire.__wrapped__(request, console, user, session, lang, result, 200 if result["ok"] else 409)


# --- the event log ---

@dataclass
class EventFilter:
    type: str = ""
    resident: str = ""
    since: str = ""  # a date (the lot's), as the form sends it
    until: str = ""
    severity: str = ""

    @classmethod
    def of(cls, request: Request) -> "EventFilter":
        q = request.query_params
        return cls(*(q.get(name, "").strip()[:100] for name in ("type", "resident", "since", "until", "severity")))

    def problem(self) -> Phrase | None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value:
                try:
                    dt.date.fromisoformat(value)
                except ValueError:
                    return Phrase("web.bad_date", field=name, value=value)
        if self.severity and self.severity not in SEVERITIES:
            return Phrase("web.bad_severity", value=self.severity, allowed=", ".join(SEVERITIES))
        return None

    def bound(self, value: str, timezone: str, end: bool) -> str | None:
        """A date of the lot, as the UTC time it starts (``end``: the next day's start)."""
        if not value:
            return None
        day = dt.date.fromisoformat(value) + dt.timedelta(days=1 if end else 0)
        return isotime(dt.datetime.combine(day, dt.time(), ZoneInfo(timezone)).astimezone(dt.timezone.utc))

    def apply(self, store: Store, timezone: str) -> list:
        return self.keep(store.events(since=self.bound(self.since, timezone, False), type=self.type or None),
                         timezone)

    def keep(self, events: list, timezone: str) -> list:
        """The events (oldest first) that pass the filters: the page's, or the new ones its stream sends."""
        since, until = self.bound(self.since, timezone, False), self.bound(self.until, timezone, True)
        least = SEVERITIES.index(self.severity) if self.severity else None
        wanted = []
        for event in events:
            if self.type and event.type != self.type and not event.type.startswith(self.type + "."):
                continue
            if since is not None and event.time < since:
                continue
            if until is not None and event.time >= until:
                continue
            if self.resident and self.resident.casefold() not in (event.resident or "").casefold():
                continue
            if least is not None and (event.type not in SEVERITY or SEVERITIES.index(SEVERITY[event.type]) < least):
                continue
            wanted.append(event)
        return wanted


def _events(console: Console, filters: EventFilter, verify: bool) -> dict[str, Any]:
    problem = filters.problem()
    if problem:
        return {"events": [], "total": 0, "error": problem, "verified": None, "snapshots": {}, "newest": 0}
    try:
        with console.reader() as store, store.lock_errors():
            newest = store.newest_event_id()  # first: the page's stream sends what came after it
            events = filters.apply(store, console.config.site.timezone)
            # an event committed between the two reads is listed already: the stream starts after it (ids
            # grow in commit order, so every event up to the newest listed one was there to list)
            newest = max([newest, *(e.id for e in events)])
            verified = store.verify_events() if verify else None
    except (LotControlError, OSError) as exc:
        return {"events": [], "total": 0, "error": exc, "verified": None, "snapshots": {}, "newest": 0}
    shown = events[::-1][:SHOWN_EVENTS]
    return {"events": shown, "total": len(events), "error": None, "verified": verified,
            "snapshots": _snapshots(console.data_dir, shown), "newest": newest}


def _snapshots(data_dir: Path, events: list) -> dict[int, str | None]:
    """Each shown event's entry snapshot: its file name if the file is still there, else None."""
    found = {}
    for event in events:
        name = event.details.get("snapshot")
        if isinstance(name, str):
            name = name.removeprefix("snapshots/")
            found[event.id] = name if snapshot_file(data_dir, name) is not None else None
    return found


@page()
async def events(request, console: Console, user: User, session: Session, lang: str) -> Response:
    filters = EventFilter.of(request)
    found = await run_in_threadpool(_events, console, filters, request.url.path.endswith("/verify"))
    from .. import event_types

    return console.render("events.html", request, lang, 400 if found["error"] else 200, user=user, session=session,
                          f=filters, types=event_types.TYPES, severities=SEVERITIES, severity=SEVERITY,
                          shown=SHOWN_EVENTS, **found)


@page()
async def events_live(request, console: Console, user: User, session: Session, lang: str) -> Response:
    """The events after ``?after=N`` (the newest the page showed) that pass the page's filters, newest
    first, as rows for the top of its table: sent when the feed's newest event id moves, from one read
    of the new rows for every open events page (``Console.new_events``). With ``?total=N`` (the count the
    page showed), each batch is followed by the page's count with them (an event ``count``)."""
    filters = EventFilter.of(request)
    if filters.problem():
        return plain(lang, filters.problem(), 400)
    after, total = request.query_params.get("after", ""), request.query_params.get("total", "")
    timezone = console.config.site.timezone

    async def rows():
        last = int(after) if after.isdigit() else None  # none: from the newest event when it starts
        count = int(total) if total.isdigit() else None  # none: the page shows no count to follow
        async for snapshot in console.feed.listen():
            if console.user(console.sessions.get(session.token)) is None:
                yield LOGOUT
                return
            newest = (snapshot.marks or {}).get("events")
            if last is None:
                last = newest
            if newest is None or last is None or newest <= last:
                continue
            found, error = await console.new_events(last, newest)
            if error is not None:
                continue  # the database is busy: read again at the next move or poll
            last = newest
            wanted = filters.keep(found, timezone)[::-1]
            if wanted:
                env = console.envs[lang]
                yield env.get_template("_event_rows.html").render(
                    lang=lang, when=console.when(lang), events=wanted, severity=SEVERITY,
                    snapshots=await run_in_threadpool(_snapshots, console.data_dir, wanted))
                if count is not None:
                    count += len(wanted)
                    yield sse_event("count", env.get_template("_event_count.html").render(total=count, shown=SHOWN_EVENTS))
    return sse(rows())


@page()
async def events_csv(request, console: Console, user: User, session: Session, lang: str) -> Response:
    filters = EventFilter.of(request)
    problem = filters.problem()
    if problem:
        return plain(lang, problem, 400)

    def table() -> str:
        with console.reader() as store, store.lock_errors():
            rows = filters.apply(store, console.config.site.timezone)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["id", "time", "type", "severity", "resident", "details"])
        for e in rows:
            writer.writerow([e.id, e.time, e.type, SEVERITY.get(e.type, ""), e.resident or "",
                             json.dumps(e.details, ensure_ascii=False, sort_keys=True)])
        return out.getvalue()
    try:
        text = await run_in_threadpool(table)
    except (LotControlError, OSError) as exc:
        return plain(lang, exc, 503)
    console.audit.log_event("web.export", {"user": user.name, "what": "events"})
    return Response("\ufeff" + text, media_type="text/csv; charset=utf-8",  # the BOM: Excel reads it as UTF-8
                    headers={"Content-Disposition": 'attachment; filename="events.csv"'})


# --- charging ---

def _charging_month(console: Console, month: energy.Month, shown: bool = True) -> dict[str, Any]:
    """The month's sessions (newest first; ``shown``: only the SHOWN_SESSIONS newest), energy and
    report, from the database (read-only)."""
    timezone = console.config.site.timezone
    try:
        with console.reader() as store, store.lock_errors():
            sessions = energy.month_sessions(store, month, timezone)
    except (LotControlError, OSError) as exc:
        sessions, error = [], exc
    else:
        error = None
    ports = [port.id for port in console.config.charging.ports]
    return {"sessions": sessions[::-1][:SHOWN_SESSIONS if shown else None], "count": len(sessions), "db_error": error,
            "energy": energy.energy(sessions, month, timezone, ports), "residents": energy.resident_report(sessions)}


def _month(console: Console, request: Request, lang: str) -> energy.Month | Response:
    """The month asked for (``?month=YYYY-MM``; none: this month at the lot), or the answer refusing it."""
    try:
        return energy.Month.parse(request.query_params.get("month"), console.config.site.timezone)
    except energy.MonthError as exc:
        return plain(lang, exc.args[0], 400)


@page()
async def charging(request, console: Console, user: User, session: Session, lang: str,
                   result: dict | None = None, status_code: int = 200) -> Response:
    month = _month(console, request, lang)
    if not isinstance(month, energy.Month):
        return month
    snapshot = await console.feed.current()
    live = await console.live_html(snapshot, lang, "charging")
    found = await run_in_threadpool(_charging_month, console, month)
    gettext = i18n.translations(lang).gettext
    charts = {"daily": energy.daily_chart(found["energy"], gettext("kWh per day and port"), gettext("No energy this month")),
              "ports": energy.port_chart(found["energy"], gettext("kWh per port this month"))}
    return console.render("charging.html", request, lang, status_code, user=user, session=session, live=live,
                          month=month, charts=charts, colours=energy.colours(found["energy"].ports),
                          shown=SHOWN_SESSIONS, result=result, may_act=user.may(ROLE_FOR["charging.port"]),
                          ports=[port.id for port in console.config.charging.ports], actions=PORT_ACTIONS, **found)


@page(ROLE_FOR["charging.port"], post=True)
async def charging_port(request, console: Console, user: User, session: Session, lang: str) -> Response:
    """Staff stop, enable or disable a port (``lotcontrol charging stop|enable|disable PORT``)."""
    port, action = str(request.state.form.get("port", "")), str(request.state.form.get("action", ""))
    if action not in PORT_ACTIONS:
        return plain(lang, Phrase("web.bad_action", value=action[:40], allowed=", ".join(PORT_ACTIONS)), 400)
    result = await _action(console, user, f"charging.{action}", port=port)
    console.feed.latest = None  # the page shows the port as it is now
    return await charging.__wrapped__(request, console, user, session, lang, result, 200 if result["ok"] else 409)


@page()
async def charging_live(request, console: Console, user: User, session: Session, lang: str) -> Response:
    return _stream(console, session, lang, "charging")


@page()
async def charging_csv(request, console: Console, user: User, session: Session, lang: str) -> Response:
    """The month's report per resident (``/charging.csv``: as ``lotcontrol charging report --csv``
    counts it, the residents' rows), or its sessions one by one (``/charging/sessions.csv``)."""
    month = _month(console, request, lang)
    if not isinstance(month, energy.Month):
        return month
    found = await run_in_threadpool(_charging_month, console, month, False)
    if found["db_error"]:
        return plain(lang, found["db_error"], 503)
    out = io.StringIO()
    writer = csv.writer(out)
    if request.url.path.endswith("/sessions.csv"):
        what = "sessions"
        writer.writerow(["port", "resident", "start", "end", "kwh", "peak_watts", "reason"])
        for s in found["sessions"][::-1]:
            writer.writerow([s["port"], s["resident"] or "", s["start"], s["end"] or "",
                             "" if s["kwh"] is None else f"{s['kwh']:.3f}",
                             "" if s["peak_watts"] is None else f"{s['peak_watts']:.1f}", s["reason"] or ""])
    else:
        what = "report"
        writer.writerow(["month", "resident", "sessions", "kwh", "open"])
        for row in found["residents"]:
            writer.writerow([str(month), row["name"], row["sessions"], f"{row['kwh']:.3f}", row["open"]])
    console.audit.log_event("web.export", {"user": user.name, "what": f"charging {what} {month}"})
    return Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="charging-{what}-{month}.csv"'})


# --- entry snapshots ---

def snapshot_file(data_dir: Path, name: str) -> Path | None:
    """The snapshot ``name`` in DATA_DIR/snapshots, or None: a name that is not one the writer makes,
    a link, or anything outside the folder is never served."""
    if not SNAPSHOT_NAME.fullmatch(name) or ".." in name:
        return None
    folder = (data_dir / "snapshots").resolve()
    path = folder / name
    try:
        if path.is_symlink() or not path.is_file() or path.resolve().parent != folder:
            return None
    except OSError:
        return None
    return path


@page()
async def snapshot(request, console: Console, user: User, session: Session, lang: str) -> Response:
    path = await run_in_threadpool(snapshot_file, console.data_dir, request.path_params["name"])
    if path is None:
        return plain(lang, Phrase("web.no_snapshot"), 404)
    return FileResponse(path, media_type="image/jpeg")


# --- the application ---

def build(config: Config, data_dir: Path, *, ask: Callable[..., dict[str, Any]] | None = None,
          config_path: str | None = None) -> Starlette:
    """The console on ``data_dir``. ``ask(command, **args)``: the controller's answer (the control
    socket's ``request`` by default; tests give their own). ``config_path``: the configuration file
    the enrollments it runs read (None: the command line's default)."""
    from . import residents
    from .enrolling import clear_uploads

    data_dir = Path(data_dir)
    clear_uploads(data_dir)  # photos a console stopped mid-enrollment left behind
    ask = ask or (lambda command, **args: control_socket.request(data_dir, command, **args))

    def status() -> dict[str, Any]:
        answer = ask("status")
        if not answer.get("ok"):
            refused = of_answer(answer)  # e.g. it did not answer in time: said by its code
            raise control_socket.ControlError(refused, code=refused.code, **refused.params)
        return answer["status"]

    web = config.web
    console = Console(config, data_dir, Users(data_dir), Sessions(web.session_hours),
                      LoginLimit(web.login_failures, web.login_window_minutes * 60),
                      StatusFeed(status, web.poll_seconds, lambda: read_marks(data_dir)), Audit(data_dir), web.tls is not None, ask, config_path)

    @asynccontextmanager
    async def lifespan(app):
        yield
        await console.feed.close()
        console.jobs.close()
        await run_in_threadpool(console.audit.close)

    routes = [
        Route("/healthz", healthz),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/language", set_language, methods=["POST"]),
        Route("/", overview),
        Route("/live", live),
        Route("/gate/open", gate_open, methods=["POST"]),
        Route("/fire", fire),
        Route("/fire/live", fire_live),
        Route("/fire/drill", fire_drill, methods=["POST"]),
        Route("/fire/reset", fire_reset, methods=["POST"]),
        Route("/events", events),
        Route("/events/verify", events),
        Route("/events/live", events_live),
        Route("/events.csv", events_csv),
        Route("/snapshots/{name}", snapshot),
        Route("/charging", charging),
        Route("/charging/live", charging_live),
        Route("/charging/port", charging_port, methods=["POST"]),
        Route("/charging.csv", charging_csv),
        Route("/charging/sessions.csv", charging_csv),
        *residents.ROUTES,
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.console = console
    app.add_middleware(SecurityHeaders, tls=web.tls is not None)
    return app
