"""`events --type`: a type that is no event type is an error naming it, never a quiet empty log."""

import json

from lotcontrol import event_types
import pytest

from lotcontrol.config import prepare_data_dir
from lotcontrol.store import Store


@pytest.fixture(autouse=True)
def database(data_dir):
    """A lot's database as the controller first makes it (reading commands never create one)."""
    Store.in_dir(prepare_data_dir(data_dir)).close()


def test_an_unknown_type_is_an_error_that_lists_the_types(run):
    result = run("events", "--type", "nosuch")
    assert result.exit_code == 1
    assert result.output.startswith("Error: --type 'nosuch' is no event type nor the start of one (such as access): "
                                    "the event types are access.denied, access.granted, ")
    assert "fire.alarm, " in result.output and "resident.suspended, " in result.output


def test_a_misspelt_type_or_prefix_gets_the_close_ones(run):
    result = run("events", "--type", "acces")
    assert result.exit_code == 1 and "did you mean access?" in result.output
    result = run("events", "--type", "fire.alrm", "--json")
    assert result.exit_code == 1 and "did you mean fire.alarm" in result.output


def test_known_types_and_prefixes_with_no_event_yet_are_an_empty_log_not_an_error(run):
    for type_ in ("access", "fire.alarm", "resident.suspended", "gate"):
        result = run("events", "--type", type_, "--json")
        assert (result.exit_code, result.output) == (0, "[]\n"), type_


def test_a_type_only_the_log_holds_is_still_shown(run, data_dir):
    run("events")  # makes the database
    with Store(data_dir / "lotcontrol.db") as store:
        store.log_event("legacy.thing", None, {"n": 1})  # an older version's type
    assert [e["type"] for e in json.loads(run("events", "--type", "legacy", "--json").output)] == ["legacy.thing"]


def test_on_the_hub_the_lots_events_are_checked_the_same_way(run, tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text('[hub]\nlots = ["A"]\n')
    hub = ("--config", config, "--hub", tmp_path / "hub")
    from lotcontrol.hub.store import open_hub

    open_hub(prepare_data_dir(tmp_path / "hub")).close()  # as `lotcontrol hub` first makes it
    assert run(*hub, "events", "--lot", "all", "--type", "fire", "--json", data_dir=False).output == "[]\n"
    result = run(*hub, "events", "--lot", "all", "--type", "nosuch", data_dir=False)
    assert result.exit_code == 1 and "--type 'nosuch' is no event type" in result.output


def test_the_list_of_types_is_what_the_source_makes_no_more_no_less():
    from .event_scan import scanned

    assert set(scanned()) == set(event_types.TYPES)  # a new type is added to the list, an old one removed
    assert list(event_types.TYPES) == sorted(set(event_types.TYPES))


def test_the_types_are_read_from_every_way_events_are_made():
    from .event_scan import scanned

    known = set(scanned())
    assert {"access.granted", "camera.lost", "camera.restored",  # a call, both sides of an if
            "fire.alarm", "charging.stopped", "bays.count_set",  # Transition, Change, BayEvent
            "resident.suspended", "resident.resumed",  # both sides of an if expression
            "gate.forced", "vision.died",  # (type, details) pairs
            "store.degraded", "mqtt.connected", "resident.synced"} <= known
    assert not {"gate.open", "charging.stop", "fire.status", "mqtt.tls.key_file"} & known  # commands, settings
