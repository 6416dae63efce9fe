"""``bench``: the benchmark suite, one table (or one JSON document)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import cli, echo_json


@cli.command(name="bench")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of the table.")
@click.option("--runs", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Runs of the clip at its own rate for the decision latency.")
@click.option("--shared", type=click.Path(file_okay=False, path_type=Path),
              help="The shared face photos and clips. [default: $LOTCONTROL_SHARED, else ../shared]")
def bench_command(as_json: bool, runs: int, shared: Path | None) -> None:
    """Measure decision latency and CPU, an empty scene, memory, matching, a sprinkler burst under
    face load and enrollment, each beside face_recognition's plain way in the same run, and what MQTT
    costs (on beside off) (about three and a half minutes on 2 cores). Without the shared clips the gate figures come from the demo scene.

    Example: lotcontrol bench --json > bench.json
    """
    from ..bench import suite
    from ..sim.rig import shared_folder

    def say(text: str) -> None:
        click.echo(f"measuring: {text}", err=True)

    results = suite.run(shared or shared_folder(), runs=runs, say=say)
    if as_json:
        echo_json(results)
        return
    click.echo(f"{results['machine']}; taken {results['taken']} in {results['seconds']} s")
    click.echo(suite.table(suite.rows(results)))
    sys.stdout.flush()
