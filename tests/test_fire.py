"""Fire logic without hardware: readings and contacts in, zone states and transitions out."""

import pytest

from lotcontrol.config import parse_config
from lotcontrol.messages import Reading
from lotcontrol.safety.fire import ALARM, NORMAL, PREALARM, ZoneWatch
from lotcontrol.safety.probes import read_probe

PROBE = "28-00000a1b2c3d"


def settings(**fire):
    zone = {"name": "east", "sprinklers": [5], "probes": [PROBE], "charger_pin": 23}
    return parse_config({"fire": {"zones": [zone], **fire}}).fire


def watch(**fire):
    s = settings(**fire)
    zone = ZoneWatch(s.zones[0], s, started=0.0)
    zone.contact("sprinkler-1", True)
    return zone


def temp(zone, celsius, t):
    zone.reading(Reading(PROBE, celsius, None, t))
    return [(x.type, x.sensor, x.reading) for x in zone.update(t)]


def test_normal_readings_change_nothing():
    zone = watch()
    assert temp(zone, 25.0, 1.0) == []
    assert zone.level == NORMAL and zone.charger_may_run


def test_prealarm_then_alarm_then_reset():
    zone = watch()
    assert temp(zone, 50.0, 1.0) == [("fire.prealarm", PROBE, 50.0)]
    assert zone.level == PREALARM and not zone.charger_may_run
    assert temp(zone, 60.0, 2.0) == [("fire.alarm", PROBE, 60.0)]
    assert temp(zone, 20.0, 3.0) == []  # an alarm latches
    assert zone.level == ALARM
    transitions, refused = zone.reset(4.0)
    assert refused is None and [t.type for t in transitions] == ["fire.reset"]
    assert zone.level == NORMAL


def test_reset_is_refused_while_an_input_still_reads_alarm():
    zone = watch()
    zone.contact("sprinkler-1", False)
    assert [t.type for t in zone.update(1.0)] == ["fire.alarm"]
    transitions, refused = zone.reset(2.0)
    assert (transitions, refused) == ([], "sprinkler-1 (open)")
    assert zone.level == ALARM


def test_a_contact_that_cannot_be_read_is_an_alarm_not_normal():
    zone = watch()
    zone.contact("sprinkler-1", None)
    assert [(t.type, t.reading) for t in zone.update(1.0)] == [("fire.alarm", "unreadable")]


def test_a_fast_rise_above_40_is_a_prealarm():
    zone = watch()
    transitions = []
    for second in range(0, 31, 5):  # 41 °C, rising 0.15 °C/s: 9 °C/min, seen once 20 s of it are in
        transitions += [(second, *t) for t in temp(zone, 41.0 + second * 0.15, float(second))]
    assert transitions == [(20, "fire.prealarm", PROBE, "rising 9.0 °C/min at 44.0 °C")]


def test_a_fast_rise_below_40_or_too_short_is_not():
    zone = watch()
    for second in range(0, 31, 5):
        assert temp(zone, 20.0 + second * 0.3, float(second)) == []  # 36 °C/min but at 20-29 °C
    zone = watch()
    assert temp(zone, 41.0, 0.0) == [] and temp(zone, 43.0, 10.0) == []  # 12 °C/min over 10 s only


def test_prealarm_clears_after_the_hold_time():
    zone = watch(hold_seconds=60)
    temp(zone, 52.0, 0.0)
    assert temp(zone, 30.0, 10.0) == []
    assert temp(zone, 30.0, 69.0) == []
    assert temp(zone, 30.0, 70.0) == [("fire.cleared", None, "prealarm")]
    assert zone.level == NORMAL


@pytest.mark.parametrize("fault", ["85.000 °C power-on reset value", "CRC check failed"])
def test_probe_faults_cut_power_and_clear_after_the_hold(fault):
    zone = watch(hold_seconds=30)
    zone.reading(Reading(PROBE, None, fault, 1.0))
    assert [(t.type, t.reading) for t in zone.update(1.0)] == [("fire.fault", fault)]
    assert not zone.charger_may_run and zone.level == NORMAL
    assert zone.update(2.0) == []  # reported once
    assert temp(zone, 22.0, 5.0) == []
    assert temp(zone, 22.0, 35.0) == [("fire.cleared", PROBE, "fault")]
    assert zone.charger_may_run


def test_a_fault_does_not_cut_power_when_configured_so():
    zone = watch(fault_cuts_power=False)
    zone.reading(Reading(PROBE, None, "CRC check failed", 1.0))
    zone.update(1.0)
    assert zone.faults and zone.charger_may_run


def test_a_probe_that_stops_reporting_is_a_fault():
    zone = watch(stale_seconds=10)
    temp(zone, 22.0, 0.0)
    assert zone.update(10.0) == []
    assert [(t.type, t.reading) for t in zone.update(10.5)] == [("fire.fault", "no reading for 10 s")]


def test_a_drill_is_an_alarm_marked_as_drill_and_resets():
    zone = watch()
    zone.drill = True
    [transition] = zone.update(1.0)
    assert (transition.type, transition.drill) == ("fire.alarm", True)
    assert transition.details() == {"zone": "east", "sensor": "drill", "reading": "drill", "drill": True}
    assert zone.reset(2.0)[1] is None and zone.level == NORMAL


@pytest.mark.parametrize("files, celsius, fault", [
    ({"temperature": "23125\n"}, 23.125, None),
    ({"w1_slave": "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"}, 23.125, None),
    ({"w1_slave": "72 01 4b 46 7f ff 0e 10 57 : crc=00 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"}, None, "CRC check failed"),
    ({"temperature": "85000\n"}, None, "85.000 °C power-on reset value"),
    ({"temperature": "-127000\n"}, None, "-127.000 °C is outside -55…125 °C"),
    ({"temperature": "126000"}, None, "126.000 °C is outside -55…125 °C"),
    ({"temperature": "garbage"}, None, "unreadable (ValueError)"),
    ({"temperature": ""}, None, "unreadable (ValueError)"),
    ({}, None, "probe missing (no file in the 1-Wire tree)"),
])
def test_read_probe(tmp_path, files, celsius, fault):
    folder = tmp_path / PROBE
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    assert read_probe(tmp_path, PROBE, 7.0) == Reading(PROBE, celsius, fault, 7.0)


def test_a_probe_folder_that_is_gone_is_missing(tmp_path):
    assert read_probe(tmp_path, PROBE, 1.0).fault == "probe missing (no file in the 1-Wire tree)"


@pytest.mark.parametrize("fire, message", [
    ({"zones": [{"name": "a"}]}, "fire zone 'a' has no sensors"),
    ({"zones": [{"name": "a", "sprinklers": [5]}, {"name": "a", "sprinklers": [6]}]}, "fire zone 'a' is named twice"),
    ({"zones": [{"name": "a", "probes": [PROBE]}, {"name": "b", "probes": [PROBE]}]}, f"probe {PROBE} is listed in two zones"),
    ({"zones": [{"name": "a", "probes": ["28-XYZ"]}]}, "String should match pattern"),
    ({"prealarm_c": 65}, "prealarm_c (65.0) must be below alarm_c (60.0)"),
    ({"poll_seconds": 6}, "stale_seconds (10.0) must be at least twice poll_seconds (6.0)"),
    ({"siren_pin": 17}, "GPIO17 is used twice: by gate.relay_pin and by fire.siren_pin"),
    ({"zones": [{"name": "a", "sprinklers": [5], "charger_pin": 5}]},
     "GPIO5 is used twice: by fire.zones[0].sprinklers[0] and by fire.zones[0].charger_pin"),
])
def test_fire_configuration_errors(fire, message):
    from lotcontrol.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        parse_config({"fire": fire}, source="lot.toml")
