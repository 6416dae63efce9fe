"""Charging ports in the real controller on the simulated clock: the fire linkage switches the port
relays (GPIO and expander) at once, in the handler of the message that raised the alarm; sessions
are stored by the writer thread; staff commands go through the control socket."""

import pytest
from click.testing import CliRunner

from lotcontrol.cli import cli
from lotcontrol.config import parse_config, prepare_data_dir
from lotcontrol.messages import Command, ContactChange, MeterReading, Reading
from lotcontrol.sim.clock import SimClock
from lotcontrol.sim.pins import simulated_factory
from lotcontrol.store import Store

from .lots import STARTED, pump, running_lot, sim_lot

SPRINKLER_E, SPRINKLER_W, CHARGER_E, CHARGER_W, SIREN = 5, 6, 23, 25, 22
PORT_E1, PORT_W1 = 24, 26  # GPIO relays; E2 is on the expander's GPA0
PROBE = "28-00000a1b2c3d"


def config(**charging):
    return parse_config({
        "fire": {"siren_pin": SIREN, "zones": [
            {"name": "east", "sprinklers": [SPRINKLER_E], "charger_pin": CHARGER_E},
            {"name": "west", "sprinklers": [SPRINKLER_W], "charger_pin": CHARGER_W}]},
        "charging": {"buses": [{"name": "rs485", "port": "/dev/null"}], "ports": [
            {"id": "E1", "zone": "east", "bay": "east-1", "relay_pin": PORT_E1, "meter": {"bus": "rs485", "unit": 1}},
            {"id": "E2", "zone": "east", "bay": "east-2", "expander": {"bus": 1, "address": 0x20, "pin": 0}},
            {"id": "W1", "zone": "west", "bay": "west-1", "relay_pin": PORT_W1, "resident": "Anna Berg",
             "meter": {"bus": "rs485", "unit": 2}}]},
        **charging})


@pytest.fixture
def factory():
    factory = simulated_factory()
    yield factory
    factory.reset()


def relays(factory):
    """Each port relay's level; an expander's once its writer thread has written what was asked."""
    for chip in factory.expanders.chips.values():
        assert chip.flush()
    return {"E1": factory.pin(PORT_E1).state, "E2": factory.i2c.buses[1].output(0x20, 0),
            "W1": factory.pin(PORT_W1).state}


def meter(port, t, watts=150.0, kwh=1.0):
    return MeterReading(port, watts, kwh, 230.0, watts / 230, None, t)


@pytest.fixture
def lot(tmp_path, factory):
    store = Store(tmp_path / "lot.db")
    store.add_resident("Anna Berg")
    lot = sim_lot(config(), store, factory)
    c = lot.controller
    assert relays(factory) == {"E1": False, "E2": True, "W1": False}  # metered ports wait for their meter
    c.inbox.put(meter("E1", 0.5))
    c.inbox.put(meter("W1", 0.5, watts=0.0))
    pump(c, 0.5)
    assert relays(factory) == {"E1": True, "E2": True, "W1": True}
    return lot


def sessions(c):
    c.writer.flush()
    return c.writer.store.charging_sessions()


def test_a_burst_cuts_every_port_in_the_handler_that_raised_the_alarm(lot, factory):
    c = lot.controller
    factory.pin(SPRINKLER_W).drive_high()  # the loop opens in the west zone
    pump(c, 1.0)
    c.tick(1.03)  # past the 20 ms debounce: the alarm, and in the same call every relay off
    assert relays(factory) == {"E1": False, "E2": False, "W1": False}
    assert factory.pin(CHARGER_E).state is False and factory.pin(CHARGER_W).state is False
    pump(c, 1.1)
    stopped = {s["port"]: s["reason"] for s in sessions(c)}
    assert stopped == {"E1": "fire", "E2": "fire", "W1": "fire"}
    pump(c, 600.0)
    assert relays(factory) == {"E1": False, "E2": False, "W1": False}  # latched until staff reset


def test_a_prealarm_cuts_only_the_ports_of_its_zone(tmp_path, factory):
    cfg = parse_config({**config().model_dump(exclude={"charging"}), "fire": {
        **config().fire.model_dump(), "stale_seconds": 600, "hold_seconds": 0, "zones": [
            {"name": "east", "sprinklers": [SPRINKLER_E], "probes": [PROBE], "charger_pin": CHARGER_E},
            {"name": "west", "sprinklers": [SPRINKLER_W], "charger_pin": CHARGER_W}]},
        "charging": config().charging.model_dump(exclude_none=True)})
    c = sim_lot(cfg, Store(tmp_path / "lot.db"), factory).controller
    c.inbox.put(Reading(PROBE, 25.0, None, 0.1))
    c.inbox.put(meter("E1", 0.2))
    c.inbox.put(meter("W1", 0.2))
    pump(c, 0.3)
    assert relays(factory) == {"E1": True, "E2": True, "W1": True}
    c.handle(Reading(PROBE, 52.0, None, 1.0), 1.0)  # pre-alarm in the east
    assert relays(factory) == {"E1": False, "E2": False, "W1": True}


def test_a_failing_expander_is_an_event_and_the_loop_goes_on(lot, factory):
    c = lot.controller
    bus = factory.i2c.buses[1]
    bus.fail = True
    c.handle(Command("charging.stop", {"port": "E2"}), 1.0)
    pump(c, 1.05)
    pump(c, 1.1)
    faults = [e.details for e in c.writer.store.events(type="charging.fault")]
    assert faults == [{"port": "E2", "error": "the MCP23017 at 0x20 on I2C bus 1 does not answer: OSError: [Errno 121] "
                                              "Remote I/O error"}]
    c.handle(Command("charging.enable", {"port": "E2"}), 1.12)  # another level asked of the silent chip
    pump(c, 1.15)
    e2 = next(p for p in c.charging.status(1.15) if p["port"] == "E2")
    assert e2["relay"] is True and "does not answer" in e2["relay_fault"]  # still faulty: asking is not writing
    factory.pin(SPRINKLER_E).drive_high()
    pump(c, 1.2)
    pump(c, 1.25)
    assert factory.pin(PORT_E1).state is False and factory.pin(CHARGER_E).state is False  # the rest still works
    bus.fail = False
    pump(c, 1.3)
    pump(c, 1.35)
    assert bus.output(0x20, 0) is False
    assert next(p for p in c.charging.status(1.35) if p["port"] == "E2")["relay_fault"] is None


def test_a_stuck_i2c_bus_holds_back_no_fire_output(lot, factory):
    """An expander write that hangs (the kernel's I²C timeout is 1 s on a Pi) happens in the chip's
    writer thread: the loop cuts the GPIO ports, the contactors and sounds the siren at once."""
    import threading

    c = lot.controller
    bus = factory.i2c.buses[1]
    release = bus.stick()
    factory.pin(SPRINKLER_W).drive_high()
    loop = threading.Thread(target=lambda: (c.step(1.0), c.tick(1.03), c.tick(1.1)))
    loop.start()
    loop.join(30)  # a failure guard: the bus stays stuck until released, so a loop that waits on it never ends
    try:
        assert not loop.is_alive()  # the loop did not wait for the bus
        assert bus.stuck_transfer.wait(30)  # E2's off is being written, by the writer thread
        assert factory.pin(PORT_E1).state is False and factory.pin(PORT_W1).state is False
        assert factory.pin(CHARGER_E).state is False and factory.pin(SIREN).state is True
    finally:
        release.set()
    assert relays(factory)["E2"] is False  # written once the bus let go


def test_a_meter_reading_switches_its_port_in_its_own_handler_only_when_the_port_wants_otherwise(tmp_path, factory):
    """A reading that changes the port's demand (the first one of a metered port, a meter that answers
    with no number) switches the relay in the handler itself, before any tick; one that leaves the
    demand as it was switches nothing."""
    c = sim_lot(config(), Store(tmp_path / "lot.db"), factory).controller
    c.handle(meter("E1", 0.2, watts=0.0), 0.2)  # E1 is known to work: ready, its relay on, nothing drawn
    assert factory.pin(PORT_E1).state is True and c.charging.ports["E1"].session is None
    writes = len(factory.pin(PORT_E1).states)
    for t in (0.3, 0.4):
        c.handle(meter("E1", t, watts=0.0), t)
    assert len(factory.pin(PORT_E1).states) == writes
    c.handle(MeterReading("E1", None, None, None, None, "unit 1 refused register 12", 0.5, answered=True), 0.5)
    assert factory.pin(PORT_E1).state is False  # faulty: off in the handler, no session to stop


def test_a_session_is_stored_with_its_resident_energy_peak_and_reason(lot, factory):
    c = lot.controller
    c.inbox.put(meter("W1", 2.0, watts=180.0, kwh=1.0))  # Anna's bike (her bay's port was on for her)
    pump(c, 2.0)
    c.inbox.put(meter("W1", 4.0, watts=900.0, kwh=1.2))
    pump(c, 4.0)
    c.inbox.put(meter("W1", 6.0, watts=900.0, kwh=1.25))
    pump(c, 6.0)  # above max_watts for 2 s: overload, off in this very step
    assert relays(factory)["W1"] is False
    rows = [s for s in sessions(c) if s["port"] == "W1"]
    assert rows == [{"port": "W1", "resident": "Anna Berg", "start": "2026-11-28T09:00:00.500+00:00",
                     "end": "2026-11-28T09:00:06.000+00:00", "kwh": pytest.approx(0.25), "peak_watts": 900.0,
                     "reason": "overload"}]
    stopped = [e.details for e in c.writer.store.events(type="charging.stopped")]
    assert stopped == [{"port": "W1", "reason": "overload", "minutes": 0.1, "watts": 900.0, "kwh": 0.25,
                        "peak_watts": 900.0}]


def test_a_restart_closes_the_session_it_interrupted_from_its_meter_without_losing_or_counting_twice(tmp_path, factory):
    """The controller dies 39 s after the minute's checkpoint: the next one closes the session with
    what the meter counted up to its death (its first reading, before the port is on again), and
    the new session starts from that same reading: the totals are the meter's, to the Wh."""
    store = Store(tmp_path / "lot.db")
    c = sim_lot(config(), store, factory).controller
    c.inbox.put(meter("E1", 0.5, kwh=1.0))
    pump(c, 0.5)
    c.inbox.put(meter("E1", 61.0, kwh=1.4))
    pump(c, 61.0)  # the minute's checkpoint: 0.4 kWh
    c.inbox.put(meter("E1", 99.0, kwh=1.55))
    pump(c, 99.0)  # read, not saved: the controller dies now
    clock = SimClock(100.0)
    factory2 = simulated_factory()
    try:
        c2 = sim_lot(config(), store, factory2, clock=clock).controller
        c2.writer.flush()
        assert [(r["reason"], r["kwh"]) for r in store.charging_sessions() if r["port"] == "E1"] == [(None, 0.4)]
        # E2 (no meter) was running too: closed at once
        assert [e.details for e in store.events(type="charging.interrupted")] == [{"sessions": 1, "kwh": 0}]
        c2.inbox.put(meter("E1", 100.5, kwh=1.55))  # the first reading of this run, the relay still off
        pump(c2, 100.5)
        c2.inbox.put(meter("E1", 200.0, kwh=1.8))
        pump(c2, 200.0)
        lot2 = STARTED[-1]
        lot2.stop()  # an orderly stop closes the running session with its energy
        rows = [(r["reason"], r["kwh"]) for r in store.charging_sessions() if r["port"] == "E1"]
        assert rows == [("interrupted", pytest.approx(0.55)), ("interrupted", pytest.approx(0.25))]
        assert sum(kwh for _, kwh in rows) == pytest.approx(1.8 - 1.0)  # the meter's rise, once
        events = [e.details for e in store.events(type="charging.interrupted")]
        assert events[1:] == [{"port": "E1", "kwh": 0.55}]
        stopped = [e.details for e in store.events(type="charging.stopped") if e.details["port"] == "E1"]
        assert stopped == [{"port": "E1", "reason": "interrupted", "minutes": 1.7, "kwh": 0.25, "peak_watts": 150.0}]
    finally:
        factory2.reset()


def test_a_meter_that_went_back_keeps_the_checkpoints_energy(tmp_path, factory):
    store = Store(tmp_path / "lot.db")
    c = sim_lot(config(), store, factory).controller
    c.inbox.put(meter("E1", 0.5, kwh=10.0))
    pump(c, 0.5)
    c.inbox.put(meter("E1", 61.0, kwh=10.4))
    pump(c, 61.0)
    factory2 = simulated_factory()
    try:
        c2 = sim_lot(config(), store, factory2, clock=SimClock(100.0)).controller
        c2.writer.flush()
        c2.inbox.put(meter("E1", 100.5, kwh=0.02))  # a new meter in its place
        pump(c2, 100.5)
        rows = [(r["reason"], r["kwh"]) for r in store.charging_sessions() if r["port"] == "E1"]
        assert rows[0] == ("interrupted", pytest.approx(0.4))
    finally:
        factory2.reset()


def test_charging_commands_through_the_socket(tmp_path, factory):
    data_dir = prepare_data_dir(tmp_path / "data")
    runner = CliRunner()
    with running_lot(config(), data_dir, factory):
        base = ["--data-dir", str(data_dir)]
        result = runner.invoke(cli, [*base, "charging", "stop", "E9"])
        assert result.exit_code == 1 and "Error: no charging port 'E9' (ports: E1, E2, W1)" in result.output
        result = runner.invoke(cli, [*base, "charging", "disable", "E2"], catch_exceptions=False)
        assert result.output == "port 'E2' disabled (its session ended)\n"  # unmetered: on since start-up
        result = runner.invoke(cli, [*base, "charging", "--json"], catch_exceptions=False)
        assert '"state": "disabled"' in result.output
        result = runner.invoke(cli, [*base, "charging"], catch_exceptions=False)
        assert "E2" in result.output and "DISABLED" in result.output
        result = runner.invoke(cli, [*base, "charging", "enable", "E2"], catch_exceptions=False)
        assert result.output == "port 'E2' enabled (a session started)\n"


def test_the_energy_report_per_resident_and_per_port(tmp_path):
    data_dir = prepare_data_dir(tmp_path / "data")
    with Store.in_dir(data_dir) as store:
        store.add_resident("Anna Berg")
        for key, port, resident, start, kwh, end in [
                ("a", "W1", "Anna Berg", "2026-10-30T10:00:00", 1.5, "x"), ("b", "W1", "Anna Berg", "2026-11-02T10:00:00", 1.25, "x"),
                ("c", "E1", None, "2026-11-03T10:00:00", 0.5, "x"), ("d", "E2", None, "2026-11-04T10:00:00", None, None)]:
            store.open_charging(key, port, resident, start)
            if end:
                store.close_charging(key, "2026-11-05T00:00:00", "full", kwh, 200.0)
    runner = CliRunner()
    result = runner.invoke(cli, ["--data-dir", str(data_dir), "charging", "report", "--since", "2026-11-01", "--csv"],
                           catch_exceptions=False)
    assert result.output.splitlines() == [
        "by,name,sessions,kwh,open", "resident,(no resident),2,0.500,1", "resident,Anna Berg,1,1.250,0",
        "port,E1,1,0.500,0", "port,E2,1,0.000,1", "port,W1,1,1.250,0"]
    result = runner.invoke(cli, ["--data-dir", str(data_dir), "charging", "report"], catch_exceptions=False)
    assert "Anna Berg" in result.output and "2.750 kWh" in result.output
    result = runner.invoke(cli, ["--data-dir", str(data_dir), "charging", "report", "--since", "November"])
    assert result.exit_code == 1 and "Error: --since 'November' is not a date (YYYY-MM-DD)" in result.output


def test_the_expander_reset_line_is_high_while_running_and_falls_last_on_stop(tmp_path, factory):
    cfg = config()
    cfg = parse_config({**cfg.model_dump(exclude={"charging"}, exclude_none=True),
                        "charging": {**cfg.charging.model_dump(exclude_none=True), "expander_reset_pin": 27}})
    lot = sim_lot(cfg, Store(tmp_path / "lot.db"), factory)
    reset = factory.pin(27)
    assert [state for _, state in reset.history] == [False, True]  # created low (in reset), then released
    assert relays(factory)["E2"] is True
    lot.stop()
    assert [state for _, state in reset.history] == [False, True, False]
    assert relays(factory)["E2"] is None  # its pin released: an input, the relay board's pull decides


def test_status_shows_the_ports(tmp_path, factory):
    data_dir = prepare_data_dir(tmp_path / "data")
    with running_lot(config(), data_dir, factory):
        result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "status"], catch_exceptions=False)
    lines = [line for line in result.output.splitlines() if line.startswith("port")]
    assert [" ".join(line.split()[1:5]) for line in lines] == [
        "E1 READY (relay off)", "E2 CHARGING 0 min", "W1 READY (relay off)"]  # E1, W1: meters not read yet


def test_the_readme_configuration_examples_are_valid_together():
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = "\n".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.S)
    merged = {}
    for block in blocks:
        merged.update(tomllib.loads(block))
    config = parse_config(merged)
    assert [p.id for p in config.charging.ports] == ["E-01", "E-02"] and config.fire.zones[0].name == "east-row"


def test_a_session_event_names_the_resident_by_id_so_erasing_them_erases_it(lot, factory):
    c = lot.controller
    c.writer.flush()
    started = [e for e in c.writer.store.events(type="charging.started") if e.details["port"] == "W1"]
    assert [(e.resident, e.details) for e in started] == [("Anna Berg", {"port": "W1", "bay": "west-1"})]
    c.writer.store.remove("Anna Berg")
    started = [e for e in c.writer.store.events(type="charging.started") if e.details["port"] == "W1"]
    assert [(e.resident, e.details) for e in started] == [(None, {"port": "W1", "bay": "west-1"})]
    assert [s["resident"] for s in c.writer.store.charging_sessions() if s["port"] == "W1"] == [None]


def test_the_bench_suite_reports_the_charging_figures():
    from lotcontrol.bench import suite

    from .test_bench import RESULTS

    charging = {"burst": {"ports": 40, "trials": 100, "requests_per_s": 165, "p50_ms": 21.0, "p99_ms": 28.8,
                          "max_ms": 30.8},
                "tick_us": {"0": 36.1, "40": 127.2, "100": 273.9},
                "rtu": [{"baud": 9600, "meters": 10, "measured_s": 1.17, "model_s": 1.1, "model_turnaround_s": 1.9}]}
    rows = {row[0]: row[1:] for row in suite.rows({**RESULTS, "charging": charging})}
    assert rows["sprinkler burst -> all 40 port relays off, meters polled (165 Modbus requests/s), 100 trials: "
                "p50 / p99 / max"] == ("21.0 / 28.8 / 30.8 ms", None, None)
    assert rows["loop tick with 100 charging ports"] == ("273.9 µs", None, None)
    assert rows["RTU poll of 10 SDM120 meters at 9600 baud: measured (model without / with 20 ms turnaround)"] == (
        "1.17 s (1.10 / 1.90 s)", None, None)
    per_port = "loop CPU per charging port (tick with 100 ports less tick with none, per port; a tick every 50 ms)"
    assert rows[per_port] == ("2.38 µs a tick, 0.0048 % of a core", None, None)  # (273.9 - 36.1) / 100
    assert len(rows) == len(suite.rows(RESULTS)) + 6


def test_a_bug_in_the_charging_ports_holds_back_no_fire_output(lot, factory, monkeypatch):
    c = lot.controller

    def broken():
        raise RuntimeError("a bug in the ports")
    monkeypatch.setattr(c.charging, "demands", broken)
    factory.pin(SPRINKLER_E).drive_high()
    pump(c, 1.0)
    pump(c, 1.05)
    assert factory.pin(CHARGER_E).state is False and factory.pin(SIREN).state is True
    assert factory.pin(17).state is True  # the gate released for egress
    errors = {e.details["message"] for e in c.writer.store.events(type="controller.error")}
    assert errors == {"tick:charging outputs"}


def test_an_expander_that_reset_itself_is_found_within_a_second_and_set_again(lot, factory):
    c = lot.controller
    bus = factory.i2c.buses[1]
    pump(c, 1.0)
    assert bus.output(0x20, 0) is True
    bus.chips[0x20].reset()  # a brown-out: every pin an input, the relay off
    assert bus.output(0x20, 0) is None
    pump(c, 2.1)  # the loop asks for the check; the expander's writer thread makes it
    assert bus.output(0x20, 0) is True  # E2 wanted on: set again
    pump(c, 2.15)  # and the loop says what it found
    faults = [e.details for e in c.writer.store.events(type="charging.fault")]
    assert faults == [{"port": "E2", "error": "the MCP23017 at 0x20 on I2C bus 1 had reset itself (its relays were "
                                              "off); its pins were set again"}]


def test_a_port_staff_disabled_stays_disabled_across_a_restart(tmp_path, factory):
    data_dir = prepare_data_dir(tmp_path / "data")
    store = Store.in_dir(data_dir)
    c = sim_lot(config(), store, factory, data_dir=data_dir).controller
    c.handle(Command("charging.disable", {"port": "E2"}), 1.0)
    pump(c, 1.0)
    STARTED.pop().stop()
    assert relays(factory)["E2"] is None
    c = sim_lot(config(), store, simulated_factory(), data_dir=data_dir).controller
    assert c.charging.ports["E2"].state == "disabled" and c.charging.ports["E1"].state == "ready"
    (data_dir / "charging.json").write_text("{not json")
    STARTED.pop().stop()
    c = sim_lot(config(), store, simulated_factory(), data_dir=data_dir).controller
    assert {p.state for p in c.charging.ports.values()} == {"disabled"}  # unreadable: every port off until enabled
    c.writer.flush()
    faults = [e.details["error"] for e in c.writer.store.events(type="charging.fault")]
    assert faults == [f"{data_dir / 'charging.json'} cannot be read: every port is disabled until staff enable it"]


def test_a_bug_in_the_ports_deadline_never_ends_the_loop(lot, factory, monkeypatch):
    """run() asks every part for its next deadline before it waits for a message, outside the guard of a
    message and of a tick: a part that fails there is a controller.error, not the end of the loop (which
    would stop the fire watch until systemd restarts the service)."""
    from lotcontrol.messages import Stop

    c = lot.controller

    def broken():
        raise RuntimeError("a bug in the ports' timer")
    monkeypatch.setattr(c.charging, "next_deadline", broken)
    factory.pin(SPRINKLER_E).drive_high()
    c.inbox.put(Stop("test over"))
    assert c.run() == "test over"  # the sprinkler's message and the stop were handled
    c.finished.clear()
    pump(c, 1.05)  # past the debounce: the alarm's outputs
    assert factory.pin(CHARGER_E).state is False and factory.pin(SIREN).state is True
    errors = {e.details["message"] for e in c.writer.store.events(type="controller.error")}
    assert errors == {"run:deadlines"}


def test_stopping_a_disabled_port_leaves_it_disabled_across_a_restart(tmp_path, factory):
    """`charging stop` on a port staff had taken out of service must not turn it into a port that is
    merely off: off is not kept across a restart, and E2 (no meter) would come on at the next start."""
    data_dir = prepare_data_dir(tmp_path / "data")
    store = Store.in_dir(data_dir)
    c = sim_lot(config(), store, factory, data_dir=data_dir).controller
    c.handle(Command("charging.disable", {"port": "E2"}), 1.0)
    c.handle(Command("charging.stop", {"port": "E2"}), 1.1)
    pump(c, 1.1)
    assert c.charging.ports["E2"].state == "disabled"
    STARTED.pop().stop()
    factory = simulated_factory()
    c = sim_lot(config(), store, factory, data_dir=data_dir).controller
    pump(c, 0.5)
    assert c.charging.ports["E2"].state == "disabled" and relays(factory)["E2"] is False
