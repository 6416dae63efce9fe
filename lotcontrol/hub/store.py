"""The hub's database: a lotcontrol database (residents, templates, events) plus what the hub adds.

The hub's own tables, only in a hub's database (``open_hub`` adds them, idempotently):

- ``hub_residents``: each resident's id on the wire (``uid``, random, never reused), the lots they may
  enter (JSON list; NULL: every lot), the ``revision`` of their last change and the revision last
  ``published``. A removed resident's row stays, with ``resident_id`` NULL: their tombstone.
- ``hub_revision``: one counter; every change takes the next number.
- ``hub_lot_state``, ``hub_lot_events``: what the lots publish (lotcontrol.hub.village).

Triggers on ``residents`` and ``templates`` take a new revision for the resident on every insert,
update and delete, so every way of changing a resident (each staff command, on any terminal) is seen
by the hub process without being told, and no command can forget to. The hub process publishes
every row whose revision is newer than the one published (lotcontrol.hub.publisher).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path


from ..errors import LotControlError
from ..fleet.residents import FORMAT, ResidentMessage, WireTemplate
from ..store import Resident, Store
from .village import SCHEMA as VILLAGE_SCHEMA

_NEXT = "UPDATE hub_revision SET revision = revision + 1"
_CURRENT = "(SELECT revision FROM hub_revision)"
_NEW_UID = "lower(hex(randomblob(16)))"

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS hub_residents (
        uid TEXT PRIMARY KEY,
        resident_id INTEGER UNIQUE,
        lots TEXT,
        revision INTEGER NOT NULL,
        published INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS hub_residents_pending ON hub_residents (revision, published)",
    "CREATE TABLE IF NOT EXISTS hub_revision (id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO hub_revision VALUES (1, 0)",
    f"""CREATE TRIGGER IF NOT EXISTS hub_resident_added AFTER INSERT ON residents BEGIN {_NEXT};
        INSERT INTO hub_residents (uid, resident_id, lots, revision) VALUES ({_NEW_UID}, NEW.id, NULL, {_CURRENT});
        END""",
    f"""CREATE TRIGGER IF NOT EXISTS hub_resident_changed AFTER UPDATE ON residents BEGIN {_NEXT};
        UPDATE hub_residents SET revision = {_CURRENT} WHERE resident_id = NEW.id; END""",
    f"""CREATE TRIGGER IF NOT EXISTS hub_resident_removed AFTER DELETE ON residents BEGIN {_NEXT};
        UPDATE hub_residents SET resident_id = NULL, lots = NULL, revision = {_CURRENT}
        WHERE resident_id = OLD.id; END""",
    f"""CREATE TRIGGER IF NOT EXISTS hub_template_added AFTER INSERT ON templates BEGIN {_NEXT};
        UPDATE hub_residents SET revision = {_CURRENT} WHERE resident_id = NEW.resident_id; END""",
    f"""CREATE TRIGGER IF NOT EXISTS hub_template_removed AFTER DELETE ON templates BEGIN {_NEXT};
        UPDATE hub_residents SET revision = {_CURRENT} WHERE resident_id = OLD.resident_id; END""",
]


class UnknownLot(LotControlError, ValueError):
    """A lot id the hub's configuration (hub.lots) does not list."""


class NotAHub(LotControlError, ValueError):
    """The command needs the hub's database (--hub DIR or hub.data_dir)."""


def open_hub(data_dir: str | os.PathLike, **kwargs) -> Store:
    """The hub's database in ``data_dir``, with the hub's tables and triggers in place. A lot's
    residents already on file (a lot's database taken over as the hub) get their uid here.
    ``kwargs`` go to :class:`Store` (``busy_timeout``)."""
    store = Store.in_dir(Path(data_dir), **kwargs)
    try:
        with store.transaction():
            for statement in SCHEMA + VILLAGE_SCHEMA:
                store.db.execute(statement)
            store.db.execute(
                f"INSERT INTO hub_residents (uid, resident_id, lots, revision) SELECT {_NEW_UID}, id, NULL, 1 "
                "FROM residents WHERE id NOT IN (SELECT resident_id FROM hub_residents WHERE resident_id IS NOT NULL)")
    except BaseException:
        store.close()
        raise
    return store


def is_hub(store: Store) -> bool:
    return store.db["hub_residents"].exists()


def check_lots(lots: list[str], known: list[str]) -> list[str]:
    """``lots`` as given, each checked against the hub's lots; duplicates dropped, order kept."""
    for lot in lots:
        if lot not in known:
            listed = f"the hub knows {', '.join(known)}" if known else "hub.lots in the configuration lists none"
            raise UnknownLot(f"unknown lot {lot!r}: {listed} (hub.lots: each lot's mqtt.lot)")
    return list(dict.fromkeys(lots))


def set_lots(store: Store, name: str, lots: list[str] | None, known: list[str]) -> Resident:
    """Let resident ``name`` enter ``lots`` only (None: every lot); the change is published."""
    chosen = None if lots is None else check_lots(lots, known)
    with store.transaction():
        resident = store.resident(name)
        store.db.execute(_NEXT)
        store.db.execute(f"UPDATE hub_residents SET lots = ?, revision = {_CURRENT} WHERE resident_id = ?",
                         [None if chosen is None else json.dumps(chosen), resident.id])
    return resident


def lots_of(store: Store) -> dict[int, list[str] | None]:
    """Every resident's lots (None: every lot), by resident id."""
    return {rid: (None if lots is None else json.loads(lots)) for rid, lots in store.db.execute(
        "SELECT resident_id, lots FROM hub_residents WHERE resident_id IS NOT NULL")}


def uid_of(store: Store, resident_id: int) -> str:
    return store.db.execute("SELECT uid FROM hub_residents WHERE resident_id = ?", [resident_id]).fetchone()[0]


def pending(store: Store) -> list[tuple[str, int]]:
    """(uid, revision) of every resident or tombstone changed since it was last published, oldest first."""
    return [(uid, revision) for uid, revision in store.db.execute(
        "SELECT uid, revision FROM hub_residents WHERE revision > published ORDER BY revision")]


def message(store: Store, uid: str) -> ResidentMessage:
    """What the hub publishes for ``uid`` now: the resident with their templates, or their tombstone."""
    resident_id, lots, revision = store.db.execute(
        "SELECT resident_id, lots, revision FROM hub_residents WHERE uid = ?", [uid]).fetchone()
    if resident_id is None:
        return ResidentMessage(format=FORMAT, uid=uid, revision=revision, removed=True)
    resident = store.resident_by_id(resident_id)
    cards = store.card_digests(resident_id)  # under the hub's card key, which goes with them
    templates = [WireTemplate.of(t) for t in store.templates_of(resident_id)]
    return ResidentMessage(format=FORMAT, uid=uid, revision=revision, name=resident.name, unit=resident.unit,
                           status=resident.status, valid_from=resident.valid_from,
                           valid_until=resident.valid_until, lots=None if lots is None else json.loads(lots),
                           templates=templates, access_mode=resident.access_mode, cards=cards,
                           groups=list(resident.groups), antipassback=resident.antipassback,
                           pin=store.pin_hash(resident_id),
                           card_key=base64.b64encode(store.card_key()).decode("ascii") if cards else None)


def mark_published(store: Store, done: list[tuple[str, int]]) -> None:
    """Each (uid, revision) was handed to the broker; a change newer than that stays pending."""
    if not done:
        return
    with store.transaction():
        store.db.conn.executemany("UPDATE hub_residents SET published = ? WHERE uid = ? AND published < ?",
                             [(revision, uid, revision) for uid, revision in done])


def republish_all(store: Store) -> int:
    """Everything is to be published again (a new connection: the broker may have lost its retained
    messages). Returns how many."""
    with store.transaction():
        return store.db.execute("UPDATE hub_residents SET published = 0").rowcount
