"""The hub: ``lotcontrol hub`` (the process that publishes residents to the lots) and ``lots``."""

from __future__ import annotations

import logging
import signal
import sys

import click

from . import App, cli, pass_app

lot_option = click.option(
    "--lots", "--lot", "lots", multiple=True, metavar="A,B",
    help="The lots the resident may enter: --lots A,B (or --lot A --lot B); on the hub only. Default on a new "
    "resident: every lot.")


def chosen_lots(app: App, lots: tuple[str, ...]) -> list[str] | None:
    """The lots named by ``--lots``/``--lot`` options (``A,B`` or repeated), checked against hub.lots; None if
    none were given. Refused off the hub: a lot's own gallery holds whoever is enrolled there."""
    from ..hub.store import NotAHub, check_lots

    if not lots:
        return None
    if not app.on_hub:
        raise NotAHub("--lots assigns residents to lots on the hub: give --hub DIR (or set hub.data_dir); "
                      "a lot's own residents are all admitted at that lot")
    named = [part.strip() for value in lots for part in value.split(",") if part.strip()]
    return check_lots(named, list(app.config.hub.lots))


def hub_store(app: App, *, read_only: bool = False):
    """The hub's database (read-only for a command that only reads), or NotAHub."""
    from ..hub.store import NotAHub

    if not app.on_hub:
        raise NotAHub("this works on the hub's database: give --hub DIR (or set hub.data_dir)")
    return app.reader if read_only else app.store


def village_lots(app: App, lot: str) -> list[str]:
    """The lots ``--lot`` names on the hub: ``all`` (hub.lots and any other lot heard from) or one lot
    the hub knows or has heard from; an error naming the lots otherwise."""
    from ..hub.store import UnknownLot
    from ..hub.village import lots_known

    known = lots_known(hub_store(app, read_only=True), list(app.config.hub.lots))
    if lot == "all":
        return known
    if lot not in known:
        listed = ", ".join(known) or "none (hub.lots lists none and no lot has published yet)"
        raise UnknownLot(f"unknown lot {lot!r}: the hub knows {listed}")
    return [lot]


@cli.command(name="lots")
@click.argument("name")
@lot_option
@click.option("--all", "every", is_flag=True, help="Let NAME enter every lot.")
@pass_app
def lots_command(app: App, name: str, lots: tuple[str, ...], every: bool) -> None:
    """Show or set the lots resident NAME may enter (on the hub); the lots learn of it within seconds.

    Without --lot or --all, shows them. A lot's gallery holds only the residents assigned to it.

    Example: lotcontrol --hub /var/lib/lotcontrol-hub lots "Anna Berg" --lot A --lot C
    """
    from ..hub.store import lots_of, set_lots

    store = hub_store(app)
    if lots and every:
        raise click.UsageError("give --lot or --all, not both")
    if every or lots:
        resident = set_lots(store, name, None if every else chosen_lots(app, lots), list(app.config.hub.lots))
    else:
        resident = store.resident(name)
    assigned = lots_of(store)[resident.id]
    click.echo(f"{resident.name!r} may enter {describe_lots(assigned)}")


def describe_lots(lots: list[str] | None) -> str:
    if lots is None:
        return "every lot"
    return "no lot" if not lots else "lot " + ", ".join(lots) if len(lots) == 1 else "lots " + ", ".join(lots)


@cli.command(name="hub")
@pass_app
def hub_command(app: App) -> None:
    """Run the hub: publish every resident, with their face templates, to the lots through the broker.

    Needs the hub's data directory (--hub DIR or hub.data_dir) and [mqtt] with TLS ([mqtt.tls]):
    templates never travel unencrypted. Staff change residents meanwhile with the usual commands
    (lotcontrol --hub DIR enroll ...); every change is published within hub.poll_seconds, retained,
    on lotcontrol/residents/<id>. Runs until Ctrl-C or SIGTERM.

    Example: lotcontrol --config /etc/lotcontrol/hub.toml hub
    """
    from ..hub.publisher import Hub

    from .run import check_config_file

    store = hub_store(app)
    config = app.config
    check_config_file(app.config_path, config)
    if not config.mqtt.enabled:
        raise click.ClickException("mqtt.enabled is false: the hub publishes through the broker; set [mqtt]")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d  %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("lotcontrol")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    hub = Hub(store, config)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, frame: hub.request_stop())
    click.echo(f"hub on {app.hub_dir}: publishing to {config.mqtt.host}:{config.mqtt.port} "
               f"(lots: {', '.join(config.hub.lots) or 'none listed in hub.lots'})")
    hub.start()
    try:
        hub.wait()
    finally:
        hub.stop()
        logger.removeHandler(handler)
