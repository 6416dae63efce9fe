"""card add, card remove, pin set, pin clear, edit --access-mode: what is kept, what is never shown or logged."""

import pytest

from lotcontrol.config import prepare_data_dir
from lotcontrol.credentials import card_digest, parse_uid, verify_pin
from lotcontrol.store import Store

UID = "26:1193046"  # a made-up card


@pytest.fixture
def lot(data_dir):
    with Store.in_dir(prepare_data_dir(data_dir)) as store:
        store.add_resident("Anna Berg")
    return data_dir


def stored(data_dir):
    with Store.in_dir(data_dir) as store:
        return store.credentials(), store.card_key(), store.events(), store.resident("Anna Berg")


def test_card_add_keeps_only_the_keyed_digest_and_logs_no_card(run, lot):
    result = run("card", "add", "Anna Berg", "--uid", UID)
    assert result.exit_code == 0, result.output
    assert "added a card for 'Anna Berg' (1 on file)" in result.output
    (cards, _), key, events, anna = stored(lot)
    assert cards == {card_digest(key, parse_uid(UID)): anna.id}
    assert [(e.type, e.details) for e in events] == [("resident.card_added", {"cards": 1})]
    database = b"".join(p.read_bytes() for p in lot.glob("lotcontrol.db*"))
    assert b"1193046" not in database and UID.encode() not in database


def test_card_add_asks_for_the_card_hidden_when_not_given(run, lot):
    result = run("card", "add", "Anna Berg", input=UID + "\n")
    assert result.exit_code == 0, result.output
    assert "1193046" not in result.output


def test_the_same_card_twice_and_a_bad_uid_are_refused_and_change_nothing(run, lot):
    assert run("card", "add", "Anna Berg", "--uid", UID).exit_code == 0
    again = run("card", "add", "Anna Berg", "--uid", UID)
    assert again.exit_code == 1 and "already on file for 'Anna Berg'" in again.output
    bad = run("card", "add", "Anna Berg", "--uid", "12345")
    assert bad.exit_code == 1 and "Error: a card's uid is FORMAT:NUMBER" in bad.output
    nobody = run("card", "add", "Nobody", "--uid", UID)
    assert nobody.exit_code == 1 and "no resident named 'Nobody'" in nobody.output
    (cards, _), *_ = stored(lot)
    assert len(cards) == 1


def test_card_remove_one_or_all(run, lot):
    run("card", "add", "Anna Berg", "--uid", UID)
    run("card", "add", "Anna Berg", "--uid", "34:7")
    assert "removed 1 card(s)" in run("card", "remove", "Anna Berg", "--uid", "34:7").output
    assert "removed 1 card(s)" in run("card", "remove", "Anna Berg").output
    none = run("card", "remove", "Anna Berg")
    assert none.exit_code == 1 and "has no card on file" in none.output
    (cards, _), *_ = stored(lot)
    assert cards == {}


def test_pin_set_twice_hidden_and_hashed(run, lot):
    result = run("pin", "set", "Anna Berg", input="4711\n4711\n")
    assert result.exit_code == 0, result.output
    assert "4711" not in result.output  # never echoed
    (_, pins), _, events, anna = stored(lot)
    assert verify_pin(pins[anna.id], "4711") and "4711" not in pins[anna.id]
    assert [e.type for e in events] == ["resident.pin_set"] and "4711" not in repr(events)


def test_pin_set_mismatch_is_asked_again_and_a_bad_pin_refused(run, lot):
    result = run("pin", "set", "Anna Berg", input="4711\n4712\n1234\n1234\n")
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output.lower() or "don't match" in result.output.lower()
    (_, pins), _, _, anna = stored(lot)
    assert verify_pin(pins[anna.id], "1234")
    short = run("pin", "set", "Anna Berg", input="12\n12\n")
    assert short.exit_code == 1 and "Error: a PIN is 4 to 12 digits" in short.output
    (_, pins), _, _, anna = stored(lot)
    assert verify_pin(pins[anna.id], "1234")  # unchanged


def test_pin_clear_removes_the_pin_and_a_second_clear_is_refused(run, lot):
    run("pin", "set", "Anna Berg", input="4711\n4711\n")
    result = run("pin", "clear", "Anna Berg")
    assert result.exit_code == 0 and "cleared the PIN of 'Anna Berg'" in result.output
    (_, pins), _, events, anna = stored(lot)
    assert anna.id not in pins
    assert [e.type for e in events] == ["resident.pin_set", "resident.pin_cleared"]
    again = run("pin", "clear", "Anna Berg")
    assert again.exit_code == 1 and "Error: 'Anna Berg' has no PIN on file" in again.output


def test_edit_access_mode_and_back_to_the_site(run, lot):
    result = run("edit", "Anna Berg", "--access-mode", "card_and_pin")
    assert result.exit_code == 0 and "changed access mode of 'Anna Berg'" in result.output
    assert stored(lot)[3].access_mode == "card_and_pin"
    assert run("edit", "Anna Berg", "--access-mode", "site").exit_code == 0
    assert stored(lot)[3].access_mode is None
    assert run("edit", "Anna Berg", "--access-mode", "face_and_pin").exit_code == 0  # the 1:1 modes (tests/test_modes.py)
    assert stored(lot)[3].access_mode == "face_and_pin"
    bad = run("edit", "Anna Berg", "--access-mode", "face_and_bike")
    assert bad.exit_code == 2 and "face_and_bike" in bad.output and stored(lot)[3].access_mode == "face_and_pin"


def test_cards_and_pins_are_erased_with_the_resident(run, lot):
    run("card", "add", "Anna Berg", "--uid", UID)
    run("pin", "set", "Anna Berg", input="4711\n4711\n")
    assert run("remove", "Anna Berg", "--yes").exit_code == 0
    with Store.in_dir(lot) as store:
        assert store.credentials() == ({}, {})


def test_on_the_hub_cards_and_pins_are_set_for_the_lots_and_read_is_refused(run, tmp_path):
    from lotcontrol.hub.store import message, open_hub, uid_of

    hub = tmp_path / "hub"
    with open_hub(prepare_data_dir(hub)) as store:
        anna = store.add_resident("Anna Berg")
    assert run("--hub", hub, "card", "add", "Anna Berg", "--uid", UID).exit_code == 0
    assert run("--hub", hub, "pin", "set", "Anna Berg", input="4711\n4711\n").exit_code == 0
    read = run("--hub", hub, "card", "add", "Anna Berg", "--read")
    assert read.exit_code == 2 and "--read takes the card at a lot's reader" in read.output
    with open_hub(hub) as store:
        sent = message(store, uid_of(store, anna.id))
        assert sent.cards == [card_digest(store.card_key(), parse_uid(UID))] and sent.pin.startswith("$argon2id$")
    assert run("--hub", hub, "pin", "clear", "Anna Berg").exit_code == 0
    with open_hub(hub) as store:
        assert message(store, uid_of(store, anna.id)).pin is None  # the lots' copies lose it too


def test_card_add_read_takes_the_next_card_at_the_running_controllers_reader(run, lot, monkeypatch):
    """End to end: `card add --read` arms the controller through the control socket, the card is
    played on the reader's pins, the reader's thread decodes it, and the CLI puts its digest on file."""
    import threading

    from .lots import card_reader_lot, show_card

    results = []
    with card_reader_lot(lot, monkeypatch) as (lot_running, factory, armed):
        command = threading.Thread(target=lambda: results.append(run("card", "add", "Anna Berg", "--read")))
        command.start()
        assert armed.wait(30), "the controller was never asked to read a card"  # a failure guard only
        show_card(lot_running, factory, 1193046, command)
        command.join(60)
    [result] = results
    assert result.exit_code == 0, result.output
    assert "added a card for 'Anna Berg' (1 on file)" in result.output
    (cards, _), key, events, anna = stored(lot)
    assert cards == {card_digest(key, parse_uid(UID)): anna.id}
    assert "access.granted" not in [e.type for e in events]  # staff's card read is no entry
