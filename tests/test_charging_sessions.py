"""Charging sessions as pure logic on explicit times: every way a session starts and ends."""

import pytest

from lotcontrol.charging.sessions import CHARGING, DISABLED, FAULT, OFF, READY, MeterValues, Port
from lotcontrol.config import PortConfig

POLL = 2.0


def port(meter=True, resident=None, enabled=True, **settings):
    config = PortConfig.model_validate({
        "id": "A-01", "zone": "east", "bay": "east-1", "relay_pin": 24, "enabled": enabled,
        **({"meter": {"bus": "rs485", "unit": 1}} if meter else {}), **({"resident": resident} if resident else {}),
        **settings})
    return Port(config, POLL, 3, 0.0)


def feed(p, t, watts, kwh):
    return p.meter(MeterValues(watts, kwh), None, t)


def types(changes):
    return [(c.type, c.details.get("reason")) for c in changes]


def charge(p, start=0.0, watts=200.0, kwh=10.0):
    """A battery charging: readings every POLL seconds from ``start``; returns the next time."""
    assert types(feed(p, start, watts, kwh)) == [("charging.started", None)]
    return start + POLL


def test_a_metered_port_is_off_until_its_meter_answers_then_a_load_starts_a_session():
    p = port()
    assert p.state == READY and not p.wants_power  # a meter never read is not known to work
    assert feed(p, 0.0, 0.0, 10.0) == [] and p.wants_power and p.state == READY  # nothing plugged in
    assert types(feed(p, 2.0, 150.0, 10.0)) == [("charging.started", None)]
    assert p.state == CHARGING and p.session.start == 2.0 and p.session.start_kwh == 10.0


def test_full_after_the_power_stays_low_for_full_minutes():
    p = port(full_watts=10, full_minutes=20)
    t = charge(p)
    feed(p, t, 200.0, 10.5)
    taper_from = t + POLL
    assert feed(p, taper_from, 5.0, 11.0) == []  # trickle begins
    assert feed(p, taper_from + 20 * 60 - 1, 4.0, 11.01) == []
    stopped = feed(p, taper_from + 20 * 60, 4.0, 11.02)
    assert types(stopped) == [("charging.stopped", "full")]
    session = stopped[0].session
    assert session.kwh == pytest.approx(1.02) and session.peak_watts == 200.0 and session.end == taper_from + 1200
    assert p.state == OFF and not p.wants_power and p.last_stop == "full"


def test_a_power_rise_during_the_taper_restarts_the_full_wait():
    p = port(full_watts=10, full_minutes=1)
    t = charge(p)
    feed(p, t, 5.0, 10.1)
    feed(p, t + 50, 50.0, 10.2)  # the charger's balancing stage draws again
    assert feed(p, t + 70, 5.0, 10.2) == []
    assert types(feed(p, t + 130, 5.0, 10.2)) == [("charging.stopped", "full")]


def test_overload_above_max_watts_for_half_a_second_by_default():
    p = port(max_watts=600)
    t = charge(p)
    assert feed(p, t, 700.0, 10.1) == []
    assert feed(p, t + 0.25, 800.0, 10.1) == []  # read again by the poller a quarter second on
    assert types(feed(p, t + 0.5, 800.0, 10.1)) == [("charging.stopped", "overload")]
    assert not p.wants_power


def test_the_overload_time_is_configurable_and_never_above_1_s():
    config = PortConfig.model_validate({"id": "A-01", "zone": "east", "bay": "east-1", "relay_pin": 24, "max_watts": 600,
                                        "meter": {"bus": "rs485", "unit": 1}})
    p = Port(config, POLL, 3, 0.0, overload_seconds=1.0)
    t = charge(p)
    assert feed(p, t, 700.0, 10.1) == [] and feed(p, t + 0.9, 700.0, 10.1) == []
    assert types(feed(p, t + 1.0, 700.0, 10.1)) == [("charging.stopped", "overload")]
    from lotcontrol.config import ChargingConfig, ConfigError, parse_config
    assert ChargingConfig().overload_seconds == 0.5
    with pytest.raises(ConfigError, match="charging.overload_seconds"):
        parse_config({"charging": {"overload_seconds": 2.0}})  # "an overload cut within 1 s" cannot be configured away


def test_a_short_circuit_at_twice_max_watts_is_cut_at_its_first_reading():
    p = port(max_watts=600)
    t = charge(p)
    assert feed(p, t, 1199.0, 10.1) == []  # under twice the limit: confirmed first
    p2 = port(max_watts=600)
    t = charge(p2)
    assert types(feed(p2, t, 1200.0, 10.1)) == [("charging.stopped", "overload")]


def test_a_single_spike_is_no_overload():
    p = port(max_watts=600)
    t = charge(p)
    feed(p, t, 900.0, 10.1)
    assert feed(p, t + 0.25, 900.0, 10.1) == []
    assert feed(p, t + 0.5, 300.0, 10.1) == [] and feed(p, t + 2, 900.0, 10.2) == []
    assert p.state == CHARGING


def test_no_load_when_switched_on_for_a_resident_and_nothing_draws():
    p = port(resident="Anna Berg", no_load_minutes=2)
    feed(p, 0.0, 0.0, 3.0)  # the meter answers: the port comes on for her
    assert types(p.update(0.5, True)) == [("charging.started", None)]
    assert p.session.resident == "Anna Berg"
    assert feed(p, 2.0, 0.5, 3.0) == []
    assert types(feed(p, 120.5, 0.5, 3.0)) == [("charging.stopped", "no_load")]


def test_the_timer_ends_a_session_after_max_hours():
    p = port(max_hours=8)
    charge(p, start=10.0)
    end = 10.0 + 8 * 3600
    assert feed(p, end - 1, 150.0, 12.0) == [] and p.update(end - 1, True) == []
    assert types(p.update(end, True)) == [("charging.stopped", "timer")]


def test_a_silent_meter_is_lost_after_n_polls_and_the_port_fails_safe():
    p = port()
    t = charge(p)
    first = p.meter(None, "no answer from unit 1", t)
    assert types(first) == [("charging.fault", None)] and p.wants_power  # one silent poll is given time
    assert p.meter(None, "no answer", t + 2) == []
    lost = p.meter(None, "no answer", t + 4)
    assert types(lost) == [("charging.stopped", "meter_lost")] and p.state == FAULT and not p.wants_power
    assert p.enable(t + 5)[0] is False  # refused while the meter is lost
    feed(p, t + 6, 0.0, 10.0)  # it answers again: off, until staff enable it
    assert p.state == OFF and p.fault is None and p.enable(t + 7)[0] is True and p.state == READY


def test_a_failed_poll_shows_no_power_not_the_last_reading():
    p = port()
    charge(p)
    assert p.status(1.0)["watts"] == 200.0
    p.meter(None, "no answer from unit 1", 2.0)
    assert p.status(2.0)["watts"] is None and p.wants_power  # shown as unknown; still given lost_polls polls
    feed(p, 4.0, 180.0, 10.1)
    assert p.status(4.0)["watts"] == 180.0


def test_a_meter_that_answers_nonsense_is_faulty_at_once_never_0_w():
    p = port()
    charge(p)
    changes = p.meter(None, "unit 1 refused register 12", 2.0, answered=True)
    assert types(changes) == [("charging.fault", None), ("charging.stopped", "meter_lost")]
    assert p.state == FAULT


def test_a_poller_that_went_quiet_is_a_lost_meter_by_the_clock():
    p = port()
    charge(p, start=0.0)
    assert p.update(8.0, True) == []  # (3 + 1) polls of 2 s
    assert types(p.update(8.1, True)) == [("charging.fault", None), ("charging.stopped", "meter_lost")]


def test_over_temperature_stops_the_port():
    p = port(probe="28-00000a1b2c3d", over_temperature_c=45)
    charge(p)
    assert p.temperature(44.9, 3.0) == []
    assert types(p.temperature(45.0, 4.0)) == [("charging.stopped", "over_temperature")]
    assert p.state == OFF


def test_fire_ends_the_session_and_the_port_comes_back_when_power_may_return():
    p = port()
    charge(p)
    assert types(p.update(3.0, False)) == [("charging.stopped", "fire")]
    assert p.state == READY and p.cut
    assert feed(p, 4.0, 150.0, 10.2) == []  # cut: no session while the fire watch forbids power
    assert p.update(5.0, True) == []
    assert types(feed(p, 6.0, 150.0, 10.2)) == [("charging.started", None)]  # the bike still plugged in


def test_a_port_without_meter_gets_timer_and_fire_only():
    p = port(meter=False, max_hours=1)
    assert p.wants_power
    assert types(p.update(0.0, True)) == [("charging.started", None)]  # switched on: its timer runs
    assert types(p.update(100.0, False)) == [("charging.stopped", "fire")]
    assert types(p.update(200.0, True)) == [("charging.started", None)]  # switched on again after the fire
    stopped = p.update(200.0 + 3600, True)
    assert types(stopped) == [("charging.stopped", "timer")]
    assert "kwh" not in stopped[0].details and p.state == OFF


def test_staff_stop_disable_enable():
    p = port()
    charge(p)
    assert types(p.stop(3.0)) == [("charging.stopped", "staff")] and p.state == OFF
    p.stop(4.0, disable=True)
    assert p.state == DISABLED and not p.wants_power
    ok, message, _ = p.enable(5.0)
    assert ok and p.state == READY and message == "port 'A-01' enabled"
    p.stop(6.0)
    p.update(7.0, False)  # a pre-alarm in its zone
    ok, message, _ = p.enable(8.0)
    assert ok and message == "port 'A-01' enabled (its zone is cut by the fire watch: it comes on when power may return)"


def test_a_disabled_port_stays_off():
    p = port(enabled=False)
    feed(p, 0.0, 200.0, 1.0)
    assert p.state == DISABLED and not p.wants_power and p.session is None


def test_a_session_the_last_run_left_open_is_closed_from_the_meter_or_its_checkpoint():
    p = port()
    assert p.resume("k1", 10.0, 0.4, 150.0, 0.0) == []  # no reading yet: it waits for one
    closed = feed(p, 1.0, 150.0, 10.55)
    assert types(closed) == [("charging.interrupted", None), ("charging.started", None)]
    assert closed[0].session.kwh == pytest.approx(0.55) and closed[1].session.start_kwh == 10.55
    q = port()
    q.resume("k2", 10.0, 0.4, 150.0, 0.0)
    lost = q.update(8.5, True)  # the meter never answers: lost, and the old session keeps its checkpoint
    assert ("charging.interrupted", None) in types(lost)
    assert next(c.session for c in lost if c.type == "charging.interrupted").kwh == 0.4 and not q.interrupted
