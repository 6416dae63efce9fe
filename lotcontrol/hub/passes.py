"""Visitor passes at the hub: their uses counted across the lots, and what the hub publishes of them.

Each lot reports its uses of a pass as retained state (``state/passes/<id>``: ``{"used": n}``), kept in
``hub_lot_state`` with the lot's other state (lotcontrol.hub.village). The hub sums them and publishes,
for every pass it issued that is still valid, its per-lot counts and whether it was revoked
(lotcontrol.fleet.passes), when that changes; and its pass key, so the lots can check its passes.
"""

from __future__ import annotations

import json
import time

from ..fleet.passes import PassStateMessage, key_payload, passes_topic
from ..store import Store

STATE_PREFIX = "passes/"


def uses_by_lot(store: Store) -> dict[str, dict[str, int]]:
    """Every pass's uses at each lot, as the lots last reported them."""
    counted: dict[str, dict[str, int]] = {}
    for lot, key, payload in store.db.execute(
            "SELECT lot, key, payload FROM hub_lot_state WHERE key LIKE ?", [STATE_PREFIX + "%"]):
        try:
            used = int(json.loads(payload)["used"])
        except (ValueError, KeyError, TypeError):
            continue  # a malformed report counts nothing
        counted.setdefault(key[len(STATE_PREFIX):], {})[lot] = max(0, used)
    return counted


def pending(store: Store, now: float | None = None) -> list[tuple[str, bytes]]:
    """(topic suffix id, payload) of every valid pass whose state changed since it was published."""
    now = time.time() if now is None else now
    counted = uses_by_lot(store)
    changed = []
    for pass_id, revoked, not_after, published in store.db.execute(
            "SELECT id, revoked, not_after, published FROM passes WHERE not_after >= ?", [int(now)]).fetchall():
        payload = PassStateMessage(format=1, id=pass_id, revoked=revoked is not None, not_after=not_after,
                                   used=dict(sorted(counted.get(pass_id, {}).items()))).model_dump_json()
        if payload != published:
            changed.append((pass_id, payload.encode()))
    return changed


def mark_published(store: Store, done: list[tuple[str, bytes]]) -> None:
    if done:
        with store.transaction():
            store.db.conn.executemany("UPDATE passes SET published = ? WHERE id = ?",
                                      [(payload.decode(), pass_id) for pass_id, payload in done])


def publish(store: Store, link, prefix: str, anew: bool) -> int:
    """Hand the key (``anew``: after a connect) and every changed pass to the link; how many passes."""
    if anew:
        with store.transaction():
            store.db.execute("UPDATE passes SET published = NULL")
        link.publish(passes_topic(prefix, "key"), key_payload(store.pass_key()), retain=True, qos=1)
    done = pending(store)
    for pass_id, payload in done:
        link.publish(passes_topic(prefix, pass_id), payload, retain=True, qos=1)
    mark_published(store, done)
    return len(done)
