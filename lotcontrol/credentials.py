"""Cards and PINs as they are kept: never in clear.

A card is kept as a keyed digest: HMAC-SHA256 of its format and number under the site's card key (32
random bytes made once, in the database). The reader's thread computes the digest of the card it read
and looks it up; nothing printable about the card exists outside that thread, and a stolen database
gives no card number (the key is needed to test a guess, and a digest cannot be turned back into a
card). A PIN is kept as an argon2id hash (argon2-cffi, salted, about 50 ms on a Pi 4): it is checked
off the controller's loop, in the reader's thread, against a snapshot of the hashes.

``PinLimit`` counts wrong PINs per reader: after ``TRIES`` wrong ones within ``WINDOW`` seconds the
keypad is locked for ``LOCK`` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import subprocess
import sys
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .errors import InvalidValue
from .site.wiegand import PIN_DIGITS, Card

TRIES, WINDOW, LOCK = 5, 60.0, 60.0
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)  # OWASP's argon2id minimum
_UID = re.compile(r"^(26|34):([0-9]{1,10})$")


def card_digest(key: bytes, card: Card) -> str:
    return hmac.new(key, f"{card.bits}:{card.number}".encode(), hashlib.sha256).hexdigest()


def parse_uid(text: str) -> Card:
    """A card number as staff type it from a card's print or a reader's software: ``26:1234567``
    (format, then the 24 or 32 data bits as a decimal number)."""
    match = _UID.match(text.strip())
    if match is None:
        raise InvalidValue("a card's uid is FORMAT:NUMBER, the format 26 or 34 and the number in decimal "
                           "(e.g. 26:<number>)", code="card.uid")
    bits, number = int(match[1]), int(match[2])
    if number >= 1 << (bits - 2):
        raise InvalidValue(f"a {bits}-bit card's number is below {1 << (bits - 2)}", code="card.range", bits=bits,
                           limit=1 << (bits - 2))
    return Card(bits, number)


def check_pin(pin: str) -> str:
    low, high = PIN_DIGITS
    if not (pin.isascii() and pin.isdigit() and low <= len(pin) <= high):
        raise InvalidValue(f"a PIN is {low} to {high} digits (0-9), as typed at the keypad", code="pin.digits",
                           low=low, high=high)
    return pin


def hash_pin(pin: str) -> str:
    return _HASHER.hash(check_pin(pin))


def hash_pin_apart(pin: str, timeout: float = 60.0) -> str:
    """``hash_pin`` in a short-lived child process (``python -m lotcontrol.credentials``), for the web
    console: the hash's 19 MiB are the child's, not the console's (which keeps under 80 MB). The PIN is
    checked here first and goes to the child on its stdin, never in its arguments."""
    check_pin(pin)
    try:
        done = subprocess.run([sys.executable, "-m", "lotcontrol.credentials"], input=pin + "\n", text=True,
                              capture_output=True, timeout=timeout, cwd=Path(__file__).resolve().parents[1])
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OSError(f"the PIN could not be hashed: {exc}") from None
    hashed = done.stdout.strip()
    if done.returncode != 0 or not hashed.startswith("$argon2id$"):
        raise OSError(f"the PIN could not be hashed: {done.stderr.strip()[-300:] or f'exit {done.returncode}'}")
    return hashed


def verify_pin(stored: str, pin: str) -> bool:
    try:
        return _HASHER.verify(stored, pin)
    except (VerificationError, InvalidHashError):
        return False


class PinLimit:
    """Wrong PINs at one reader. ``wrong(now)`` counts one and says whether that locked the keypad."""

    def __init__(self, tries: int = TRIES, window: float = WINDOW, lock: float = LOCK):
        self.tries, self.window, self.lock = tries, window, lock
        self.times: list[float] = []
        self.until: float | None = None

    def locked(self, now: float) -> bool:
        return self.until is not None and now < self.until

    def wrong(self, now: float) -> bool:
        self.times = [t for t in self.times if now - t < self.window] + [now]
        if len(self.times) >= self.tries:
            self.times = []
            self.until = now + self.lock
            return True
        return False


if __name__ == "__main__":  # hash_pin_apart's child: a PIN on stdin, its hash on stdout
    print(hash_pin(sys.stdin.readline().strip()))
