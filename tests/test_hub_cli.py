"""Staff commands on the hub: the same commands with --hub DIR (or hub.data_dir), lots per resident."""

import json

import pytest

from lotcontrol.hub import store as hub_store

from .conftest import FACES, need


@pytest.fixture
def photo():
    return need(FACES) / "Naomi_Watts" / "Naomi_Watts_0001.jpg"


@pytest.fixture
def hub_cli(run, tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text('[hub]\nlots = ["A", "B", "C"]\n')
    hub = tmp_path / "hub"

    def call(*args, **kwargs):
        return run("--config", config, "--hub", hub, *args, data_dir=False, **kwargs)
    call.dir = hub
    call.config = config
    return call


def pending_names(folder):
    with hub_store.open_hub(folder) as store:
        return [hub_store.message(store, uid).name for uid, _ in hub_store.pending(store)]


def test_enroll_on_the_hub_with_lots_and_change_them(hub_cli, photo):
    result = hub_cli("enroll", "Naomi Watts", photo, "--lots", "A,C", "--lot", "A")  # as the issue spells it, and --lot
    assert result.exit_code == 0, result.output
    assert hub_cli("lots", "naomi watts").output == "'Naomi Watts' may enter lots A, C\n"
    [shown] = json.loads(hub_cli("residents", "--json").output)
    assert (shown["name"], shown["lots"], shown["templates"]) == ("Naomi Watts", ["A", "C"], 1)
    assert hub_cli("lots", "Naomi Watts", "--lot", "B").output == "'Naomi Watts' may enter lot B\n"
    assert json.loads(hub_cli("show", "Naomi Watts", "--json").output)["lots"] == ["B"]
    assert "        lots: B\n" in hub_cli("show", "Naomi Watts").output
    assert hub_cli("lots", "Naomi Watts", "--all").output == "'Naomi Watts' may enter every lot\n"
    lines = hub_cli("residents").output.splitlines()
    assert lines[0].split() == ["NAME", "UNIT", "STATUS", "FACES", "VALID", "LOTS"]
    assert lines[1].split() == ["Naomi", "Watts", "-", "active", "1", "always", "every", "lot"]
    assert pending_names(hub_cli.dir) == ["Naomi Watts"]  # waiting for `lotcontrol hub` to publish it


def test_a_new_resident_without_lots_may_enter_every_lot_and_hub_data_dir_selects_the_hub(run, tmp_path, photo):
    config = tmp_path / "hub.toml"
    config.write_text(f'[hub]\ndata_dir = "{tmp_path / "hub"}"\nlots = ["A"]\n')
    assert run("--config", config, "enroll", "Naomi", photo, data_dir=False).exit_code == 0
    assert run("--config", config, "lots", "Naomi", data_dir=False).output == "'Naomi' may enter every lot\n"
    assert pending_names(tmp_path / "hub") == ["Naomi"]


def test_an_unknown_lot_is_refused_before_anything_is_done(hub_cli, photo):
    result = hub_cli("enroll", "Naomi Watts", photo, "--lot", "A", "--lot", "Q")
    assert result.exit_code == 1
    assert result.output == "Error: unknown lot 'Q': the hub knows A, B, C (hub.lots: each lot's mqtt.lot)\n"
    assert hub_cli("residents", "--json").output == "[]\n"
    assert hub_cli("enroll", "Naomi Watts", photo).exit_code == 0
    result = hub_cli("lots", "Naomi Watts", "--lot", "Z")
    assert (result.exit_code, result.output) == (1, "Error: unknown lot 'Z': the hub knows A, B, C (hub.lots: "
                                                    "each lot's mqtt.lot)\n")
    assert hub_cli("lots", "Naomi Watts").output == "'Naomi Watts' may enter every lot\n"
    result = hub_cli("lots", "Nobody", "--lot", "A")
    assert (result.exit_code, result.output) == (1, "Error: no resident named 'Nobody'\n")


def test_lots_need_the_hub(run, photo):
    result = run("enroll", "Naomi", photo, "--lot", "A")
    assert result.exit_code == 1
    assert result.output.startswith("Error: --lots assigns residents to lots on the hub: give --hub DIR")
    assert run("residents", "--json").output == "[]\n"
    result = run("lots", "Naomi")
    assert (result.exit_code, result.output) == (
        1, "Error: this works on the hub's database: give --hub DIR (or set hub.data_dir)\n")


def test_remove_on_the_hub_leaves_a_tombstone_to_publish(hub_cli, photo):
    assert hub_cli("enroll", "Naomi Watts", photo).exit_code == 0
    assert hub_cli("remove", "Naomi Watts", "--yes").exit_code == 0
    with hub_store.open_hub(hub_cli.dir) as store:
        [(uid, _)] = hub_store.pending(store)
        assert hub_store.message(store, uid).removed
        assert store.db.execute("SELECT count(*) FROM templates").fetchone()[0] == 0


def test_the_hub_process_needs_its_directory_and_mqtt(run, tmp_path):
    result = run("hub", data_dir=False)
    assert (result.exit_code, result.output) == (
        1, "Error: this works on the hub's database: give --hub DIR (or set hub.data_dir)\n")
    result = run("--hub", tmp_path / "hub", "hub", data_dir=False)
    assert (result.exit_code, result.output) == (
        1, "Error: mqtt.enabled is false: the hub publishes through the broker; set [mqtt]\n")
