"""Meters through pymodbus against a real pymodbus server in this process (Modbus TCP on
127.0.0.1, the SDM120 register map, the same client code path as RTU), and the bus capacity check."""

import pytest

from lotcontrol.charging.meters import BusPoller, MeterPollers
from lotcontrol.charging.timing import meter_seconds, read_seconds
from lotcontrol.config import ChargingConfig, ConfigError, MeterProfile, parse_config
from lotcontrol.sim.meters import SimulatedMeters, charge_curve


def charging(url, units=(1, 2), **extra):
    return ChargingConfig.model_validate({
        "poll_seconds": 2.0, "buses": [{"name": "rs485", "port": url, "timeout_seconds": 0.5}],
        "ports": [{"id": f"P{u}", "zone": "east", "bay": f"b{u}", "relay_pin": 20 + u,
                   "meter": {"bus": "rs485", "unit": u}} for u in units], **extra})


@pytest.fixture
def meters():
    profile = ChargingConfig().meter_profiles()["sdm120"]
    t = {"now": 0.0}
    sim = SimulatedMeters({1: charge_curve(200.0, taper_at=100, taper_seconds=100, kwh0=12.5),
                           2: charge_curve(80.0, kwh0=3.0)}, profile, clock=lambda: t["now"])
    sim.t = t
    yield sim
    sim.close()


def poll(settings):
    readings = []
    pollers = MeterPollers(settings, readings.append, lambda: 1.0)
    try:
        pollers.poll()
    finally:
        pollers.close()
    return {r.port: r for r in readings}


def test_the_sdm120_profile_read_over_pymodbus_follows_the_charge_curve(meters):
    settings = charging(meters.url)
    got = poll(settings)
    assert got["P1"].watts == pytest.approx(200.0) and got["P1"].kwh == pytest.approx(12.5)
    assert got["P1"].volts == pytest.approx(230.0) and got["P1"].amps == pytest.approx(200 / 230, rel=1e-5)
    assert got["P2"].watts == pytest.approx(80.0) and got["P2"].error is None
    meters.t["now"] = 250.0  # past the taper: a trickle
    got = poll(settings)
    assert got["P1"].watts == pytest.approx(3.0) and got["P1"].kwh == pytest.approx(12.5 + (200 * 100 + 101.5 * 100 + 3 * 50) / 3.6e6)


def test_a_silent_meter_and_a_refusing_one_are_errors_never_0_w(meters):
    settings = charging(meters.url)
    meters.silent.add(1)
    meters.broken.add(2)
    got = poll(settings)
    assert got["P1"].watts is None and got["P1"].answered is False and "no answer from unit 1" in got["P1"].error
    assert got["P2"].watts is None and got["P2"].answered is True and "unit 2 refused register" in got["P2"].error


def test_a_bus_that_is_not_there_is_every_meter_silent():
    settings = charging("tcp://127.0.0.1:9")  # nothing listens on the discard port
    got = poll(settings)
    assert set(got) == {"P1", "P2"} and all(r.watts is None and not r.answered for r in got.values())


def test_the_switch_coil_follows_what_the_loop_asked(meters):
    profile = {**ChargingConfig().meter_profiles()["sdm120"].model_dump(exclude_none=True), "switch_coil": 5}
    settings = charging(meters.url, units=(1,), profiles={"pile": profile})
    settings = ChargingConfig.model_validate({**settings.model_dump(), "ports": [
        {**settings.ports[0].model_dump(exclude_none=True), "meter": {"bus": "rs485", "unit": 1, "profile": "pile"}}]})
    pollers = MeterPollers(settings, lambda r: None, lambda: 0.0)
    try:
        pollers.want_switches({"P1": True})
        pollers.poll()
        poller = pollers.pollers[0]
        assert poller._written == {"P1": True}
        assert poller.client.read_coils(5, count=1, device_id=1).bits[0] is True
    finally:
        pollers.close()


def test_the_poller_thread_posts_readings_until_closed(meters):
    import threading

    got = threading.Event()
    readings = []

    def deliver(reading):
        readings.append(reading)
        if len(readings) >= 2:
            got.set()
    settings = charging(meters.url)
    poller = BusPoller(settings.buses[0], [(p.id, p.meter, settings.meter_profiles()["sdm120"]) for p in settings.ports],
                       settings.poll_seconds, deliver, lambda: 0.0)
    poller.start()
    try:
        assert got.wait(10)
    finally:
        poller.close()
    assert {r.port for r in readings[:2]} == {"P1", "P2"} and poller.last_cycle is not None


def test_a_meter_over_its_max_watts_is_read_again_within_the_overload_time_not_a_poll_later(meters):
    """Meter 1 draws 900 W over a 600 W limit: read again every half overload_seconds until the
    overload is decided; meter 2 (80 W) waits for the next poll."""
    t = meters.t
    meters.curves[1] = lambda now: (900.0, 12.5)
    settings = charging(meters.url, overload_seconds=0.5, ports=[
        {"id": f"P{u}", "zone": "east", "bay": f"b{u}", "relay_pin": 20 + u, "max_watts": 600,
         "meter": {"bus": "rs485", "unit": u}} for u in (1, 2)])
    readings = []
    pollers = MeterPollers(settings, readings.append, lambda: t["now"])
    try:
        t["now"] = 10.0
        pollers.poll()
        assert [r.port for r in readings] == ["P1", "P2"] and pollers.next_confirm() == 10.25
        t["now"] = 10.2
        pollers.confirm()
        assert len(readings) == 2  # not due yet
        for now in (10.25, 10.5):
            t["now"] = now
            pollers.confirm()
        assert [(r.port, r.time) for r in readings[2:]] == [("P1", 10.25), ("P1", 10.5)]
        assert pollers.next_confirm() is None  # 0.5 s of readings over the limit: decided, no more extra reads
        meters.curves[1] = lambda now: (300.0, 12.5)
        t["now"] = 12.0
        pollers.poll()
        assert pollers.next_confirm() is None  # under the limit: read with the others
    finally:
        pollers.close()


def test_an_ordinary_poll_or_a_late_re_read_does_not_put_the_overload_re_read_off(meters):
    """The re-reads keep to the first reading over the limit: the last one is due overload_seconds
    after it, whatever reads came between (a poll every 0.4 s; a re-read late behind another meter)."""
    t = meters.t
    meters.curves[1] = lambda now: (900.0, 12.5)
    settings = charging(meters.url, units=(1,), poll_seconds=0.4, overload_seconds=0.5, ports=[
        {"id": "P1", "zone": "east", "bay": "b1", "relay_pin": 21, "max_watts": 600,
         "meter": {"bus": "rs485", "unit": 1}}])
    readings = []
    pollers = MeterPollers(settings, readings.append, lambda: t["now"])
    try:
        t["now"] = 10.0
        pollers.poll()
        t["now"] = 10.25
        pollers.confirm()
        t["now"] = 10.4
        pollers.poll()  # an ordinary poll between the re-reads
        assert pollers.next_confirm() == 10.5  # not 10.65: the cut would come 0.65 s after the first reading
        t["now"] = 10.5
        pollers.confirm()
        assert [r.time for r in readings] == [10.0, 10.25, 10.4, 10.5] and pollers.next_confirm() is None
        meters.curves[1] = lambda now: (300.0, 12.5)
        t["now"] = 11.0
        pollers.poll()
        meters.curves[1] = lambda now: (900.0, 12.5)
        t["now"] = 20.0
        pollers.poll()
        t["now"] = 20.38  # the re-read due at 20.25 comes late, behind another meter's read
        pollers.confirm()
        assert pollers.next_confirm() == 20.5  # not 20.63
    finally:
        pollers.close()


def test_the_poller_thread_reads_an_overloaded_meter_again_between_its_polls(meters):
    import threading
    import time

    meters.curves[1] = lambda now: (900.0, 12.5)
    settings = charging(meters.url, poll_seconds=30.0, overload_seconds=0.2, ports=[
        {"id": "P1", "zone": "east", "bay": "b1", "relay_pin": 21, "max_watts": 600, "meter": {"bus": "rs485", "unit": 1}}])
    readings, got = [], threading.Event()

    def deliver(reading):
        readings.append(reading)
        if len(readings) == 3:
            got.set()
    pollers = MeterPollers(settings, deliver, time.monotonic)
    pollers.start()
    try:
        assert got.wait(10)  # the next poll is 30 s away: these are the extra reads
    finally:
        pollers.close()
    first, *again = readings[:3]
    assert [r.port for r in readings[:3]] == ["P1"] * 3 and 0.1 <= again[0].time - first.time < 5


# --- capacity ---


def test_the_rtu_timing_model():
    # 8 + 5 + 4 bytes of 11 bits at 9600 baud, two 3.5-character silences, 20 ms turnaround
    assert read_seconds(9600, 2, 0.02) == pytest.approx(17 * 11 / 9600 + 2 * 3.5 * 11 / 9600 + 0.02)
    assert read_seconds(38400, 2, 0.0) == pytest.approx(17 * 11 / 38400 + 2 * 0.00175)
    sdm120 = ChargingConfig().meter_profiles()["sdm120"]
    assert meter_seconds(9600, sdm120, 0.02) == pytest.approx(0.190, abs=0.001)
    power_only = MeterProfile.model_validate({"power": {"address": 12}, "energy": {"address": 342}})
    assert meter_seconds(9600, power_only, 0.02) == pytest.approx(0.095, abs=0.001)


def ports(n, baud=9600, poll=2.0):
    return {"fire": {"zones": [{"name": "east", "sprinklers": [5]}]},
            "charging": {"poll_seconds": poll, "buses": [{"name": "rs485", "baud": baud}],
                         "ports": [{"id": f"P{i}", "zone": "east", "bay": f"b{i}",
                                    "expander": {"pin": i % 16, "address": 0x20 + i // 16},
                                    "meter": {"bus": "rs485", "unit": i + 1}} for i in range(n)]}}


def test_check_config_refuses_a_bus_that_cannot_poll_every_meter_and_says_how_many_fit():
    parse_config(ports(10))  # 10 × 0.190 s fit in 2 s
    with pytest.raises(ConfigError, match=r"meter bus 'rs485' at 9600 baud cannot read its 11 meters every 2 s "
                       r"\(charging.poll_seconds\): one poll of them takes 2.09 s \(190 ms a meter\), so 10 fit"):
        parse_config(ports(11))
    parse_config(ports(14, baud=19200))
    with pytest.raises(ConfigError, match="so 14 fit"):
        parse_config(ports(15, baud=19200))


def on_gpio(config, pin, index=2):
    """Port ``index``'s relay moved from its expander pin to GPIO ``pin``."""
    port = config["charging"]["ports"][index]
    port.pop("expander")
    port["relay_pin"] = pin


@pytest.mark.parametrize("change, message", [
    (lambda c: c["charging"]["ports"][1]["meter"].update(unit=1),
     "meter unit id 1 is used twice on bus 'rs485': by charging port 'P0' and by 'P1' (two meters would answer)"),
    (lambda c: on_gpio(c, 5), "GPIO5 is used twice: by fire.zones[0].sprinklers[0] and by charging.ports[2].relay_pin"),
    (lambda c: c["fire"]["zones"][0].update(charger_pin=23) or on_gpio(c, 23),
     "GPIO23 is used twice: by fire.zones[0].charger_pin and by charging.ports[2].relay_pin"),
    (lambda c: c["charging"].update(expander_reset_pin=24) or on_gpio(c, 24),
     "GPIO24 is used twice: by charging.ports[2].relay_pin and by charging.expander_reset_pin"),
    (lambda c: c["charging"]["ports"][1].update(expander={"pin": 0}),
     "MCP23017 bus 1 0x20 GPA0 is used twice: by charging.ports[0].expander and by charging.ports[1].expander"),
    (lambda c: [(p.pop("expander"), p.update(relay_pin=24)) for p in c["charging"]["ports"][:2]],
     "GPIO24 is used twice: by charging.ports[0].relay_pin and by charging.ports[1].relay_pin"),
    (lambda c: c["charging"]["ports"][0].update(relay_pin=24),
     "charging port 'P0' needs exactly one switch: relay_pin or expander"),
    (lambda c: c["charging"]["ports"][0].update(zone="west"),
     "charging port 'P0' is in zone 'west', which is not a fire zone (zones: east)"),
    (lambda c: c["charging"]["ports"][0]["meter"].update(bus="rs232"),
     "charging port 'P0': its meter is on bus 'rs232', which is not a [[charging.buses]] (buses: rs485)"),
    (lambda c: c["charging"]["ports"][0]["meter"].update(profile="abb"),
     "charging port 'P0': no meter profile 'abb' (profiles: sdm120)"),
    (lambda c: c["charging"]["ports"][0].update(probe="28-00000a1b2c3d"),
     "charging port 'P0': probe 28-00000a1b2c3d is not among zone 'east''s probes"),
    (lambda c: c["charging"]["buses"][0].update(baud=9601), "meter bus 'rs485': baud 9601 is not one of"),
])
def test_bad_charging_config_is_a_clear_error(change, message):
    config = ports(3)
    change(config)
    with pytest.raises(ConfigError) as error:
        parse_config(config)
    assert message in str(error.value)
    assert "(got " not in str(error.value)  # the message names what is wrong; the table is not dumped after it


def test_a_full_charge_read_from_a_simulated_meter_stops_on_full_in_the_controller(tmp_path, meters):
    """The whole way on the simulated clock: pymodbus server -> poller -> inbox -> loop -> relay."""
    from lotcontrol.sim.clock import SimClock
    from lotcontrol.sim.pins import simulated_factory
    from lotcontrol.store import Store

    from .lots import pump, sim_lot

    config = parse_config({"fire": {"zones": [{"name": "east", "sprinklers": [5]}]}, "charging": {
        "buses": [{"name": "rs485", "port": meters.url, "timeout_seconds": 0.5}],
        "ports": [{"id": "P1", "zone": "east", "bay": "b1", "relay_pin": 21, "full_minutes": 1,
                   "meter": {"bus": "rs485", "unit": 1}}]}})
    factory = simulated_factory()
    clock = SimClock()
    try:
        c = sim_lot(config, Store(tmp_path / "lot.db"), factory, clock=clock).controller
        for t in range(0, 400, 2):
            meters.t["now"] = float(t)
            clock.advance_to(float(t))
            c.meters.poll()
            pump(c, float(t))
            if c.charging.ports["P1"].state == "off":
                break
        # 200 W until 100 s, a taper to 3 W at 200 s; below 10 W from 197 s (taper: 200 - 197 × t/100), full 60 s later
        stopped = [e for e in c.writer.store.events(type="charging.stopped")]
        assert [e.details["reason"] for e in stopped] == ["full"] and t == 258
        joules = 200 * 100 + 101.5 * 100 + 3 * 58
        assert stopped[0].details["kwh"] == round(joules / 3.6e6, 3)
        c.writer.flush()
        assert c.writer.store.charging_sessions()[0]["kwh"] == pytest.approx(joules / 3.6e6, abs=1e-4)
        assert factory.pin(21).state is False
    finally:
        factory.reset()


def test_the_shipped_sdm120_profile_file_is_the_built_in_profile():
    import tomllib
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "hardware" / "meters" / "eastron-sdm120.toml").read_text()
    shipped = ChargingConfig.model_validate(tomllib.loads(text)["charging"])
    assert shipped.profiles["sdm120"] == ChargingConfig().meter_profiles()["sdm120"]


def test_a_rig_meter_action_must_name_a_simulated_meter(tmp_path):
    from lotcontrol.sim.rig import RigError, load

    scenario = tmp_path / "bad.toml"
    scenario.write_text('name = "x"\nduration = 1.0\n[[meters]]\nbus = "rs485"\nunit = 1\n'
                        '[[actions]]\nat = 0.5\ndo = "silence_meter"\nbus = "rs485"\nunit = 2\n'
                        '[[expect]]\nevent = "charging.fault"\n')
    with pytest.raises(RigError, match=r"silence_meter at 0.5 s names no simulated meter \(bus 'rs485', unit 2\)"):
        load(scenario)


@pytest.fixture
def rtu_meters():
    profile = ChargingConfig().meter_profiles()["sdm120"]
    sim = SimulatedMeters({1: charge_curve(200.0, kwh0=12.5), 2: charge_curve(80.0, kwh0=3.0)}, profile,
                          clock=lambda: 0.0, framing="rtu")
    yield sim
    sim.close()


def test_the_production_rtu_path_over_a_serial_line(rtu_meters):
    """The default, Modbus RTU on a serial port (pyserial, RTU framing with CRCs), against pymodbus's
    serial server on the other end of a pseudo-terminal pair: only the RS-485 transceiver is missing."""
    settings = charging(rtu_meters.url)
    assert settings.buses[0].port.startswith("/dev/pts/")
    got = poll(settings)
    assert got["P1"].watts == pytest.approx(200.0) and got["P1"].kwh == pytest.approx(12.5) and got["P1"].error is None
    assert got["P2"].watts == pytest.approx(80.0)
    rtu_meters.silent.add(2)
    got = poll(settings)
    assert got["P2"].watts is None and got["P2"].answered is False and got["P1"].watts == pytest.approx(200.0)
