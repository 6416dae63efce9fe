"""``events``: the event log."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Callable

import click

from ..store import isotime, utc_now
from . import App, cli, echo_json, pass_app

_AGO = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: dt.datetime) -> str:
    """``30m``, ``24h``, ``7d`` before ``now``, or an ISO date or time (UTC unless it says otherwise)."""
    ago = _AGO.match(text.strip())
    if ago:
        return isotime(now - dt.timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))}))
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a time (2026-11-28 or 2026-11-28T08:00) nor an age (30m, 24h, 7d)",
            param_hint="--since") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return isotime(moment)


@cli.group(name="events", invoke_without_command=True)
@click.option("--since", metavar="TIME", help="Only events at or after TIME: 2026-11-28, 2026-11-28T08:00, 24h, 7d.")
@click.option("--type", "type_", metavar="TYPE", help="Only events of TYPE, e.g. access.denied or access.")
@click.option("--lot", metavar="LOT|all",
              help="On the hub: the events the lots published (every lot with `all`, or one lot).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def events_command(ctx: click.Context, since: str | None, type_: str | None, lot: str | None, as_json: bool) -> None:
    """Show the event log, newest last; on the hub, with --lot, the lots' events.

    Example: lotcontrol events --since 24h --type access
    Example: lotcontrol --hub /var/lib/lotcontrol-hub events --lot all --type fire
    """
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    since_time = parse_since(since, utc_now()) if since else None
    if lot is not None:
        village_events(app, lot, since_time, type_, as_json)
        return
    if type_:
        check_type(type_, lambda: bool(app.reader.events(type=type_)))
    events = app.reader.events(since=since_time, type=type_)
    if as_json:
        echo_json([e.as_json() for e in events])
        return
    for event in events:
        details = json.dumps(event.details, ensure_ascii=False) if event.details else ""
        click.echo(f"#{event.id:<6} {event.shown_time}  {event.type:<20} {event.resident or '-'}  {details}".rstrip())
    if any(event.unsynced for event in events):
        click.echo("~ the clock was not synchronised (NTP) then: that time may be hours or years off "
                   "(docs/troubleshooting.md)")


def check_type(type_: str, in_log: Callable[[], bool]) -> None:
    """Refuse a ``--type`` that is no event type nor a dotted prefix of one (a typo would print nothing
    and look like a quiet log); a type only the log holds (an older version's) is kept."""
    from .. import event_types

    if event_types.matching(type_) or in_log():
        return
    close = event_types.close_to(type_)
    hint = (f"did you mean {' or '.join(close)}?" if close
            else f"the event types are {', '.join(event_types.TYPES)}")
    raise click.ClickException(f"--type {type_!r} is no event type nor the start of one (such as access): {hint}")


def village_events(app: App, lot: str, since: str | None, type_: str | None, as_json: bool) -> None:
    from ..hub.village import lot_events
    from .hub import hub_store, village_lots

    lots = village_lots(app, lot)
    store = hub_store(app, read_only=True)
    if type_:
        check_type(type_, lambda: bool(lot_events(store, None, type=type_)))
    events = lot_events(store, lots, since=since, type=type_)
    if as_json:
        echo_json(events)
        return
    for event in events:
        details = json.dumps(event["details"], ensure_ascii=False) if event["details"] else ""
        shown = ("~" if event["details"].get("clock_synced") is False else "") + event["time"]  # see events
        click.echo(f"{shown}  {event['lot']:<6} {event['type']:<20} {event['resident'] or '-'}  "
                   f"{details}".rstrip())


@events_command.command(name="verify")
@pass_app
def events_verify(app: App) -> None:
    """Check the event log's hash chain and report the first broken link.

    Example: lotcontrol events verify
    """
    count, broken = app.reader.verify_events()
    if broken:
        raise click.ClickException(f"{count} event(s) check out, then: {broken}")
    click.echo(f"{count} event(s), hash chain intact")
