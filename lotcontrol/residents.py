"""Staff changes to the residents on file: suspend, resume, edit, remove, clear a look-alike flag,
and their cards and PINs (add and remove a card, set and clear a PIN).

The one path for each change: the command line (cli/residents.py) and the web console
(web/residents.py) both call these, so a change checks, writes and logs the same way from either.
Each runs in one transaction and logs its event in it; ``by`` (the web console's user) goes into the
event's details when given. A resident the lot holds for the hub is refused (``refuse_hub_copy``):
they are changed on the hub.
"""

from __future__ import annotations

from collections.abc import Iterable

from .credentials import card_digest, hash_pin, parse_uid
from .errors import InvalidValue, ManagedByHub
from .store import Lookalike, Resident, Store

#: The fields ``edit`` changes (besides the access mode), as ``Store.update_resident`` takes them.
EDITABLE = ("unit", "phone", "note", "valid_from", "valid_until")

def _by(by: str | None) -> dict[str, str]:
    return {"by": by} if by else {}


def refuse_hub_copy(store: Store, resident: Resident) -> None:
    """A lot's staff change only the lot's own residents: one the lot holds for the hub is changed on
    the hub (a change here would be overwritten by the hub's next message about them)."""
    if store.is_hub_copy(resident.id):
        raise ManagedByHub(f"resident {resident.name!r} comes from the hub: change them there "
                           "(lotcontrol --hub DIR ... on the hub's machine); this lot follows within seconds",
                           code="resident.hub_copy", name=resident.name)


def check_groups(groups: Iterable[str], known: Iterable[str]) -> list[str]:
    """``groups`` (names, blanks dropped) sorted, each one the configuration has (``known``:
    ``access.groups``), or InvalidValue naming the first it lacks."""
    wanted, known = sorted({g.strip() for g in groups if g.strip()}), list(known)
    unknown = [g for g in wanted if g not in known]
    if unknown:
        raise InvalidValue(f"no access group {unknown[0]!r} in the configuration (groups: "
                           f"{', '.join(known) or 'none: add [access.groups.NAME]'})", code="group.unknown",
                           group=unknown[0], known=", ".join(known))
    return wanted


def set_status(store: Store, name: str, status: str, *, by: str | None = None) -> Resident:
    """Suspend (``suspended``: refused at the gate, faces kept) or resume (``active``) a resident."""
    with store.transaction():
        refuse_hub_copy(store, store.resident(name))
        resident = store.set_status(name, status)
        store.log_event("resident.suspended" if status == "suspended" else "resident.resumed", resident.id,
                        _by(by) or None)
    return resident


def edit(store: Store, name: str, *, access_mode: str | None = None, groups: list[str] | None = None,
         antipassback: str | None = None, reset_presence: bool = False, by: str | None = None,
         **fields: str | None) -> tuple[Resident, list[str]]:
    """Change a resident's details (``fields``: EDITABLE, "" clears one), access mode, access groups
    (checked against the site's by the caller), anti-passback, or count them out (``reset_presence``:
    the lot's own, so allowed for a resident from the hub); their faces stay. Each value is checked as
    enroll checks it: nothing changes if one is refused. The resident after, and the fields that
    changed (none: nothing was written or logged)."""
    given = {field: value for field, value in fields.items() if value is not None}
    unknown = set(given) - set(EDITABLE)
    if unknown:
        raise ValueError(f"not a field of a resident: {', '.join(sorted(unknown))}")
    with store.transaction():
        before = store.resident(name)
        if given or access_mode is not None or groups is not None or antipassback is not None:
            refuse_hub_copy(store, before)
        if given:
            store.update_resident(before.name, **given)
        if access_mode is not None:
            store.set_access_mode(before.name, access_mode)
        if groups is not None:
            store.set_groups(before.name, groups)
        if antipassback is not None:
            store.set_antipassback(before.name, antipassback)
        if reset_presence:
            store.reset_presence(before.name)
        after = store.resident(before.name)
        changed = [field for field in (*EDITABLE, "access_mode", "access_groups", "antipassback", "presence_reset")
                   if getattr(before, field) != getattr(after, field)]
        if changed:
            store.log_event("resident.edited", after.id, {"fields": changed, **_by(by)})
    return after, changed


def remove(store: Store, name: str, *, by: str | None = None) -> Resident:
    """Erase a resident, every face template and entry snapshot of them (Store.remove); logged."""
    with store.transaction():
        refuse_hub_copy(store, store.resident(name))
        removed = store.remove(name)
        store.log_event("resident.removed", None, {"templates_erased": removed.templates, **_by(by)})
    return removed


def clear_lookalike(store: Store, first: str, second: str, *, by: str | None = None) -> Lookalike:
    """Staff checked that two residents flagged as look-alikes are different people; logged."""
    with store.transaction():
        pair = store.clear_lookalike(first, second)
        store.log_event("resident.lookalike_cleared", None, {"first": pair.first, "second": pair.second, **_by(by)})
    return pair


def card_tag(digest: str) -> str:
    """How a card on file is shown and named: the first 8 hex digits of its keyed digest (not its
    number, which is not kept; a digest cannot be turned back into one)."""
    return digest[:8]


def add_card(store: Store, name: str, *, uid: str | None = None, digest: str | None = None,
             by: str | None = None) -> int:
    """Put a card on file for ``name``: typed (``uid``, FORMAT:NUMBER) or read at the reader (its
    ``digest``, from the controller); logged without it. How many cards they have after."""
    if (uid is None) == (digest is None):
        raise ValueError("add_card takes a uid or a digest")
    if digest is None:
        digest = card_digest(store.card_key(), parse_uid(uid))
    with store.transaction():
        resident = store.resident(name)
        refuse_hub_copy(store, resident)
        store.add_card(resident.name, digest)
        cards, _ = store.credential_counts(resident.id)
        store.log_event("resident.card_added", resident.id, {"cards": cards, **_by(by)})
    return cards


def remove_cards(store: Store, name: str, *, uid: str | None = None, tag: str | None = None,
                 by: str | None = None) -> int:
    """Remove ``name``'s card typed (``uid``), or the card shown as ``tag`` (card_tag), or every card of
    theirs (neither); how many went, or InvalidValue when none did (nothing logged)."""
    digest = None if uid is None else card_digest(store.card_key(), parse_uid(uid))
    with store.transaction():
        resident = store.resident(name)
        refuse_hub_copy(store, resident)
        if tag is not None:
            digest = next((d for d, _ in store.cards_of(resident.name) if card_tag(d) == tag.strip().lower()), None)
            if digest is None:
                raise InvalidValue(f"{resident.name!r} has no card {tag.strip()!r} on file", code="card.no_such_tag",
                                   name=resident.name, tag=tag.strip())
        removed = store.remove_cards(resident.name, digest)
        if not removed:
            if digest is not None:
                raise InvalidValue(f"{resident.name!r} has no such card on file", code="card.no_such",
                                   name=resident.name)
            raise InvalidValue(f"{resident.name!r} has no card on file", code="card.none", name=resident.name)
        store.log_event("resident.card_removed", resident.id, {"removed": removed, **_by(by)})
    return removed


def set_pin(store: Store, name: str, pin: str | None = None, *, hashed: str | None = None,
            by: str | None = None) -> Resident:
    """Set ``name``'s PIN: ``pin`` (4 to 12 digits) hashed here with argon2id, or ``hashed`` already
    (credentials.hash_pin_apart: the web console hashes it in a child process). Logged without it."""
    if (pin is None) == (hashed is None):
        raise ValueError("set_pin takes a pin or its hash")
    hashed = hashed if hashed is not None else hash_pin(pin)  # checked, then about 50 ms on a Pi 4: not in the transaction
    with store.transaction():
        resident = store.resident(name)
        refuse_hub_copy(store, resident)
        store.set_pin(resident.name, hashed)
        store.log_event("resident.pin_set", resident.id, _by(by) or None)
    return resident


def clear_pin(store: Store, name: str, *, by: str | None = None) -> Resident:
    """Remove ``name``'s PIN from file (a resident who enters with a PIN cannot, until one is set
    again); InvalidValue when they have none."""
    with store.transaction():
        resident = store.resident(name)
        refuse_hub_copy(store, resident)
        if not store.clear_pin(resident.name):
            raise InvalidValue(f"{resident.name!r} has no PIN on file", code="pin.none", name=resident.name)
        store.log_event("resident.pin_cleared", resident.id, _by(by) or None)
    return resident
