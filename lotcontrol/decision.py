"""The gate's decisions as pure functions of what was seen, the resident's record and the date.

``judge_track`` says whether the frames of one face add up to a resident; ``admit`` says whether
that resident may enter now. Neither reads a clock, a pin or a camera: tests call them directly.
Precedence (highest first): fire alarm > sensor fault > lot full > the resident's status and
schedule > the face match; the fire and bay conditions arrive with their own issues.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from .store import Resident


@dataclass(frozen=True)
class Observation:
    """One encoded frame of a face: whom the matcher accepted it as (or None), and how near."""

    resident_id: int | None
    nearest_id: int | None
    distance: float


@dataclass(frozen=True)
class Verdict:
    outcome: str  # "grant", "unknown", "pending", or "none" (the face was never good enough to encode)
    resident_id: int | None = None
    reason: str | None = None  # for "unknown": no_match, frames_disagree, not_confirmed


PENDING = Verdict("pending")


def judge_track(observations: Sequence[Observation], *, confirm_frames: int, max_encodings: int,
                ended: bool = False) -> Verdict:
    """Grant when ``confirm_frames`` frames accept one resident and no frame accepts anyone else.

    Frames that accept two different residents refuse the face at once (a tie is never resolved in
    anyone's favour). A face not confirmed within ``max_encodings`` frames, or gone before it was,
    is unknown. Never a grant on fewer than ``confirm_frames`` frames.
    """
    votes = Counter(o.resident_id for o in observations if o.resident_id is not None)
    if len(votes) > 1:
        return Verdict("unknown", None, "frames_disagree")
    if votes:
        resident_id, count = votes.most_common(1)[0]
        if count >= confirm_frames:
            return Verdict("grant", resident_id)
    if len(observations) >= max_encodings or (ended and observations):
        return Verdict("unknown", None, "not_confirmed" if votes else "no_match")
    if ended:
        return Verdict("none")
    return PENDING


def admit(resident: Resident | None, today: dt.date) -> str | None:
    """Why a face confirmed as ``resident`` may not enter today, or None to open the gate."""
    if resident is None:
        return "resident_removed"  # removed between the match and the decision
    return resident.refusal(today)
