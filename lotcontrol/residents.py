"""Staff changes to the residents on file: suspend, resume, edit, remove, clear a look-alike flag.

The one path for each change: the command line (cli/residents.py) and the web console
(web/residents.py) both call these, so a change checks, writes and logs the same way from either.
Each runs in one transaction and logs its event in it; ``by`` (the web console's user) goes into the
event's details when given. A resident the lot holds for the hub is refused (``refuse_hub_copy``):
they are changed on the hub.
"""

from __future__ import annotations

from .store import Lookalike, Resident, Store

#: The fields ``edit`` changes (besides the access mode), as ``Store.update_resident`` takes them.
EDITABLE = ("unit", "phone", "note", "valid_from", "valid_until")

def _by(by: str | None) -> dict[str, str]:
    return {"by": by} if by else {}


def refuse_hub_copy(store: Store, resident: Resident) -> None:
    """A lot's staff change only the lot's own residents: one the lot holds for the hub is changed on
    the hub (a change here would be overwritten by the hub's next message about them)."""
    from .fleet.residents import is_hub_copy
    from .hub.store import ManagedByHub

    if is_hub_copy(store, resident.id):
        raise ManagedByHub(f"resident {resident.name!r} comes from the hub: change them there "
                           "(lotcontrol --hub DIR ... on the hub's machine); this lot follows within seconds")


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
