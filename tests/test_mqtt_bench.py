"""The MQTT figures in `lotcontrol bench`'s table (measured by lotcontrol.bench.mqtt, not here)."""

from lotcontrol.bench import suite

MQTT = {"loop_turn": {"mqtt off": {"mean_us": 40.0}, "mqtt on, broker down": {"mean_us": 45.0},
                      "mqtt on, broker up": {"mean_us": 50.0}},
        "burst_to_outputs": {"mqtt off": {"p99_ms": 24.0}, "mqtt on, broker down": {"p99_ms": 24.0},
                             "mqtt on, broker flooding": {"p99_ms": 30.0}},
        "peak_rss_mb": {"mqtt off": 53.7, "mqtt on, broker up": 57.3}, "events_per_second": 4536}


def test_mqtt_on_stands_beside_mqtt_off():
    rows = {row[0]: row[1:] for row in suite.mqtt_rows(MQTT)}
    assert rows["one turn of the controller's loop, mean, MQTT on and connected (plain: MQTT off)"] == (
        "50.0 µs", "40.0 µs (ours 1.25x)", None)
    assert rows["sprinkler burst -> charger off + gate open, p99, MQTT on, broker flooding (plain: MQTT off)"] == (
        "30.0 ms", "24.0 ms (ours 1.25x)", None)
    assert rows["peak memory (RSS): controller process, MQTT on (plain: MQTT off)"] == ("57 MB", "54 MB (ours 1.07x)",
                                                                                         None)
    assert rows["events per second one lot publishes to a local Mosquitto (QoS 1)"] == ("4536/s", None, None)
    assert len(rows) == 5


def test_without_a_broker_there_are_no_mqtt_rows():
    assert suite.mqtt_rows({"note": "mosquitto is missing: no figures with a broker"}) == []
    assert suite.mqtt_rows({}) == []
