"""``rig run``: scenarios of the hardware-in-the-loop rig."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path

import click

from . import cli, echo_json


@cli.group(name="rig")
def rig_group() -> None:
    """The hardware-in-the-loop rig: real controller, simulated pins, recorded camera."""


@rig_group.command(name="run")
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Also write a JUnit XML report.")
def rig_run(scenarios: tuple[Path, ...], as_json: bool, junit: Path | None) -> None:
    """Run each SCENARIO (TOML) and print every expectation with what was observed; exit 1 if any
    failed.

    Example: lotcontrol rig run hardware/rig/*.toml --junit rig.xml
    """
    from ..sim.rig import run

    reports = [run(path) for path in scenarios]
    if junit is not None:
        _junit(reports, junit)
    if as_json:
        echo_json([{**asdict(r), "passed": r.passed} for r in reports])
    else:
        for report in reports:
            verdict = "SKIP" if report.skipped else "PASS" if report.passed else "FAIL"
            click.echo(f"{verdict}  {report.scenario}  ({report.path}, {report.seconds} s)")
            if report.skipped:
                click.echo(f"      skipped: {report.skipped}")
            for check in report.checks:
                click.echo(f"      {'ok  ' if check.passed else 'FAIL'} {check.description}: {check.observed}")
    failed = [r for r in reports if not r.passed and not r.skipped]
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(reports)} scenario(s) failed")


def _junit(reports, path: Path) -> None:
    suite = ET.Element("testsuite", name="lotcontrol-rig", tests=str(sum(len(r.checks) or 1 for r in reports)),
                       failures=str(sum(not c.passed for r in reports for c in r.checks)),
                       skipped=str(sum(1 for r in reports if r.skipped)))
    for report in reports:
        if report.skipped:
            case = ET.SubElement(suite, "testcase", classname=report.path, name=report.scenario)
            ET.SubElement(case, "skipped", message=report.skipped)
        for check in report.checks:
            case = ET.SubElement(suite, "testcase", classname=report.scenario, name=check.description)
            if not check.passed:
                ET.SubElement(case, "failure", message=f"observed: {check.observed}")
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


@rig_group.command(name="soak")
@click.option("--days", type=click.IntRange(1, 3650), default=7, show_default=True, help="Simulated days to run.")
@click.option("--data", "data", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the lot's data directory here (an empty or new folder on a real disk); default: a "
              "temporary folder under /var/tmp, deleted at the end.")
@click.option("--seed", type=int, default=1, show_default=True, help="The traffic model's random seed.")
@click.option("--keep-days", type=click.IntRange(7, 36500), default=30, show_default=True,
              help="The soaked lot's events.keep_days.")
@click.option("--retention-days", type=click.IntRange(1, 3650), default=30, show_default=True,
              help="The soaked lot's events.retention_days (snapshots).")
@click.option("--commit-seconds", type=click.FloatRange(0.0, 300.0), default=None,
              help="The soaked lot's events.commit_seconds (default: the setting's default).")
@click.option("--meter-every", type=click.IntRange(0, 3650), default=30, show_default=True,
              help="Measure the bytes written on days 1-3 and every this many days, fsynced as the product "
              "writes; the other days commit the same transactions without fsync (0 or 1: every day).")
@click.option("--scale", type=click.FloatRange(0.01, 1.0), default=1.0, show_default=True,
              help="This fraction of the traffic (residents, passages, ports: at least 10), for a quick run.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (every day, every crash).")
def rig_soak(days: int, data: Path | None, seed: int, keep_days: int, retention_days: int,
             commit_seconds: float | None, meter_every: int, scale: float, as_json: bool) -> None:
    """A year (or DAYS) at the lot on the simulated clock: traffic, charging, drills, outages and a
    crash a week; prints disk, memory, bytes written a day, events lost, restarts and the hash chain
    checks, and exits 1 if an event was lost, the chain did not verify, a latched alarm was not back
    after a restart or the writes exceeded the goal.

    Example: lotcontrol rig soak --days 365
    """
    from ..sim.soak import Soak, table

    report = Soak(days, data, seed=seed, keep_days=keep_days, retention_days=retention_days,
                  commit_seconds=commit_seconds, meter_every=meter_every, scale=scale).run()
    if as_json:
        echo_json(report.as_json())
    else:
        for line in table(report):
            click.echo(line)
    problems = soak_problems(report)
    if problems:
        raise click.ClickException("; ".join(problems))


def soak_problems(report) -> list[str]:
    s = report.summary()
    problems = []
    if s["events_lost"]:
        problems.append(f"{s['events_lost']} acknowledged event(s) lost")
    if not s["chain_verified"]:
        problems.append("the hash chain did not verify after a restart or at the end")
    if not s["latch_kept"]:
        problems.append("a latched alarm was not back after a restart")
    if s["written_bytes_per_day"] > s["goal_bytes_per_day"]:
        problems.append(f"{s['written_bytes_per_day']} bytes written a day, over the goal of {s['goal_bytes_per_day']}")
    return problems
