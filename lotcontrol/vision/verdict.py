"""A face's verdict over its frames, as a pure function: whether the encoded frames of one track add
up to a resident. Whether that resident may enter is the controller's (lotcontrol.policy).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence



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
