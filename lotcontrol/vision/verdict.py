"""A face's verdict over its frames, as a pure function: whether the encoded frames of one track add
up to a resident. Whether that resident may enter is the controller's (lotcontrol.policy).

Each encoded frame is matched on its own (an ``Observation``), and from the second frame on, the
frames are also taken together (``Fused``: the match of the mean of their encodings, and how far
the frames lie from that mean). ``Fused`` pools a track's *frames*; it has nothing to do with the
``fused`` encoder space (vision/encoders.py), which joins two *encoders* in one vector. The decision is sequential: it is taken as soon as the evidence is
clear either way, so a clear resident costs fewer encodings and a clear stranger stops costing CPU.
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
class Fused:
    """The encoded frames of a track taken together: the match of their mean encoding."""

    resident_id: int | None  # whom the mean was accepted as, or None
    nearest_id: int | None
    distance: float  # from the mean to the nearest resident
    limit: float  # that resident's accept limit
    spread: float  # the mean distance of the frames from their mean (one face: small)


@dataclass(frozen=True)
class Verdict:
    outcome: str  # "grant", "unknown", "pending", or "none" (the face was never good enough to encode)
    resident_id: int | None = None
    reason: str | None = None  # for "unknown": no_match, frames_disagree, not_confirmed; not_live, liveness_undecided (pipeline)


PENDING = Verdict("pending")


def judge_track(observations: Sequence[Observation], *, confirm_frames: int, max_encodings: int,
                ended: bool = False, fused: Fused | None = None, clear_margin: float | None = None,
                max_spread: float = 0.3) -> Verdict:
    """The verdict on a track's encoded frames so far.

    - Frames that accept two different residents refuse the face at once (a tie is never resolved
      in anyone's favour).
    - Grant when ``confirm_frames`` frames accept one resident and none accepts anyone else, and
      the frames taken together (``fused``, when given) are accepted as that same resident.
    - With ``clear_margin``, decide early on the frames taken together: grant on fewer frames
      (never on one) when every frame accepted the resident, the mean is ``clear_margin`` inside
      their limit and the frames lie close together (``max_spread``: one face, not two);
      refuse when no frame accepted anyone and the mean is ``clear_margin`` beyond the limit.
    - A face not confirmed within ``max_encodings`` frames, or gone before it was, is unknown.
    """
    votes = Counter(o.resident_id for o in observations if o.resident_id is not None)
    if len(votes) > 1:
        return Verdict("unknown", None, "frames_disagree")
    count = len(observations)
    together = fused if fused is not None and count >= 2 else None
    if votes:
        resident_id, agree = votes.most_common(1)[0]
        fused_agrees = together is None or together.resident_id == resident_id
        if agree >= confirm_frames and fused_agrees:
            return Verdict("grant", resident_id)
        if (together is not None and clear_margin is not None and fused_agrees and agree == count
                and together.distance <= together.limit - clear_margin and together.spread <= max_spread):
            return Verdict("grant", resident_id)
    elif together is not None and clear_margin is not None and together.distance > together.limit + clear_margin:
        return Verdict("unknown", None, "no_match")
    if count >= max_encodings or (ended and observations):
        return Verdict("unknown", None, "not_confirmed" if votes else "no_match")
    if ended:
        return Verdict("none")
    return PENDING
