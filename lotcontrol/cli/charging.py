"""``charging``: the ports of a running controller, staff stopping, enabling and disabling a port,
and the energy report for billing (from the database)."""

from __future__ import annotations

import csv
import datetime as dt
import sys

import click

from ..charging.report import report
from ..errors import LotControlError
from . import App, ask_controller, cli, echo_json, pass_app


@cli.group(name="charging", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def charging_group(ctx: click.Context, as_json: bool) -> None:
    """Each charging port: state, W, kWh this session, minutes, and why it last stopped.

    Example: lotcontrol charging --json
    """
    if ctx.invoked_subcommand is not None:
        return
    ports = ask_controller(ctx.find_object(App), "charging.status")["ports"]
    if as_json:
        echo_json(ports)
        return
    if not ports:
        click.echo("no charging ports configured")
    for line in port_lines(ports):
        click.echo(line)


def port_lines(ports: list[dict]) -> list[str]:
    """One line per port, as ``charging`` and ``status`` show them."""
    lines = []
    for p in ports:
        state = p["state"].upper() + (" (cut: FIRE)" if p["cut_by_fire"] else "")
        if p["relay"] is False and p["state"] in ("ready", "charging") and not p["cut_by_fire"]:
            state += " (relay off)"  # a metered port before its meter's first answer
        parts = [f"{p['port']:<8} {state:<22}"]
        if p["watts"] is not None:
            parts.append(f"{p['watts']:7.1f} W")
        if p["kwh"] is not None:
            parts.append(f"{p['kwh']:.3f} kWh")
        if p["minutes"] is not None:
            parts.append(f"{p['minutes']:.0f} min")
        if p["last_stop"]:
            parts.append(f"last stop: {p['last_stop']}")
        for problem in (p["fault"], p["relay_fault"]):
            if problem:
                parts.append(f"FAULT: {problem}")
        lines.append("  ".join(parts))
    return lines


def _port_command(name: str, help: str):
    @charging_group.command(name=name, help=help)
    @click.argument("port")
    @pass_app
    def command(app: App, port: str) -> None:
        click.echo(ask_controller(app, f"charging.{name}", port=port)["message"])
    return command


_port_command("stop", "End PORT's session now (reason staff); it stays off until enabled.\n\n"
              "Example: lotcontrol charging stop A-01")
_port_command("enable", "Switch PORT on again: ready for a bike, or a session for the bay's resident.\n\n"
              "Example: lotcontrol charging enable A-01")
_port_command("disable", "Take PORT out of service: off, its session ended, until enabled.\n\n"
              "Example: lotcontrol charging disable A-01")


@charging_group.command(name="report")
@click.option("--since", help="Sessions that started on or after this date (YYYY-MM-DD, UTC).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV: one row per resident and per port.")
@pass_app
def charging_report(app: App, since: str | None, as_csv: bool) -> None:
    """Energy per resident and per port, from the stored sessions (for billing).

    Example: lotcontrol charging report --since 2026-11-01 --csv > november.csv
    """
    if since is not None:
        try:
            since = dt.date.fromisoformat(since).isoformat()
        except ValueError:
            raise LotControlError(f"--since {since!r} is not a date (YYYY-MM-DD)") from None
    rows = report(app.reader.charging_sessions(since))
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["by", "name", "sessions", "kwh", "open"])
        for row in rows:
            writer.writerow([row["by"], row["name"], row["sessions"], f"{row['kwh']:.3f}", row["open"]])
        return
    if not rows:
        click.echo("no charging sessions" + (f" since {since}" if since else ""))
    for row in rows:
        still = f", {row['open']} still running" if row["open"] else ""
        click.echo(f"{row['by']:<8} {row['name']:<30} {row['sessions']:>4} session(s) {row['kwh']:10.3f} kWh{still}")
