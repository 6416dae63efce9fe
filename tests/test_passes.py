"""Visitor passes: signed and checked (pure), decided by the controller on the simulated clock (uses
counted and replayed, time, revocation, other lots' uses, fire), and never in events, logs or MQTT."""

import datetime as dt
import logging

import pytest

from lotcontrol import passes
from lotcontrol.config import parse_config
from lotcontrol.controller import Controller
from lotcontrol.messages import PassShown
from lotcontrol.passes import Pass
from lotcontrol.sim.clock import SimClock
from lotcontrol.sim.pins import simulated_factory
from lotcontrol.store import Store

KEY, OTHER = b"k" * 32, b"o" * 32
RELAY, SPRINKLER = 17, 22
NOW = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.timezone.utc)


def a_pass(**changes) -> Pass:
    fields = {"id": "0123456789abcdef", "visitor": "Courier Li", "lots": None,
              "not_after": int(NOW.timestamp()) + 7200, "uses": 1, **changes}
    return Pass(**fields)


# --- signed and checked, pure ------------------------------------------------------------------


def test_a_pass_signed_under_a_key_is_read_back_under_it_and_any_other_key_says_nothing():
    text = passes.sign(KEY, a_pass(lots=("A", "B"), visitor="李雷"))
    assert text.startswith("LCV1.") and "Courier" not in text
    assert passes.verify(text, (OTHER, KEY)) == a_pass(lots=("A", "B"), visitor="李雷")
    assert passes.verify(text, (OTHER,)) is None
    assert passes.verify(text, ()) is None  # no key known yet (the database not open): nothing is a pass


def test_a_tampered_pass_is_refused_whatever_was_changed():
    text = passes.sign(KEY, a_pass())
    body, mac = text[len("LCV1."):].split(".")
    more_uses = passes.sign(OTHER, a_pass(uses=99)).split(".")[1]  # a body with 99 uses, from elsewhere
    for forged in (f"LCV1.{more_uses}.{mac}", f"LCV1.{body}.{mac[:-2]}AA", f"LCV1.{body}", f"LCV2.{body}.{mac}",
                   text + "x", "https://example.com/menu", "", "LCV1." + "A" * 2000):
        assert passes.verify(forged, (KEY,)) is None, forged


@pytest.mark.parametrize("changes,lot,now,used,revoked,reason", [
    ({}, "A", NOW, 0, False, None),
    ({"lots": ("B",)}, "A", NOW, 0, False, "pass_wrong_lot"),
    ({"lots": ("A", "B")}, "A", NOW, 0, False, None),
    ({}, "A", NOW + dt.timedelta(hours=2, seconds=1), 0, False, "pass_expired"),
    ({}, "A", NOW + dt.timedelta(hours=2), 0, False, None),  # valid to its last second
    ({"uses": 2}, "A", NOW, 1, False, None),
    ({"uses": 2}, "A", NOW, 2, False, "pass_used_up"),
    ({}, "A", NOW, 0, True, "pass_revoked"),
    ({}, "A", None, 0, False, "pass_time_unknown"),  # the clock not synchronised: a pass's time is not judged
])
def test_lot_time_uses_and_revocation_decide(changes, lot, now, used, revoked, reason):
    assert passes.check(a_pass(**changes), lot=lot, now=now, used=used, revoked=revoked) == reason


def test_uses_known_are_this_lots_own_or_the_hubs_count_of_them_plus_the_other_lots():
    assert passes.known_uses("p", "A", here=0, hub=None) == 0
    assert passes.known_uses("p", "A", here=1, hub={"A": 0, "B": 2}) == 3  # A's use not reported yet
    assert passes.known_uses("p", "A", here=1, hub={"A": 1, "B": 2}) == 3  # reported: not counted twice
    assert passes.known_uses("p", "A", here=0, hub={"A": 2}) == 2  # this lot's database was replaced


@pytest.mark.parametrize("text,seconds", [("2h", 7200), ("90m", 5400), ("1.5h", 5400), ("30d", 30 * 86400)])
def test_durations(text, seconds):
    assert passes.parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["2", "0h", "31d", "2 hours", "-1h"])
def test_bad_durations_say_what_is_wrong(text):
    with pytest.raises(ValueError, match="--valid"):
        passes.parse_duration(text)


# --- the controller on the simulated clock -------------------------------------------------------


class Gate:
    """A controller on simulated pins and the simulated clock, its store with the lot's pass key."""

    def __init__(self, folder, lot="lot", **config):
        folder.mkdir()
        self.path = folder / "lot.db"
        self.store = Store(self.path)
        self.clock = SimClock()
        self.factory = simulated_factory(clock=self.clock.now)
        self.config = parse_config({"mqtt": {"lot": lot}, "fire": {"zones": [
            {"name": "east", "sprinklers": [SPRINKLER], "charger_pin": 27}]}, **config})
        self.c = Controller(self.config, self.store, pin_factory=self.factory, clock=self.clock)
        self.c.step(self.clock.now())

    def issue(self, **changes) -> str:
        visitor_pass = a_pass(not_after=int(self.clock.wall().timestamp()) + 7200, **changes)
        self.store.add_pass(visitor_pass.id, visitor_pass.visitor, None if visitor_pass.lots is None else
                            list(visitor_pass.lots), visitor_pass.not_after, visitor_pass.uses)
        return passes.sign(self.store.pass_key(), visitor_pass)

    def show(self, text: str) -> dict:
        """The pass shown at the camera; the access event; then the gate shut again."""
        self.c.inbox.put(PassShown(text, self.clock.now()))
        self.c.step(self.clock.now())
        event = self.events()[-1]
        self.wait(self.config.gate.open_seconds + 1)
        return event

    def wait(self, seconds: float) -> None:
        self.clock.advance_to(self.clock.now() + seconds)
        self.c.step(self.clock.now())

    def events(self) -> list[dict]:
        assert self.c.writer.flush()
        return [{"type": e.type, "resident": e.resident, **e.details} for e in self.store.events()
                if e.type.startswith("access.")]

    def relay(self) -> list[bool]:
        return [s for _, s in self.factory.pin(RELAY).history]

    def restart(self) -> None:
        """The controller stops and starts again on the same database (a reboot)."""
        self.c.close()
        self.factory.reset()
        self.factory = simulated_factory(clock=self.clock.now)
        self.c = Controller(self.config, self.store, pin_factory=self.factory, clock=self.clock)
        self.c.step(self.clock.now())

    def close(self) -> None:
        self.c.close()
        self.factory.reset()
        self.store.close()


@pytest.fixture
def gate(tmp_path):
    made = []

    def make(**kwargs) -> Gate:
        made.append(Gate(tmp_path / str(len(made)), **kwargs))
        return made[-1]
    yield make
    for g in made:
        g.close()


def test_a_pass_opens_the_gate_once_and_is_refused_when_shown_again(gate):
    g = gate()
    text = g.issue()
    granted = g.show(text)
    assert granted == {"type": "access.granted", "resident": None, "by": "pass", "pass": "0123456789abcdef",
                       "visitor": "Courier Li", "uses_left": 0}
    assert g.relay() == [False, True, False]
    refused = g.show(text)
    assert (refused["type"], refused["reason"], refused["visitor"]) == ("access.denied", "pass_used_up", "Courier Li")
    assert g.relay() == [False, True, False]  # shut
    assert g.store.passes()[0]["used"] == 1


def test_a_pass_held_up_while_its_own_opening_lasts_is_one_passage(gate):
    g = gate()
    text = g.issue(uses=2)
    g.c.inbox.put(PassShown(text, g.clock.now()))
    g.c.step(g.clock.now())
    g.wait(1.0)
    g.c.inbox.put(PassShown(text, g.clock.now()))  # the worker sends it again (shown anew): the gate is open
    g.wait(g.config.gate.open_seconds + 1)
    assert [e["type"] for e in g.events()] == ["access.granted"] and g.store.passes()[0]["used"] == 1


def test_uses_are_counted_across_a_restart_so_a_replay_is_refused(gate):
    g = gate()
    text = g.issue(uses=2)
    assert g.show(text)["uses_left"] == 1
    g.restart()  # the use was written at once (urgent): the new controller reads it
    assert g.show(text)["uses_left"] == 0
    g.restart()
    assert g.show(text)["reason"] == "pass_used_up"


def test_a_pass_past_its_time_is_expired_and_a_revoked_one_is_revoked(gate):
    g = gate()
    late, revoked = g.issue(uses=5), g.issue(id="fedcba9876543210", uses=5)
    assert g.show(revoked)["type"] == "access.granted"
    g.store.revoke_pass("fedcba9876543210")  # `visitor revoke`, another process: the controller re-reads
    g.c.writer.refresh_directory()
    assert g.show(revoked)["reason"] == "pass_revoked"
    g.wait(7200)  # two hours on the simulated clock: past its not-after
    assert g.show(late)["reason"] == "pass_expired"
    assert g.relay() == [False, True, False]


def test_signature_lot_and_unsynchronised_clock_are_refused_by_name(gate):
    g = gate(lot="A")
    assert g.show(passes.sign(OTHER, a_pass()))["reason"] == "pass_bad_signature"
    assert "pass" not in g.events()[-1]  # nothing unsigned is taken for a pass's id
    assert g.show("https://example.com/menu")["reason"] == "pass_bad_signature"
    assert g.show(g.issue(lots=("B",)))["reason"] == "pass_wrong_lot"
    g.clock.sync(False)
    assert g.show(g.issue(id="1111111111111111", lots=("A",)))["reason"] == "pass_time_unknown"
    g.clock.sync(True)
    assert g.show(g.issue(id="2222222222222222", lots=("A",)))["type"] == "access.granted"


def test_other_lots_uses_from_the_hub_count_and_this_lots_own_are_not_counted_twice(gate):
    g = gate(lot="A")
    text = g.issue(uses=3)
    g.store.set_pass_state("0123456789abcdef", False, {"B": 2}, int(g.clock.wall().timestamp()) + 7200)
    g.c.writer.refresh_directory()
    assert g.show(text)["uses_left"] == 0  # 2 at B + 1 here
    assert g.c.pass_counts() == {"0123456789abcdef": 1}  # what A publishes: its own use only
    g.store.set_pass_state("0123456789abcdef", False, {"A": 1, "B": 2}, int(g.clock.wall().timestamp()) + 7200)
    g.c.writer.refresh_directory()
    assert g.show(text)["reason"] == "pass_used_up"


def test_a_fire_alarm_refuses_a_pass_without_using_it_and_the_gate_stays_released(gate):
    g = gate()
    text = g.issue()
    g.factory.pin(SPRINKLER).drive_high()
    g.wait(0.1)
    assert g.c.fire.alarm and g.relay()[-1] is True  # held open for egress
    refused = g.show(text)
    assert refused["reason"] == "fire_alarm" and g.relay()[-1] is True
    assert g.store.passes()[0]["used"] == 0


def test_no_pass_text_or_key_reaches_the_events_the_log_or_mqtt(gate, caplog):
    from lotcontrol.fleet.publish import LotPublisher

    from .lots import RecordingLink

    caplog.set_level(logging.DEBUG, logger="lotcontrol")


    link = RecordingLink()
    heard = link.heard
    g = gate()
    LotPublisher(link, g.c).attach()
    text = g.issue(uses=1)
    g.show(text)
    g.show(text)
    forged = passes.sign(OTHER, a_pass())
    g.show(forged)
    said = repr(g.store.events()) + caplog.text + repr(heard) + repr(PassShown(text, 0.0))
    assert "Courier Li" in said and "0123456789abcdef" in said and "pass_used_up" in said
    assert ("lotcontrol/lot/state/passes/0123456789abcdef", {"used": 1}) in heard  # for the hub to count
    key = g.store.pass_key()
    for secret in (text, text.split(".")[1], text.split(".")[2], forged.split(".")[2], key.hex(), repr(key)):
        assert secret not in said


# --- the vision worker reads the QR code ---------------------------------------------------------


def test_the_pipeline_reads_a_pass_from_the_scripted_cameras_frames_once_per_showing(tmp_path):
    """The scripted camera films the pass's PNG (as `visitor add --png` writes it) held up twice, with
    an empty scene between: the pipeline sends its text once per showing, on a frame it scanned."""
    import json

    import numpy as np
    import segno

    from lotcontrol.config import parse_config
    from lotcontrol.sim.camera import Script
    from lotcontrol.vision.matcher import Gallery
    from lotcontrol.vision.pipeline import Pipeline

    text = passes.sign(KEY, a_pass())
    png = tmp_path / "pass.png"
    segno.make(text, error="m").save(str(png), kind="png", scale=8, border=4)
    shots = [{"photo": None, "seconds": 0.5}, {"photo": str(png), "seconds": 1}, {"photo": None, "seconds": 2},
             {"photo": str(png), "seconds": 1}]
    (tmp_path / "camera.json").write_text(json.dumps({"fps": 15, "size": [640, 480], "shots": shots,
                                                      "unplugged": str(tmp_path / "u"), "started": str(tmp_path / "s")}))
    script = Script(f"script:{tmp_path / 'camera.json'}")
    config = parse_config({"visitors": {"scan_every_frames": 5, "seen_again_seconds": 1}})
    pipeline = Pipeline(config, Gallery(np.zeros((0, 128), np.float32), np.zeros(0, np.int64)))
    shown = []
    for index in range(int(4.5 * 15)):
        for message in pipeline.process(script.image(index), index / 15):
            if isinstance(message, PassShown):
                shown.append((round(message.time, 3), message.text))
    # the first scanned frame of each showing (every 5th frame, the 5th, 10th, ...: frame 9 at 0.6 s);
    # read on every scan while shown (1/3 s apart), each showing is sent once
    assert [t for t, _ in shown] == [0.6, 3.6]
    assert all(said == text for _, said in shown)
    assert pipeline.qr_scans == int(4.5 * 15) // 5
    assert passes.verify(shown[0][1], (KEY,)) == a_pass()


def test_no_pass_is_looked_for_while_a_face_is_being_decided_or_when_scanning_is_off():
    import numpy as np

    from lotcontrol.config import parse_config
    from lotcontrol.vision.faces import Box
    from lotcontrol.vision.matcher import Gallery
    from lotcontrol.vision.pipeline import Pipeline, Track

    frame = np.zeros((480, 640, 3), np.uint8)
    off = Pipeline(parse_config({"visitors": {"scan_every_frames": 0}}), Gallery(np.zeros((0, 128), np.float32),
                                                                                 np.zeros(0, np.int64)))
    for index in range(10):
        off.process(frame, index / 15)
    assert off.qr_scans == 0
    busy = Pipeline(parse_config({"visitors": {"scan_every_frames": 1}}), Gallery(np.zeros((0, 128), np.float32),
                                                                                  np.zeros(0, np.int64)))
    busy.tracker.tracks[1] = Track(1, Box(10, 60, 60, 10), 0.0, 0.0)  # a face not decided yet
    assert busy._pass(frame, 0.0) is None and busy.qr_scans == 0
    busy.tracker.tracks.clear()
    assert busy._pass(frame, 0.1) is None and busy.qr_scans == 1  # looked, found nothing


def test_passes_long_expired_are_pruned_with_their_uses_and_the_hubs_word(tmp_path):
    with Store(tmp_path / "lot.db") as store:
        for pass_id, not_after in (("a" * 16, 1000), ("b" * 16, 5000)):
            store.add_pass(pass_id, "V", None, not_after, 1)
            store.record_pass_use(pass_id, not_after, "2026-11-28T09:00:00.000+0000")
            store.set_pass_state(pass_id, True, {"B": 1}, not_after)
        assert store.prune_passes(2000) == 1
        assert [p["id"] for p in store.passes()] == ["b" * 16]
        assert store.pass_directory() == ({"b" * 16: (1, 5000)}, {"b" * 16: 5000}, {"b" * 16: {"B": 1}})


def test_a_malformed_pass_message_from_the_hub_is_an_event_and_changes_nothing(tmp_path):
    from lotcontrol.fleet.passes import PassSync, key_payload

    events, kept = [], []
    with Store(tmp_path / "lot.db") as store:
        sync = PassSync("lotcontrol", lambda call: call(store), lambda *event: events.append(event))
        sync.on_applied(kept.append)
        for topic, payload in (("lotcontrol/passes/key", b"{not json"),
                               ("lotcontrol/passes/key", b'{"format": 1, "key": "short"}'),
                               ("lotcontrol/passes/0123456789abcdef", b'{"format": 1, "id": "fedcba9876543210", '
                                                                      b'"revoked": true, "not_after": 1, "used": {}}')):
            sync.received(topic, payload)
        assert [e[0] for e in events] == ["fleet.bad_message"] * 3 and kept == [None] * 3
        assert len(store.pass_keys()) == 1 and store.pass_directory() == ({}, {}, {})
        sync.received("lotcontrol/passes/key", key_payload(KEY))
        assert store.pass_keys()[1] == KEY and "k" * 32 not in repr(events)


def test_the_passes_benchmark_reads_filmed_passes_and_reports_each_detector(tmp_path):
    """A small run of `python -m lotcontrol.bench.passes` (its figures are in docs/benchmarks.md)."""
    from lotcontrol.bench.passes import detectors, pipeline_cost

    found = detectors(2, 2, tmp_path)
    assert set(found) == {"QRCodeDetector", "QRCodeDetectorAruco"}
    aruco = found["QRCodeDetectorAruco"]
    assert (aruco["frames_read"], aruco["frames"], aruco["codes_never_read"]) == (4, 4, 0)
    assert set(pipeline_cost(tmp_path, 1.0)["empty_scene_core_pct"]) == {"scan_every_frames=0", "scan_every_frames=5"}
