"""The Wiegand protocol, pure: edges on D0 and D1 into bits, bits into a frame after a quiet gap, a
frame into a card, a key or a bad frame, and keys into a PIN.

A reader holds both lines high (pulled up); a 0 is a short low pulse on D0, a 1 on D1 (about 50 µs,
one every 1-2 ms). A frame ends when the lines stay quiet for ``QUIET_SECONDS``. Cards come as 26 or
34 bits: a leading even parity bit over the first half of the data, the data (24 or 32 bits), and a
trailing odd parity bit over its second half. A keypad sends each key as its own burst: 4 bits (the
key's code) or 8 bits (the code, then its complement). Codes 0-9 are digits, 10 is ``*``, 11 is ``#``.

Nothing here reads a clock or a pin: ``Frames`` is fed edges with their times (the pin factory's ticks)
and asked for what is complete at a given time; ``Keypad`` is fed keys with their times. Neither ever
keeps or reports a card's bits outside the ``Card`` it returns (a bad frame says only its length and
what was wrong).
"""

from __future__ import annotations

from dataclasses import dataclass

QUIET_SECONDS = 0.025  # a frame is complete after this long without a pulse
_EPSILON = 1e-6  # s: times this close count as the same (a deadline computed on another clock's floats)
MAX_BITS = 64  # longer is noise: the frame is dropped as "length"
KEYS = "0123456789*#"
PIN_DIGITS = (4, 12)  # a PIN's length, fewest and most digits


@dataclass(frozen=True)
class Card:
    """A card read with good parity: its format (26 or 34 bits) and its number (24 or 32 data bits).
    Never logged: it becomes a keyed digest (lotcontrol.credentials) before it leaves the reader."""

    bits: int
    number: int

    def __repr__(self) -> str:  # a card in a traceback or a log line by mistake says nothing of itself
        return f"Card({self.bits} bits)"


@dataclass(frozen=True)
class Key:
    key: str  # one of KEYS


@dataclass(frozen=True)
class BadFrame:
    reason: str  # "parity", "length", "complement" (an 8-bit key whose halves disagree), "noise"
    bits: int  # how many bits came (never which)


def _parity(bits: list[int]) -> int:
    return sum(bits) % 2


def decode(bits: list[int], noise: bool = False) -> Card | Key | BadFrame:
    """One frame's bits (first received first) as a card, a key or a bad frame."""
    n = len(bits)
    if noise:
        return BadFrame("noise", n)
    if n in (26, 34):
        half = (n - 2) // 2
        first, second = bits[1:1 + half], bits[1 + half:n - 1]
        if _parity([bits[0], *first]) != 0 or _parity([*second, bits[-1]]) != 1:
            return BadFrame("parity", n)
        number = 0
        for bit in bits[1:n - 1]:
            number = number << 1 | bit
        return Card(n, number)
    if n in (4, 8):
        code = int("".join(map(str, bits[:4])), 2)
        if n == 8 and int("".join(map(str, bits[4:])), 2) != code ^ 0xF:
            return BadFrame("complement", n)
        if code >= len(KEYS):
            return BadFrame("length", n)  # codes 12-15 are no key
        return Key(KEYS[code])
    return BadFrame("length", n)


def frame_bits(value: int, length: int) -> list[int]:
    """``value`` as ``length`` bits, most significant first."""
    return [value >> (length - 1 - i) & 1 for i in range(length)]


def card_frame(number: int, bits: int = 26) -> list[int]:
    """The bits a reader sends for card ``number`` (24 data bits in a 26-bit frame, 32 in a 34-bit
    one), parity included: for the simulator and the tests."""
    if bits not in (26, 34):
        raise ValueError(f"a card frame has 26 or 34 bits, not {bits}")
    data = frame_bits(number, bits - 2)
    half = (bits - 2) // 2
    return [_parity(data[:half]), *data, 1 - _parity(data[half:])]


def key_frame(key: str, bits: int = 8) -> list[int]:
    """The burst a keypad sends for ``key`` (4 or 8 bits)."""
    code = KEYS.index(key)
    return frame_bits(code, 4) if bits == 4 else frame_bits(code << 4 | (code ^ 0xF), 8)


class Frames:
    """Edges into frames. ``edge(line, ticks, low)``: line 0 (D0) or 1 (D1) went low (a pulse
    starts: one bit) or high. ``due(now)`` returns the frame (bits, noise) that has been quiet for
    ``quiet`` seconds by ``now``, or None. Both lines low at once is noise: the frame is bad.
    ``diff(later, earlier)`` is the pin factory's ``ticks_diff``.

    Frames end by the edges' own stamps: an edge that comes ``quiet`` seconds or more after the last
    one closes the frame before it (kept until ``due`` returns it), so a reader's thread that wakes
    late, after the next card or key has begun, still gets two frames, never one merged."""

    def __init__(self, quiet: float = QUIET_SECONDS, diff=lambda later, earlier: later - earlier):
        self.quiet = quiet
        self.diff = diff
        self.bits: list[int] = []
        self.low = [False, False]
        self.noise = False
        self.last: float | None = None  # ticks of the last edge of the frame being read
        self.last_done: float | None = None  # ticks of the last edge of the frame ``due`` returned last
        self.closed: list[tuple[list[int], bool, float]] = []  # frames ended by a later edge: (bits, noise, last)

    def edge(self, line: int, ticks: float, low: bool) -> None:
        if low == self.low[line]:
            return  # no change (a reread, a callback twice)
        if self.last is not None and self.diff(ticks, self.last) >= self.quiet - _EPSILON:
            self._close()  # quiet long enough before this edge: the frame before it is complete
        self.low[line] = low
        self.last = ticks
        if low:
            if self.low[1 - line]:
                self.noise = True  # both lines pulled at once: not a reader's pulse
            if len(self.bits) < MAX_BITS + 1:
                self.bits.append(line)

    def _close(self) -> None:
        if any(self.low):  # a line held low: a short circuit or a reader wired wrong, not a pulse
            self.noise = True
        if self.bits or self.noise:  # not only a line coming back high
            self.closed.append((self.bits, self.noise, self.last))
        self.bits, self.noise, self.last = [], False, None

    def due(self, now: float) -> tuple[list[int], bool] | None:
        """The oldest finished frame, if one was closed by a later edge or the lines have been quiet
        long enough (and it is cleared)."""
        if not self.closed:
            if self.last is None or self.diff(now, self.last) < self.quiet - _EPSILON:
                return None
            self._close()
            if not self.closed:
                return None  # only a line coming back high
        bits, noise, self.last_done = self.closed.pop(0)
        return bits, noise

    def remaining(self, now: float) -> float | None:
        """Seconds until the frame being read is due, or None when nothing is being read."""
        if self.closed:
            return 0.0
        if self.last is None:
            return None
        remaining = self.quiet - self.diff(now, self.last)
        return 0.0 if remaining < _EPSILON else remaining


class Keypad:
    """Keys into a PIN: digits gather, ``*`` clears them, ``#`` ends the PIN. Digits left alone for
    ``timeout`` seconds are dropped. ``key`` returns the finished PIN (on ``#``), else None; a PIN
    longer than the most digits is dropped whole (``too_long`` says so once)."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.digits = ""
        self.at: float | None = None
        self.too_long = False

    def expire(self, now: float) -> bool:
        """Drop digits older than the timeout; whether some were dropped."""
        if self.digits and self.at is not None and now - self.at >= self.timeout:
            self.digits, self.at = "", None
            return True
        return False

    def key(self, key: str, now: float) -> str | None:
        self.expire(now)
        self.at = now
        if key == "*":
            self.digits, self.too_long = "", False
            return None
        if key == "#":
            entered, self.digits, too_long, self.too_long = self.digits, "", self.too_long, False
            return None if too_long or not entered else entered
        if len(self.digits) >= PIN_DIGITS[1]:
            self.too_long = True
            self.digits = ""
            return None
        self.digits += key
        return None

    def deadline(self) -> float | None:
        return None if not self.digits or self.at is None else self.at + self.timeout

    def __repr__(self) -> str:
        return f"Keypad({len(self.digits)} digits)"
