"""`lotcontrol edit`: a resident's unit, phone, note and validity changed without a photo, checked as
enroll checks them, logged, and on the hub sent to the lots."""

import json

import pytest

from lotcontrol.config import prepare_data_dir
from lotcontrol.fleet.residents import apply_message
from lotcontrol.hub import store as hub_store
from lotcontrol.store import Store

from .test_fleet_residents import enroll, private_store, sent


@pytest.fixture
def anna(data_dir):
    with Store.in_dir(prepare_data_dir(data_dir)) as store:
        store.add_resident("Anna Berg", unit="4B", phone="+46 70 123 45 67", note="blue bike")
    return data_dir


def show(run, name="Anna Berg"):
    return json.loads(run("show", name, "--json").output)


def edits(run):
    return [(e["resident"], e["details"]) for e in json.loads(run("events", "--type", "resident.edited", "--json").output)]


def test_edit_changes_and_clears_fields_without_a_photo_and_logs_it(anna, run):
    result = run("edit", "anna berg", "--unit", "5C", "--valid-until", "2027-06-30", "--phone", "")
    assert (result.exit_code, result.output) == (0, "changed unit, phone, valid until of 'Anna Berg'\n")
    shown = show(run)
    assert (shown["unit"], shown["phone"], shown["note"], shown["valid_from"], shown["valid_until"]) == (
        "5C", None, "blue bike", None, "2027-06-30")
    assert edits(run) == [("Anna Berg", {"fields": ["unit", "phone", "valid_until"]})]
    assert run("edit", "Anna Berg", "--valid-until", "").output == "changed valid until of 'Anna Berg'\n"
    assert show(run)["valid_until"] is None


def test_a_refused_value_is_enrolls_error_and_changes_nothing(anna, run):
    before = show(run)
    for args, message in [
        (["--unit", "7", "--valid-until", "soon"], "Error: valid until 'soon' is not a date (YYYY-MM-DD)\n"),
        (["--unit", "7", "--phone", "call me"],
         "Error: phone 'call me' is not a phone number (digits, spaces, + ( ) - . / only)\n"),
        (["--valid-from", "2027-02-01", "--valid-until", "2027-01-31"],
         "Error: valid from 2027-02-01 is after valid until 2027-01-31\n"),
        (["--unit", "x" * 65], "Error: unit can have at most 64 characters, not 65\n"),
    ]:
        result = run("edit", "Anna Berg", *args)
        assert (result.exit_code, result.output) == (1, message), args
    run("edit", "Anna Berg", "--valid-until", "2027-01-31")
    result = run("edit", "Anna Berg", "--unit", "7", "--valid-from", "2027-02-01")  # after the one on file
    assert (result.exit_code, result.output) == (1, "Error: valid from 2027-02-01 is after valid until 2027-01-31\n")
    assert {**show(run), "updated": None, "valid_until": None} == {**before, "updated": None, "events": show(run)["events"]}
    assert [fields["fields"] for _, fields in edits(run)] == [["valid_until"]]


def test_the_same_values_again_change_nothing_and_log_nothing(anna, run):
    before = show(run)
    result = run("edit", "Anna Berg", "--unit", "4B", "--note", " blue   bike ")  # as the store keeps it
    assert (result.exit_code, result.output) == (0, "'Anna Berg' already has these details: nothing changed\n")
    assert show(run)["updated"] == before["updated"] and edits(run) == []


def test_edit_needs_a_resident_and_a_field(anna, run):
    result = run("edit", "Ghost", "--unit", "1")
    assert (result.exit_code, result.output) == (1, "Error: no resident named 'Ghost'\n")
    result = run("edit", "Anna Berg")
    assert result.exit_code == 2
    assert "give at least one of --unit, --phone, --note, --valid-from, --valid-until" in result.output


def test_on_the_hub_the_change_goes_to_the_lots(run, tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text('[hub]\nlots = ["A", "B"]\n')
    hub = next(private_store(tmp_path / "hub", hub_store.open_hub))
    uid = enroll(hub, "Anna Berg", 1, 2, unit="4B", valid_until="2026-12-31")
    with Store.in_dir(prepare_data_dir(tmp_path / "lot")) as lot:
        assert apply_message(lot, "A", sent(hub, uid)).change == "added"
        hub_store.mark_published(hub, hub_store.pending(hub))
        result = run("--config", config, "--hub", tmp_path / "hub", "edit", "Anna Berg", "--unit", "5C",
                     "--valid-until", "", data_dir=False)
        assert (result.exit_code, result.output) == (0, "changed unit, valid until of 'Anna Berg'\n")
        assert [pending for pending, _ in hub_store.pending(hub)] == [uid]  # `lotcontrol hub` publishes it
        assert apply_message(lot, "A", sent(hub, uid)).change == "updated"
        [copy] = lot.residents()
        assert (copy.name, copy.unit, copy.valid_until, copy.templates) == ("Anna Berg", "5C", None, 2)
    assert [e.type for e in hub.events()] == ["resident.edited"]
    hub.close()


@pytest.fixture
def groups_config(tmp_path):
    path = tmp_path / "lotcontrol.toml"
    path.write_text('[access.groups.day]\nwindows = ["mon-fri 06:00-23:00"]\n'
                    '[access.groups.weekend]\nwindows = ["sat,sun 08:00-20:00"]\n')
    return path


def test_groups_anti_passback_and_a_presence_reset_are_edited_shown_and_logged(anna, run, groups_config):
    config = ("--config", groups_config)
    result = run(*config, "edit", "Anna Berg", "--groups", "weekend, day", "--antipassback", "enforce")
    assert (result.exit_code, result.output) == (0, "changed access groups, antipassback of 'Anna Berg'\n")
    assert (show(run)["groups"], show(run)["antipassback"]) == (["day", "weekend"], "enforce")
    listed = run(*config, "residents").output.splitlines()
    assert "GROUPS" in listed[0] and "day,weekend" in listed[1] and "anti-passback enforce" in listed[1]
    assert run(*config, "edit", "Anna Berg", "--reset-presence").output == "changed presence reset of 'Anna Berg'\n"
    assert run(*config, "edit", "Anna Berg", "--groups", "", "--antipassback", "site").exit_code == 0
    assert (show(run)["groups"], show(run)["antipassback"]) == ([], None)
    assert [d["fields"] for _, d in edits(run)] == [["access_groups", "antipassback"], ["presence_reset"],
                                                    ["access_groups", "antipassback"]]


def test_an_unknown_group_is_refused_naming_it_and_changes_nothing(anna, run, groups_config):
    result = run("--config", groups_config, "edit", "Anna Berg", "--groups", "day,night", "--unit", "7")
    assert result.exit_code == 2 and "no access group 'night' in the configuration (groups: day, weekend)" in result.output
    assert "Traceback" not in result.output
    assert (show(run)["unit"], show(run)["groups"]) == ("4B", [])
    result = run("edit", "Anna Berg", "--groups", "day")  # no groups configured at all
    assert "no access group 'day' in the configuration (groups: none: add [access.groups.NAME])" in result.output


def test_check_config_names_a_resident_in_a_group_the_configuration_lacks(anna, run, groups_config, tmp_path):
    assert run("--config", groups_config, "edit", "Anna Berg", "--groups", "weekend").exit_code == 0
    assert run("check-config", groups_config).exit_code == 0
    lacking = tmp_path / "without-weekend.toml"
    lacking.write_text('[access.groups.day]\nwindows = ["mon-fri 06:00-23:00"]\n')
    result = run("check-config", lacking)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert ("resident 'Anna Berg' is in access group 'weekend', which [access.groups] does not have: add "
            "[access.groups.weekend]") in result.output


def test_enroll_refuses_an_unknown_group_before_any_face_work(run, groups_config, tmp_path):
    photo = tmp_path / "anna.jpg"
    photo.write_bytes(b"not looked at")
    result = run("--config", groups_config, "enroll", "Anna Berg", photo, "--groups", "nights")
    assert result.exit_code == 2 and "no access group 'nights' in the configuration (groups: day, weekend)" in result.output
    assert "Traceback" not in result.output
