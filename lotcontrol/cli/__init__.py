"""The staff command line: ``lotcontrol [--config PATH] [--data-dir DIR] COMMAND``.

Each command opens what it needs through :class:`App`, makes one library call and prints the result.
Every :class:`~lotcontrol.errors.LotControlError` becomes ``Error: …`` and exit code 1.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from functools import cached_property
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..config import CONFIG_ENV, DATA_DIR_ENV, Config, load_config, prepare_data_dir
from ..errors import LotControlError, StoreError
from ..store import Store, is_locked


HUB_ENV = "LOTCONTROL_HUB"
#: Seconds a reading command waits for a lock another process holds on the database, then says so
#: (WAL readers never wait for a writer: only an exclusive lock, e.g. a sqlite3 shell's, holds them).
READ_TIMEOUT = 2.0
#: Seconds a command that writes waits for another writer (the controller's writes take milliseconds).
WRITE_TIMEOUT = 10.0


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
        """The lot's data directory, created if need be (for the controller and commands that write)."""
        return prepare_data_dir(self.data_dir_arg)

    @cached_property
    def hub_dir(self):
        """Where the hub's data directory is when the command works on the hub (--hub DIR, or
        hub.data_dir), else None; created only by what writes there (``store``)."""
        chosen = self.hub_arg or self.config.hub.data_dir
        return None if chosen is None else Path(chosen)

    def existing_dir(self) -> Path:
        """The data directory (the hub's on the hub) for a command that only reads or asks the
        controller: checked, never created (a mistyped path is an error, not a new empty directory)."""
        return prepare_data_dir(self.hub_dir if self.on_hub else self.data_dir_arg, create=False)

    @property
    def on_hub(self) -> bool:
        return self.hub_dir is not None

    @cached_property
    def store(self) -> Store:
        """The lot's database, or the hub's when the command works on the hub, opened to write (and
        migrated); a lock held past WRITE_TIMEOUT is an error."""
        _ = self.config  # a bad configuration is reported before anything touches the database
        if self.on_hub:
            from ..hub.store import open_hub

            store = open_hub(prepare_data_dir(self.hub_dir), busy_timeout=WRITE_TIMEOUT)
        else:
            store = Store.in_dir(self.data_dir, busy_timeout=WRITE_TIMEOUT)
        click.get_current_context().call_on_close(store.close)
        return store

    @cached_property
    def reader(self) -> Store:
        """The same database opened read-only, for the commands that only read: never created nor
        migrated, it does not wait for a writer (WAL), and a lock held past READ_TIMEOUT is an error."""
        _ = self.config
        store = Store.in_dir(self.existing_dir(), read_only=True, busy_timeout=READ_TIMEOUT)
        click.get_current_context().call_on_close(store.close)
        if self.on_hub:
            from ..hub.store import is_hub

            if not is_hub(store):
                raise StoreError(f"database {store.path} is not set up as the hub's yet: start `lotcontrol hub` "
                                 "or run a command that writes on the hub (e.g. enroll) first")
        return store

    def users(self):
        """The web console's users (lotcontrol.web.users), in the lot's data directory."""
        from ..web.users import Users

        return Users(self.data_dir)

    def opened_store(self) -> Store | None:
        """The database this command opened, if any (to name it in an error)."""
        return self.__dict__.get("store") or self.__dict__.get("reader")


class Group(click.Group):
    """A click group that shows user mistakes as ``Error: …`` instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LotControlError as exc:
            raise click.ClickException(str(exc)) from None
        except sqlite3.OperationalError as exc:  # a lock met after the open, past the busy timeout
            store = ctx.obj.opened_store() if isinstance(ctx.obj, App) else None
            if not is_locked(exc) or store is None:
                raise
            raise click.ClickException(str(store.locked())) from None


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

    answer = request(prepare_data_dir(app.data_dir_arg, create=False), command, **args)
    if not answer.get("ok"):
        raise click.ClickException(answer.get("message", "the controller refused"))
    return answer


def echo_json(data: Any) -> None:
    """What every ``--json`` prints: one document, indented, non-ASCII as it is."""
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def main() -> None:
    cli(prog_name="lotcontrol")


from . import bench, charging, config_cmd, credentials, events, fire, hub, residents, rig, run, status, visitors, web  # noqa: E402, F401  (they register their commands on cli)

__all__ = ["cli", "main", "pass_app", "App", "ask_controller", "echo_json"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
