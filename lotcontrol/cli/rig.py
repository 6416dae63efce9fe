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
