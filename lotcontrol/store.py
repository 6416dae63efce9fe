"""The database: residents, their face templates and the event log (SQLite through sqlite-utils).

WAL mode with ``synchronous=FULL``: a committed enrollment or event survives a power cut. Every write
that belongs together happens in one ``BEGIN IMMEDIATE`` transaction, so an interrupted enrollment
leaves no half-resident and two terminals enrolling at once queue instead of colliding. The schema
version lives in ``PRAGMA user_version``; ``MIGRATIONS`` brings any older file up to date on open.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import sqlite3
import unicodedata
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, get_args

from .clock import kernel_synchronized
from .config import AccessMode
from .errors import DatabaseLocked, InvalidName, InvalidValue, ResidentExists, ResidentNotFound, StoreError

if TYPE_CHECKING:
    import numpy as np


def _import_sqlite_utils():
    """sqlite-utils, imported with numpy and pandas hidden from it: it imports them, if installed, only
    to map their scalar types to column types, which the store never hands it (vectors go in as bytes).
    numpy alone is 17 MB resident; the web console and the command line's residents commands need none
    of it (numpy is imported where faces are: the templates' vectors, vision/encoders.py)."""
    import sys

    # only those not loaded yet (hiding a loaded one saves nothing, and would fail another thread's import)
    hidden = {name: None for name in ("numpy", "pandas") if name not in sys.modules}
    sys.modules.update(hidden)  # None: "import numpy" raises ImportError
    try:
        import sqlite_utils
    finally:
        for name in hidden:
            del sys.modules[name]
    return sqlite_utils


sqlite_utils = _import_sqlite_utils()

DB_NAME = "lotcontrol.db"
#: Seconds a connection waits for a lock another process holds (the controller's writer thread and the
#: vision worker: they never hold up the loop, and a staff command is short).
BUSY_TIMEOUT = 30.0
MAX_NAME_LENGTH = 100
STATUSES = ("active", "suspended")
#: How a resident may enter, per site (access.mode) or per resident (lotcontrol.policy decides).
ACCESS_MODES = get_args(AccessMode)
ANTIPASSBACK = ("off", "log", "enforce")  # access.antipassback, and a resident's own
GROUP_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")  # an access group's name (config.GroupName)
#: Events with their resident's name (None once erased), for ``Store.event`` and ``Store.events``.
_EVENTS_SQL = ("SELECT e.id, e.time, e.type, r.name, e.details, e.clock_synced FROM events e "
               "LEFT JOIN residents r ON r.id = e.resident_id")

Clock = Callable[[], dt.datetime]


def is_locked(exc: BaseException) -> bool:
    """Whether an sqlite3 error is another process's lock (SQLITE_BUSY or SQLITE_LOCKED)."""
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
        or "database is locked" in str(exc))


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def isotime(moment: dt.datetime) -> str:
    """UTC, ISO 8601, milliseconds: sorts as text in time order."""
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Resident:
    id: int
    name: str
    unit: str | None
    phone: str | None
    note: str | None
    status: str
    valid_from: str | None
    valid_until: str | None
    created: str
    updated: str
    templates: int = 0
    access_mode: str | None = None  # how they may enter (lotcontrol.policy.MODES); None: the site's access.mode
    access_groups: str | None = None  # the access groups they belong to, comma-separated (None: no schedule)
    antipassback: str | None = None  # off, log or enforce; None: the site's access.antipassback
    presence_reset: str | None = None  # when staff last counted them out (edit --reset-presence), at this lot

    @property
    def groups(self) -> tuple[str, ...]:
        """Their access groups (lotcontrol.schedule); () for none: any time."""
        return tuple(self.access_groups.split(",")) if self.access_groups else ()

    def refusal(self, today: dt.date | None) -> str | None:
        """Why this resident may not enter on ``today``, or None if they may. ``today`` None: the date
        is not known (the clock is not synchronised), and the validity dates are not judged; a
        suspended resident is refused all the same."""
        if self.status != "active":
            return self.status
        if today is None:
            return None
        if self.valid_from and today < dt.date.fromisoformat(self.valid_from):
            return "not_yet_valid"
        if self.valid_until and today > dt.date.fromisoformat(self.valid_until):
            return "expired"
        return None

    @property
    def dated(self) -> bool:
        """Whether the resident has validity dates."""
        return bool(self.valid_from or self.valid_until)


@dataclass(frozen=True)
class Embedding:
    """One encoder's embedding of a face, with the encoder's version (``encoders.ENCODERS``)."""

    version: str
    vector: np.ndarray


@dataclass(frozen=True)
class Template:
    """One face of a resident: an embedding per encoder it was encoded with (dlib's always), with
    where it came from. Never the photo.

    ``embeddings`` maps an encoder name to an ``Embedding``, or to a bare vector (made by this
    lotcontrol: the encoder's current version); a bare vector alone is dlib's."""

    embeddings: Mapping[str, Embedding]
    photo_sha256: str
    face_px: int
    quality: float

    def __post_init__(self) -> None:
        import numpy as np

        from .vision import encoders

        given = self.embeddings if isinstance(self.embeddings, Mapping) else {"dlib": self.embeddings}
        unknown = set(given) - set(encoders.ENCODERS)
        if unknown:
            raise ValueError(f"unknown face encoder {sorted(unknown)[0]!r}: one of {', '.join(encoders.ENCODERS)}")
        whole = {name: value if isinstance(value, Embedding)
                 else Embedding(encoders.ENCODERS[name].version, np.asarray(value, dtype=np.float32))
                 for name, value in given.items()}
        if "dlib" not in whole:
            raise ValueError("a face template needs dlib's embedding")
        object.__setattr__(self, "embeddings", whole)

    @property
    def encoding(self) -> np.ndarray:
        """dlib's 128-d embedding."""
        return self.embeddings["dlib"].vector


@dataclass(frozen=True)
class Lookalike:
    """Two residents whose faces are near enough to be taken for each other."""

    first: str
    second: str
    distance: float
    flagged: str
    cleared: str | None


@dataclass(frozen=True)
class Event:
    id: int
    time: str
    type: str
    resident: str | None
    details: dict[str, Any]
    #: whether the wall clock was synchronised when it happened; None: not known (written before
    #: lotcontrol recorded it), read as synchronised
    synced: bool | None = None

    @property
    def unsynced(self) -> bool:
        """Its time is from a clock NTP had not set yet: it may be hours or years off."""
        return self.synced is False

    @property
    def shown_time(self) -> str:
        """Its time as ``events`` shows it: ``~`` before one from an unsynchronised clock."""
        return ("~" if self.unsynced else "") + self.time

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "clock_synced": self.synced is not False, "type": self.type,
                "resident": self.resident, "details": self.details}


# --- names and fields --------------------------------------------------------------------------


def normalize_name(raw: str) -> str:
    """A resident's name as stored: NFC, trimmed, inner white space single; or InvalidName."""
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if not name:
        raise InvalidName("a resident's name cannot be empty", code="name.empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"a resident's name can have at most {MAX_NAME_LENGTH} characters, not {len(name)}",
                          code="name.too_long", limit=MAX_NAME_LENGTH, length=len(name))
    for char in name:
        if char in "/\\":
            raise InvalidName(f"a resident's name cannot contain {char!r}: {name!r}", code="name.char", char=char,
                              name=name)
        if unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs", "Cn"):
            raise InvalidName(
                f"a resident's name cannot contain the invisible or control character "
                f"U+{ord(char):04X} ({unicodedata.name(char, 'unnamed')}): {name!r}",
                code="name.invisible", char=f"U+{ord(char):04X}", name=name)
    return name


def name_key(name: str) -> str:
    """What makes two names the same resident: compatibility form, case folded."""
    return unicodedata.normalize("NFKC", normalize_name(name)).casefold()


_PHONE = re.compile(r"^\+?[0-9 ()\-./]{3,32}$")


def _check_text(field: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in value):
        raise InvalidValue(f"{field} cannot contain control or invisible characters: {value!r}",
                           code="value.invisible", field=field)
    if len(value) > limit:
        raise InvalidValue(f"{field} can have at most {limit} characters, not {len(value)}", code="value.too_long",
                           field=field, limit=limit, length=len(value))
    return value or None


def _check_phone(value: str | None) -> str | None:
    value = _check_text("phone", value, 32)
    if value is not None and not _PHONE.match(value):
        raise InvalidValue(f"phone {value!r} is not a phone number (digits, spaces, + ( ) - . / only)",
                           code="value.phone", value=value)
    return value


def _check_date(field: str, value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidValue(f"{field.replace('_', ' ')} {value!r} is not a date (YYYY-MM-DD)", code="value.date",
                           field=field, value=value) from None


# --- schema ------------------------------------------------------------------------------------


def _migrate_1(db: sqlite_utils.Database) -> None:
    db["residents"].create(
        {
            "id": int, "name": str, "name_key": str, "unit": str, "phone": str, "note": str,
            "status": str, "valid_from": str, "valid_until": str, "created": str, "updated": str,
        },
        pk="id",
        not_null={"name", "name_key", "status", "created", "updated"},
    )
    db["residents"].create_index(["name_key"], unique=True)
    db.execute(
        """CREATE TABLE templates (
            id INTEGER PRIMARY KEY,
            resident_id INTEGER NOT NULL REFERENCES residents(id) ON DELETE CASCADE,
            encoding BLOB NOT NULL,
            photo_sha256 TEXT NOT NULL UNIQUE,
            face_px INTEGER NOT NULL,
            quality REAL NOT NULL,
            added TEXT NOT NULL)"""
    )
    db["templates"].create_index(["resident_id"])
    db.execute(
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            time TEXT NOT NULL,
            type TEXT NOT NULL,
            resident_id INTEGER REFERENCES residents(id) ON DELETE SET NULL,
            details TEXT NOT NULL DEFAULT '{}')"""
    )
    db["events"].create_index(["time"])
    db["events"].create_index(["resident_id"])
    # Bumped whenever the set of templates changes, so a gallery in memory knows to reload.
    db.execute("CREATE TABLE gallery_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)")
    db.execute("INSERT INTO gallery_version VALUES (1, 0)")
    for action in ("INSERT", "DELETE"):
        db.execute(
            f"CREATE TRIGGER templates_{action.lower()} AFTER {action} ON templates "
            "BEGIN UPDATE gallery_version SET version = version + 1; END"
        )


def _migrate_2(db: sqlite_utils.Database) -> None:
    """Tamper-evident events: each carries a hash chained to the previous one. Residents get a random
    token that events refer to in the hash, so erasing a resident (resident_id set to NULL) leaves
    every hash valid and the token unlinkable to anyone."""
    db.execute("ALTER TABLE residents ADD COLUMN token TEXT")
    for (resident_id,) in db.execute("SELECT id FROM residents").fetchall():
        db.execute("UPDATE residents SET token = ? WHERE id = ?", [secrets.token_hex(16), resident_id])
    db.execute("ALTER TABLE events ADD COLUMN resident_token TEXT")
    db.execute("ALTER TABLE events ADD COLUMN hash TEXT")
    db.execute("UPDATE events SET resident_token = (SELECT token FROM residents r WHERE r.id = events.resident_id)")
    previous = GENESIS
    for row in db.execute("SELECT id, time, type, resident_token, details FROM events ORDER BY id").fetchall():
        previous = event_hash(previous, *row[1:])
        db.execute("UPDATE events SET hash = ? WHERE id = ?", [previous, row[0]])


def _migrate_3(db: sqlite_utils.Database) -> None:
    """Old events can be deleted (events.keep_days) without breaking the chain: the hash of the last
    deleted event becomes the anchor the remaining chain is checked from."""
    db.execute("CREATE TABLE chain_anchor (id INTEGER PRIMARY KEY CHECK (id = 1), hash TEXT NOT NULL, "
               "pruned_through INTEGER NOT NULL)")


def _migrate_4(db: sqlite_utils.Database) -> None:
    """Look-alike pairs: two residents whose faces are near enough to be taken for each other are
    both kept and flagged, for staff to check; the flag goes when either is removed."""
    db.execute(
        """CREATE TABLE lookalikes (
            a INTEGER NOT NULL REFERENCES residents(id) ON DELETE CASCADE,
            b INTEGER NOT NULL REFERENCES residents(id) ON DELETE CASCADE,
            distance REAL NOT NULL,
            flagged TEXT NOT NULL,
            cleared TEXT,
            PRIMARY KEY (a, b),
            CHECK (a < b))"""
    )


def _migrate_5(db: sqlite_utils.Database) -> None:
    """The residents a lot holds for the hub (lotcontrol.fleet.residents): the hub's id for each, the
    revision last applied and a digest of what it said. The row goes with its resident (erased with them)."""
    db.execute("""CREATE TABLE hub_copies (
            resident_id INTEGER PRIMARY KEY REFERENCES residents(id) ON DELETE CASCADE,
            uid TEXT NOT NULL UNIQUE,
            revision INTEGER NOT NULL,
            digest TEXT NOT NULL)""")


GENESIS = "0" * 64


def event_hash(previous: str, time: str, type: str, resident_token: str | None, details: str,
               clock_synced: bool | None = None) -> str:
    """sha256 over the previous hash and the event. An entry snapshot's file name is left out: it
    is erased with the resident or after the retention period. An event from an unsynchronised clock
    has the marker in its hash (it cannot be passed off as a synchronised time); a synchronised or
    unknown one hashes as every event did before the marker existed, so old chains still verify."""
    fields = json.loads(details)
    fields.pop("snapshot", None)
    items = [previous, time, type, resident_token, fields] + (["clock_unsynced"] if clock_synced is False else [])
    record = json.dumps(items, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(record.encode()).hexdigest()


def _migrate_charging(db: sqlite_utils.Database) -> None:
    """Charging sessions: one row per session, opened when it starts and closed when it ends (its
    ``key`` is unique, so a session is never counted twice); a resident erased leaves the energy.
    Named, not numbered: another branch adds a fourth migration too, and a merge must keep both,
    in order, with no definition shadowing the other."""
    db.execute(
        """CREATE TABLE charging_sessions (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            port TEXT NOT NULL,
            resident_id INTEGER REFERENCES residents(id) ON DELETE SET NULL,
            start TEXT NOT NULL,
            end TEXT,
            kwh REAL,
            peak_watts REAL,
            reason TEXT)"""
    )
    db["charging_sessions"].create_index(["start"])


def _migrate_charging_meter(db: sqlite_utils.Database) -> None:
    """A metered session keeps its meter's total at its start (``meter_start``, kWh): a session a
    controller left open when it died is closed, at the next start, with the energy its meter shows
    since then, not only what the last minute's checkpoint saved."""
    db.execute("ALTER TABLE charging_sessions ADD COLUMN meter_start REAL")


def _migrate_credentials(db: sqlite_utils.Database) -> None:
    """Cards and PINs (lotcontrol.credentials): a card as its keyed digest, a PIN as its argon2id
    hash, each gone with its resident; the site's card key; each resident's own access mode."""
    db.execute("ALTER TABLE residents ADD COLUMN access_mode TEXT")
    db.execute("""CREATE TABLE cards (
            digest TEXT PRIMARY KEY,
            resident_id INTEGER NOT NULL REFERENCES residents(id) ON DELETE CASCADE,
            added TEXT NOT NULL)""")
    db["cards"].create_index(["resident_id"])
    db.execute("""CREATE TABLE pins (
            resident_id INTEGER PRIMARY KEY REFERENCES residents(id) ON DELETE CASCADE,
            hash TEXT NOT NULL,
            set_at TEXT NOT NULL)""")
    db.execute("CREATE TABLE site_keys (name TEXT PRIMARY KEY, key BLOB NOT NULL)")


def _migrate_clock_synced(db: sqlite_utils.Database) -> None:
    """Each event says whether the wall clock was synchronised (NTP) when it was logged: 1 yes, 0 no
    (its time may be hours or years off). Older events read NULL: not known, shown as synchronised
    (nothing was recorded; marking every one of them would hide the ones that matter)."""
    db.execute("ALTER TABLE events ADD COLUMN clock_synced INTEGER")


def _migrate_embeddings(db: sqlite_utils.Database) -> None:
    """A face can have an embedding per encoder (issue 18): ``embeddings`` holds each, with its
    encoder and version; dlib's ``encoding`` column moves there as encoder ``dlib``. An embedding goes
    with its face (and so with its resident)."""
    db.execute(
        """CREATE TABLE embeddings (
            template_id INTEGER NOT NULL REFERENCES templates(id) ON DELETE CASCADE,
            encoder TEXT NOT NULL,
            version TEXT NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (template_id, encoder))"""
    )
    from .vision.encoders import DLIB_VERSION

    db.execute("INSERT INTO embeddings (template_id, encoder, version, vector) "
               "SELECT id, 'dlib', ?, encoding FROM templates", [DLIB_VERSION])
    db.execute("ALTER TABLE templates DROP COLUMN encoding")


def _migrate_passes(db: sqlite_utils.Database) -> None:
    """Visitor passes (lotcontrol.passes): those issued here (``passes``, on the hub or a lone lot),
    their uses at this lot (``pass_uses``), and what the hub last said of each (``pass_states``: revoked,
    uses per lot). The pass itself (its signed text) is never kept: it is in the visitor's QR code only."""
    db.execute("""CREATE TABLE passes (
            id TEXT PRIMARY KEY,
            visitor TEXT NOT NULL,
            lots TEXT,
            not_after INTEGER NOT NULL,
            uses INTEGER NOT NULL,
            issued TEXT NOT NULL,
            revoked TEXT,
            published TEXT)""")
    db.execute("CREATE TABLE pass_uses (id INTEGER PRIMARY KEY, pass_id TEXT NOT NULL, not_after INTEGER NOT NULL, "
               "time TEXT NOT NULL)")
    db["pass_uses"].create_index(["pass_id"])
    db.execute("""CREATE TABLE pass_states (
            pass_id TEXT PRIMARY KEY,
            revoked INTEGER NOT NULL,
            used TEXT NOT NULL,
            not_after INTEGER NOT NULL,
            received TEXT NOT NULL)""")


def _migrate_access_groups(db: sqlite_utils.Database) -> None:
    """Schedules and anti-passback (issue 20, items 5 and 6): each resident's access groups (comma-separated
    names of [access.groups.NAME]), their own anti-passback setting over the site's, and when staff last
    counted them out of the lot (``presence_reset``: the controller's presence record from before it is void)."""
    db.execute("ALTER TABLE residents ADD COLUMN access_groups TEXT")
    db.execute("ALTER TABLE residents ADD COLUMN antipassback TEXT")
    db.execute("ALTER TABLE residents ADD COLUMN presence_reset TEXT")


#: Schema migrations, in order: MIGRATIONS[i] brings user_version i to i + 1. Never edit a released one.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_migrate_1, _migrate_2, _migrate_3, _migrate_4,
                                                          _migrate_5, _migrate_charging, _migrate_charging_meter,
                                                          _migrate_credentials, _migrate_embeddings,
                                                          _migrate_clock_synced, _migrate_passes, _migrate_access_groups]
SCHEMA_VERSION = len(MIGRATIONS)


# --- the store ---------------------------------------------------------------------------------


class Store:
    """The database file in the data directory. Use as a context manager, or call ``close()``."""

    def __init__(self, path: str | os.PathLike, *, clock: Clock = utc_now, read_only: bool = False,
                 busy_timeout: float = BUSY_TIMEOUT):
        """Open (and migrate) the database; with ``read_only``, open it only to read: no migration,
        never created, and it never waits for a writer (WAL readers do not). ``busy_timeout``: how
        long to wait, in seconds, for a lock another process holds before :class:`DatabaseLocked`."""
        self.path = Path(path)
        self.clock = clock
        self.read_only = read_only
        self.busy_timeout = busy_timeout
        if read_only and not self.path.exists():
            raise StoreError(f"database {self.path} does not exist yet: is the data directory right? The "
                             "controller (`lotcontrol run`, `lotcontrol hub`) or a command that writes (enroll) "
                             "creates it; reading commands do not")
        if not self.path.exists():
            # Owner-only from the first byte; SQLite gives the -wal and -shm files the same mode.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        mode = self.path.stat().st_mode & 0o777
        if mode & 0o077:
            raise StoreError(f"database {self.path} is open to other users (mode {mode:o}); it holds biometric "
                             f"data: run `chmod 600 {self.path}*`")
        try:
            with self.lock_errors():
                if read_only:
                    uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?mode=ro"
                    conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout, check_same_thread=False)
                    self.db = sqlite_utils.Database(conn)
                    self._check_version()
                else:
                    conn = sqlite3.connect(self.path, timeout=busy_timeout, check_same_thread=False)
                    self.db = sqlite_utils.Database(conn)
                    self.db.enable_wal()
                    self.db.execute("PRAGMA synchronous=FULL")
                    self.db.execute("PRAGMA foreign_keys=ON")
                    self._migrate()
        except BaseException as exc:
            if hasattr(self, "db"):
                self.db.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"database {self.path} cannot be opened: {exc}") from None
            raise

    @contextlib.contextmanager
    def lock_errors(self) -> Iterator[None]:
        """SQLite's "database is locked" (another process held a lock past the busy timeout) as
        :class:`DatabaseLocked`, naming the file and what to do."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if not is_locked(exc):
                raise
            raise self.locked() from None

    def locked(self) -> DatabaseLocked:
        return DatabaseLocked(
            f"database {self.path} is locked by another process (waited {self.busy_timeout:g} s): try again "
            f"in a moment; if it stays locked, `fuser -v {self.path}*` shows which process holds it "
            "(a sqlite3 shell left in a transaction?)", code="database.locked", path=str(self.path),
            seconds=f"{self.busy_timeout:g}")

    @classmethod
    def in_dir(cls, data_dir: str | os.PathLike, **kwargs: Any) -> "Store":
        return cls(Path(data_dir) / DB_NAME, **kwargs)

    def check(self) -> None:
        """SQLite's own consistency check (a crash mid-write is rolled back by the WAL on open)."""
        result = self.db.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise StoreError(f"database {self.path} is damaged ({result}); restore it from a backup")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_version(self) -> int:
        """The file's schema version; a StoreError if it is newer than this lotcontrol, or, opened
        read-only, not the current one (reading never migrates)."""
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"database {self.path} has schema version {version}, newer than this lotcontrol "
                f"({SCHEMA_VERSION}); upgrade lotcontrol"
            )
        if self.read_only and version < SCHEMA_VERSION:
            what = "is empty" if version == 0 else f"has schema version {version}, older than this lotcontrol's ({SCHEMA_VERSION})"
            raise StoreError(f"database {self.path} {what}: reading commands do not change it; start the "
                             "controller or run a command that writes (e.g. enroll) to bring it up to date")
        return version

    def _migrate(self) -> None:
        with self.transaction():
            version = self._check_version()
            for number in range(version, SCHEMA_VERSION):
                MIGRATIONS[number](self.db)
            if version != SCHEMA_VERSION:
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``) so writers queue, not deadlock."""
        conn = self.db.conn
        if conn.in_transaction:
            # a savepoint of the transaction open. One name for all: SQLite releases or rolls back to
            # the newest of that name, and a fixed statement is prepared once (sqlite_utils' atomic()
            # names each savepoint anew: two statements parsed and a token drawn for every event the
            # writer commits)
            conn.execute("SAVEPOINT lotcontrol")
            try:
                yield self.db
            except BaseException:
                if conn.in_transaction:  # a RAISE(ROLLBACK) trigger can end the whole transaction
                    conn.execute("ROLLBACK TO SAVEPOINT lotcontrol")
                    conn.execute("RELEASE SAVEPOINT lotcontrol")
                raise
            conn.execute("RELEASE SAVEPOINT lotcontrol")
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.rollback()
            raise
        self.db.execute("COMMIT")

    def now(self) -> str:
        return isotime(self.clock())

    # --- residents ---

    def add_resident(
        self, name: str, *, unit: str | None = None, phone: str | None = None, note: str | None = None,
        valid_from: str | None = None, valid_until: str | None = None,
    ) -> Resident:
        name = normalize_name(name)
        fields = self._check_fields(unit=unit, phone=phone, note=note, valid_from=valid_from,
                                    valid_until=valid_until)
        now = self.now()
        with self.transaction():
            if self._row(name) is not None:
                raise ResidentExists(f"resident {self._row(name)['name']!r} is already on file")
            self.db["residents"].insert(
                {"name": name, "name_key": name_key(name), "status": "active", "created": now,
                 "token": secrets.token_hex(16),
                 "updated": now, **{"unit": None, "phone": None, "note": None, "valid_from": None,
                                    "valid_until": None, **fields}}
            )
        return self.resident(name)

    def update_resident(self, name: str, **fields: str | None) -> Resident:
        """Change unit, phone, note, valid_from or valid_until; a value of None leaves it as is."""
        changes = self._check_fields(**{k: v for k, v in fields.items() if v is not None})
        with self.transaction():
            resident = self.resident(name)
            merged = {"valid_from": resident.valid_from, "valid_until": resident.valid_until, **changes}
            self._check_validity(merged["valid_from"], merged["valid_until"])
            changes = {k: v for k, v in changes.items() if getattr(resident, k) != v}  # the same again: no write
            if changes:
                self.db["residents"].update(resident.id, {**changes, "updated": self.now()})
        return self.resident(resident.name)

    def _check_fields(self, **fields: str | None) -> dict[str, str | None]:
        checked: dict[str, str | None] = {}
        for field, value in fields.items():
            if field == "phone":
                checked[field] = _check_phone(value)
            elif field in ("valid_from", "valid_until"):
                checked[field] = _check_date(field, value)
            elif field in ("unit", "note"):
                checked[field] = _check_text(field, value, 64 if field == "unit" else 500)
            else:
                raise InvalidValue(f"a resident has no field {field!r}")
        self._check_validity(checked.get("valid_from"), checked.get("valid_until"))
        return checked

    @staticmethod
    def _check_validity(valid_from: str | None, valid_until: str | None) -> None:
        if valid_from and valid_until and valid_from > valid_until:
            raise InvalidValue(f"valid from {valid_from} is after valid until {valid_until}", code="value.validity",
                               valid_from=valid_from, valid_until=valid_until)

    def _row(self, name: str) -> dict[str, Any] | None:
        rows = list(self.db["residents"].rows_where("name_key = ?", [name_key(name)]))
        return rows[0] if rows else None

    def resident(self, name: str) -> Resident:
        """The resident with this name (case and Unicode form do not matter), or ResidentNotFound."""
        row = self._row(name)
        if row is None:
            raise ResidentNotFound(f"no resident named {normalize_name(name)!r}", code="resident.not_found",
                                   name=normalize_name(name))
        return self._resident(row)

    def resident_by_id(self, resident_id: int) -> Resident | None:
        rows = list(self.db["residents"].rows_where("id = ?", [resident_id]))
        return self._resident(rows[0]) if rows else None

    # --- cards, PINs and access modes (lotcontrol.credentials) ---

    def card_key(self) -> bytes:
        """The site's key for card digests: made at first use, kept in the database."""
        row = self.db.execute("SELECT key FROM site_keys WHERE name = 'card'").fetchone()
        if row is not None:
            return bytes(row[0])
        with self.transaction():
            row = self.db.execute("SELECT key FROM site_keys WHERE name = 'card'").fetchone()
            if row is None:
                row = (secrets.token_bytes(32),)
                self.db.execute("INSERT INTO site_keys (name, key) VALUES ('card', ?)", [row[0]])
        return bytes(row[0])

    def card_keys(self) -> tuple[bytes, ...]:
        """The keys a card read here is looked up under: this database's own, then the hub's (the
        digests of the hub's residents' cards, lotcontrol.fleet.residents), if it sent one."""
        hub = self.db.execute("SELECT key FROM site_keys WHERE name = 'hub_card'").fetchone()
        return (self.card_key(),) + ((bytes(hub[0]),) if hub else ())

    def set_hub_card_key(self, key: bytes) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO site_keys (name, key) VALUES ('hub_card', ?)", [key])

    # --- visitor passes (lotcontrol.passes) ---

    def pass_key(self) -> bytes:
        """The key passes issued here are signed with: made at first use, kept in the database."""
        return self._site_key("pass")

    def _site_key(self, name: str) -> bytes:
        row = self.db.execute("SELECT key FROM site_keys WHERE name = ?", [name]).fetchone()
        if row is not None:
            return bytes(row[0])
        with self.transaction():
            row = self.db.execute("SELECT key FROM site_keys WHERE name = ?", [name]).fetchone()
            if row is None:
                row = (secrets.token_bytes(32),)
                self.db.execute("INSERT INTO site_keys (name, key) VALUES (?, ?)", [name, row[0]])
        return bytes(row[0])

    def pass_keys(self) -> tuple[bytes, ...]:
        """The keys a pass shown here is checked under: this database's own, then the hub's, if it sent one."""
        hub = self.db.execute("SELECT key FROM site_keys WHERE name = 'hub_pass'").fetchone()
        return (self.pass_key(),) + ((bytes(hub[0]),) if hub else ())

    def set_hub_pass_key(self, key: bytes) -> bool:
        """The hub's pass key (from the hub's message); whether it changed."""
        with self.transaction():
            row = self.db.execute("SELECT key FROM site_keys WHERE name = 'hub_pass'").fetchone()
            if row is not None and bytes(row[0]) == key:
                return False
            self.db.execute("INSERT OR REPLACE INTO site_keys (name, key) VALUES ('hub_pass', ?)", [key])
        return True

    def add_pass(self, pass_id: str, visitor: str, lots: list[str] | None, not_after: int, uses: int) -> None:
        with self.transaction():
            self.db.execute("INSERT INTO passes (id, visitor, lots, not_after, uses, issued) VALUES (?, ?, ?, ?, ?, ?)",
                            [pass_id, visitor, None if lots is None else json.dumps(lots), not_after, uses, self.now()])

    def passes(self) -> list[dict[str, Any]]:
        """The passes issued here, newest first, with their uses at this database's lot (``used``)."""
        rows = self.db.execute(
            "SELECT p.id, p.visitor, p.lots, p.not_after, p.uses, p.issued, p.revoked, "
            "(SELECT count(*) FROM pass_uses u WHERE u.pass_id = p.id) FROM passes p ORDER BY p.issued DESC, p.id")
        return [{"id": i, "visitor": v, "lots": None if lots is None else json.loads(lots), "not_after": n, "uses": u,
                 "issued": issued, "revoked": revoked, "used": used}
                for i, v, lots, n, u, issued, revoked, used in rows]

    def revoke_pass(self, pass_id: str) -> dict[str, Any]:
        """Revoke a pass issued here (InvalidValue if there is none such); its row as before."""
        with self.transaction():
            row = next((p for p in self.passes() if p["id"] == pass_id.strip().lower()), None)
            if row is None:
                raise InvalidValue(f"no visitor pass {pass_id!r} was issued here (`lotcontrol visitor list` lists them)")
            if row["revoked"] is None:
                self.db.execute("UPDATE passes SET revoked = ?, published = NULL WHERE id = ?", [self.now(), row["id"]])
        return row

    def record_pass_use(self, pass_id: str, not_after: int, time: str) -> None:
        with self.transaction():
            self.db.execute("INSERT INTO pass_uses (pass_id, not_after, time) VALUES (?, ?, ?)", [pass_id, not_after, time])

    def set_pass_state(self, pass_id: str, revoked: bool, used: dict[str, int], not_after: int) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO pass_states (pass_id, revoked, used, not_after, received) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (pass_id) DO UPDATE SET revoked = excluded.revoked, used = excluded.used, "
                "not_after = excluded.not_after, received = excluded.received",
                [pass_id, int(revoked), json.dumps(used, sort_keys=True), not_after, self.now()])

    def pass_directory(self) -> tuple[dict[str, tuple[int, int]], dict[str, int], dict[str, dict[str, int]]]:
        """What the controller decides passes on: ((uses here, not-after) of each pass used here; the
        revoked passes (issued here or said by the hub), by id, with their not-after; each pass's uses per
        lot as the hub last said). Passes long expired are left out."""
        here = {pid: (count, not_after) for pid, count, not_after in self.db.execute(
            "SELECT pass_id, count(*), max(not_after) FROM pass_uses GROUP BY pass_id")}
        revoked = dict(self.db.execute("SELECT id, not_after FROM passes WHERE revoked IS NOT NULL").fetchall())
        hub: dict[str, dict[str, int]] = {}
        for pid, is_revoked, used, not_after in self.db.execute(
                "SELECT pass_id, revoked, used, not_after FROM pass_states"):
            hub[pid] = json.loads(used)
            if is_revoked:
                revoked[pid] = not_after
        return here, revoked, hub

    def prune_passes(self, before: int) -> int:
        """Forget passes whose not-after is before ``before`` (Unix seconds): their rows, uses and states."""
        with self.transaction():
            count = self.db.execute("DELETE FROM passes WHERE not_after < ?", [before]).rowcount
            self.db.execute("DELETE FROM pass_uses WHERE not_after < ?", [before])
            self.db.execute("DELETE FROM pass_states WHERE not_after < ?", [before])
        return count

    def card_digests(self, resident_id: int) -> list[str]:
        return [d for (d,) in self.db.execute("SELECT digest FROM cards WHERE resident_id = ? ORDER BY digest",
                                              [resident_id])]

    def pin_hash(self, resident_id: int) -> str | None:
        row = self.db.execute("SELECT hash FROM pins WHERE resident_id = ?", [resident_id]).fetchone()
        return row[0] if row else None

    def replace_credentials(self, resident_id: int, cards: list[str], pin_hash: str | None) -> bool:
        """The resident's cards and PIN become exactly these (a copy kept in step with the hub);
        whether anything changed. A card another resident here holds is refused (InvalidValue)."""
        with self.transaction():
            if self.card_digests(resident_id) == sorted(cards) and self.pin_hash(resident_id) == pin_hash:
                return False
            for digest in cards:
                owner = self.db.execute("SELECT resident_id FROM cards WHERE digest = ?", [digest]).fetchone()
                if owner is not None and owner[0] != resident_id:
                    raise InvalidValue(f"a card of theirs is on file here for resident #{owner[0]}")
            self.db.execute("DELETE FROM cards WHERE resident_id = ?", [resident_id])
            self.db.execute("DELETE FROM pins WHERE resident_id = ?", [resident_id])
            now = self.now()
            for digest in cards:
                self.db.execute("INSERT INTO cards (digest, resident_id, added) VALUES (?, ?, ?)",
                                [digest, resident_id, now])
            if pin_hash is not None:
                self.db.execute("INSERT INTO pins (resident_id, hash, set_at) VALUES (?, ?, ?)",
                                [resident_id, pin_hash, now])
        return True

    def add_card(self, name: str, digest: str) -> Resident:
        with self.transaction():
            resident = self.resident(name)
            owner = self.db.execute("SELECT r.name FROM cards c JOIN residents r ON r.id = c.resident_id "
                                    "WHERE c.digest = ?", [digest]).fetchone()
            if owner is not None:
                if owner[0] != resident.name:
                    raise InvalidValue(f"this card is already {owner[0]!r}'s", code="card.taken", owner=owner[0])
                raise InvalidValue(f"this card is already on file for {resident.name!r}", code="card.on_file",
                                   name=resident.name)
            self.db.execute("INSERT INTO cards (digest, resident_id, added) VALUES (?, ?, ?)",
                            [digest, resident.id, self.now()])
            self.db["residents"].update(resident.id, {"updated": self.now()})
        return resident

    def remove_cards(self, name: str, digest: str | None = None) -> int:
        """Remove one card of the resident (``digest``) or all of them; how many went."""
        with self.transaction():
            resident = self.resident(name)
            sql, params = "DELETE FROM cards WHERE resident_id = ?", [resident.id]
            if digest is not None:
                sql, params = sql + " AND digest = ?", params + [digest]
            removed = self.db.execute(sql, params).rowcount
            if removed:
                self.db["residents"].update(resident.id, {"updated": self.now()})
        return removed

    def set_pin(self, name: str, pin_hash: str) -> Resident:
        with self.transaction():
            resident = self.resident(name)
            self.db.execute("INSERT OR REPLACE INTO pins (resident_id, hash, set_at) VALUES (?, ?, ?)",
                            [resident.id, pin_hash, self.now()])
            self.db["residents"].update(resident.id, {"updated": self.now()})
        return resident

    def clear_pin(self, name: str) -> bool:
        """Remove the resident's PIN; whether they had one."""
        with self.transaction():
            resident = self.resident(name)
            cleared = self.db.execute("DELETE FROM pins WHERE resident_id = ?", [resident.id]).rowcount > 0
            if cleared:
                self.db["residents"].update(resident.id, {"updated": self.now()})
        return cleared

    def cards_of(self, name: str) -> list[tuple[str, str]]:
        """The resident's cards as kept: (keyed digest, when added), oldest first. Never a number."""
        resident = self.resident(name)
        return [(d, added) for d, added in self.db.execute(
            "SELECT digest, added FROM cards WHERE resident_id = ? ORDER BY added, digest", [resident.id]).fetchall()]

    def set_access_mode(self, name: str, mode: str | None) -> Resident:
        """The resident's own access mode; None or "site": the site's access.mode."""
        return self._set_own(name, "access_mode", mode, ACCESS_MODES, "access mode")

    def _set_own(self, name: str, column: str, value: str | None, allowed: tuple[str, ...], what: str) -> Resident:
        """One of the resident's own settings over the site's (None or "site": the site's)."""
        value = None if value in (None, "site") else value
        if value is not None and value not in allowed:
            raise InvalidValue(f"{what} must be one of {', '.join(allowed)} or site, not {value!r}", code="value.choice",
                               field=column, allowed=", ".join(allowed), value=value)
        with self.transaction():
            resident = self.resident(name)
            if getattr(resident, column) != value:
                self.db["residents"].update(resident.id, {column: value, "updated": self.now()})
        return self.resident(resident.name)

    def set_groups(self, name: str, groups: list[str] | tuple[str, ...]) -> Resident:
        """The resident's access groups (names checked against the configuration by the caller); [] for none."""
        bad = [g for g in groups if not GROUP_NAME.match(g)]
        if bad:
            raise InvalidValue(f"access group {bad[0]!r} is not a group name (letters, digits, _ . -)",
                               code="group.name", group=bad[0])
        value = ",".join(sorted(set(groups))) or None
        with self.transaction():
            resident = self.resident(name)
            if resident.access_groups != value:
                self.db["residents"].update(resident.id, {"access_groups": value, "updated": self.now()})
        return self.resident(resident.name)

    def set_antipassback(self, name: str, mode: str | None) -> Resident:
        """The resident's own anti-passback (off, log, enforce); None or "site": the site's."""
        return self._set_own(name, "antipassback", mode, ANTIPASSBACK, "anti-passback")

    def reset_presence(self, name: str) -> Resident:
        """Staff count the resident out of this lot: the controller's record of their entry is void
        (it compares this time with the one it kept; lotcontrol.policy.present)."""
        with self.transaction():
            resident = self.resident(name)
            self.db["residents"].update(resident.id, {"presence_reset": self.now()})
        return self.resident(resident.name)

    def credentials(self) -> tuple[dict[str, int], dict[int, str]]:
        """Every card digest with its resident's id, and every resident's PIN hash, by id."""
        cards = dict(self.db.execute("SELECT digest, resident_id FROM cards").fetchall())
        pins = dict(self.db.execute("SELECT resident_id, hash FROM pins").fetchall())
        return cards, pins

    def credential_counts(self, resident_id: int) -> tuple[int, bool]:
        """How many cards the resident has, and whether they have a PIN."""
        cards = self.db.execute("SELECT count(*) FROM cards WHERE resident_id = ?", [resident_id]).fetchone()[0]
        pin = self.db.execute("SELECT 1 FROM pins WHERE resident_id = ?", [resident_id]).fetchone()
        return cards, pin is not None

    def _resident(self, row: dict[str, Any]) -> Resident:
        count = self.db.execute("SELECT count(*) FROM templates WHERE resident_id = ?", [row["id"]]).fetchone()[0]
        return Resident(**{k: v for k, v in row.items() if k not in ("name_key", "token")}, templates=count)

    def residents(self) -> list[Resident]:
        counts = dict(self.db.execute("SELECT resident_id, count(*) FROM templates GROUP BY resident_id").fetchall())
        return [
            Resident(**{k: v for k, v in row.items() if k not in ("name_key", "token")}, templates=counts.get(row["id"], 0))
            for row in self.db["residents"].rows_where(order_by="name_key")
        ]

    def set_status(self, name: str, status: str) -> Resident:
        if status not in STATUSES:
            raise InvalidValue(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        with self.transaction():
            resident = self.resident(name)
            self.db["residents"].update(resident.id, {"status": status, "updated": self.now()})
        return self.resident(name)

    def rename(self, old: str, new: str) -> Resident:
        new = normalize_name(new)
        with self.transaction():
            resident = self.resident(old)
            other = self._row(new)
            if other is not None and other["id"] != resident.id:
                raise ResidentExists(f"resident {other['name']!r} is already on file")
            self.db["residents"].update(resident.id, {"name": new, "name_key": name_key(new),
                                                      "updated": self.now()})
        return self.resident(new)

    def remove(self, name: str) -> Resident:
        """Erase a resident, every template and every entry snapshot of them; their past events stay,
        without their name or snapshot."""
        with self.transaction():
            resident = self.resident(name)
            snapshots = [self._drop_snapshot(event_id, details) for event_id, details in self.db.execute(
                "SELECT id, details FROM events WHERE resident_id = ? AND details LIKE '%snapshot%'",
                [resident.id]).fetchall()]
            self.db.execute("DELETE FROM templates WHERE resident_id = ?", [resident.id])
            self.db.execute("DELETE FROM residents WHERE id = ?", [resident.id])
        for snapshot in snapshots:
            if snapshot:
                (self.path.parent / snapshot).unlink(missing_ok=True)
        return resident

    def _drop_snapshot(self, event_id: int, details: str) -> str | None:
        """Take the snapshot's file name out of an event (its hash leaves it out, so the chain stays
        valid); the name, for the caller to delete the file once the transaction is committed."""
        parsed = json.loads(details)
        snapshot = parsed.pop("snapshot", None)
        if snapshot is not None:
            self.db.execute("UPDATE events SET details = ? WHERE id = ?",
                            [json.dumps(parsed, ensure_ascii=False, sort_keys=True), event_id])
        return snapshot

    def snapshot_path(self, snapshot: str) -> Path:
        """Where an event's ``snapshot`` (``snapshots/NAME.jpg``) lives: beside the database."""
        return self.path.parent / snapshot

    def erase_snapshot(self, event_id: int) -> None:
        """Erase an event's snapshot: the file, and its name in the event."""
        with self.transaction():
            row = self.db.execute("SELECT details FROM events WHERE id = ?", [event_id]).fetchone()
            snapshot = self._drop_snapshot(event_id, row[0]) if row else None
        if snapshot:
            self.snapshot_path(snapshot).unlink(missing_ok=True)

    def export(self, name: str) -> dict[str, Any]:
        """Everything stored about one resident, for their right of access."""
        resident = self.resident(name)
        added = dict(self.db.execute("SELECT photo_sha256, added FROM templates WHERE resident_id = ?",
                                     [resident.id]).fetchall())
        templates = [
            {"added": added[t.photo_sha256], "photo_sha256": t.photo_sha256, "face_px": t.face_px,
             "quality": t.quality,
             "embeddings": {name: {"version": e.version, "vector": [round(float(x), 6) for x in e.vector]}
                            for name, e in t.embeddings.items()}}
            for t in self.templates_of(resident.id)]
        events = [{"time": t, "type": ty, "details": json.loads(d)} for t, ty, d in self.db.execute(
            "SELECT time, type, details FROM events WHERE resident_id = ? ORDER BY id", [resident.id])]
        record = {k: v for k, v in vars(resident).items() if k not in ("id", "templates")}
        cards, pin = self.credential_counts(resident.id)
        return {"resident": record, "templates": templates, "events": events,
                "credentials": {"cards": cards, "pin": pin,
                                "kept_as": "cards as keyed digests, a PIN as an argon2id hash: neither can be shown"},
                "note": "No photos are stored; entry snapshots, if any, are listed in the events."}

    # --- templates ---

    def add_templates(self, resident_id: int, templates: list[Template]) -> None:
        now = self.now()
        with self.transaction():
            for t in templates:
                rows = [(name, e.version, _to_blob(e.vector, name)) for name, e in t.embeddings.items()]
                template_id = self.db.execute(
                    "INSERT INTO templates (resident_id, photo_sha256, face_px, quality, added) VALUES (?, ?, ?, ?, ?)",
                    [resident_id, t.photo_sha256, int(t.face_px), float(t.quality), now]).lastrowid
                self.db.conn.executemany("INSERT INTO embeddings (template_id, encoder, version, vector) VALUES (?, ?, ?, ?)",
                                    [(template_id, *row) for row in rows])

    def is_hub_copy(self, resident_id: int) -> bool:
        """Whether this lot holds the resident for the hub (then they are changed on the hub, not here)."""
        return self.db.execute("SELECT 1 FROM hub_copies WHERE resident_id = ?", [resident_id]).fetchone() is not None

    def encoder_counts(self, resident_id: int) -> dict[str, int]:
        """Encoder name -> how many of the resident's faces have its embedding (any version): what the
        web console's resident page shows, read without the vectors (nor numpy)."""
        return dict(self.db.execute(
            "SELECT e.encoder, count(*) FROM templates t JOIN embeddings e ON e.template_id = t.id "
            "WHERE t.resident_id = ? GROUP BY e.encoder ORDER BY e.encoder", [resident_id]).fetchall())

    def templates_of(self, resident_id: int) -> list[Template]:
        """A resident's faces, in the order they were added, each with every embedding on file."""
        import numpy as np

        faces: dict[int, tuple] = {}
        embeddings: dict[int, dict[str, Embedding]] = {}
        for template_id, sha, face_px, quality, name, version, blob in self.db.execute(
                "SELECT t.id, t.photo_sha256, t.face_px, t.quality, e.encoder, e.version, e.vector "
                "FROM templates t JOIN embeddings e ON e.template_id = t.id WHERE t.resident_id = ? "
                "ORDER BY t.id, e.encoder", [resident_id]):
            faces[template_id] = (sha, face_px, quality)
            embeddings.setdefault(template_id, {})[name] = Embedding(version, np.frombuffer(blob, dtype=np.float32))
        return [Template(embeddings[i], *faces[i]) for i in faces]

    def flag_lookalike(self, first: int, second: int, distance: float) -> None:
        """Flag two residents as look-alikes (again, if staff had cleared them: a new face came)."""
        a, b = sorted((first, second))
        self.db.execute(
            "INSERT INTO lookalikes (a, b, distance, flagged) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (a, b) DO UPDATE SET distance = min(distance, excluded.distance), "
            "flagged = excluded.flagged, cleared = NULL", [a, b, round(float(distance), 4), self.now()])

    def lookalikes(self, *, cleared: bool = False) -> list[Lookalike]:
        """The flagged pairs, nearest first; with ``cleared`` also those staff have checked."""
        rows = self.db.execute(
            "SELECT ra.name, rb.name, l.distance, l.flagged, l.cleared FROM lookalikes l "
            "JOIN residents ra ON ra.id = l.a JOIN residents rb ON rb.id = l.b "
            + ("" if cleared else "WHERE l.cleared IS NULL ") + "ORDER BY l.distance").fetchall()
        return [Lookalike(*row) for row in rows]

    def lookalike_ids(self) -> list[tuple[int, int]]:
        """Every look-alike pair on file, flagged or cleared, by id: their faces can be taken for each
        other whatever staff found (lotcontrol.policy: face_and_pin by default once either has a PIN)."""
        return [(a, b) for a, b in self.db.execute("SELECT a, b FROM lookalikes").fetchall()]

    def clear_lookalike(self, first: str, second: str) -> Lookalike:
        """Staff checked that two flagged residents are different people."""
        with self.transaction():
            a, b = self.resident(first), self.resident(second)
            low, high = sorted((a.id, b.id))
            done = self.db.execute("UPDATE lookalikes SET cleared = ? WHERE a = ? AND b = ? AND cleared IS NULL",
                                   [self.now(), low, high])
            if done.rowcount == 0:
                raise StoreError(f"{a.name!r} and {b.name!r} are not flagged as look-alikes "
                                 "(see `lotcontrol residents check`)", code="lookalike.not_flagged",
                                 first=a.name, second=b.name)
        pair = next(p for p in self.lookalikes(cleared=True) if {p.first, p.second} == {a.name, b.name})
        return Lookalike(a.name, b.name, pair.distance, pair.flagged, pair.cleared)  # in the order asked

    def replace_templates(self, resident_id: int, templates: list[Template]) -> None:
        """The resident's templates become exactly ``templates`` (a copy kept in step with the hub)."""
        with self.transaction():
            self.db.execute("DELETE FROM templates WHERE resident_id = ?", [resident_id])
            self.add_templates(resident_id, templates)

    def photo_owner(self, photo_sha256: str) -> str | None:
        """The name of the resident already enrolled from this photo, if any."""
        row = self.db.execute(
            "SELECT r.name FROM templates t JOIN residents r ON r.id = t.resident_id WHERE t.photo_sha256 = ?",
            [photo_sha256],
        ).fetchone()
        return row[0] if row else None

    def gallery_version(self) -> int:
        return self.db.execute("SELECT version FROM gallery_version").fetchone()[0]

    def face_embeddings(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Every face's (N,) resident ids, grouped by resident, and each encoder's (N, dim) float32
        embeddings; a face without an embedding of the encoder's current version has a NaN row."""
        import numpy as np

        from .vision import encoders

        known = encoders.ENCODERS
        faces = self.db.execute("SELECT id, resident_id FROM templates ORDER BY resident_id, id").fetchall()
        row_of = {template_id: i for i, (template_id, _) in enumerate(faces)}
        ids = np.fromiter((r[1] for r in faces), dtype=np.int64, count=len(faces))
        found = {name: np.full((len(faces), encoder.dim), np.nan, dtype=np.float32) for name, encoder in known.items()}
        for name, encoder in known.items():
            for template_id, blob in self.db.execute(
                    "SELECT template_id, vector FROM embeddings WHERE encoder = ? AND version = ?",
                    [name, encoder.version]):
                found[name][row_of[template_id]] = np.frombuffer(blob, dtype=np.float32)
        return ids, found

    def templates_matrix(self, space: str = "dlib") -> tuple[np.ndarray, np.ndarray]:
        """The faces that have every encoder ``space`` needs, as an (N, space_dim) float32 matrix of
        their vectors in the space and the (N,) resident ids, grouped by resident."""
        import numpy as np

        from .vision import encoders

        ids, found = self.face_embeddings()
        vectors = encoders.space_vectors(space, found)
        inside = encoders.in_space(vectors)
        return np.ascontiguousarray(vectors[inside]), ids[inside]

    def lacking(self, encoder: str) -> dict[int, tuple[int, int]]:
        """Resident id -> (faces without ``encoder``'s current version, faces on file), for the
        residents with at least one such face."""
        from .vision import encoders

        rows = self.db.execute(
            "SELECT t.resident_id, count(*), sum(e.template_id IS NULL) FROM templates t "
            "LEFT JOIN embeddings e ON e.template_id = t.id AND e.encoder = ? AND e.version = ? "
            "GROUP BY t.resident_id", [encoder, encoders.ENCODERS[encoder].version]).fetchall()
        return {resident_id: (missing, total) for resident_id, total, missing in rows if missing}

    # --- events ---

    def log_event(self, type: str, resident_id: int | None = None, details: dict[str, Any] | None = None,
                  *, time: dt.datetime | None = None, synced: bool | None = None) -> None:
        """One event at ``time`` (now by default); ``synced`` whether the wall clock was synchronised
        then (by default the kernel's word now: a staff command's event)."""
        if synced is None:
            synced = kernel_synchronized() is not False
        with self.transaction():
            when = isotime(time) if time else self.now()
            text = json.dumps(details or {}, ensure_ascii=False, sort_keys=True)
            token = None
            if resident_id is not None:
                row = self.db.execute("SELECT token FROM residents WHERE id = ?", [resident_id]).fetchone()
                token = row[0] if row else None
            last = (self.db.execute("SELECT hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
                    or self.db.execute("SELECT hash FROM chain_anchor").fetchone())  # all pruned
            digest = event_hash(last[0] if last else GENESIS, when, type, token, text, synced)
            self.db.execute("INSERT INTO events (time, type, resident_id, resident_token, details, hash, clock_synced) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", [when, type, resident_id, token, text, digest, int(synced)])

    def prune_events(self, before: str) -> int:
        """Delete events older than ``before`` (ISO time); the chain stays verifiable from an anchor.
        An event from an unsynchronised clock (1970 after a boot without a real-time clock) never
        decides what is old: it goes with the synchronised events logged after it."""
        with self.transaction():
            last = self.db.execute("SELECT id, hash FROM events WHERE time < ? AND clock_synced IS NOT 0 "
                                   "ORDER BY id DESC LIMIT 1",
                                   [before]).fetchone()
            if last is None:
                return 0
            deleted = self.db.execute("DELETE FROM events WHERE id <= ?", [last[0]]).rowcount
            self.db.execute("INSERT OR REPLACE INTO chain_anchor (id, hash, pruned_through) VALUES (1, ?, ?)",
                            [last[1], last[0]])
        return deleted

    def verify_events(self) -> tuple[int, str | None]:
        """Walk the chain: how many events check out, and the first broken link (None if none)."""
        anchor = self.db.execute("SELECT hash FROM chain_anchor").fetchone()
        previous, count = (anchor[0] if anchor else GENESIS), 0
        for event_id, time, type, token, details, digest, synced in self.db.execute(
                "SELECT id, time, type, resident_token, details, hash, clock_synced FROM events ORDER BY id"):
            expected = event_hash(previous, time, type, token, details, None if synced is None else bool(synced))
            if digest != expected:
                return count, (f"event {event_id} ({time} {type}) does not match its hash: it was changed, "
                               "or an event before it was removed")
            previous, count = digest, count + 1
        return count, None

    def event(self, event_id: int) -> Event | None:
        """One event by its number (``lotcontrol events`` shows it), or None."""
        row = self.db.execute(_EVENTS_SQL + " WHERE e.id = ?", [event_id]).fetchone()
        return None if row is None else _event(row)

    def newest_event_id(self) -> int:
        """The number of the newest event (0: none): a cheap mark of the log having moved (web console)."""
        return self.db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]

    def residents_mark(self) -> str:
        """A cheap mark that changes when a resident is added, removed or changed (every change sets
        ``updated``) or a face comes or goes: the web console's residents pages update on it."""
        count, updated = self.db.execute("SELECT count(*), max(updated) FROM residents").fetchone()
        return f"{count}/{updated or ''}/{self.gallery_version()}"

    def events(self, since: str | None = None, type: str | None = None, after: int | None = None) -> list[Event]:
        """Events, oldest first; ``type`` matches exactly or as a dotted prefix (``access``); ``after``:
        only those numbered above it."""
        where, params = [], []
        if after is not None:
            where.append("e.id > ?")
            params.append(after)
        if since:
            where.append("e.time >= ?")
            params.append(since)
        if type:
            where.append("(e.type = ? OR e.type LIKE ? ESCAPE '\\')")
            params += [type, type.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ".%"]
        sql = _EVENTS_SQL
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY e.time, e.id"
        return [_event(row) for row in self.db.execute(sql, params).fetchall()]


    # --- charging sessions (written by the controller's writer thread) ---

    def open_charging(self, key: str, port: str, resident: str | None, start: str,
                      meter_start: float | None = None) -> None:
        """A session that started; ``resident`` by name (the bay's assignment), None if not on file;
        ``meter_start`` its meter's total (kWh) at the start, for a metered port."""
        with self.transaction():
            row = None if resident is None else self._row(resident)
            self.db.execute("INSERT OR IGNORE INTO charging_sessions (key, port, resident_id, start, meter_start) "
                            "VALUES (?, ?, ?, ?, ?)", [key, port, row["id"] if row else None, start, meter_start])

    def checkpoint_charging(self, running: list[tuple[str, float, float]]) -> None:
        """The energy so far of running sessions: (key, kWh, peak W)."""
        with self.transaction():
            for key, kwh, peak in running:
                self.db.execute("UPDATE charging_sessions SET kwh = ?, peak_watts = ? WHERE key = ? AND end IS NULL",
                                [round(kwh, 4), round(peak, 1), key])

    def close_charging(self, key: str, end: str, reason: str, kwh: float | None, peak_watts: float | None) -> None:
        with self.transaction():
            self.db.execute("UPDATE charging_sessions SET end = ?, reason = ?, kwh = ?, peak_watts = ? "
                            "WHERE key = ? AND end IS NULL", [end, reason, kwh, peak_watts, key])  # closed once

    def close_interrupted_charging(self, end: str, resumable: set[str] = frozenset()) -> tuple[int, float, list[dict]]:
        """Sessions a stopped controller left open: those of the ports in ``resumable`` (metered
        ports still configured) that know their meter's start are returned, still open, for the
        controller to close from its meter's next reading; the rest are closed as ``interrupted``
        with the energy of their last checkpoint. (How many closed, their kWh, the returned rows:
        key, port, meter_start, kwh, peak_watts.)"""
        with self.transaction():
            cursor = self.db.execute("SELECT key, port, meter_start, kwh, peak_watts FROM charging_sessions "
                                     "WHERE end IS NULL ORDER BY id")
            names = [c[0] for c in cursor.description]
            rows = [dict(zip(names, row)) for row in cursor.fetchall()]
            kept = [r for r in rows if r["port"] in resumable and r["meter_start"] is not None]
            closed = [r for r in rows if r not in kept]
            for row in closed:
                self.db.execute("UPDATE charging_sessions SET end = ?, reason = 'interrupted' WHERE key = ?",
                                [end, row["key"]])
        return len(closed), sum(r["kwh"] or 0.0 for r in closed), kept

    def prune_charging(self, before: str) -> int:
        """Delete the charging sessions that ended before ``before`` (ISO time), as events are pruned
        (events.keep_days); a session still open is kept whatever its age."""
        with self.transaction():
            return self.db.execute("DELETE FROM charging_sessions WHERE end IS NOT NULL AND end < ?", [before]).rowcount

    def charging_sessions(self, since: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT s.port, r.name AS resident, s.start, s.end, s.kwh, s.peak_watts, s.reason FROM charging_sessions s "
               "LEFT JOIN residents r ON r.id = s.resident_id")
        params: list[Any] = []
        if since:
            sql += " WHERE s.start >= ?"
            params.append(since)
        cursor = self.db.execute(sql + " ORDER BY s.start, s.id", params)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def _event(row) -> Event:
    return Event(row[0], row[1], row[2], row[3], json.loads(row[4]), None if row[5] is None else bool(row[5]))


def embedding_dim(encoder: str) -> int:
    """How many numbers ``encoder``'s embedding has (ValueError for an encoder this lotcontrol lacks)."""
    from .vision import encoders

    if encoder not in encoders.ENCODERS:
        raise ValueError(f"unknown face encoder {encoder!r}: one of {', '.join(encoders.ENCODERS)}")
    return encoders.ENCODERS[encoder].dim


def check_embedding(encoder: str, vector: np.ndarray) -> np.ndarray:
    """``vector`` as ``encoder``'s float32 embedding, or ValueError saying what is wrong with it."""
    import numpy as np

    array = np.asarray(vector, dtype=np.float32)
    dim = embedding_dim(encoder)
    if array.shape != (dim,) or not np.all(np.isfinite(array)):
        raise ValueError(f"a {encoder} face template must be {dim} finite numbers, got shape {array.shape}")
    return array


def _to_blob(vector: np.ndarray, encoder: str = "dlib") -> bytes:
    return check_embedding(encoder, vector).tobytes()
