"""``check-config``: validate a configuration file and print the effective settings."""

from __future__ import annotations

import click

from ..config import config_path, dump_config, load_config
from . import App, cli, pass_app


@cli.command(name="check-config")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@pass_app
def check_config(app: App, path: str | None) -> None:
    """Validate the configuration and print every setting in effect.

    PATH defaults to the file given with --config (or the default path).

    Example: lotcontrol check-config /etc/lotcontrol/lotcontrol.toml
    """
    path = path if path is not None else app.config_path
    config = load_config(path)
    if config.mqtt.enabled:  # the files [mqtt] names: readable, and the secrets private
        from ..fleet.mqtt import check_files

        check_files(config.mqtt)
    source, _ = config_path(path)
    origin = f"{source}" if source.exists() else f"defaults ({source} does not exist)"
    click.echo(f"# lotcontrol configuration: {origin}\n")
    click.echo(dump_config(config), nl=False)
