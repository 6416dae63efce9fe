"""The Wiegand card and PIN reader at the gate: its two data lines in, its LED and buzzer out.

The pin factory reports every edge on D0 and D1 with its own time of it (``ticks``: gpiozero's pin-level
``when_changed``); the callback only files the edge (lotcontrol.site.wiegand.Frames) and, at a frame's
first edge, wakes the reader's thread. That thread, never the controller's loop, waits until the quiet
gap after the frame's newest edge (a deadline from that edge's own time stamp), decodes it,
turns a card into its keyed digest and looks it up, gathers keys into a PIN and checks a PIN against
its resident's argon2id hash (tens of milliseconds), against the writer's snapshot of the
credentials (lotcontrol.writer.Directory). Only a finished credential (messages.Credential) enters
the inbox; a bad frame (parity, length, noise) is the event ``wiegand.bad_frame`` with its length and
what was wrong, never its bits.

Factors pair up here, within ``access.factor_window_seconds``: a card and a PIN in either order (a PIN
typed first is held, in this thread only, until a card names whose PIN it must be, or until the loop
asks for it to be checked against the residents a face claims 1:1, ``check_claims``: face_and_pin). What they let in is
decided in the loop (lotcontrol.policy.credential_admission), which calls ``decided()`` after a
decision so that a factor is used once. Wrong PINs are counted per reader (credentials.PinLimit):
after 5 in a minute the keypad is locked for a minute (``wiegand.keypad_locked``, an alert).

On the rig's simulated clock there is no thread: the rig calls ``decode_due()`` at each instant and
wakes at ``next_deadline()`` (the pins' ticks are the simulated clock), so a frame is decoded exactly
``QUIET_SECONDS`` after its last pulse.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from ..config import WiegandConfig
from ..credentials import LOCK, TRIES, PinLimit, card_digest, verify_pin
from ..messages import Credential, Notice
from ..pins import open_edges, open_output, switch
from .wiegand import BadFrame, Card, Frames, Key, Keypad, decode

log = logging.getLogger("lotcontrol")

IDLE_WAIT = 0.5  # s: the thread's longest sleep when no frame is being read (it also checks for a stop)


class WiegandReader:
    """One reader. ``directory()`` returns the writer's current Directory (card key, digests, PIN
    hashes); ``deliver`` puts a message in the inbox; ``clock`` is the controller's (factor windows)."""

    def __init__(self, config: WiegandConfig, *, window: float, deliver: Callable[[object], None],
                 directory: Callable[[], Any], clock: Callable[[], float], pin_factory=None, name: str = "gate"):
        self.name = name
        self.window = window
        self._deliver = deliver
        self._directory = directory
        self._clock = clock
        self.feedback_seconds = config.feedback_seconds
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.lines: list = []
        self.led = self.buzzer = None
        self._off_at: float | None = None
        try:
            for pin, callback in ((config.d0_pin, self._edge_d0), (config.d1_pin, self._edge_d1)):
                self.lines.append(open_edges(pin, callback, pin_factory=pin_factory))
            self.factory = self.lines[0].pin_factory
            self.led = None if config.led_pin is None else open_output(config.led_pin, pin_factory=pin_factory)
            self.buzzer = None if config.buzzer_pin is None else open_output(config.buzzer_pin, pin_factory=pin_factory)
        except Exception:
            self.close()
            raise
        self.frames = Frames(diff=self.factory.ticks_diff)
        self._offset = 0.0  # edge stamps -> ticks() (see _on_our_clock)
        self.keypad = Keypad(config.pin_timeout_seconds)
        self.limit = PinLimit()
        self._card: tuple[str, int | None, str | None, float] | None = None  # (known/unknown, resident, digest, time)
        self._pin: tuple[str, float] | None = None  # a PIN typed before its card, and when
        self._claims: list[int] | None = None  # residents a face claims, to check the held PIN against
        self.decoded: list[tuple[float, float]] = []  # (last edge ticks, decoded ticks) of recent frames: benchmarks
        for index, line in enumerate(self.lines):  # the lines as they are now (a reader powered up, or not)
            self.frames.low[index] = not line.pin.state

    # --- the pin factory's callbacks: file the edge, wake the thread ---

    def _edge_d0(self, ticks: float, state: int) -> None:
        self._edge(0, ticks, state)

    def _edge_d1(self, ticks: float, state: int) -> None:
        self._edge(1, ticks, state)

    def _edge(self, line: int, ticks: float, state: int) -> None:
        with self._cond:
            idle = self.frames.last is None
            self.frames.edge(line, self._on_our_clock(ticks), not state)
            if idle or self.frames.closed:  # a frame starts (the thread, asleep for IDLE_WAIT, must now
                self._cond.notify()  # wait for its quiet gap), or this edge closed one the thread is late for
            # later edges only move the frame's last edge: the thread, waiting for the deadline it
            # computed from an earlier edge, wakes then, finds the frame not yet quiet and waits again
            # until the deadline from the newest edge. Waking it at every edge (52 per 26-bit card)
            # only cost a GIL hand-over each, with the edges' own thread (the pin library's callbacks)

    def _on_our_clock(self, ticks: float) -> float:
        """The edge's time on the base of the factory's ``ticks()``, which the quiet gap is measured
        against. The kernel stamps edges on CLOCK_MONOTONIC, as ``ticks()`` counts; a pin library
        that stamps them on the wall clock (CLOCK_REALTIME) is mapped onto it by the offset seen at an
        edge, kept while it holds (within a second), so the kernel's own spacing of the pulses stays."""
        now = self.factory.ticks()
        if abs(self.factory.ticks_diff(now, ticks + self._offset)) > 1.0:
            self._offset = self.factory.ticks_diff(now, ticks)
            log.warning("wiegand reader %s: the pin factory stamps edges on another clock than its ticks() "
                        "(%.3f s apart): edges are mapped onto ticks()", self.name, self._offset)
        return ticks + self._offset

    # --- the thread (or the rig, on its simulated clock) ---

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"wiegand-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                remaining = 0.0 if self._claims is not None else self.frames.remaining(self.factory.ticks())
                if remaining is None or remaining > 0:
                    self._cond.wait(IDLE_WAIT if remaining is None else remaining)
                if self._stopping:
                    return
            try:
                self.decode_due()
            except Exception:  # a bug here must not end the reader
                log.exception("wiegand reader %s", self.name)

    def next_deadline(self) -> float | None:
        """When (on the controller's clock) the frame being read is due; the simulated clock's ticks."""
        with self._cond:
            remaining = 0.0 if self._claims is not None else self.frames.remaining(self.factory.ticks())
        return None if remaining is None else self._clock() + remaining

    def check_claims(self, resident_ids: list[int]) -> None:
        """Called by the loop (never waits): check the PIN held here against these residents (a face's
        1:1 claims, nearest first) in this thread; the answer is a Credential without a card: ``ok`` for
        the resident whose PIN it is, or ``wrong`` (counted towards the keypad's lock)."""
        with self._cond:
            self._claims = list(resident_ids)
            self._cond.notify()

    def _check_claims(self, now: float) -> None:
        with self._cond:
            claims, self._claims = self._claims, None
        held, self._pin = self._pin, None
        if claims is None or held is None or now - held[1] > self.window:
            return  # no PIN held any more: the loop's window says which factor is missing
        if self.limit.locked(now):
            self._deliver(Credential(self.name, None, None, "locked", now))
            return
        pins = self._directory().pins
        for resident in claims:
            stored = pins.get(resident)
            if stored is not None and verify_pin(stored, held[0]):
                self._deliver(Credential(self.name, None, resident, "ok", now))
                return
        if self.limit.wrong(now):
            self._deliver(Notice("wiegand.keypad_locked", {"reader": self.name, "tries": TRIES, "seconds": LOCK}))
        self._deliver(Credential(self.name, None, None, "wrong", now))

    def decode_due(self) -> None:
        """Check a held PIN against a face's claims if asked; decode the frame whose quiet gap has
        passed, if any, and act on it."""
        if self._claims is not None:
            self._check_claims(self._clock())
        with self._cond:
            ticks = self.factory.ticks()
            frame = self.frames.due(ticks)
        if frame is None:
            return
        result = decode(*frame)
        self.decoded.append((self.frames.last_done, ticks))
        del self.decoded[:-1000]
        now = self._clock()
        if isinstance(result, BadFrame):
            self._deliver(Notice("wiegand.bad_frame", {"reader": self.name, "reason": result.reason,
                                                       "bits": result.bits}))
        elif isinstance(result, Card):
            self._on_card(result, now)
        elif isinstance(result, Key):
            if self.keypad.expire(now):
                self._deliver(Notice("wiegand.pin_timeout", {"reader": self.name}))
            pin = self.keypad.key(result.key, now)
            if pin is not None:
                self._on_pin(pin, now)

    def _on_card(self, card: Card, now: float) -> None:
        directory = self._directory()
        if not directory.card_keys:  # the database not open yet: no card is known
            self._deliver(Credential(self.name, "unknown", None, None, now))
            return
        digests = [card_digest(key, card) for key in directory.card_keys]  # this lot's key, then the hub's
        digest = digests[0]
        resident = next((directory.cards[d] for d in digests if d in directory.cards), None)
        known = "known" if resident is not None else "unknown"
        held, self._pin = self._pin, None
        pin = None
        if held is not None and now - held[1] <= self.window and resident is not None:
            pin = self._check(resident, held[0], now)
        self._card = (known, resident, digest, now)
        self._deliver(Credential(self.name, known, resident, pin, now, digest))

    def _on_pin(self, pin: str, now: float) -> None:
        card = self._card
        if card is not None and now - card[3] <= self.window and card[0] == "known":
            self._card = None
            self._deliver(Credential(self.name, "known", card[1], self._check(card[1], pin, now), now))
            return
        if self.limit.locked(now):
            self._deliver(Credential(self.name, None, None, "locked", now))
            return
        self._pin = (pin, now)
        self._deliver(Credential(self.name, None, None, "entered", now))

    def _check(self, resident_id: int, pin: str, now: float) -> str:
        if self.limit.locked(now):
            return "locked"
        stored = self._directory().pins.get(resident_id)
        if stored is None:
            return "not_set"
        if verify_pin(stored, pin):
            return "ok"
        if self.limit.wrong(now):
            self._deliver(Notice("wiegand.keypad_locked", {"reader": self.name, "tries": TRIES, "seconds": LOCK}))
        return "wrong"

    def decided(self) -> None:
        """The loop decided on the factors given so far: they are used (a card is not used twice)."""
        self._card = self._pin = None
        self._claims = None

    # --- the reader's LED and buzzer, switched by the loop ---

    def feedback(self, granted: bool, now: float) -> None:
        if self.led is not None:
            switch(self.led, granted)
        if self.buzzer is not None:
            switch(self.buzzer, not granted)
        self._off_at = now + self.feedback_seconds

    def tick(self, now: float) -> None:
        if self._off_at is not None and now >= self._off_at:
            self._off_at = None
            for device in (self.led, self.buzzer):
                if device is not None:
                    switch(device, False)

    def feedback_deadline(self) -> float | None:
        return self._off_at

    def make_safe(self) -> None:
        for device in (self.led, self.buzzer):
            if device is not None and not device.closed:
                device.off()

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        for device in (*self.lines, self.led, self.buzzer):
            if device is not None and not device.closed:
                device.close()
