"""``make bench``: matching speed, then (where ../shared is present) the gate on video.
The fire watch's reaction times take about 7 minutes: `python -m benchmarks.fire`."""

import sys
from pathlib import Path

from . import matching

print("== matching one face against the gallery")
matching.main()
shared = Path(__file__).resolve().parents[2] / "shared"
if (shared / "faces" / "clips").is_dir():
    from . import gate

    print("\n== the gate on recorded video (python -m benchmarks.gate --lot adds 1,400 residents)")
    sys.argv = [sys.argv[0], "--runs", "5"]
    gate.main()
else:
    print(f"\n(the gate benchmarks need {shared}/faces; skipped)")
