import os
import stat

import pytest

from lotcontrol.config import Config, load_config, parse_config, prepare_data_dir
from lotcontrol.errors import ConfigError, DataDirError


def write(tmp_path, text: str):
    path = tmp_path / "lot.toml"
    path.write_text(text)
    return path


def test_no_file_at_the_default_path_means_all_defaults():
    assert load_config() == Config()


def test_a_named_file_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=f"^config file {tmp_path}/nope.toml does not exist$"):
        load_config(tmp_path / "nope.toml")


def test_env_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LOTCONTROL_CONFIG", str(write(tmp_path, "[match]\naccept_distance = 0.4\n")))
    assert load_config().match.accept_distance == 0.4


def test_values_are_read(tmp_path):
    config = load_config(write(tmp_path, "[match]\nmargin = 0.1\n[gate]\nrelay_pin = 5\nopen_seconds = 3\n"))
    assert (config.match.margin, config.gate.relay_pin, config.gate.open_seconds) == (0.1, 5, 3.0)
    assert config.match.accept_distance == Config().match.accept_distance


@pytest.mark.parametrize("text, message", [
    ("[match]\naccept_distanse = 0.4\n",
     "lot.toml: unknown key match.accept_distanse (allowed here: accept_distance, crowding_factor, crowding_neighbours, margin, max_stranger_rate, "
     "lookalike_distance, lookalike_factor, population)"),
    ("[gait]\nx = 1\n", "lot.toml: unknown key gait (allowed here: match, enroll, camera, vision, gate, events, fire, notify, bays, mqtt, hub, charging, access, wiegand, visitors, site, web)"),
    ("[match]\naccept_distance = 'low'\n",
     "lot.toml: match.accept_distance: Input should be a valid number (got 'low')"),
    ("[match]\naccept_distance = 1.5\n", "lot.toml: match.accept_distance: Input should be less than 1 (got 1.5)"),
    ("[gate]\nrelay_pin = 40\n", "lot.toml: gate.relay_pin: Input should be less than or equal to 27 (got 40)"),
    ("[gate]\nrelay_pin = true\n", "lot.toml: gate.relay_pin: Input should be a valid integer (got True)"),
    ("match = 3\n", "lot.toml: match: must be a table ([match])"),
    ("[match\n", "lot.toml: not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 7)"),
])
def test_a_bad_value_names_the_file_the_key_and_what_is_allowed(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))
    assert str(error.value) == f"{tmp_path}/{message}"


def test_one_pin_cannot_serve_two_roles():
    from lotcontrol.config import GateConfig, Pin
    from pydantic import Field

    class Doubled(GateConfig):
        siren_pin: Pin = Field(17)

    class WithSiren(Config):
        gate: Doubled = Doubled()

    with pytest.raises(ValueError, match="GPIO17 is used twice: by gate.relay_pin and by gate.siren_pin"):
        WithSiren()


def test_a_file_that_is_not_utf8_is_an_error(tmp_path):
    path = tmp_path / "lot.toml"
    path.write_bytes(b"\xff\xfe[match]")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(path)


def test_data_dir_is_created_owner_only(tmp_path):
    path = prepare_data_dir(tmp_path / "a" / "data")
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_a_data_dir_open_to_others_is_refused_with_the_fix(tmp_path):
    folder = tmp_path / "open"
    folder.mkdir()
    os.chmod(folder, 0o755)
    with pytest.raises(DataDirError, match=rf"data directory {folder} is open to other users \(mode 755\).*chmod 700"):
        prepare_data_dir(folder)


def test_data_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LOTCONTROL_DATA_DIR", str(tmp_path / "env-data"))
    assert prepare_data_dir() == tmp_path / "env-data"


def test_data_dir_under_systemd(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    assert prepare_data_dir() == tmp_path / "state"


def test_check_config_prints_the_effective_settings(run, tmp_path):
    path = write(tmp_path, "[match]\naccept_distance = 0.4\n")
    result = run("--config", path, "check-config")
    assert result.exit_code == 0
    assert result.output.startswith(f"# lotcontrol configuration: {path}\n\n[match]\n")
    assert "\naccept_distance = 0.4\n" in result.output
    assert "\nrelay_pin = 17\n" in result.output
    # what it prints is itself a valid configuration that means the same
    import tomllib
    assert parse_config(tomllib.loads(result.output)) == load_config(path)


def test_check_config_with_a_bad_file_exits_1_without_traceback(run, tmp_path):
    path = write(tmp_path, "[gate]\nopen_seconds = 0\n")
    result = run("check-config", path)
    assert result.exit_code == 1
    assert result.output == f"Error: {path}: gate.open_seconds: Input should be greater than 0 (got 0)\n"


def test_a_face_must_be_looked_for_more_often_than_it_is_taken_to_have_left(run, tmp_path):
    path = write(tmp_path, "[vision]\nfollow_seconds = 1.5\n")
    result = run("check-config", path)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {path}: vision: ")
    assert "follow_seconds = 1.5 is not shorter than track_timeout_seconds = 1:" in result.output
    assert "Traceback" not in result.output
    ok = write(tmp_path, "[vision]\nfollow_seconds = 1.5\ntrack_timeout_seconds = 3\n")
    assert run("check-config", ok).exit_code == 0
    with pytest.raises(ConfigError, match="search_seconds = 2 is not shorter"):
        parse_config({"vision": {"search_seconds": 2.0}})


def test_a_bad_config_stops_every_command(run, tmp_path):
    path = write(tmp_path, "[enroll]\nworkers = -1\n")
    result = run("--config", path, "residents")
    assert result.exit_code == 1
    assert result.output == f"Error: {path}: enroll.workers: Input should be greater than or equal to 0 (got -1)\n"
