"""How long one poll of the meters on an RS-485 bus takes, from Modbus RTU's framing: the capacity
check behind ``check-config`` (pure; no serial port is opened).

Every character on the wire is 11 bits (start, 8 data, parity or a second stop bit, stop). One
register read is a request of 8 bytes (unit, function, address, count, CRC) and an answer of
5 + 2 × count bytes (unit, function, byte count, the registers, CRC); each frame is followed by the
3.5-character silence that ends an RTU frame (1.75 ms above 19,200 baud, as the standard fixes it),
and the meter takes ``turnaround_seconds`` before it answers::

    read(count) = (8 + 5 + 2 × count) × 11 / baud + 2 × t3.5 + turnaround

A meter is read once per poll with one read per register of its profile (voltage and current only
when the profile has them; power and energy always), so a bus fits
``floor(poll_seconds / Σ read)`` meters of one profile. At 9,600 baud with the SDM120 profile (four
2-register reads) and the default 20 ms turnaround one meter takes 0.190 s: 10 fit in a 2 s poll
(19,200 baud: 0.135 s, 14 fit).
"""

from __future__ import annotations

import math
from typing import Any

BITS_PER_CHAR = 11
REQUEST_BYTES = 8
ANSWER_OVERHEAD_BYTES = 5
WORDS = {"float32": 2, "int32": 2, "uint32": 2, "int16": 1, "uint16": 1}


def silence_seconds(baud: int) -> float:
    """The 3.5-character gap that ends an RTU frame (fixed at 1.75 ms above 19,200 baud)."""
    return 3.5 * BITS_PER_CHAR / baud if baud <= 19200 else 0.00175


def read_seconds(baud: int, count: int, turnaround: float) -> float:
    """One read of ``count`` registers: request, silence, the meter's turnaround, answer, silence."""
    chars = REQUEST_BYTES + ANSWER_OVERHEAD_BYTES + 2 * count
    return chars * BITS_PER_CHAR / baud + 2 * silence_seconds(baud) + turnaround


def registers(profile: Any) -> list[int]:
    """The register counts one poll of a meter with this profile reads, one entry per read."""
    kept = [getattr(profile, name) for name in ("voltage", "current", "power", "energy")]
    return [WORDS[register.type] for register in kept if register is not None]


def meter_seconds(baud: int, profile: Any, turnaround: float) -> float:
    return sum(read_seconds(baud, count, turnaround) for count in registers(profile))


def bus_problem(bus: Any, profiles: list[Any], poll_seconds: float) -> str | None:
    """Why the meters ``profiles`` (one per meter) on ``bus`` cannot all be read every ``poll_seconds``
    (saying how many fit), or None."""
    if not profiles:
        return None
    total = sum(meter_seconds(bus.baud, p, bus.turnaround_seconds) for p in profiles)
    if total <= poll_seconds:
        return None
    each = total / len(profiles)
    fit = math.floor(poll_seconds / each)
    return (f"meter bus {bus.name!r} at {bus.baud} baud cannot read its {len(profiles)} meters every "
            f"{poll_seconds:g} s (charging.poll_seconds): one poll of them takes {total:.2f} s "
            f"({each * 1000:.0f} ms a meter), so {fit} fit; raise poll_seconds or the baud rate, or split "
            f"them over two buses")
