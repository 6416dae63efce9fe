"""``check-config``: validate a configuration file and print the effective settings."""

from __future__ import annotations

import click

from ..config import config_path, dump_config, expander_fields, load_config
from ..errors import ConfigError
from ..expander import check_addresses
from . import App, cli, pass_app


def unknown_groups(app: App, config) -> list[str]:
    """Residents on file here who are in an access group the configuration does not have (they would
    be refused at every hour); nothing where there is no database yet."""
    from ..errors import LotControlError
    from ..store import Store

    try:
        with Store.in_dir(app.existing_dir(), read_only=True) as store:
            residents = store.residents()
    except (LotControlError, OSError):
        return []
    return [f"resident {r.name!r} is in access group {g!r}, which [access.groups] does not have: add "
            f"[access.groups.{g}] or `lotcontrol edit {r.name!r} --groups ...`"
            for r in residents for g in r.groups if g not in config.access.groups]


@cli.command(name="check-config")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@pass_app
def check_config(app: App, path: str | None) -> None:
    """Validate the configuration and print every setting in effect.

    PATH defaults to the file given with --config (or the default path). MCP23017 expanders are
    asked whether they answer, on the I2C buses this machine has. With [mqtt] enabled, the files it
    names are checked, and a connection without TLS is refused as run refuses it for face templates.
    The face space vision.encoder needs its shipped calibration and, for faceres and fused, the
    faceres model file as measured (a missing or damaged one: run `make install`). A resident on file
    in an access group the configuration lacks is an error.

    Example: lotcontrol check-config /etc/lotcontrol/lotcontrol.toml
    """
    path = path if path is not None else app.config_path
    config = load_config(path)
    source, _ = config_path(path)
    if config.mqtt.enabled:  # the files [mqtt] names: readable, and the secrets private
        from ..fleet.mqtt import check_files
        from ..fleet.residents import templates_refused

        check_files(config.mqtt)
        refused = templates_refused(config.mqtt)  # the rule run (and the hub) apply to the residents' sync
        if refused is not None:
            raise ConfigError(f"{source}: {refused}")
    from ..vision import encoders

    encoders.require(config.vision.encoder)  # its model file present and the one measured
    problems, notes = check_addresses([(pin.bus, pin.address) for _, pin in expander_fields(config)])
    problems += unknown_groups(app, config)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    origin = f"{source}" if source.exists() else f"defaults ({source} does not exist)"
    click.echo(f"# lotcontrol configuration: {origin}")
    for note in notes:
        click.echo(f"# note: {note}")
    click.echo()
    click.echo(dump_config(config), nl=False)
