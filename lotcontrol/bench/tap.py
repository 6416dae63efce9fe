"""What the vision worker's camera tap costs the worker (vision/tap.py).

    .venv/bin/python -m lotcontrol.bench.tap [--frames 60]

A ``FrameTap`` in this process, offered a 640x480 frame by a thread at 15 fps as the worker's loop
would; ``--frames`` frames read through it by another process, as ``enroll --camera`` does:

- ``offer()`` while nobody asks (every frame of a running lot) and while a client reads: what the
  worker's loop spends per frame;
- a frame's read by the client: the wait for the camera's next frame (about 67 ms at 15 fps) and
  the transfer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path

CHILD = """
import sys, time
from pathlib import Path
from lotcontrol.vision.tap import TapSource
source, reads = TapSource(Path(sys.argv[1])), []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter(); source.read(); reads.append(time.perf_counter() - start)
print(" ".join(f"{r:.6f}" for r in reads))
"""


def run(frames: int = 60) -> dict:
    import numpy as np

    from ..vision.camera import Frame
    from ..vision.tap import FrameTap

    with tempfile.TemporaryDirectory(prefix="lotcontrol-bench-tap-") as tmp:
        path = Path(tmp) / "camera.sock"
        tap = FrameTap(path)
        image = np.zeros((480, 640, 3), np.uint8)
        first = Frame(image, 0.0, 0)
        idle = min(timeit.repeat(lambda: tap.offer(first), number=100_000, repeat=3)) / 100_000
        stop, offers = threading.Event(), []

        def camera():  # the worker's loop at a 15 fps camera
            index = 0
            while not stop.is_set():
                start = time.perf_counter()
                tap.offer(Frame(image, index / 15, index))
                offers.append(time.perf_counter() - start)
                index += 1
                time.sleep(1 / 15)
        thread = threading.Thread(target=camera, daemon=True)
        thread.start()
        try:
            out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(frames)], capture_output=True, text=True,
                                 check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}).stdout
        finally:
            stop.set()
            thread.join()
            tap.close()
    reads = sorted(float(x) for x in out.split())
    offers.sort()
    return {"offer_idle_us": round(idle * 1e6, 3), "offer_with_client_median_us": round(statistics.median(offers) * 1e6, 1),
            "offer_with_client_p99_us": round(offers[int(0.99 * (len(offers) - 1))] * 1e6, 1),
            "read_median_ms": round(statistics.median(reads) * 1000, 1), "read_max_ms": round(reads[-1] * 1000, 1),
            "frames": frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    r = run(parser.parse_args().frames)
    print(f"offer() per frame, nobody asking: {r['offer_idle_us']} us; while a client process reads: median "
          f"{r['offer_with_client_median_us']} us, p99 {r['offer_with_client_p99_us']} us")
    print(f"a 640x480 frame read by another process ({r['frames']} reads, a 15 fps camera): median {r['read_median_ms']} ms, "
          f"max {r['read_max_ms']} ms")


if __name__ == "__main__":
    main()
