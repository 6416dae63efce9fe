"""``run``: the controller with its vision worker; ``gate open``: open the gate by hand."""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
from pathlib import Path

import click

from ..vision.camera import is_file_source
from . import App, ask_controller, cli, pass_app


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Hands each record to the log-writing thread and never waits: a stalled stdout (journald
    busy, a full pipe) must not hold the safety loop. Past ``LOG_BACKLOG`` records it drops, counting."""

    dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class _Listener(logging.handlers.QueueListener):
    def enqueue_sentinel(self) -> None:  # at the stop: wait for room rather than fail on a full queue
        self.queue.put(self._sentinel, timeout=10)


LOG_BACKLOG = 10_000


def _logging_to_stdout() -> logging.handlers.QueueListener:
    """One line per event on stdout (journald under systemd), written by a thread of its own."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d  %(message)s", "%H:%M:%S"))
    records: queue.Queue = queue.Queue(maxsize=LOG_BACKLOG)
    root = logging.getLogger("lotcontrol")
    root.handlers[:] = [_DroppingQueueHandler(records)]
    root.setLevel(logging.INFO)
    root.propagate = False
    listener = _Listener(records, handler)
    listener.start()
    return listener


@cli.command(name="run")
@click.option("--simulate", is_flag=True,
              help="Drive simulated GPIO (gpiozero's MockFactory) and print every pin change.")
@click.option("--camera", metavar="SRC", help="Frame source instead of camera.source: /dev/video0, 0, "
              "rtsp://…, a video file, or picamera2.")
@click.option("--as-fast-as-possible", is_flag=True,
              help="With a video file: process every frame, without playing it at its own rate.")
@pass_app
def run_command(app: App, simulate: bool, camera: str | None, as_fast_as_possible: bool) -> None:
    """Run the gate: the controller (GPIO, policy, database) and its vision worker process.

    Stops on Ctrl-C or SIGTERM, or at the end of a video file, leaving the gate shut.

    Example: lotcontrol run --simulate --camera entrance.mp4
    """
    from ..app import Lot
    from ..pins import real_factory
    from ..sim.pins import simulated_factory
    from ..vision.faces import verify_models

    config = app.config
    source = camera or config.camera.source
    if is_file_source(source) and not Path(source).is_file():
        raise click.ClickException(f"camera source {source!r} is neither a device, a stream URL nor a video file")
    verify_models()  # before anything moves: a wrong model file stops the start, not the first passage
    check_config_file(app.config_path, config)
    listener = _logging_to_stdout()
    click.get_current_context().call_on_close(listener.stop)  # writes what is queued, then ends
    log = logging.getLogger("lotcontrol")
    roles = pin_roles(config)
    if simulate:
        factory = simulated_factory(
            lambda pin, state: log.info("pin %s %s (%s)", pin, "high" if state else "low", roles.get(pin, "?")))
    else:
        factory = real_factory()
    lot = Lot(config, app.data_dir, pin_factory=factory, camera=source, as_fast_as_possible=as_fast_as_possible,
              control_socket=True, signals=True)
    with lot:
        log.info("lotcontrol running: camera %s, %s GPIO, data %s", source,
                 "simulated" if simulate else "real", app.data_dir)
        reason = lot.run()
    log.info("stopped: %s; gate shut", reason)


def pin_roles(config) -> dict[str, str]:
    """What each configured pin is, by its name (GPIO17), for the simulated pins' log lines."""
    roles = {f"GPIO{config.gate.relay_pin}": "gate relay"}
    if config.fire.siren_pin is not None:
        roles[f"GPIO{config.fire.siren_pin}"] = "siren"
    for zone in config.fire.zones:
        if zone.charger_pin is not None:
            roles[f"GPIO{zone.charger_pin}"] = f"charger power, zone {zone.name}"
        for i, pin in enumerate(zone.sprinklers):
            roles[f"GPIO{pin}"] = f"sprinkler {i + 1}, zone {zone.name}"
    for name in ("door_pin", "exit_pin", "buzzer_pin"):
        if getattr(config.gate, name) is not None:
            roles[f"GPIO{getattr(config.gate, name)}"] = name.removesuffix("_pin").replace("exit", "exit button")
    for zone in config.bays.zones:
        for i, pin in enumerate(zone.bays):
            roles[f"GPIO{pin}"] = f"bay {zone.name}-{i + 1}"
    for port in config.charging.ports:
        if port.relay_pin is not None:
            roles[f"GPIO{port.relay_pin}"] = f"charging port {port.id}"
    if config.charging.expander_reset_pin is not None:
        roles[f"GPIO{config.charging.expander_reset_pin}"] = "expanders' reset"
    return roles


def check_config_file(path: str | None, config) -> None:
    """The configuration names a command the controller runs (notify.command), and may hold
    secrets (a camera URL with a password, tokens in that command): nobody else may change it, and
    nobody else may read one that holds secrets."""
    from ..config import config_path

    source, _ = config_path(path)
    if not source.exists():
        return
    mode = source.stat().st_mode & 0o777
    if mode & 0o022:
        raise click.ClickException(
            f"config file {source} can be changed by other users (mode {mode:o}); "
            f"it says which command the controller runs: run `chmod 600 {source}`")
    secrets = "@" in config.camera.source.split("/")[2] if "://" in config.camera.source else False
    if mode & 0o044 and config.mqtt.password is not None:
        raise click.ClickException(
            f"config file {source} can be read by other users (mode {mode:o}) and holds the broker password "
            f"(mqtt.password): run `chmod 600 {source}`, or move it to mqtt.password_file")
    if mode & 0o044 and (secrets or config.notify.command):
        what = "a camera password" if secrets else "the notification command"
        raise click.ClickException(
            f"config file {source} can be read by other users (mode {mode:o}) and holds {what}: "
            f"run `chmod 600 {source}`")


@cli.group(name="gate")
def gate_group() -> None:
    """The gate of a running controller."""


@gate_group.command(name="open")
@click.option("--seconds", type=click.FloatRange(0.5, 600), help="How long; default gate.open_seconds.")
@pass_app
def gate_open(app: App, seconds: float | None) -> None:
    """Open the gate by hand (logged as gate.manual_open).

    Example: lotcontrol gate open --seconds 20
    """
    click.echo(ask_controller(app, "gate.open", seconds=seconds)["message"])
