"""The village at the hub: what every lot publishes, kept in the hub's database for
``lotcontrol status --lot all`` and ``lotcontrol events --lot all``.

The hub's link subscribes to every lot's ``<prefix>/<lot>/status``, ``state/#`` (retained: a hub that
starts, or comes back, learns each lot's state at once) and ``events/#``. The link's network thread
only appends each message to a bounded queue (``QUEUE_SIZE``; when full the oldest is dropped and
counted); the hub's own thread writes them, every ``hub.poll_seconds``, to two tables of its database:

- ``hub_lot_state``: one row per lot and state key (``status``, ``gate``, ``fire/east``, ...): the
  payload and when the hub received it;
- ``hub_lot_events``: each event with its lot, time, type, the resident's name where there is one, and
  its details. Never a face: keys that could hold one (``snapshot``, ``encoding``, ``photo``, ...) are
  dropped before anything is written, and a lot's own resident ids (meaningless at the hub) too.
  Only the names of residents on the hub's list are kept (a lot's own residents, and a resident
  removed before a lot's late event arrived, are stored without a name); removing a resident at the
  hub erases their name from the events already kept (a trigger). Events older than
  ``events.keep_days`` are pruned.

The tables live in the database (not memory) because the staff commands are other processes than
``lotcontrol hub``. Events a lot made while the hub or the broker was away are not on the broker
(events are not retained): the hub has them from when it hears them; each lot's own log is complete.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import threading
from typing import Any

from ..store import Store, isotime, utc_now

QUEUE_SIZE = 10000
#: Keys an event from a lot is never stored with at the hub (a face, or what could hold one).
FACE_KEYS = frozenset({"snapshot", "snapshots", "photo", "photos", "image", "jpeg", "face", "faces", "encoding",
                       "encodings", "template", "templates"})
LOT_ONLY_KEYS = frozenset({"resident_id"})  # a lot's own ids mean nothing at the hub

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS hub_lot_state (
        lot TEXT NOT NULL, key TEXT NOT NULL, payload TEXT NOT NULL, received TEXT NOT NULL,
        PRIMARY KEY (lot, key))""",
    """CREATE TABLE IF NOT EXISTS hub_lot_events (
        id INTEGER PRIMARY KEY, lot TEXT NOT NULL, time TEXT NOT NULL, type TEXT NOT NULL, resident TEXT,
        details TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS hub_lot_events_time ON hub_lot_events (time)",
    """CREATE TRIGGER IF NOT EXISTS hub_lot_events_forget AFTER DELETE ON residents BEGIN
        UPDATE hub_lot_events SET resident = NULL WHERE resident = OLD.name; END""",
]


def subscriptions(prefix: str) -> list[str]:
    return [f"{prefix}/+/status", f"{prefix}/+/state/#", f"{prefix}/+/events/#"]


def clean_event(payload: dict[str, Any]) -> tuple[str, str, str | None, dict[str, Any]]:
    """(time, type, resident, details) of a lot's event, without a face or a lot's own ids."""
    details = {k: v for k, v in payload.items()
               if k not in FACE_KEYS and k not in LOT_ONLY_KEYS and k not in ("type", "time", "resident")}
    resident = payload.get("resident")
    return str(payload.get("time") or isotime(utc_now())), str(payload["type"]), \
        resident if isinstance(resident, str) else None, details


class VillageWatch:
    """Subscribes the hub's link to the lots' topics and writes what arrives (``write``, on the hub's thread)."""

    def __init__(self, link, prefix: str):
        self.prefix = prefix
        self.dropped = 0
        self.bad = 0
        self._queue: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._written = threading.Condition()  # notified after each write (``wait_until``)
        for topic in subscriptions(prefix):
            link.subscribe(topic, self._on_message)

    def _on_message(self, topic: str, payload: bytes) -> None:
        with self._lock:
            if len(self._queue) >= QUEUE_SIZE:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append((topic, payload, isotime(utc_now())))

    def write(self, store: Store) -> int:
        """Write what arrived since the last call, in one transaction; returns how many messages."""
        with self._lock:
            messages, self._queue = list(self._queue), collections.deque()
        if not messages:
            return 0
        states, events = [], []
        for topic, payload, received in messages:
            levels = topic.split("/")
            if len(levels) < 3 or levels[0] != self.prefix or levels[1] == "residents":
                continue
            lot, kind = levels[1], levels[2]
            try:
                if kind == "status" and len(levels) == 3:
                    states.append((lot, "status", payload.decode(), received))
                elif kind == "state" and len(levels) > 3:
                    states.append((lot, "/".join(levels[3:]), payload.decode(), received))
                elif kind == "events" and len(levels) > 3:
                    event = json.loads(payload)
                    if not isinstance(event, dict) or "type" not in event:
                        raise ValueError("not an event")
                    time, type, resident, details = clean_event(event)
                    events.append((lot, time, type, resident, json.dumps(details, ensure_ascii=False, sort_keys=True)))
            except (ValueError, UnicodeDecodeError):
                self.bad += 1  # a malformed message from a lot: counted, never stored
        with store.transaction():
            # a name is kept only for a resident on the hub's list: a lot's own residents stay the lot's,
            # and an event a lot queued before a removal reached it must not bring the name back
            known = {name for (name,) in store.db.execute("SELECT name FROM residents").fetchall()}
            events = [(lot, time, type, resident if resident in known else None, details)
                      for lot, time, type, resident, details in events]
            store.db.conn.executemany(
                "INSERT INTO hub_lot_state (lot, key, payload, received) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (lot, key) DO UPDATE SET payload = excluded.payload, received = excluded.received",
                states)
            store.db.conn.executemany(
                "INSERT INTO hub_lot_events (lot, time, type, resident, details) VALUES (?, ?, ?, ?, ?)", events)
        with self._written:
            self._written.notify_all()
        return len(messages)

    def wait_until(self, check, timeout: float) -> bool:
        """Wait until ``check()`` is true, trying it again after each write (tests, benchmarks)."""
        with self._written:
            return self._written.wait_for(check, timeout)


def prune(store: Store, keep_days: int, now: dt.datetime | None = None) -> int:
    moment = (now or utc_now()) - dt.timedelta(days=keep_days)
    with store.transaction():
        store.prune_passes(int(moment.timestamp()))  # visitor passes expired that long ago
        store.db.execute("DELETE FROM hub_lot_state WHERE key LIKE 'passes/%' AND substr(key, 8) NOT IN "
                         "(SELECT id FROM passes)")  # the lots' counts of passes no longer kept
        return store.db.execute("DELETE FROM hub_lot_events WHERE time < ?", [isotime(moment)]).rowcount


# --- reading, for the staff commands ---

def lots_known(store: Store, configured: list[str]) -> list[str]:
    """The lots in hub.lots, then any other lot the hub has heard from."""
    heard = [lot for (lot,) in store.db.execute("SELECT DISTINCT lot FROM hub_lot_state ORDER BY lot")]
    return list(dict.fromkeys([*configured, *heard]))


def lot_state(store: Store, lot: str) -> dict[str, Any]:
    """``{"status", "seen", "state": {key: payload}}`` of one lot (payloads parsed where JSON)."""
    state: dict[str, Any] = {}
    seen = None
    for key, payload, received in store.db.execute(
            "SELECT key, payload, received FROM hub_lot_state WHERE lot = ? ORDER BY key", [lot]):
        try:
            value = json.loads(payload)
        except ValueError:
            value = payload
        state[key] = value
        seen = received if seen is None or received > seen else seen
    status = state.pop("status", None)
    return {"lot": lot, "status": status or "never heard from", "seen": seen, "state": state}


def lot_events(store: Store, lots: list[str] | None, since: str | None = None,
               type: str | None = None) -> list[dict[str, Any]]:
    """The lots' events at the hub, oldest first; ``type`` exact or a dotted prefix, as ``events``."""
    if lots is not None and not lots:
        return []  # no lot listed or heard from yet
    where, params = [], []
    if lots is not None:
        where.append(f"lot IN ({', '.join('?' * len(lots))})")
        params += lots
    if since:
        where.append("time >= ?")
        params.append(since)
    if type:
        where.append("(type = ? OR type LIKE ?)")
        params += [type, type.rstrip(".") + ".%"]
    sql = "SELECT id, lot, time, type, resident, details FROM hub_lot_events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return [{"lot": lot, "time": time, "type": type_, "resident": resident, "details": json.loads(details)}
            for _, lot, time, type_, resident, details in store.db.execute(sql + " ORDER BY time, id", params)]
