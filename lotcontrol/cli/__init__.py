"""The staff command line: ``lotcontrol [--config PATH] [--data-dir DIR] COMMAND``.

Each command opens what it needs through :class:`App`, makes one library call and prints the result.
Every :class:`~lotcontrol.errors.LotControlError` becomes ``Error: …`` and exit code 1.
"""

from __future__ import annotations

import json
import sys
from functools import cached_property
from typing import Any

import click

from .. import __version__
from ..config import CONFIG_ENV, DATA_DIR_ENV, Config, load_config, prepare_data_dir
from ..errors import LotControlError
from ..store import Store


HUB_ENV = "LOTCONTROL_HUB"


class App:
    """What a command works on, opened on first use and closed when the command ends."""

    def __init__(self, config_path: str | None, data_dir: str | None, hub: str | None = None):
        self.config_path = config_path
        self.data_dir_arg = data_dir
        self.hub_arg = hub

    @cached_property
    def config(self) -> Config:
        return load_config(self.config_path)

    @cached_property
    def data_dir(self):
        return prepare_data_dir(self.data_dir_arg)

    @cached_property
    def hub_dir(self):
        """The hub's data directory when the command works on the hub (--hub DIR, or hub.data_dir), else None."""
        chosen = self.hub_arg or self.config.hub.data_dir
        return None if chosen is None else prepare_data_dir(chosen)

    @property
    def on_hub(self) -> bool:
        return self.hub_dir is not None

    @cached_property
    def store(self) -> Store:
        """The lot's database, or the hub's when the command works on the hub."""
        _ = self.config  # a bad configuration is reported before anything touches the database
        if self.on_hub:
            from ..hub.store import open_hub

            store = open_hub(self.hub_dir)
        else:
            store = Store.in_dir(self.data_dir)
        click.get_current_context().call_on_close(store.close)
        return store


class Group(click.Group):
    """A click group that shows user mistakes as ``Error: …`` instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LotControlError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar=CONFIG_ENV,
              help=f"Configuration file (TOML). [env {CONFIG_ENV}; default ~/.config/lotcontrol/lotcontrol.toml]")
@click.option("--data-dir", type=click.Path(file_okay=False), envvar=DATA_DIR_ENV,
              help=f"Where the database lives. [env {DATA_DIR_ENV}; default ~/.local/share/lotcontrol]")
@click.option("--hub", "hub", type=click.Path(file_okay=False), envvar=HUB_ENV,
              help=f"Work on the hub's database in this directory (every lot's residents). [env {HUB_ENV}; "
              "default hub.data_dir]")
@click.version_option(__version__, prog_name="lotcontrol")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, data_dir: str | None, hub: str | None) -> None:
    """Controller for an e-bike charging lot: residents, faces, gate, bays and fire watch.

    Example: lotcontrol enroll "Anna Berg" anna1.jpg anna2.jpg --unit 4B
    """
    ctx.obj = App(config_path, data_dir, hub)


pass_app = click.make_pass_decorator(App)


def ask_controller(app: App, command: str, **args) -> dict:
    """Send one command to the controller running on the app's data directory; its refusal becomes
    ``Error: …``."""
    from ..control_socket import request

    answer = request(app.data_dir, command, **args)
    if not answer.get("ok"):
        raise click.ClickException(answer.get("message", "the controller refused"))
    return answer


def echo_json(data: Any) -> None:
    """What every ``--json`` prints: one document, indented, non-ASCII as it is."""
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def main() -> None:
    cli(prog_name="lotcontrol")


from . import bench, charging, config_cmd, events, fire, hub, residents, rig, run, status  # noqa: E402, F401  (they register their commands on cli)

__all__ = ["cli", "main", "pass_app", "App", "ask_controller", "echo_json"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
