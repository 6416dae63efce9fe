"""The energy report for billing: the stored sessions' kWh per resident and per port (what
``lotcontrol charging report`` prints and the rig checks after a restart)."""

from __future__ import annotations


def report(sessions: list[dict]) -> list[dict]:
    """Totals per resident (sessions of unassigned bays under "(no resident)"), then per port."""
    totals: dict[tuple[str, str], dict] = {}
    for s in sessions:
        for by, name in (("resident", s["resident"] or "(no resident)"), ("port", s["port"])):
            row = totals.setdefault((by, name), {"by": by, "name": name, "sessions": 0, "kwh": 0.0, "open": 0})
            row["sessions"] += 1
            row["kwh"] += s["kwh"] or 0.0
            row["open"] += s["end"] is None
    return sorted(totals.values(), key=lambda r: (r["by"] != "resident", r["name"]))
