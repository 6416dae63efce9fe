"""The web console's accounts: ``DATA_DIR/web-users.json``, private to the service user (mode 600).

A file beside the database rather than a table in it: the web process opens the database read-only,
yet a user's language is changed from the page; and the accounts are the console's alone. Every
change is written whole or not at all (``files.write_atomic``) under an exclusive ``flock`` on
``web-users.lock``, so ``lotcontrol web user add`` and the running console never lose each other's
change. Passwords are argon2id hashes (argon2-cffi) with one of OWASP's recommended settings (7 MiB,
five passes, one lane): each check's memory counts in the web process's, which must stay small on a
Pi, so the process makes one check at a time (``ONE_HASH``). A hash made with other settings still
verifies (they are in the hash).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..errors import LotControlError
from ..files import write_atomic
from ..phrases import error

FILE_NAME = "web-users.json"
LOCK_NAME = "web-users.lock"
ROLES = ("viewer", "staff", "safety")  # each may do what the ones before it may
LANGUAGES = ("auto", "en", "zh_CN")  # auto: the browser's Accept-Language
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,40}$")
MIN_PASSWORD = 10

#: argon2id with OWASP's 7 MiB, 5 passes, 1 lane (one of its settings of equal strength: the least memory,
#: which the console's own counts against its 80 MB; 12 MiB and 3 passes before, rehashed at the next login).
HASHER = PasswordHasher(time_cost=5, memory_cost=7 * 1024, parallelism=1)
#: One argon2id check at a time in the process: each takes its 7 MiB while it runs, so two logins at once
#: would take 14 MiB over the console's memory (the second waits the first's few tens of milliseconds).
ONE_HASH = threading.Lock()


@functools.cache
def _dummy() -> str:
    """Verified against when the user does not exist, so an unknown name takes as long as a wrong password."""
    return HASHER.hash("not a password of anyone")


class UserError(LotControlError, ValueError):
    """A user name, role, password or language that cannot be taken."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    language: str = "auto"

    def may(self, role: str) -> bool:
        """Whether this user has ``role`` or a higher one."""
        return ROLES.index(self.role) >= ROLES.index(role)


class Users:
    """The accounts file of a data directory."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / FILE_NAME
        self.lock_path = Path(data_dir) / LOCK_NAME
        self._cache: tuple[tuple[int, int], dict] | None = None

    def _read(self) -> dict:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        key = (stat.st_mtime_ns, stat.st_ino)
        if self._cache and self._cache[0] == key:
            return self._cache[1]
        if stat.st_mode & 0o077:
            raise UserError(f"{self.path} is open to other users (mode {stat.st_mode & 0o777:o}); it holds "
                            f"password hashes: run `chmod 600 {self.path}`")
        try:
            users = json.loads(self.path.read_text(encoding="utf-8"))["users"]
            if not isinstance(users, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{self.path} is not a lotcontrol users file (damaged?): restore it from a backup, "
                            "or remove it and add the users again with `lotcontrol web user add`") from None
        self._cache = (key, users)
        return users

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict]:
        """The users to change, under the lock; written whole when the block ends without error."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._cache = None
            users = json.loads(json.dumps(self._read()))  # a copy: the cache is not changed half-way
            yield users
            write_atomic(self.path, json.dumps({"users": users}, ensure_ascii=False, indent=1).encode())
            self._cache = None
        finally:
            os.close(fd)  # releases the lock

    def list(self) -> list[User]:
        return [User(name, row["role"], row.get("language", "auto")) for name, row in sorted(self._read().items())]

    def get(self, name: str) -> User | None:
        row = self._read().get(name)
        return None if row is None else User(name, row["role"], row.get("language", "auto"))

    def add(self, name: str, role: str, password: str) -> User:
        if not NAME.match(name):
            raise UserError(f"user name {name!r}: 1 to 40 letters, digits, '_', '.', '@' or '-'")
        if role not in ROLES:
            raise UserError(f"role {role!r}: one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"the password for {name!r} is too short: at least {MIN_PASSWORD} characters")
        hashed = HASHER.hash(password)
        with self._changing() as users:
            if name in users:
                raise UserError(f"user {name!r} exists already: `lotcontrol web user remove {name}` first")
            users[name] = {"role": role, "hash": hashed, "language": "auto"}
        return User(name, role)

    def remove(self, name: str) -> User:
        with self._changing() as users:
            if name not in users:
                raise UserError(f"no web user {name!r} (`lotcontrol web user list` shows them)")
            row = users.pop(name)
        return User(name, row["role"])

    def set_language(self, name: str, language: str) -> None:
        if language not in LANGUAGES:
            raise error(UserError, "web.bad_language", value=language, allowed=", ".join(LANGUAGES))
        with self._changing() as users:
            if name not in users:
                raise UserError(f"no web user {name!r}")
            users[name]["language"] = language

    def check(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None (in the same time for an unknown name)."""
        row = self._read().get(name)
        try:
            with ONE_HASH:
                HASHER.verify(row["hash"] if row else _dummy(), password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if HASHER.check_needs_rehash(row["hash"]):  # made with other settings: kept with these from now on
            with ONE_HASH:
                new_hash = HASHER.hash(password)
            with self._changing() as users:
                if name in users and users[name]["hash"] == row["hash"]:
                    users[name]["hash"] = new_hash
        return User(name, row["role"], row.get("language", "auto"))
