"""The [mqtt] section: off by default, every mistake named by file and key."""

import pytest

from lotcontrol.config import Config, dump_config, parse_config
from lotcontrol.errors import ConfigError


def test_mqtt_is_off_and_remote_open_refused_by_default():
    mqtt = Config().mqtt
    assert (mqtt.enabled, mqtt.allow_remote_open, mqtt.allow_plaintext, mqtt.topic_prefix) == (False, False, False, "lotcontrol")


@pytest.mark.parametrize("section, message", [
    ({"lot": "a/b"}, "mqtt.lot: String should match pattern"),
    ({"lot": "#"}, "mqtt.lot: String should match pattern"),
    ({"topic_prefix": "+"}, "mqtt.topic_prefix: String should match pattern"),
    ({"port": 0}, "mqtt.port: Input should be greater than or equal to 1"),
    ({"username": "a", "password": "x", "password_file": "/p"}, "mqtt: set password or password_file, not both"),
    ({"password": "x"}, "mqtt: a password needs a username"),
    ({"tls": {"ca_file": "/ca", "cert_file": "/c"}}, "mqtt.tls: cert_file and key_file go together"),
    ({"reconnect_min_seconds": 10.0, "reconnect_max_seconds": 5.0}, "mqtt: reconnect_min_seconds (10.0) is above"),
    ({"allow_remote_opn": True}, "unknown key mqtt.allow_remote_opn (allowed here: enabled, host, port, lot"),
])
def test_a_bad_mqtt_setting_names_the_key(section, message):
    with pytest.raises(ConfigError) as raised:
        parse_config({"mqtt": section}, source="lot.toml")
    assert str(raised.value).startswith("lot.toml: " + message), str(raised.value)


def test_the_tls_table_round_trips_through_config_show():
    import tomllib

    config = parse_config({"mqtt": {"enabled": True, "lot": "A", "tls": {"ca_file": "/etc/ca.crt"}}})
    again = parse_config(tomllib.loads(dump_config(config)))
    assert again.mqtt == config.mqtt and again.mqtt.tls.ca_file == "/etc/ca.crt"
