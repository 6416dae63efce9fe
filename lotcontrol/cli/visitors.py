"""Visitor passes: visitor add, visitor list, visitor revoke (lotcontrol.passes).

A pass is signed with the hub's pass key on the hub (--hub: it opens the lots it names, or every lot)
or with the lot's own key on a lone lot. Its QR code is printed in the terminal and, with --png, written
as a PNG for the visitor's phone (owner-only file). The pass's text is never logged and never kept: the
database keeps its id, visitor, lots, time and uses; the events name the pass id and the visitor.

The QR code is made with segno (pure Python, no dependency, kept up to date on PyPI since 2016; it
writes terminal blocks and PNG itself, without Pillow).
"""

from __future__ import annotations

import io
import os

import click

from .. import passes
from ..store import utc_now
from . import App, cli, echo_json, pass_app
from .hub import chosen_lots, lot_option

PNG_SCALE = 8  # pixels per module: a version 8 code is about 500 px, sharp on a phone held to the camera


@cli.group(name="visitor")
def visitor_group() -> None:
    """Visitor passes: a QR code the gate camera reads, valid for a time and a number of entries."""


@visitor_group.command(name="add")
@click.argument("name")
@click.option("--valid", "valid", default="2h", show_default=True, metavar="DURATION",
              help="How long the pass is valid from now: 90m, 2h, 3d (at most 30 days).")
@click.option("--uses", type=click.IntRange(1, passes.MAX_USES), default=1, show_default=True,
              help="How many entries it allows (across every lot it opens).")
@lot_option
@click.option("--png", "png", type=click.Path(dir_okay=False, writable=True),
              help="Also write the QR code as a PNG for the visitor's phone (readable by you only).")
@pass_app
def visitor_add_command(app: App, name: str, valid: str, uses: int, lots: tuple[str, ...], png: str | None) -> None:
    """Issue a pass for visitor NAME and print its QR code.

    Example: lotcontrol --hub /srv/hub visitor add "Courier Li" --valid 2h --uses 1 --lots east --png li.png
    """
    import segno

    visitor = " ".join(name.split())
    if not visitor or len(visitor) > 100 or not visitor.isprintable():
        raise click.ClickException("a visitor's name is 1 to 100 printable characters")
    try:
        until = utc_now() + passes.parse_duration(valid)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if lots and not app.on_hub:
        raise click.ClickException("--lots names the lots a pass opens, on the hub (--hub DIR or hub.data_dir); "
                                   "a lone lot's passes open that lot")
    chosen = chosen_lots(app, lots)
    store = app.store
    visitor_pass = passes.Pass(passes.new_id(), visitor, None if chosen is None else tuple(chosen),
                               int(until.timestamp()), uses)
    code = segno.make(passes.sign(store.pass_key(), visitor_pass), error="m")
    if png is not None:
        _write_private(png, code)
    with store.transaction():
        store.add_pass(visitor_pass.id, visitor, chosen, visitor_pass.not_after, uses)
        store.log_event("visitor.pass_issued", None, {"pass": visitor_pass.id, "visitor": visitor, "uses": uses,
                                                      "not_after": passes.not_after_text(visitor_pass.not_after),
                                                      "lots": chosen})
    out = io.StringIO()
    code.terminal(out=out, compact=True, border=2)
    click.echo(out.getvalue(), nl=False)
    where = "every lot" if chosen is None else ", ".join(chosen)
    click.echo(f"pass {visitor_pass.id} for {visitor!r}: {uses} entr{'y' if uses == 1 else 'ies'} at {where} until "
               f"{passes.not_after_text(visitor_pass.not_after)}" + (f"; PNG written to {png}" if png else ""))


def _write_private(path: str, code) -> None:
    """The PNG, owner-only from its first byte (an existing file is replaced, and made private)."""
    buffer = io.BytesIO()
    code.save(buffer, kind="png", scale=PNG_SCALE, border=4)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(buffer.getvalue())
    except OSError as exc:
        raise click.ClickException(f"--png {path}: {exc.strerror or exc}") from None


def _state(row: dict, now: float) -> str:
    if row["revoked"]:
        return "revoked"
    if now > row["not_after"]:
        return "expired"
    if row["used"] >= row["uses"]:
        return "used up"
    return "valid"


@visitor_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@pass_app
def visitor_list_command(app: App, as_json: bool) -> None:
    """The passes issued here (on the hub: for the lots), newest first, with their uses.

    Example: lotcontrol visitor list
    """
    reader = app.reader
    rows = reader.passes()
    if app.on_hub:
        from ..hub.passes import uses_by_lot

        counted = uses_by_lot(reader)
        for row in rows:
            row["used_by_lot"] = counted.get(row["id"], {})
            row["used"] = sum(row["used_by_lot"].values())
    now = utc_now().timestamp()
    for row in rows:
        row["state"] = _state(row, now)
        row["not_after"] = passes.not_after_text(row["not_after"])
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no visitor passes issued here")
        return
    for row in rows:
        lots = "every lot" if row["lots"] is None else ",".join(row["lots"])
        click.echo(f"{row['id']}  {row['visitor']:<24}  {row['state']:<8}  used {row['used']}/{row['uses']}  "
                   f"until {row['not_after']}  {lots}")


@visitor_group.command(name="revoke")
@click.argument("pass_id", metavar="ID")
@pass_app
def visitor_revoke_command(app: App, pass_id: str) -> None:
    """Revoke pass ID (from `visitor list`): refused at every lot from now on (on the hub: once the
    lots hear it, within seconds; a lot cut off from the hub learns it when it is back).

    Example: lotcontrol visitor revoke 3f9a1c0d5e7b2468
    """
    store = app.store
    with store.transaction():
        row = store.revoke_pass(pass_id)
        if row["revoked"] is None:
            store.log_event("visitor.revoked", None, {"pass": row["id"], "visitor": row["visitor"]})
    if row["revoked"] is not None:
        click.echo(f"pass {row['id']} of {row['visitor']!r} was already revoked ({row['revoked']})")
        return
    click.echo(f"revoked pass {row['id']} of {row['visitor']!r}")

