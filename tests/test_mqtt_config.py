"""The [mqtt] section: off by default, every mistake named by file and key."""

import pytest

from lotcontrol.config import Config, dump_config, parse_config
from lotcontrol.errors import ConfigError

from .broker import make_broker, mqtt_config, tls_files  # noqa: F401  (pytest fixtures)


def test_mqtt_is_off_and_remote_open_refused_by_default():
    mqtt = Config().mqtt
    assert (mqtt.enabled, mqtt.allow_remote_open, mqtt.allow_plaintext, mqtt.topic_prefix) == (False, False, False, "lotcontrol")


@pytest.mark.parametrize("section, message", [
    ({"lot": "a/b"}, "mqtt.lot: String should match pattern"),
    ({"lot": "#"}, "mqtt.lot: String should match pattern"),
    ({"lot": "residents"}, "mqtt: lot 'residents' cannot be a lot id: lotcontrol/residents/ holds the hub's"),
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


@pytest.mark.parametrize("section", [
    {"password": "hunter2"},  # an error about the whole table
    {"username": "a", "password": "hunter2" * 40},  # an error about the password itself
    {"username": "a", "password": "hunter2", "reconnect_min_seconds": 10.0, "reconnect_max_seconds": 5.0},
])
def test_a_config_error_never_shows_the_broker_password(section):
    """The error goes to a terminal, a log, a support ticket: it names the key, never the secret."""
    with pytest.raises(ConfigError) as raised:
        parse_config({"mqtt": section}, source="lot.toml")
    assert "hunter2" not in str(raised.value) and str(raised.value).startswith("lot.toml: mqtt")


def test_the_tls_table_round_trips_through_config_show():
    import tomllib

    config = parse_config({"mqtt": {"enabled": True, "lot": "A", "tls": {"ca_file": "/etc/ca.crt"}}})
    again = parse_config(tomllib.loads(dump_config(config)))
    assert again.mqtt == config.mqtt and again.mqtt.tls.ca_file == "/etc/ca.crt"


def test_the_sample_mosquitto_conf_and_acl_serve_a_lot_over_tls_only(make_broker, tls_files, tmp_path):
    """hardware/mosquitto/mosquitto.conf as shipped (its /etc paths pointed at test files): a lot logs
    in over TLS with its password and publishes its own topics; anonymous clients are refused."""
    import subprocess
    import threading
    from pathlib import Path

    import paho.mqtt.client as paho

    from lotcontrol.fleet.mqtt import MqttLink

    shipped = Path(__file__).resolve().parents[1] / "hardware" / "mosquitto"
    passwd = tmp_path / "passwd"
    passwd.touch(mode=0o600)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "lot-A", "pw-A"], check=True, capture_output=True)
    text = (shipped / "mosquitto.conf").read_text()
    for shipped_path, ours in (("/etc/mosquitto/certs/village-ca.crt", tls_files.ca),
                               ("/etc/mosquitto/certs/broker.crt", tls_files.server_cert),
                               ("/etc/mosquitto/certs/broker.key", tls_files.server_key),
                               ("/etc/mosquitto/passwd", passwd),
                               ("/etc/mosquitto/lotcontrol.acl", shipped / "lotcontrol.acl")):
        assert shipped_path in text
        text = text.replace(shipped_path, str(ours))
    broker = make_broker(config_text=text, tls=tls_files)
    link = MqttLink(mqtt_config(broker, username="lot-A", password="pw-A")).start()
    try:
        assert link.connected.wait(10), broker.log()
    finally:
        link.stop()
    refused = threading.Event()
    anonymous = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="anonymous")
    anonymous.tls_set(ca_certs=str(tls_files.ca))
    anonymous.on_connect = lambda c, u, f, reason, p: reason.is_failure and refused.set()
    anonymous.connect(broker.host, broker.port)
    anonymous.loop_start()
    try:
        assert refused.wait(10)
    finally:
        anonymous.disconnect()
        anonymous.loop_stop()


def test_check_config_refuses_mqtt_secrets_others_can_read(run, tmp_path, tls_files):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    secret.chmod(0o640)
    path = tmp_path / "lot.toml"
    path.write_text(f'[mqtt]\nenabled = true\nlot = "A"\nusername = "lot-A"\npassword_file = "{secret}"\n'
                    'allow_plaintext = true\n')
    result = run("check-config", path)
    assert (result.exit_code, result.output) == (
        1, f"Error: mqtt.password_file {secret} can be read by others (mode 640): run `chmod 600 {secret}`\n")
    secret.chmod(0o600)
    assert run("check-config", path).exit_code == 0
    key = tmp_path / "client.key"
    key.write_bytes(tls_files.client_key.read_bytes())
    key.chmod(0o644)
    path.write_text(f'[mqtt]\nenabled = true\nlot = "A"\n[mqtt.tls]\nca_file = "{tls_files.ca}"\n'
                    f'cert_file = "{tls_files.client_cert}"\nkey_file = "{key}"\n')
    assert run("check-config", path).output == (f"Error: mqtt.tls.key_file {key} can be read by others (mode 644): "
                                                 f"run `chmod 600 {key}`\n")
    path.write_text(f'[mqtt]\nenabled = true\nlot = "A"\n[mqtt.tls]\nca_file = "{tmp_path}/nope.crt"\n')
    assert run("check-config", path).output == f"Error: mqtt.tls.ca_file {tmp_path}/nope.crt cannot be read\n"


def test_a_lot_whose_mqtt_files_cannot_be_used_runs_on_alone(run, tmp_path, data_dir):
    from gpiozero.pins.mock import MockFactory

    from lotcontrol.config import prepare_data_dir

    from .lots import running_lot

    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    config = parse_config({"mqtt": {"enabled": True, "lot": "A", "username": "lot-A", "password_file": str(secret)}})
    factory = MockFactory()
    try:
        with running_lot(config, prepare_data_dir(data_dir), factory) as lot:
            assert lot.link is None
            assert run("gate", "open").exit_code == 0  # the lot works
            lot.controller.writer.flush()
            failed = [e for e in lot.controller.writer.store.events() if e.type == "mqtt.failed"]
            assert [e.details["error"] for e in failed] == [
                f"mqtt.password_file {secret} can be read by others (mode 644): run `chmod 600 {secret}`"]
    finally:
        factory.reset()


def test_a_failure_while_setting_up_the_village_link_is_an_event_not_a_stop(tmp_path, data_dir, monkeypatch):
    """Whatever fails while the MQTT parts are put together (here Home Assistant discovery), the lot runs
    on alone: the fire watch is already up and must not be taken down by a part around it."""
    from gpiozero.pins.mock import MockFactory

    from lotcontrol.config import prepare_data_dir
    from lotcontrol.fleet import discovery

    from .lots import running_lot

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in discovery")
    monkeypatch.setattr(discovery, "Discovery", broken)
    config = parse_config({"mqtt": {"enabled": True, "lot": "A", "port": 1}})
    factory = MockFactory()
    try:
        with running_lot(config, prepare_data_dir(data_dir), factory) as lot:
            assert lot.link is None and lot.controller.mqtt is None
            lot.controller.writer.flush()
            failed = [e.details["error"] for e in lot.controller.writer.store.events() if e.type == "mqtt.failed"]
            assert failed == ["RuntimeError: a bug in discovery"]
    finally:
        factory.reset()


def test_check_config_refuses_mqtt_without_tls_as_run_refuses_the_residents(run, tmp_path):
    """Templates travel only over TLS: the rule the lot's resident sync and the hub apply
    (fleet.residents.templates_refused), before either starts, with their reason."""
    path = tmp_path / "lot.toml"
    path.write_text('[mqtt]\nenabled = true\nlot = "A"\n')
    result = run("check-config", path)
    assert (result.exit_code, result.output) == (
        1, f"Error: {path}: face templates travel only over TLS: set [mqtt.tls] (ca_file) for the broker\n")
    path.write_text('[mqtt]\nenabled = true\nlot = "A"\nhost = "broker.village"\nallow_plaintext = true\n')
    assert run("check-config", path).output == (
        f"Error: {path}: face templates travel only over TLS: mqtt.allow_plaintext is for a test broker on "
        "127.0.0.1, not broker.village; set [mqtt.tls]\n")
    path.write_text('[mqtt]\nenabled = true\nlot = "A"\nallow_plaintext = true\n')  # a test broker here
    assert run("check-config", path).exit_code == 0
    path.write_text('[mqtt]\nenabled = false\n')
    assert run("check-config", path).exit_code == 0
