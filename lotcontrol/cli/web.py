"""``web``: the staff web console (its own process) and its users."""

from __future__ import annotations

import click

from . import App, cli, echo_json, pass_app


@cli.group(name="web", invoke_without_command=True)
@click.pass_context
def web_group(ctx: click.Context) -> None:
    """Serve the staff web console ([web] host and port; HTTPS with [web.tls]) until Ctrl-C or SIGTERM.

    It asks the running controller through its control socket and reads the database read-only.

    Example: lotcontrol web
    Example: lotcontrol web user add wang --role staff
    """
    if ctx.invoked_subcommand is not None:
        return
    import os
    import sys

    from ..config import config_path

    app: App = ctx.find_object(App)
    config = app.config  # a bad configuration is reported here, before anything starts
    data_dir = app.existing_dir()
    if not app.users().list():
        raise click.ClickException("no web user yet: add one first with `lotcontrol web user add NAME --role safety`")
    scheme = "https" if config.web.tls else "http"
    click.echo(f"lotcontrol web: {scheme}://{config.web.host}:{config.web.port}/ (data {data_dir})")
    sys.stdout.flush()
    path, named = config_path(app.config_path)
    os.execv(sys.executable, [sys.executable, "-m", "lotcontrol.web", "--data-dir", str(data_dir),
                              *(["--config", str(path)] if named or path.exists() else [])])


@web_group.group(name="user")
def user_group() -> None:
    """The web console's users (DATA_DIR/web-users.json): viewer, staff or safety officer."""


@user_group.command(name="add")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "staff", "safety"]), required=True,
              help="viewer: reads; staff: also opens the gate; safety: also fire drills and resets.")
@click.password_option("--password", prompt="Password", confirmation_prompt=True,
                       help="Asked twice, hidden, when not given (not given on a shared machine: it stays in the shell's history).")
@pass_app
def user_add(app: App, name: str, role: str, password: str) -> None:
    """Add a user of the web console.

    Example: lotcontrol web user add wang --role staff
    """
    user = app.users().add(name, role, password)
    app.store.log_event("web.user_added", None, {"user": user.name, "role": user.role})
    click.echo(f"web user {user.name} added ({user.role})")


@user_group.command(name="remove")
@click.argument("name")
@pass_app
def user_remove(app: App, name: str) -> None:
    """Remove a user of the web console; their sessions end at once.

    Example: lotcontrol web user remove wang
    """
    user = app.users().remove(name)
    app.store.log_event("web.user_removed", None, {"user": user.name, "role": user.role})
    click.echo(f"web user {user.name} removed")


@user_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def user_list(app: App, as_json: bool) -> None:
    """The web console's users with their roles and languages.

    Example: lotcontrol web user list
    """
    users = app.users().list()
    if as_json:
        echo_json([{"name": u.name, "role": u.role, "language": u.language} for u in users])
        return
    if not users:
        click.echo("no web users (add one with `lotcontrol web user add NAME --role ROLE`)")
    for user in users:
        click.echo(f"{user.name:<20} {user.role:<8} {user.language}")
