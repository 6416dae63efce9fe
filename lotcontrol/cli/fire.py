"""``fire status``, ``fire reset``, ``fire drill``: the fire watch of a running controller."""

from __future__ import annotations


import click

from . import App, ask_controller, cli, echo_json, pass_app


@cli.group(name="fire")
def fire_group() -> None:
    """The fire watch of the running controller."""


@fire_group.command(name="status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def fire_status(app: App, as_json: bool) -> None:
    """Each fire zone: state, faults, contacts, probe readings and whether it may charge.

    Example: lotcontrol fire status --json
    """
    zones = ask_controller(app, "fire.status")["zones"]
    if as_json:
        echo_json(zones)
        return
    if not zones:
        click.echo("no fire zones configured")
    for zone in zones:
        charging = {True: "charging on", False: "charging OFF", None: "no charger output"}[zone["charging"]]
        line = f"{zone['zone']}: {zone['state'].upper()}{' (drill)' if zone['drill'] else ''}, {charging}"
        click.echo(line)
        for sensor, reason in zone["faults"].items():
            click.echo(f"  fault {sensor}: {reason}")
        for sensor, state in zone["contacts"].items():
            click.echo(f"  {sensor}: {state}")
        for probe, value in zone["probes"].items():
            click.echo(f"  {probe}: {value if isinstance(value, str) else f'{value:.1f} °C'}")


@fire_group.command(name="reset")
@pass_app
def fire_reset(app: App) -> None:
    """Reset the fire alarm once every input reads normal again (refused, with the reason, before).

    Example: lotcontrol fire reset
    """
    click.echo(ask_controller(app, "fire.reset")["message"])


@fire_group.command(name="drill")
@click.option("--zone", required=True, help="The fire zone, as named in the configuration.")
@pass_app
def fire_drill(app: App, zone: str) -> None:
    """Run the alarm actions of ZONE end to end (charging off, siren, gate held open), logged as a
    drill, until `lotcontrol fire reset`.

    Example: lotcontrol fire drill --zone east-row
    """
    click.echo(ask_controller(app, "fire.drill", zone=zone)["message"])
