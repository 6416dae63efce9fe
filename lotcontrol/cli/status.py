"""``status``: the running controller at a glance; ``bays``: free bays, and correcting a count."""

from __future__ import annotations

import click

from ..errors import StoreError
from . import App, ask_controller, cli, echo_json, pass_app


def gallery_line(g: dict) -> str:
    """The gallery on file, the limit its stranger risk gave and what that costs, in one line (and
    one more for the faces on file with dlib alone, matched in their own gallery)."""
    if g.get("refused"):  # the worker decides no face: its space's model is missing or damaged
        return f"faces  NOT MATCHED in the {g.get('space')} space: {g['refused']}"
    risk = "" if g["max_stranger_rate"] is None else f" for a stranger risk of {100 * g['max_stranger_rate']:g} %"
    line = (f"faces  {g['residents']} residents, {g['templates']} templates: accept limit {g['accept_limit']:.2f}{risk}"
            f" ({g['population']}); expected strangers accepted {100 * g['expected_stranger_rate']:.2f} %, "
            f"residents refused about {100 * g['expected_refused']:.0f} % of single photos; "
            f"{g['lookalikes']} look-alike(s)" + (f" [{g['space']} space]" if g.get("space", "dlib") != "dlib" else "")
            + (f"; 1:1 limit {g['one_to_one_limit']:.2f} (face_and_card, face_and_pin)"
               if g.get("one_to_one_limit") is not None else ""))
    if g.get("dlib_only"):
        d = g["dlib_only"]
        line += (f"\nfaces  + {d['residents']} residents' {d['templates']} templates with dlib alone (`residents check`): "
                 f"accept limit {d['accept_limit']:.2f}, expected strangers accepted {100 * d['expected_stranger_rate']:.2f} %")
    if not g.get("risk_met", True):
        line += "\nfaces  THE STRANGER RISK CANNOT BE MET with this gallery: see docs/configuration.md, How a face is matched"
    return line


def access_lines(access: dict) -> list[str]:
    """Schedules and anti-passback, as `status` says them (nothing where neither is used)."""
    lines = []
    if access["groups"]:
        said = {True: "open", False: "shut", None: "UNKNOWN (clock not synchronised: its residents are refused)"}
        lines.append("groups " + ", ".join(f"{name} {said[state]}" for name, state in access["groups"].items()))
    if access["antipassback"] != "off" or access["inside"]:
        names = f": {', '.join(access['inside_residents'])}" if access["inside_residents"] else ""
        lines.append(f"anti-passback {access['antipassback']}, {access['inside']} counted inside{names}")
    return lines


@cli.command(name="status")
@click.option("--lot", metavar="LOT|all",
              help="On the hub: the lots as they published it (every lot with `all`, or one lot).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def status_command(app: App, lot: str | None, as_json: bool) -> None:
    """One screen: gate and door, free bays per zone, fire per zone, the vision worker, last events.

    On the hub, --lot all gives every lot's, from what the lots published.

    Example: lotcontrol status
    Example: lotcontrol --hub /var/lib/lotcontrol-hub status --lot all
    """
    if lot is not None:
        village_status(app, lot, as_json)
        return
    status = ask_controller(app, "status")["status"]
    try:  # the live state above stands even when the database cannot be read
        store = app.reader
        with store.lock_errors():
            events, database = [e.as_json() for e in store.events()[-5:]], None
    except StoreError as exc:
        events, database = None, str(exc)
    if as_json:
        echo_json({**status, "last_events": events, "database_error": database})
        return
    if status.get("clock_synced") is False:
        click.echo(f"clock  NOT SYNCHRONISED: event times are marked ~ and may be far off; validity dates are not "
                   "judged, residents in access groups are refused (see docs/troubleshooting.md)")
    door = f", door {status['door'].upper()}" if status["door"] else ""
    held = " — HELD OPEN" if status["door_held_open"] else ""
    fire_hold = " (held open: FIRE)" if status["fire_hold"] else ""
    click.echo(f"gate   {status['gate'].upper()}{fire_hold}{door}{held}")
    for zone, counts in status["bays"].items():
        unknown = f", {counts['unknown']} UNKNOWN" if counts["unknown"] else ""
        click.echo(f"bays   {zone}: {counts['free']} free, {counts['occupied']} occupied{unknown}")
    if status["lot_full"]:
        click.echo("bays   LOT FULL")
    elif status.get("bays_unknown"):
        click.echo("bays   free bays UNKNOWN (sensors in fault): residents are admitted")
    for zone in status["fire"]:
        faults = f", fault: {', '.join(zone['faults'])}" if zone["faults"] else ""
        click.echo(f"fire   {zone['zone']}: {zone['state'].upper()}{faults}")
    from .charging import port_lines

    for line in port_lines(status.get("charging") or []):
        click.echo(f"port   {line}")
    vision, camera = status["vision"], status.get("camera")
    if vision is None:
        click.echo("vision not running")
    else:
        lost = camera is not None and camera["state"] == "lost"
        if not vision["up"]:
            health = f"DOWN (silent for {vision['silent_seconds']} s): face entry is shut"
        elif vision.get("starting"):
            health = f"STARTING (loading the face models for {vision['silent_seconds']} s): face entry is shut"
        else:
            health = "NO CAMERA: face entry is shut" if lost else "ok"
        click.echo(f"vision {health}, {vision['frames']} frames, {vision['dropped']} dropped, "
                   f"{vision['restarts']} restart(s)")
        if camera is not None:
            click.echo(f"camera LOST since {camera['since']}: {camera['detail']}" if lost else
                       "camera ok" if vision["frames"] else "camera no frame yet")
    reader = status.get("reader")
    if reader is not None:
        waiting = f", waiting for the {reader['waiting_for'].upper() if reader['waiting_for'] == 'pin' else reader['waiting_for']}" \
            f" (access.factor_window_seconds)" if reader["waiting_for"] else ""
        locked = "keypad LOCKED (wrong PINs)" if reader["keypad_locked"] else "ok"
        click.echo(f"reader {locked}{waiting}")
    access = status.get("access")
    if access is not None:
        for line in access_lines(access):
            click.echo(f"access {line}")
    gallery = status.get("gallery")
    if gallery:
        click.echo(gallery_line(gallery))
    mqtt = status.get("mqtt")
    if mqtt is not None:
        link = f"connected to {mqtt['broker']}" if mqtt["connected"] else f"NOT CONNECTED to {mqtt['broker']}"
        dropped = f", {mqtt['dropped']} DROPPED (queue full)" if mqtt["dropped"] else ""
        click.echo(f"mqtt   {link}, {mqtt['sent']} sent, {mqtt['queued']} waiting{dropped}")
    if status["store_degraded"]:
        click.echo(f"store  {status['events_waiting']} event(s) waiting: the database cannot be written")
    if status["safety_state_error"]:
        click.echo(f"safety the latched state cannot be saved: {status['safety_state_error']}")
    if status["errors"]:
        click.echo(f"errors {status['errors']} message(s) failed in the controller since it started "
                   "(controller.error in the events)")
    if database is not None:
        click.echo(f"events unavailable: {database}")
    for event in events or []:
        shown = event["time"] if event.get("clock_synced", True) else f"~{event['time']}"
        click.echo(f"event  {shown}  {event['type']}  {event['resident'] or ''}".rstrip())


def village_status(app: App, lot: str, as_json: bool) -> None:
    """Each lot as the hub last heard it: availability, gate, door, fire, bays, ports, vision, store, and
    its last alerts."""
    from ..alerts import SEVERITY
    from ..hub.village import lot_events, lot_state
    from .hub import hub_store, village_lots

    store = hub_store(app, read_only=True)
    lots = []
    for name in village_lots(app, lot):
        view = lot_state(store, name)
        view["last_alerts"] = [e for e in lot_events(store, [name]) if e["type"] in SEVERITY][-3:]
        lots.append(view)
    if as_json:
        echo_json(lots)
        return
    for view in lots:
        state = view["state"]
        seen = f" (last heard {view['seen']})" if view["seen"] else ""
        click.echo(f"lot {view['lot']}  {str(view['status']).upper()}{seen}")
        if "gate" in state:
            door = f", door {state['door'].upper()}" if "door" in state else ""
            click.echo(f"  gate   {str(state['gate']).upper()}{door}")
        for key, value in state.items():
            kind, _, name = key.partition("/")
            if kind == "fire":
                faults = f", fault: {', '.join(value['faults'])}" if value.get("faults") else ""
                click.echo(f"  fire   {name}: {value['state'].upper()}{faults}{' (drill)' if value.get('drill') else ''}")
            elif kind == "bays":
                click.echo(f"  bays   {name}: {value['free']} free, {value['occupied']} occupied")
            elif kind == "ports":
                watts = "" if value.get("watts") is None else f", {value['watts']} W"
                kwh = "" if not value.get("kwh") else f", {value['kwh']} kWh"
                last = f", last stop {value['last_stop']}" if value.get("last_stop") else ""
                click.echo(f"  port   {name}: {value['state']}{watts}{kwh}{last}")
        if isinstance(state.get("access"), dict):  # published without names
            for line in access_lines({"inside_residents": [], **state["access"]}):
                click.echo(f"  access {line}")
        if isinstance(state.get("vision"), dict):
            click.echo(f"  vision {'ok' if state['vision']['up'] else 'DOWN'}")
        if state.get("store") == "degraded":
            click.echo("  store  DEGRADED: the lot's database cannot be written")
        for event in view["last_alerts"]:
            click.echo(f"  alert  {event['time']}  {SEVERITY[event['type']]}  {event['type']}")


@cli.group(name="bays", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def bays_group(ctx: click.Context, as_json: bool) -> None:
    """Free and occupied bays per zone and per bay, with since when.

    Example: lotcontrol bays --json
    """
    if ctx.invoked_subcommand is not None:
        return
    zones = ask_controller(ctx.find_object(App), "bays.status")["zones"]
    if as_json:
        echo_json(zones)
        return
    if not zones:
        click.echo("no bay zones configured")
    for zone in zones:
        click.echo(f"{zone['zone']}: {zone['free']} free, {zone['occupied']} occupied, {zone['unknown']} unknown")
        for bay in zone["bays"]:
            fault = f" ({bay['fault']})" if bay["fault"] else " (suspect: no change for long)" if bay.get("suspect") else ""
            click.echo(f"  {bay['bay']}: {bay['state']}{fault} for {_duration(bay['for_seconds'])}")


def _duration(seconds: int) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"


@bays_group.command(name="set")
@click.option("--zone", required=True, help="A zone counted by the beams.")
@click.option("--occupied", type=int, required=True, help="How many of its bays are occupied now.")
@pass_app
def bays_set(app: App, zone: str, occupied: int) -> None:
    """Correct the count of a zone counted by passages (logged as bays.count_set).

    Example: lotcontrol bays set --zone yard --occupied 12
    """
    click.echo(ask_controller(app, "bays.set", zone=zone, occupied=occupied)["message"])
