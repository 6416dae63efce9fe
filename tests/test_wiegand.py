"""The Wiegand reader: frames and keys decoded (pure), edges through pins with the pin factory's
times, the reader's thread, credentials matched and paired, wrong PINs rate-limited, and decisions."""

import queue

import pytest
from gpiozero.pins.mock import MockFactory

from lotcontrol import policy
from lotcontrol.config import Config, parse_config
from lotcontrol.controller import Controller
from lotcontrol.credentials import PinLimit, card_digest, hash_pin, parse_uid, verify_pin
from lotcontrol.errors import InvalidValue
from lotcontrol.messages import Credential, Notice
from lotcontrol.sim.clock import SimClock
from lotcontrol.sim.pins import pulse_train, simulated_factory
from lotcontrol.site.reader import WiegandReader
from lotcontrol.site.wiegand import (QUIET_SECONDS, BadFrame, Card, Frames, Key, Keypad, card_frame, decode,
                                     key_frame)
from lotcontrol.store import Store
from lotcontrol.writer import Directory

D0, D1, LED, BUZZER = 5, 6, 13, 19
CARD = Card(26, 0x12ABCD)  # never a real card: tests make their own


# --- frames and keys, pure -----------------------------------------------------------------------


@pytest.mark.parametrize("bits,number", [(26, 0), (26, 0xFFFFFF), (26, 0x12ABCD), (34, 0), (34, 0xDEADBEEF)])
def test_26_and_34_bit_cards_decode_with_their_parity(bits, number):
    assert decode(card_frame(number, bits)) == Card(bits, number)


def test_a_known_26_bit_frame_has_even_then_odd_parity():
    # facility 1, card 1: data 000000010000000000000001; first half has one 1 -> even parity bit 1;
    # second half has one 1 -> odd parity bit 0
    frame = [1] + [0] * 7 + [1] + [0] * 15 + [1] + [0]
    assert decode(frame) == Card(26, (1 << 16) | 1)


@pytest.mark.parametrize("bits", [26, 34])
@pytest.mark.parametrize("flip", [0, 5, 20, -1])
def test_one_flipped_bit_is_a_parity_error(bits, flip):
    frame = card_frame(0x5A5A5A, bits)
    frame[flip] ^= 1
    assert decode(frame) == BadFrame("parity", bits)


@pytest.mark.parametrize("length", [1, 3, 12, 25, 27, 33, 35, 64])
def test_other_lengths_are_bad_frames(length):
    assert decode([0, 1] * (length // 2) + [1] * (length % 2)) == BadFrame("length", length)


@pytest.mark.parametrize("key", list("0123456789*#"))
@pytest.mark.parametrize("bits", [4, 8])
def test_keys_in_4_and_8_bit_bursts(key, bits):
    assert decode(key_frame(key, bits)) == Key(key)


def test_an_8_bit_key_whose_halves_disagree_is_refused():
    frame = key_frame("5", 8)
    frame[-1] ^= 1
    assert decode(frame) == BadFrame("complement", 8)


def test_noise_is_a_bad_frame_that_says_nothing_of_the_bits():
    bad = decode(card_frame(CARD.number), noise=True)
    assert bad == BadFrame("noise", 26)
    assert repr(CARD) == "Card(26 bits)"  # a card that leaks into a log line says nothing of itself


def test_a_frame_is_due_after_the_quiet_gap_not_before():
    frames = Frames()
    for t, line, low in [(0.0, 1, True), (0.00005, 1, False), (0.002, 0, True), (0.00205, 0, False)]:
        frames.edge(line, t, low)
    assert frames.due(0.00205 + QUIET_SECONDS - 0.001) is None
    assert frames.remaining(0.00205) == pytest.approx(QUIET_SECONDS)
    assert frames.due(0.00205 + QUIET_SECONDS) == ([1, 0], False)
    assert frames.due(1.0) is None


def test_a_frame_is_ended_by_the_stamps_even_when_due_is_asked_only_after_the_next_one():
    """The reader's thread woken late (a loaded machine), after the next card has begun: the quiet gap
    between them is in the edges' stamps, so two frames come out in order, never one of both's bits."""
    frames = Frames()
    first, second = card_frame(CARD.number), card_frame(CARD.number ^ 1)
    for start, bits in ((0.0, first), (0.1, second)):
        for at, pin, high in pulse_train(0, 1, bits, start):
            frames.edge(pin, at, not high)
    last_of_first = 0.0 + 25 * 0.002 + 50e-6
    assert frames.remaining(0.11) == 0.0  # the first is due already
    assert frames.due(0.11) == (first, False) and frames.last_done == pytest.approx(last_of_first)
    assert frames.due(0.11) is None  # the second is still being read: not quiet yet
    assert frames.due(1.0) == (second, False)
    assert frames.due(2.0) is None and frames.remaining(2.0) is None


def test_a_gap_shorter_than_the_quiet_time_does_not_end_a_frame():
    frames = Frames()
    for at, pin, high in pulse_train(0, 1, card_frame(CARD.number), 0.0, gap=QUIET_SECONDS * 0.9):
        frames.edge(pin, at, not high)
    assert frames.due(100.0) == (card_frame(CARD.number), False)


def test_both_lines_low_at_once_is_noise():
    frames = Frames()
    frames.edge(0, 0.0, True)
    frames.edge(1, 0.00001, True)
    frames.edge(0, 0.00005, False)
    frames.edge(1, 0.00006, False)
    assert frames.due(1.0) == ([0, 1], True)


def test_keypad_hash_ends_star_clears_and_old_digits_time_out():
    keypad = Keypad(timeout=10.0)
    for key in "12":
        assert keypad.key(key, 0.0) is None
    keypad.key("*", 1.0)
    for key in "4321":
        keypad.key(key, 2.0)
    assert keypad.key("#", 3.0) == "4321"
    keypad.key("9", 4.0)
    keypad.key("8", 20.0)  # 16 s after the 9: the 9 was dropped
    assert keypad.key("#", 21.0) == "8"
    assert keypad.key("#", 22.0) is None  # nothing typed: no PIN
    for key in "1234567890123":
        keypad.key(key, 23.0)
    assert keypad.key("#", 24.0) is None  # longer than any PIN: dropped whole


# --- credentials ---------------------------------------------------------------------------------


def test_a_pin_is_kept_as_an_argon2id_hash_and_checked():
    stored = hash_pin("4711")
    assert stored.startswith("$argon2id$") and "4711" not in stored
    assert verify_pin(stored, "4711") and not verify_pin(stored, "4712")
    assert hash_pin("4711") != stored  # salted
    with pytest.raises(InvalidValue):
        hash_pin("12")


def test_a_card_uid_is_format_and_number():
    assert parse_uid("26:1234") == Card(26, 1234)
    for bad in ("1234", "26:", "30:5", f"26:{1 << 24}", "26:abc"):
        with pytest.raises(InvalidValue):
            parse_uid(bad)


def test_five_wrong_pins_in_a_minute_lock_the_keypad_for_a_minute():
    limit = PinLimit()
    assert [limit.wrong(t) for t in (0, 10, 20, 30)] == [False] * 4
    assert not limit.locked(30)
    assert limit.wrong(40)
    assert limit.locked(40) and limit.locked(99) and not limit.locked(100)
    spread = PinLimit()
    assert not any(spread.wrong(t) for t in (0, 20, 40, 61, 80, 100))  # never 5 within a minute


# --- the reader through pins ---------------------------------------------------------------------


def play(factory, clock, bits, start=None):
    """A reader's pulse train on the simulated pins: 50 us low pulses, 2 ms apart."""
    start = clock.now() if start is None else start
    for at, pin, high in pulse_train(D0, D1, bits, start):
        clock.advance_to(at)
        factory.pin(pin).drive_high() if high else factory.pin(pin).drive_low()


class Lines:
    """A simulated reader's pins on a simulated clock, its messages in a list."""

    def __init__(self, directory, window=30.0, clock=None):
        self.clock = clock or SimClock()
        self.factory = simulated_factory(clock=self.clock.now)
        for pin in (D0, D1):
            self.factory.pin(pin).drive_high()  # the reader holds its lines high
        self.messages = []
        config = parse_config({"wiegand": {"d0_pin": D0, "d1_pin": D1, "led_pin": LED, "buzzer_pin": BUZZER}})
        self.reader = WiegandReader(config.wiegand, window=window, deliver=self.messages.append,
                                    directory=lambda: directory, clock=self.clock.now, pin_factory=self.factory)

    def send(self, bits):
        play(self.factory, self.clock, bits)
        last = self.clock.now()
        due = self.reader.next_deadline()
        assert due == pytest.approx(last + QUIET_SECONDS)
        self.clock.advance_to(due - 0.001)
        self.reader.decode_due()
        before = len(self.messages)
        self.clock.advance_to(due)
        self.reader.decode_due()
        return before

    def keys(self, text, bits=8):
        for key in text:
            self.send(key_frame(key, bits))
            self.clock.advance_to(self.clock.now() + 0.3)

    def close(self):
        self.reader.close()
        self.factory.reset()


KEY = b"k" * 32


def directory(pin="4711", resident=7):
    return Directory({}, {card_digest(KEY, CARD): resident}, {resident: hash_pin(pin)}, (KEY,))


def test_a_card_through_the_pins_is_decoded_exactly_after_the_quiet_gap_and_matched():
    lines = Lines(directory())
    try:
        before = lines.send(card_frame(CARD.number))
        assert before == 0, "nothing before the quiet gap"
        [credential] = lines.messages
        assert (credential.card, credential.resident_id, credential.pin) == ("known", 7, None)
        assert credential.digest == card_digest(KEY, CARD)
        first, decoded = lines.reader.decoded[-1]
        assert decoded - first == pytest.approx(QUIET_SECONDS)  # on the simulated clock: exact
    finally:
        lines.close()


def test_an_unknown_card_and_a_bad_frame():
    lines = Lines(directory())
    try:
        lines.send(card_frame(CARD.number + 1))
        frame = card_frame(CARD.number)
        frame[3] ^= 1
        lines.send(frame)
        unknown, bad = lines.messages
        assert (unknown.card, unknown.resident_id) == ("unknown", None)
        assert bad == Notice("wiegand.bad_frame", {"reader": "gate", "reason": "parity", "bits": 26})
    finally:
        lines.close()


@pytest.mark.parametrize("bits", [4, 8])
def test_card_then_pin_and_pin_then_card_pair_up(bits):
    lines = Lines(directory())
    try:
        lines.send(card_frame(CARD.number))
        lines.keys("4711#", bits)
        assert [(m.card, m.pin) for m in lines.messages] == [("known", None), ("known", "ok")]
        lines.reader.decided()
        lines.messages.clear()
        lines.keys("4711#", bits)
        lines.send(card_frame(CARD.number))
        assert [(m.card, m.resident_id, m.pin) for m in lines.messages] == [(None, None, "entered"), ("known", 7, "ok")]
    finally:
        lines.close()


def test_a_pin_after_the_window_is_not_paired_with_the_card():
    lines = Lines(directory(), window=5.0)
    try:
        lines.send(card_frame(CARD.number))
        lines.clock.advance_to(lines.clock.now() + 6.0)
        lines.keys("4711#")
        assert [(m.card, m.pin) for m in lines.messages] == [("known", None), (None, "entered")]
    finally:
        lines.close()


def test_five_wrong_pins_lock_the_keypad_and_say_so_once():
    lines = Lines(directory())
    try:
        for attempt in range(6):
            lines.send(card_frame(CARD.number))
            lines.keys("0000#")
        results = [m.pin for m in lines.messages if isinstance(m, Credential) and m.pin]
        assert results == ["wrong"] * 5 + ["locked"]
        locks = [m for m in lines.messages if isinstance(m, Notice) and m.type == "wiegand.keypad_locked"]
        assert len(locks) == 1
        lines.send(card_frame(CARD.number))
        lines.keys("4711#")  # even the right PIN, while locked
        assert lines.messages[-1].pin == "locked"
    finally:
        lines.close()


def test_the_reader_thread_decodes_a_frame_from_a_mock_factory_with_real_ticks():
    """The real path: gpiozero's MockFactory stamps each edge with its ticks (time.monotonic), the
    reader's own thread waits for the quiet gap and delivers the credential."""
    factory = MockFactory()
    got: queue.SimpleQueue = queue.SimpleQueue()
    config = parse_config({"wiegand": {"d0_pin": D0, "d1_pin": D1}})
    reader = WiegandReader(config.wiegand, window=30.0, deliver=got.put, directory=directory,
                           clock=SimClock().now, pin_factory=factory)
    reader.start()
    try:
        with reader._cond:  # played whole before the reader's thread may look: a preempted test thread would split it
            for bit in card_frame(CARD.number):
                pin = factory.pin(D1 if bit else D0)
                pin.drive_low()
                pin.drive_high()
        credential = got.get(timeout=30)  # a failure guard only
        assert (credential.card, credential.resident_id) == ("known", 7)
        first, decoded = reader.decoded[-1]
        assert decoded - first >= QUIET_SECONDS  # never before the quiet gap
    finally:
        reader.close()
        factory.reset()


def test_the_led_and_buzzer_start_off_and_show_the_decision():
    lines = Lines(directory())
    try:
        led, buzzer = lines.factory.pin(LED), lines.factory.pin(BUZZER)
        assert (led.state, buzzer.state) == (False, False)
        lines.reader.feedback(False, 10.0)
        assert (led.state, buzzer.state) == (False, True)
        lines.reader.tick(10.5)
        assert buzzer.state
        lines.reader.tick(11.0)
        assert (led.state, buzzer.state) == (False, False)
        lines.reader.feedback(True, 12.0)
        assert (led.state, buzzer.state) == (True, False)
    finally:
        lines.close()


# --- the policy ----------------------------------------------------------------------------------


def test_the_policy_names_the_factor():
    from lotcontrol.store import Resident

    def resident(mode):
        return Resident(7, "A", None, None, None, "active", None, None, "", "", 0, mode)

    import datetime as dt
    common = dict(fire_alarm=False, bays=policy.FREE, lot_full="refuse", today=dt.date(2026, 1, 1))
    decide = lambda card, pin, mode, site="face": policy.credential_admission(  # noqa: E731
        card, pin, resident=resident(mode), site_mode=site, **common)
    assert decide("unknown", None, "face_or_card").reason == "card_unknown"
    assert decide("known", None, "face_or_card").grant
    assert decide("known", None, None, "face_or_card").grant  # the site's mode
    assert decide("known", None, "face").reason == "face_only"
    assert decide("known", None, "card_and_pin") is None  # its PIN may still come
    assert decide(None, "entered", "card_and_pin") is None
    assert decide("known", "wrong", "card_and_pin").reason == "pin_wrong"
    assert decide("known", "not_set", "card_and_pin").reason == "pin_not_set"
    assert decide("known", "locked", "card_and_pin").reason == "keypad_locked"
    assert decide("known", "ok", "card_and_pin").grant
    assert policy.missing_factor("card_and_pin", card="known", pin=None, face=False) == "pin_missing"
    assert policy.missing_factor("card_and_pin", card=None, pin="entered", face=False) == "card_missing"
    face = policy.admission("grant", None, resident=resident("card_and_pin"), site_mode="face", **common)
    assert face.reason == "card_missing"


# --- through the controller ----------------------------------------------------------------------


class Site:
    """A controller with a reader on simulated pins and a simulated clock, and one resident with a
    card and a PIN on file; ``step`` runs the reader's decoding, then the loop, as the rig does."""

    def __init__(self, tmp_path, mode="face_or_card", resident_mode=None, window=30.0, before=None, access=None):
        self.store = Store(tmp_path / "lot.db")
        self.ann = self.store.add_resident("Ann")
        self.store.add_card("Ann", card_digest(self.store.card_key(), CARD))
        self.store.set_pin("Ann", hash_pin("4711"))
        if resident_mode:
            self.store.set_access_mode("Ann", resident_mode)
        if before is not None:  # more on file before the controller reads it (tests/test_modes.py)
            before(self)
        self.clock = SimClock()
        self.factory = simulated_factory(clock=self.clock.now)
        for pin in (D0, D1):
            self.factory.pin(pin).drive_high()
        config = parse_config({"access": {"mode": mode, "factor_window_seconds": window, **(access or {})},
                               "wiegand": {"d0_pin": D0, "d1_pin": D1, "led_pin": LED, "buzzer_pin": BUZZER}})
        self.c = Controller(config, self.store, pin_factory=self.factory, clock=self.clock)

    def send(self, bits):
        play(self.factory, self.clock, bits)
        self.settle()

    def settle(self):
        due = self.c.reader.next_deadline()
        if due is not None:
            self.clock.advance_to(due)
        self.c.reader.decode_due()
        self.c.step(self.clock.now())

    def keys(self, text):
        for key in text:
            self.send(key_frame(key))
            self.clock.advance_to(self.clock.now() + 0.3)

    def wait(self, seconds):
        self.clock.advance_to(self.clock.now() + seconds)
        self.c.step(self.clock.now())

    def events(self):
        assert self.c.writer.flush()
        return [(e.type, e.resident, e.details) for e in self.store.events()]

    def relay(self):
        return [s.state for s in self.factory.pin(17).states]

    def close(self):
        self.c.close()
        self.factory.reset()
        self.store.close()


@pytest.fixture
def site(tmp_path):
    made = []

    def make(**kwargs):
        made.append(Site(tmp_path, **kwargs))
        return made[-1]
    yield make
    for s in made:
        s.close()


def test_a_card_opens_the_gate_in_face_or_card(site):
    s = site()
    s.send(card_frame(CARD.number))
    assert s.relay() == [False, True]
    assert s.events() == [("access.granted", "Ann", {"by": "card", "reader": "gate"})]
    assert s.factory.pin(LED).state and not s.factory.pin(BUZZER).state


def test_an_unknown_card_is_refused_by_name_of_the_factor(site):
    s = site()
    s.send(card_frame(CARD.number ^ 1))
    assert s.relay() == [False]
    assert s.events() == [("access.denied", None, {"by": "card", "reader": "gate", "reason": "card_unknown"})]
    assert s.factory.pin(BUZZER).state


def test_a_resident_in_face_mode_is_not_let_in_by_a_card(site):
    s = site(mode="face_or_card", resident_mode="face")
    s.send(card_frame(CARD.number))
    assert s.relay() == [False]
    assert s.events()[-1][2]["reason"] == "face_only"


def test_card_and_pin_grants_both_ways_round_and_refuses_each_missing_or_wrong_factor(site):
    s = site(mode="card_and_pin", window=10.0)
    s.send(card_frame(CARD.number))
    assert s.relay() == [False] and s.events() == []  # waiting for the PIN
    s.keys("4711#")
    assert s.relay() == [False, True]
    s.wait(20.0)
    s.keys("4711#")
    s.send(card_frame(CARD.number))
    s.wait(20.0)
    s.send(card_frame(CARD.number))
    s.keys("1234#")
    s.send(card_frame(CARD.number))
    s.wait(11.0)  # no PIN came
    s.keys("4711#")
    s.wait(11.0)  # no card came
    reasons = [(t, d.get("reason"), d["by"]) for t, _, d in s.events() if t.startswith("access")]
    assert reasons == [("access.granted", None, "card+pin"), ("access.granted", None, "card+pin"),
                       ("access.denied", "pin_wrong", "card+pin"), ("access.denied", "pin_missing", "card"),
                       ("access.denied", "card_missing", "pin")]


def test_no_card_number_digest_or_pin_reaches_the_events_or_the_log(site, caplog):
    import logging

    caplog.set_level(logging.DEBUG, logger="lotcontrol")
    from lotcontrol.fleet.publish import LotPublisher

    from .lots import RecordingLink

    link = RecordingLink()
    heard = link.heard
    s = site(mode="card_and_pin")
    LotPublisher(link, s.c).attach()
    s.send(card_frame(CARD.number))
    s.keys("4711#")
    s.send(card_frame(CARD.number ^ 1))
    frame = card_frame(CARD.number)
    frame[4] ^= 1
    s.send(frame)
    digest = card_digest(s.store.card_key(), CARD)
    text = repr(s.events()) + caplog.text + repr(heard)
    assert "access.granted" in text and "wiegand.bad_frame" in text
    assert any(topic == "lotcontrol/lot/events/wiegand.bad_frame" for topic, _ in heard)
    for secret in (str(CARD.number), hex(CARD.number)[2:], digest, "4711", "".join(map(str, card_frame(CARD.number)))):
        assert secret not in text


def test_a_pin_brute_force_locks_the_keypad_and_raises_an_alert(site):
    from lotcontrol.alerts import severity

    s = site(mode="card_and_pin")
    for guess in range(6):
        s.send(card_frame(CARD.number))
        s.keys(f"{guess:04d}#")
    events = s.events()
    assert [d["reason"] for t, _, d in events if t == "access.denied"] == ["pin_wrong"] * 5 + ["keypad_locked"]
    assert [t for t, _, _ in events].count("wiegand.keypad_locked") == 1
    assert severity("wiegand.keypad_locked") == "warning"
    assert s.relay() == [False]


def test_card_and_pin_residents_are_not_let_in_by_their_face(site):
    from lotcontrol.messages import Passage

    s = site(mode="card_and_pin")
    s.c.handle(Passage(1, "grant", s.ann.id, None, 0.3, 3, 0.0, 0.2), s.clock.now())
    assert s.relay() == [False]
    assert s.events()[-1][2]["reason"] == "card_missing"


def test_cards_and_pins_are_erased_with_the_resident(tmp_path):
    with Store(tmp_path / "lot.db") as store:
        store.add_resident("Ann")
        store.add_card("Ann", card_digest(store.card_key(), CARD))
        store.set_pin("Ann", hash_pin("4711"))
        assert store.credentials() != ({}, {})
        store.remove("Ann")
        assert store.credentials() == ({}, {})


def test_card_read_keeps_the_next_card_for_staff_instead_of_an_entry(site):
    from lotcontrol.messages import Command

    s = site()
    answers = []
    ask = lambda **args: s.c.handle(Command("card.read", args, answers.append), s.clock.now())  # noqa: E731
    ask(seconds=30.0)
    ask()
    s.send(card_frame(CARD.number ^ 1))  # a card not yet on file
    ask()
    ask()
    assert answers[:2] == [{"ok": True, "digest": None}] * 2
    assert answers[2] == {"ok": True, "digest": card_digest(s.store.card_key(), Card(26, CARD.number ^ 1))}
    assert answers[3] == {"ok": False, "message": "no card read was started", "code": "card.not_started", "params": {}}
    assert s.relay() == [False] and s.events() == []  # no entry, no refusal
    ask(seconds=5.0)
    s.wait(6.0)
    ask()
    assert answers[-1]["ok"] is False and answers[-1]["code"] == "card.too_late"  # naming the reader's pins
    assert answers[-1]["message"] == ("no card was shown at the reader (D0 GPIO5, D1 GPIO6) within 5 s: check the "
                                      "reader's wiring to those pins, then show the card again")


@pytest.mark.slow  # real time: cards played at the reader's pace, on a lot's real threads
def test_the_benchmark_measures_from_the_last_pulse_on_real_threads(tmp_path):
    from lotcontrol.bench.wiegand import trials

    decoded, relayed, void, _ = trials(3, tmp_path)
    assert len(decoded) == len(relayed) == 3
    assert all(d >= QUIET_SECONDS - 1e-6 for d in decoded)  # never decoded before the quiet gap
    assert all(r >= d for r, d in zip(relayed, decoded))  # the relay follows the decode


@pytest.mark.parametrize("raw, message", [
    ({"access": {"mode": "face_or_card"}}, "access.mode = 'face_or_card' needs the card reader"),
    ({"wiegand": {"d0_pin": 5}}, "d0_pin and d1_pin go together"),
    ({"wiegand": {"led_pin": 13}}, "led_pin and buzzer_pin are the reader's"),
    ({"wiegand": {"d0_pin": 5, "d1_pin": 17}}, "GPIO17 is used twice"),
    ({"access": {"mode": "face_and_pin"}}, "access.mode"),
])
def test_a_reader_configuration_that_cannot_work_is_refused_naming_the_key(raw, message):
    from lotcontrol.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        parse_config(raw, source="lot.toml")


def test_edges_stamped_on_the_wall_clock_are_mapped_onto_the_factorys_ticks(caplog):
    """A pin library whose edge stamps are on CLOCK_REALTIME (epoch seconds) while ticks() is
    monotonic: the frame is still decoded at its quiet gap, with the stamps' own spacing."""
    lines = Lines(directory())
    try:
        epoch = 1.7e9
        stamps = []
        for at, pin, high in pulse_train(D0, D1, card_frame(CARD.number), lines.clock.now()):
            lines.clock.advance_to(at)
            stamps.append(at)
            lines.reader._edge(0 if pin == D0 else 1, epoch + at, int(high))
        assert "another clock" in caplog.text
        assert lines.reader.next_deadline() == pytest.approx(stamps[-1] + QUIET_SECONDS)
        lines.clock.advance_to(stamps[-1] + QUIET_SECONDS)
        lines.reader.decode_due()
        assert [(m.card, m.resident_id) for m in lines.messages] == [("known", 7)]
    finally:
        lines.close()


def test_status_says_what_the_reader_waits_for_and_a_locked_keypad(site):
    s = site(mode="card_and_pin")
    assert s.c.status(s.clock.now())["reader"] == {"keypad_locked": False, "waiting_for": None}
    s.send(card_frame(CARD.number))
    assert s.c.status(s.clock.now())["reader"]["waiting_for"] == "pin"
    for guess in range(5):
        s.send(card_frame(CARD.number))
        s.keys(f"{guess:04d}#")
    assert s.c.status(s.clock.now())["reader"] == {"keypad_locked": True, "waiting_for": None}


def test_a_database_that_cannot_make_the_card_key_still_gives_the_residents(tmp_path):
    """A lot whose database cannot be written at start (disk full, read-only): faces are decided on
    the residents as before; only cards stay unknown until the key can be made."""
    from lotcontrol.writer import Writer

    with Store(tmp_path / "lot.db") as store:
        store.add_resident("Ann")
        store.db.execute("PRAGMA query_only = ON")
        writer = Writer(store)
        assert [r.name for r in writer.directory.by_id.values()] == ["Ann"]
        assert writer.directory.card_keys == ()
        store.db.execute("PRAGMA query_only = OFF")
        writer.refresh_directory()
        assert len(writer.directory.card_keys) == 1
