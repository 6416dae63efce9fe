"""The gate relay: closed from the first instant, opened for a while by a grant, held open while the
fire release holds it (lotcontrol.policy decides when), closed on time.

The relay is a gpiozero ``OutputDevice`` created with ``initial_value=False``: the gate is shut
while the program starts, and ``close()`` leaves it shut. Wire the relay so that an unpowered or
booting Pi (every GPIO an input) leaves it de-energized: see hardware/README.md.
"""

from __future__ import annotations

from gpiozero import OutputDevice

from ..config import GateConfig
from ..pins import switch


class Gate:
    """Holds the relay on until a deadline, or while held; ``tick(now)`` ends a timed opening."""

    def __init__(self, settings: GateConfig, *, pin_factory=None):
        self.settings = settings
        self.relay = OutputDevice(settings.relay_pin, active_high=settings.relay_active_high,
                                  initial_value=False, pin_factory=pin_factory)
        self.open_until: float | None = None
        self.held = False

    @property
    def is_open(self) -> bool:
        return self.held or self.open_until is not None

    def open(self, now: float, seconds: float | None = None) -> bool:
        """Open, or keep open, until ``now + seconds``; True if the gate was shut before."""
        was_shut = not self.is_open
        until = now + (seconds if seconds is not None else self.settings.open_seconds)
        self.open_until = until if self.open_until is None else max(self.open_until, until)
        switch(self.relay, True)
        return was_shut

    def hold(self, held: bool) -> None:
        """Release and hold open (a fire), or end the hold: the gate shuts at once."""
        if held != self.held:
            self.held = held
            self.open_until = None
            switch(self.relay, held)

    def tick(self, now: float) -> bool:
        """Shut the gate if its time is up; True if it was shut now."""
        if self.open_until is not None and now >= self.open_until:
            self.open_until = None
            if not self.held:
                switch(self.relay, False)
                return True
        return False

    def next_deadline(self) -> float | None:
        return self.open_until

    def close(self) -> None:
        """Shut the gate and release the pin. Safe to call twice."""
        if not self.relay.closed:
            self.relay.off()
            self.relay.close()
        self.open_until = None
