"""Sessions, CSRF tokens, the login rate limit and the security headers of the web console.

Sessions live in the web process's memory: the cookie holds only a random token (HttpOnly,
SameSite=Strict, Secure under TLS), a logout or a removed user ends it at once, and a restart of the
process logs everyone out. Every session, a login form's too, has its own CSRF token, sent back in
each form and checked on every POST. Failed logins are counted per user name and per client address
in a sliding window; past the limit a login is refused without checking the password.
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
from dataclasses import dataclass, field

COOKIE = "lotcontrol_session"
MAX_SESSIONS = 2000  # the oldest go first past this: a flood of login pages cannot fill the memory

#: No inline script or style, nothing from another origin, no framing.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass
class Session:
    token: str
    csrf: str
    user: str | None  # None: not logged in yet (a login form's session)
    expires: float  # time.monotonic()


@dataclass
class Sessions:
    hours: float
    _by_token: "collections.OrderedDict[str, Session]" = field(default_factory=collections.OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def new(self, user: str | None = None) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user,
                          time.monotonic() + self.hours * 3600)
        with self._lock:
            self._by_token[session.token] = session
            while len(self._by_token) > MAX_SESSIONS:
                self._by_token.popitem(last=False)
        return session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._by_token.get(token)
            if session is not None and time.monotonic() > session.expires:
                del self._by_token[token]
                return None
            return session

    def end(self, token: str) -> None:
        with self._lock:
            self._by_token.pop(token, None)


def csrf_ok(session: Session | None, sent: object) -> bool:
    return session is not None and isinstance(sent, str) and secrets.compare_digest(session.csrf, sent)


class LoginLimit:
    """At most ``failures`` failed logins per user name, and ``4 × failures`` per client address, in
    the last ``window`` seconds."""

    def __init__(self, failures: int, window: float, clock=time.monotonic):
        self.failures, self.window, self.clock = failures, window, clock
        self._failed: dict[tuple[str, str], collections.deque] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str]) -> collections.deque:
        times = self._failed.setdefault(key, collections.deque())
        while times and times[0] <= self.clock() - self.window:
            times.popleft()
        return times

    def blocked(self, user: str, address: str) -> bool:
        with self._lock:
            return (len(self._recent(("user", user))) >= self.failures
                    or len(self._recent(("address", address))) >= 4 * self.failures)

    def failed(self, user: str, address: str) -> None:
        with self._lock:
            for key in (("user", user), ("address", address)):
                self._recent(key).append(self.clock())
            if len(self._failed) > 10 * MAX_SESSIONS:  # forget the quiet ones
                for key in [k for k, v in self._failed.items() if not v]:
                    del self._failed[key]
