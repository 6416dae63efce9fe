"""A lot's copy of the hub's residents, without a broker: the message, applying it, bad input."""

import base64
import json

import numpy as np
import pytest

from lotcontrol.fleet.residents import (BadResidentMessage, ResidentSync, apply_message, copy_of, dumps,
                                        parse_message, residents_topic, templates_refused)
from lotcontrol.hub import store as hub_store
from lotcontrol.store import Store, Template
from lotcontrol.vision.matcher import Gallery


def encoding(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, 128).astype(np.float32)


def template(seed: int) -> Template:
    return Template(encoding(seed), f"{seed:064x}", 120, 40.0)


def private_store(folder, opener):
    folder.mkdir(mode=0o700)
    store = opener(folder)
    yield store
    store.close()


@pytest.fixture
def hub(tmp_path):
    yield from private_store(tmp_path / "hub", hub_store.open_hub)


@pytest.fixture
def lot(tmp_path):
    yield from private_store(tmp_path / "lot", Store.in_dir)


def enroll(hub, name, *seeds, **fields):
    """As enrollment does it (lotcontrol.enroll): the resident and their templates in one transaction,
    so a lot never receives the one without the other (a lot that waited for the resident could take
    the first revision, with no template yet: a flake on a loaded machine)."""
    with hub.transaction():
        resident = hub.add_resident(name, **fields)
        hub.add_templates(resident.id, [template(s) for s in seeds])
    return hub_store.uid_of(hub, resident.id)


def sent(hub, uid):
    """What the lot receives for ``uid``: the hub's message through JSON and back."""
    return parse_message(residents_topic("lotcontrol", uid), dumps(hub_store.message(hub, uid)))


def test_every_change_at_the_hub_takes_a_new_revision_and_is_pending(hub):
    uid = enroll(hub, "Anna Berg", 1, 2, unit="4B")
    revisions = [dict(hub_store.pending(hub))[uid]]
    hub_store.mark_published(hub, hub_store.pending(hub))
    assert hub_store.pending(hub) == []
    for change in (lambda: hub.set_status("Anna Berg", "suspended"),
                   lambda: hub.rename("Anna Berg", "Anna Lind"),
                   lambda: hub.update_resident("Anna Lind", valid_until="2027-01-31"),
                   lambda: hub.add_templates(hub.resident("Anna Lind").id, [template(3)]),
                   lambda: hub_store.set_lots(hub, "anna lind", ["A"], ["A", "B"])):
        change()
        [(pending_uid, revision)] = hub_store.pending(hub)
        assert pending_uid == uid and revision > revisions[-1]
        revisions.append(revision)
        hub_store.mark_published(hub, [(uid, revision)])
    message = hub_store.message(hub, uid)
    assert (message.name, message.status, message.valid_until, message.lots, len(message.templates)) == (
        "Anna Lind", "suspended", "2027-01-31", ["A"], 3)


def test_a_removed_resident_leaves_a_tombstone_without_name_or_templates(hub):
    uid = enroll(hub, "Anna Berg", 1, 2)
    hub_store.set_lots(hub, "Anna Berg", ["A"], ["A"])
    hub.remove("Anna Berg")
    assert hub.db.execute("SELECT count(*) FROM templates").fetchone()[0] == 0
    [(pending_uid, _)] = hub_store.pending(hub)
    payload = dumps(hub_store.message(hub, pending_uid))
    assert pending_uid == uid
    assert json.loads(payload) == {"format": 1, "uid": uid, "revision": json.loads(payload)["revision"],
                                   "removed": True}
    # a new resident of the same name is someone else: a new uid, never the tombstone's
    assert enroll(hub, "Anna Berg", 3) != uid


def test_a_published_change_made_meanwhile_stays_pending(hub):
    uid = enroll(hub, "Anna Berg", 1)
    [(_, old)] = hub_store.pending(hub)
    hub.set_status("Anna Berg", "suspended")  # after the hub read `old`, before it marked it
    hub_store.mark_published(hub, [(uid, old)])
    assert [u for u, _ in hub_store.pending(hub)] == [uid]


def test_a_lot_database_taken_over_as_hub_gives_its_residents_uids(tmp_path, lot):
    lot.add_resident("Anna Berg")
    lot.close()
    hub = hub_store.open_hub(tmp_path / "lot")
    try:
        [(uid, _)] = hub_store.pending(hub)
        assert hub_store.message(hub, uid).name == "Anna Berg"
    finally:
        hub.close()


def test_the_lot_adds_updates_and_erases_its_copy(hub, lot):
    uid = enroll(hub, "Anna Berg", 1, 2, unit="4B", valid_from="2026-01-01")
    added = apply_message(lot, "A", sent(hub, uid))
    assert (added.change, added.name, added.templates) == ("added", "Anna Berg", 2)
    [copy] = lot.residents()
    assert (copy.unit, copy.valid_from, copy.status, copy.phone) == ("4B", "2026-01-01", "active", None)
    gallery = Gallery.from_store(lot)
    assert len(gallery) == 2 and gallery.match(encoding(1)).resident_id == copy.id

    hub.set_status("Anna Berg", "suspended")
    hub.rename("Anna Berg", "Anna Lind")
    hub.update_resident("Anna Lind", unit="")
    version = lot.gallery_version()
    assert apply_message(lot, "A", sent(hub, uid)).change == "updated"
    [copy] = lot.residents()
    assert (copy.name, copy.status, copy.unit) == ("Anna Lind", "suspended", None)
    assert lot.gallery_version() == version  # the same templates: the gallery is not reloaded for nothing

    hub.remove("Anna Lind")
    removed = apply_message(lot, "A", sent(hub, uid))
    assert (removed.change, removed.templates) == ("removed", 2)
    assert lot.residents() == [] and len(Gallery.from_store(lot)) == 0
    assert lot.db.execute("SELECT count(*) FROM templates").fetchone()[0] == 0
    assert copy_of(lot, uid) is None
    assert apply_message(lot, "A", sent(hub, uid)).change == "absent"  # the tombstone again: nothing to do


def test_new_templates_replace_the_old_ones(hub, lot):
    uid = enroll(hub, "Anna Berg", 1)
    apply_message(lot, "A", sent(hub, uid))
    hub.add_templates(hub.resident("Anna Berg").id, [template(5)])
    version = lot.gallery_version()
    apply_message(lot, "A", sent(hub, uid))
    assert lot.gallery_version() != version
    assert len(Gallery.from_store(lot)) == 2


def test_a_lot_holds_only_the_residents_assigned_to_it(hub, lot):
    uid = enroll(hub, "Anna Berg", 1)
    hub_store.set_lots(hub, "Anna Berg", ["B", "C"], ["A", "B", "C"])
    assert apply_message(lot, "A", sent(hub, uid)).change == "absent"
    assert lot.residents() == []
    hub_store.set_lots(hub, "Anna Berg", None, ["A", "B", "C"])  # every lot
    assert apply_message(lot, "A", sent(hub, uid)).change == "added"
    hub_store.set_lots(hub, "Anna Berg", ["C"], ["A", "B", "C"])  # taken off lot A: erased there
    assert apply_message(lot, "A", sent(hub, uid)).change == "removed"
    assert lot.residents() == [] and len(Gallery.from_store(lot)) == 0


def test_the_same_revision_changes_nothing_and_a_hub_restored_from_a_backup_is_followed(hub, lot):
    uid = enroll(hub, "Anna Berg", 1)
    apply_message(lot, "A", sent(hub, uid))
    version = lot.gallery_version()
    assert apply_message(lot, "A", sent(hub, uid)).change == "unchanged"  # a reconnect, a republish
    assert lot.gallery_version() == version
    backup = sent(hub, uid)
    hub.set_status("Anna Berg", "suspended")
    apply_message(lot, "A", sent(hub, uid))
    # the hub's database restored from the backup, then changed there: its revisions count from the
    # backup's, lower than what the lot applied, and the lot follows them all the same
    restored = backup.model_copy(update={"revision": backup.revision + 1, "unit": "7C"})
    assert restored.revision == copy_of_revision(lot, uid)  # the same number, another change
    assert apply_message(lot, "A", restored).change == "updated"
    assert (lot.resident("Anna Berg").status, lot.resident("Anna Berg").unit) == ("active", "7C")


def test_an_unknown_lot_is_refused_and_changes_nothing(hub):
    enroll(hub, "Anna Berg", 1)
    before = hub_store.pending(hub)
    with pytest.raises(hub_store.UnknownLot, match=r"unknown lot 'Z': the hub knows A, B"):
        hub_store.set_lots(hub, "Anna Berg", ["A", "Z"], ["A", "B"])
    with pytest.raises(hub_store.UnknownLot, match="hub.lots in the configuration lists none"):
        hub_store.set_lots(hub, "Anna Berg", ["A"], [])
    assert hub_store.pending(hub) == before
    assert hub_store.lots_of(hub) == {hub.resident("Anna Berg").id: None}


def copy_of_revision(lot, uid):
    return lot.db.execute("SELECT revision FROM hub_copies WHERE uid = ?", [uid]).fetchone()[0]


def good_payload(hub):
    uid = enroll(hub, "Anna Berg", 1)
    return uid, json.loads(dumps(hub_store.message(hub, uid)))


@pytest.mark.parametrize("spoil, error", [
    (lambda d: b"\xff not utf-8", "not JSON"),
    (lambda d: b"{", "not JSON"),
    (lambda d: json.dumps([1, 2]).encode(), "Input should be a valid dictionary"),
    (lambda d: json.dumps({**d, "format": 2}).encode(), "format"),
    (lambda d: json.dumps({**d, "uid": "0" * 32}).encode(), "carries resident 000"),
    (lambda d: json.dumps({**d, "colour": "red"}).encode(), "colour: Extra inputs are not permitted"),
    (lambda d: json.dumps({**d, "name": None}).encode(), "a resident needs a name"),
    (lambda d: json.dumps({**d, "status": "banned"}).encode(), "status"),
    (lambda d: json.dumps({**d, "revision": 0}).encode(), "revision"),
    (lambda d: json.dumps({**d, "templates": [{**d["templates"][0], "encoding": "!!!"}]}).encode(), "not base64"),
    (lambda d: json.dumps({**d, "templates": [{**d["templates"][0], "encoding": base64.b64encode(
        b"\0" * 16).decode()}]}).encode(), r"encoding: the encoding must be 128 float32 numbers \(512 bytes\), not 16 bytes"),
    (lambda d: json.dumps({**d, "templates": [{**d["templates"][0], "encoding": base64.b64encode(
        np.full(128, np.nan, "<f4").tobytes()).decode()}]}).encode(), "not finite"),
    (lambda d: json.dumps({**d, "removed": True}).encode(), "a tombstone carries neither"),
])
def test_a_malformed_message_is_refused_with_the_reason(hub, spoil, error):
    uid, document = good_payload(hub)
    with pytest.raises(BadResidentMessage, match=error) as caught:
        parse_message(residents_topic("lotcontrol", uid), spoil(document))
    assert str(caught.value).startswith(f"lotcontrol/residents/{uid}: ")


class Recorder:
    """ResidentSync's writer and event sink for tests: runs each call at once on this thread."""

    def __init__(self, store):
        self.store, self.events = store, []

    def submit(self, call):
        call(self.store)

    def event(self, type, resident_id, details):
        self.events.append((type, resident_id, details))


def test_a_malformed_message_is_an_event_and_the_next_one_is_applied(hub, lot):
    recorder = Recorder(lot)
    sync = ResidentSync("A", "lotcontrol", recorder.submit, recorder.event)
    uid, document = good_payload(hub)
    sync.received(residents_topic("lotcontrol", uid), b"garbage")
    sync.received(residents_topic("lotcontrol", uid), json.dumps({**document, "name": "x" * 101}).encode())
    sync.received(residents_topic("lotcontrol", uid), b"")  # a retained message being cleared
    assert [(t, d["topic"]) for t, _, d in recorder.events] == [
        ("fleet.bad_message", f"lotcontrol/residents/{uid}")] * 2
    assert "not JSON" in recorder.events[0][2]["error"]
    assert "at most 100 characters" in recorder.events[1][2]["error"]
    assert lot.residents() == [] and sync.rejected == 2
    sync.received(residents_topic("lotcontrol", uid), json.dumps(document).encode())
    [(kind, resident_id, details)] = recorder.events[2:]
    assert (kind, details) == ("resident.synced", {"change": "added", "templates": 1,
                                                   "revision": document["revision"]})
    assert lot.resident("Anna Berg").id == resident_id


def test_a_name_held_by_a_lot_local_resident_is_refused(hub, lot):
    lot.add_resident("Anna Berg")
    recorder = Recorder(lot)
    sync = ResidentSync("A", "lotcontrol", recorder.submit, recorder.event)
    uid, document = good_payload(hub)
    sync.received(residents_topic("lotcontrol", uid), json.dumps(document).encode())
    [(kind, _, details)] = recorder.events
    assert kind == "resident.sync_refused"
    assert details == {"uid": uid, "error": "the name 'Anna Berg' is taken here by a resident enrolled at this lot"}
    assert lot.resident("Anna Berg").templates == 0


def test_a_rename_seen_late_is_waited_for(hub, lot):
    """Retained messages come in topic order: the new 'Anna' may come before the old one's rename."""
    recorder = Recorder(lot)
    sync = ResidentSync("A", "lotcontrol", recorder.submit, recorder.event)
    old = enroll(hub, "Anna", 1)
    sync.received(residents_topic("lotcontrol", old), dumps(hub_store.message(hub, old)))
    hub.rename("Anna", "Anna Old")
    new = enroll(hub, "Anna", 2)
    sync.received(residents_topic("lotcontrol", new), dumps(hub_store.message(hub, new)))
    assert recorder.events[-1][0] == "resident.sync_refused" and set(sync.waiting) == {new}
    sync.received(residents_topic("lotcontrol", old), dumps(hub_store.message(hub, old)))
    assert sorted(r.name for r in lot.residents()) == ["Anna", "Anna Old"] and not sync.waiting
    assert Gallery.from_store(lot).match(encoding(2)).resident_id == lot.resident("Anna").id


def test_templates_travel_only_over_tls_or_to_a_test_broker_here():
    from lotcontrol.config import MqttConfig

    assert templates_refused(MqttConfig(tls={"ca_file": "/etc/ca.crt"}, host="broker.lan")) is None
    assert templates_refused(MqttConfig(allow_plaintext=True, host="127.0.0.1")) is None
    assert "set [mqtt.tls]" in templates_refused(MqttConfig(host="127.0.0.1"))
    assert "not broker.lan" in templates_refused(MqttConfig(allow_plaintext=True, host="broker.lan"))


def test_a_plaintext_connection_is_not_subscribed_and_says_why(lot):
    from lotcontrol.config import MqttConfig

    class Link:
        subscribed = []

        def subscribe(self, *args, **kwargs):
            self.subscribed.append(args)

    recorder = Recorder(lot)
    sync = ResidentSync("A", "lotcontrol", recorder.submit, recorder.event)
    assert sync.subscribe(Link(), MqttConfig(host="127.0.0.1")) is False
    assert Link.subscribed == []
    assert recorder.events == [("fleet.residents_refused", None, {
        "error": "face templates travel only over TLS: set [mqtt.tls] (ca_file) for the broker"})]


def test_cards_pins_and_access_mode_travel_as_digests_and_hashes_and_go_with_the_resident(hub, lot):
    from lotcontrol.credentials import card_digest, hash_pin, parse_uid
    from lotcontrol.site.wiegand import Card

    uid = enroll(hub, "Anna Berg", 1)
    card = parse_uid("26:1193046")  # made up
    hub.add_card("Anna Berg", card_digest(hub.card_key(), card))
    hub.set_pin("Anna Berg", hash_pin("4711"))
    hub.set_access_mode("Anna Berg", "card_and_pin")
    assert uid in dict(hub_store.pending(hub))
    payload = dumps(hub_store.message(hub, uid))
    # neither the card's number nor the PIN in any value or key, apart from the random ones (the uid, the
    # hashes, digests and key), where those digits turn up by chance (a uid ending in 4711 failed this)
    digest = card_digest(hub.card_key(), card)
    random = {uid, digest, hub.card_key()}

    def leaves(value):
        if isinstance(value, dict):
            for key, item in value.items():
                yield key
                yield from leaves(item)
        elif isinstance(value, list):
            for item in value:
                yield from leaves(item)
        else:
            yield value

    said = [str(v) for v in leaves(json.loads(payload))
            if v not in random and not (isinstance(v, str) and v.startswith("$argon2id$"))]
    assert said and not [v for v in said if "1193046" in v or "4711" in v]
    assert digest in payload.decode()
    apply_message(lot, "A", parse_message(residents_topic("lotcontrol", uid), payload))
    anna = lot.resident("Anna Berg")
    assert anna.access_mode == "card_and_pin"
    cards, pins = lot.credentials()
    assert pins[anna.id].startswith("$argon2id$")
    # the lot looks a card up under its own key and the hub's: the hub's card is found, another is not
    keys = lot.card_keys()
    assert len(keys) == 2 and keys[1] == hub.card_key() != keys[0]
    found = lambda c: next((cards[d] for d in (card_digest(k, c) for k in keys) if d in cards), None)  # noqa: E731
    assert found(card) == anna.id and found(Card(26, 7)) is None
    hub.remove("Anna Berg")
    apply_message(lot, "A", sent(hub, uid))
    assert lot.credentials() == ({}, {})


def test_a_message_with_cards_but_no_key_or_a_bad_digest_is_refused(hub):
    uid = enroll(hub, "Anna Berg", 1)
    document = json.loads(dumps(hub_store.message(hub, uid)))
    for change, error in (({"cards": ["ab" * 32]}, "cards come with the hub's card_key"),
                          ({"cards": ["12345"], "card_key": base64.b64encode(b"k" * 32).decode()},
                           "64 hexadecimal digits"),
                          ({"pin": "1234"}, "pin")):
        with pytest.raises(BadResidentMessage, match=error):
            parse_message(residents_topic("lotcontrol", uid), json.dumps({**document, **change}).encode())


# --- every encoder's embedding on the wire (issue 18) ---


def faceres_vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed + 1000).normal(size=1024).astype(np.float32)
    return v / np.linalg.norm(v)


def test_every_encoders_embedding_travels_with_its_version(hub, lot):
    from lotcontrol.store import Embedding

    with hub.transaction():
        anna = hub.add_resident("Anna Berg")
        hub.add_templates(anna.id, [
            Template({"dlib": encoding(1), "faceres": Embedding("human-models-3.0.4+mirror", faceres_vector(1))},
                     f"{1:064x}", 120, 40.0),
            template(2)])
    uid = hub_store.uid_of(hub, anna.id)
    document = json.loads(dumps(hub_store.message(hub, uid)))
    first, second = document["templates"]
    assert first["embeddings"]["faceres"]["version"] == "human-models-3.0.4+mirror"
    assert "embeddings" not in second  # a dlib-only face travels as before: an older lot still reads it
    apply_message(lot, "A", sent(hub, uid))
    [t1, t2] = lot.templates_of(lot.resident("Anna Berg").id)
    assert t1.embeddings["faceres"].version == "human-models-3.0.4+mirror"
    assert np.array_equal(t1.embeddings["faceres"].vector, faceres_vector(1))
    assert np.array_equal(t1.encoding, encoding(1)) and set(t2.embeddings) == {"dlib"}
    assert t2.embeddings["dlib"].version == "dlib_face_recognition_resnet_model_v1"


def test_a_message_from_before_encoders_is_accepted_and_matches_on_dlib(lot):
    """A hub from before issue 18 sends only ``encoding``: the lot keeps the face, on dlib alone."""
    uid = "ab" * 16
    old = {"format": 1, "uid": uid, "revision": 3, "name": "Old Hub", "unit": None, "status": "active",
           "valid_from": None, "valid_until": None, "lots": None,
           "templates": [{"photo_sha256": "cd" * 32, "face_px": 120, "quality": 40.0,
                          "encoding": base64.b64encode(encoding(7).astype("<f4").tobytes()).decode()}]}
    message = parse_message(residents_topic("lotcontrol", uid), json.dumps(old).encode())
    assert apply_message(lot, "A", message).change == "added"
    [t] = lot.templates_of(lot.resident("Old Hub").id)
    assert set(t.embeddings) == {"dlib"}
    assert lot.templates_matrix("faceres")[0].shape[0] == 0
    assert Gallery.from_store(lot).match(encoding(7)).resident_id == lot.resident("Old Hub").id


@pytest.mark.parametrize("embeddings, error", [
    ({"faceres": {"version": "human-models-3.0.4", "vector": base64.b64encode(b"\0" * 16).decode()}},
     r"the faceres embedding must be 1024 float32 numbers \(4096 bytes\), not 16 bytes"),
    ({"arcface": {"version": "1", "vector": base64.b64encode(b"\0" * 16).decode()}}, "unknown face encoder 'arcface'"),
    ({"dlib": {"version": "x", "vector": ""}}, "travels in 'encoding'"),
    ({"faceres": {"version": "a b", "vector": ""}}, "version"),
])
def test_a_malformed_embedding_is_refused_naming_the_encoder(hub, embeddings, error):
    uid, document = good_payload(hub)
    spoilt = {**document, "templates": [{**document["templates"][0], "embeddings": embeddings}]}
    with pytest.raises(BadResidentMessage, match=error):
        parse_message(residents_topic("lotcontrol", uid), json.dumps(spoilt).encode())


def test_access_groups_and_anti_passback_travel_and_a_resident_without_them_reads_as_before(hub, lot):
    uid = enroll(hub, "Anna Berg", 1)
    plain = dumps(hub_store.message(hub, uid))
    assert b"groups" not in plain and b"antipassback" not in plain  # a lot not yet upgraded still reads it
    hub.set_groups("Anna Berg", ["night", "day"])
    hub.set_antipassback("Anna Berg", "enforce")
    apply_message(lot, "A", sent(hub, uid))
    anna = lot.resident("Anna Berg")
    assert (anna.groups, anna.antipassback) == (("day", "night"), "enforce")
    hub.set_groups("Anna Berg", [])
    hub.set_antipassback("Anna Berg", "site")
    apply_message(lot, "A", sent(hub, uid))
    assert (lot.resident("Anna Berg").groups, lot.resident("Anna Berg").antipassback) == ((), None)
    bad = json.loads(dumps(hub_store.message(hub, uid)))
    with pytest.raises(BadResidentMessage, match="access group"):
        parse_message(residents_topic("lotcontrol", uid), json.dumps({**bad, "groups": ["a b"]}).encode())
