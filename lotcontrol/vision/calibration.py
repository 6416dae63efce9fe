"""How likely a stranger is to be accepted as *someone*, for a gallery of a given size: the shipped
calibration, and the accept limit it gives for a risk the site chooses (``match.max_stranger_rate``).

A stranger's chance of matching somebody grows with the templates on file, and the crowding limit
(matcher.py) pulls it back down as the gallery fills. Neither is a formula, so the chance was
measured: ``python -m lotcontrol.bench.calibrate`` enrolls random galleries of 10 to 1,400 people
(one template each) from ../shared/faces-lot, probes them with every other person, and records for
each accept distance the share of strangers accepted under the matcher's whole rule (crowding,
margin and look-alike limits as shipped), pooled over 8 random galleries per size (a Jeffreys
estimate, (k + 1/2) / (n + 1): no measured zero is taken for a zero risk). The table (numbers only: no photos, no templates) ships as
``calibration.json`` beside this module.

- Between two measured sizes the rate is interpolated on log(size); beyond the largest it grows as
  it grew between the two largest (as a power of the size, between flat and in proportion), and
  below the smallest it shrinks in proportion to the templates.
- ``population = "east_asian"`` multiplies the rate by how much more often two different East Asian
  faces fall within that distance of each other than two faces of the whole set (measured on the
  pairs of EAST_ASIAN.txt): dlib's encoder was trained mostly on Western faces.
- The genuine share refused at a limit (``refused``) is the share of same-person photo pairs
  further apart than it: for telling staff what a limit will cost, not for deciding.

The **1:1** calibration (``impostor``), for the access modes where a card or a PIN names the resident
(``face_and_card``, ``face_and_pin``): the share of photo pairs of two *different* people within each
distance, per population. It is the chance that someone else's face is taken for the one resident a
card or PIN claims, whatever the gallery's size; ``one_to_one_limit`` is the largest distance where it
stays within ``access.max_impostor_rate``. Measured by ``python -m lotcontrol.bench.calibrate
--one-to-one`` (the stranger-rate table is left as it is).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LotControlError

if TYPE_CHECKING:  # numpy is imported where it is used: config checks the shipped file without it
    import numpy as np

FILE = Path(__file__).with_name("calibration.json")
POPULATIONS = ("general", "east_asian")


@dataclass(frozen=True)
class Calibration:
    distances: np.ndarray  # the accept distances measured, ascending
    sizes: np.ndarray  # the gallery sizes measured (templates), ascending
    rates: np.ndarray  # [size, distance]: the share of strangers accepted
    east_asian_factor: np.ndarray  # [distance]: how many times more likely for East Asian faces
    refused: dict[str, np.ndarray]  # population -> [distance]: share of genuine pairs further apart
    rule: dict  # the matcher settings it was measured with (crowding, margin)
    source: str  # what it was measured on
    impostor: dict[str, np.ndarray] | None = None  # population -> [distance]: share of different-person pairs within

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        import numpy as np

        return cls(np.asarray(data["distances"], float), np.asarray(data["sizes"], float),
                   np.asarray(data["rates"], float), np.asarray(data["east_asian_factor"], float),
                   {k: np.asarray(v, float) for k, v in data["refused"].items()}, data["rule"], data["source"],
                   {k: np.asarray(v, float) for k, v in data["impostor"].items()} if "impostor" in data else None)

    def to_dict(self) -> dict:
        return {"source": self.source, "rule": self.rule, "distances": self.distances.round(3).tolist(),
                "sizes": self.sizes.astype(int).tolist(), "rates": self.rates.round(6).tolist(),
                "east_asian_factor": self.east_asian_factor.round(2).tolist(),
                "refused": {k: v.round(4).tolist() for k, v in self.refused.items()},
                **({"impostor": {k: v.round(7).tolist() for k, v in self.impostor.items()}} if self.impostor else {})}

    def stranger_rates(self, templates: int, population: str = "general") -> np.ndarray:
        """The chance per decision that a stranger is accepted, at each measured distance."""
        import numpy as np

        if templates <= 0:
            return np.zeros(len(self.distances))
        sizes, rates = self.sizes, self.rates
        if templates <= sizes[0]:
            rate = rates[0] * templates / sizes[0]
        elif templates >= sizes[-1]:
            rate = rates[-1] * (templates / sizes[-1]) ** self._growth()
        else:
            i = int(np.searchsorted(sizes, templates)) - 1
            w = (math.log(templates) - math.log(sizes[i])) / (math.log(sizes[i + 1]) - math.log(sizes[i]))
            rate = rates[i] * (1 - w) + rates[i + 1] * w
        if population == "east_asian":
            rate = rate * self.east_asian_factor
        return np.maximum.accumulate(np.minimum(rate, 1.0))  # never less likely at a larger distance

    def _growth(self) -> np.ndarray:
        """Per distance, how the rate grew with the gallery between the two largest sizes measured
        (the exponent of size), between 0 (flat: crowding holds it) and 1 (in proportion)."""
        import numpy as np

        if len(self.sizes) < 2:
            return np.ones(len(self.distances))
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.log(self.rates[-1] / self.rates[-2]) / math.log(self.sizes[-1] / self.sizes[-2])
        return np.clip(np.nan_to_num(slope, nan=1.0, posinf=1.0, neginf=0.0), 0.0, 1.0)

    def stranger_rate(self, limit: float, templates: int, population: str = "general") -> float:
        """The chance per decision at accept limit ``limit`` (the next measured distance up)."""
        import numpy as np

        rates = self.stranger_rates(templates, population)
        i = min(int(np.searchsorted(self.distances, limit - 1e-9)), len(rates) - 1)
        return float(rates[i])

    def limit(self, max_rate: float, templates: int, population: str = "general") -> float:
        """The largest measured accept distance whose stranger rate is at most ``max_rate``; the
        smallest measured distance if none is (the risk cannot be met: ``stranger_rate`` says how far)."""
        import numpy as np

        rates = self.stranger_rates(templates, population)
        within = np.flatnonzero(rates <= max_rate)
        return float(self.distances[within[-1]] if len(within) else self.distances[0])

    def refused_at(self, limit: float, population: str = "general") -> float:
        """The share of a resident's photos further than ``limit`` from another of theirs (one photo
        each side: more templates and several frames per passage refuse fewer)."""
        import numpy as np

        refused = self.refused[population]
        return float(np.interp(limit, self.distances, refused))


    def one_to_one_limit(self, max_rate: float, population: str = "general") -> float:
        """The 1:1 accept limit: the largest measured distance at which at most ``max_rate`` of the faces
        of people other than the claimed resident come within it; the smallest measured distance if none
        does. MissingCalibration when this calibration has no 1:1 table."""
        import numpy as np

        if not self.impostor:
            raise MissingCalibration("this face space's calibration has no 1:1 table: measure it with "
                                     "`python -m lotcontrol.bench.calibrate --one-to-one --write`")
        within = np.flatnonzero(np.maximum.accumulate(self.impostor[population]) <= max_rate)
        return float(self.distances[within[-1]] if len(within) else self.distances[0])

    def impostor_rate(self, limit: float, population: str = "general") -> float | None:
        """The share of other people's faces within ``limit`` of a claimed resident (None: no 1:1 table)."""
        import numpy as np

        if not self.impostor:
            return None
        return float(np.interp(limit, self.distances, self.impostor[population]))


def shipped_file(space: str = "dlib") -> Path:
    """Where the calibration of an encoder space ships: calibration.json is dlib's, the others'
    calibration-<space>.json (``python -m lotcontrol.bench.calibrate --encoder <space>``)."""
    return FILE if space == "dlib" else FILE.with_name(f"calibration-{space}.json")


@lru_cache(maxsize=None)
def shipped(space: str = "dlib") -> Calibration:
    """The shipped calibration of ``space``; MissingCalibration when there is none."""
    path = shipped_file(space)
    try:
        return Calibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise MissingCalibration(
            f"the {space} face space has no shipped calibration ({path.name}): it cannot be used until "
            f"`python -m lotcontrol.bench.calibrate --encoder {space}` has measured it") from None


class MissingCalibration(LotControlError, LookupError):
    """An encoder space without a shipped calibration."""
