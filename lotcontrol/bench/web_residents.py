"""What the web console's residents pages cost: page times at lot scale, and where enrollment's memory goes.

    .venv/bin/python -m lotcontrol.bench.web_residents [--residents 1400] [--loads 20] [--photo FILE] [--json]

``lotcontrol web`` in a process of its own on a free port (no controller: these pages read only the
database), a data directory with ``--residents`` residents, each with a unit, a phone and one face
template, every tenth pair flagged as look-alikes, and one staff user logged in over HTTP (httpx):

- **pages**: ``GET /residents`` (all of them), a search (``?q=``), one resident (``/resident``) and
  the look-alike review: median and p95 over ``--loads`` loads each;
- **RSS**: the web process's resident memory logged in (a login's argon2id check takes 7 MiB: its
  peak), after the pages, and its peak (VmHWM) after one enrollment by photo upload (``--photo``,
  default the face of scikit-image's astronaut, as ``make demo`` enrolls her);
- **enrollment**: that upload's time (the command line's ``enroll`` as a child process, the face
  models loaded each time) and the child's own peak RSS, from ``wait4`` on the same command run here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .web import _free_port, _memory, logged_in

PASSWORD = "bench password 1"


def _lot(data: Path, residents: int) -> None:
    import numpy as np

    from ..store import Store, Template

    rng = np.random.default_rng(0)
    with Store.in_dir(data) as store, store.transaction():
        ids = []
        for n in range(residents):
            resident = store.add_resident(f"Resident {n:05d}", unit=f"{n % 40 + 1}{'ABCD'[n % 4]}",
                                          phone=f"+86 138 {n:04d} {n % 7:04d}")
            vector = rng.normal(0, 1, 128).astype(np.float32)
            store.add_templates(resident.id, [Template({"dlib": vector / np.linalg.norm(vector) * 0.6},
                                                       f"bench-{n}", 120, 60.0)])
            ids.append(resident.id)
        for a, b in zip(ids[::20], ids[1::20]):
            store.flag_lookalike(a, b, 0.33)


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1)}


def run(residents: int = 1400, loads: int = 20, photo: Path | None = None) -> dict:
    from ..web.enrolling import command, positional
    from ..web.users import Users

    with tempfile.TemporaryDirectory(prefix="lotcontrol-bench-residents-") as tmp:
        if photo is None:  # the demo's portrait, her face alone (the whole photo has a second, small one)
            import skimage
            from PIL import Image

            photo = Path(tmp) / "eileen-collins.png"
            Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png").crop((90, 0, 370, 280)).save(photo)
        data, port = Path(tmp) / "data", _free_port()
        data.mkdir(mode=0o700)
        config_path = Path(tmp) / "lot.toml"
        config_path.write_text(f"[web]\nport = {port}\n")
        config_path.chmod(0o600)
        _lot(data, residents)
        Users(data).add("bench", "staff", PASSWORD)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
        web = subprocess.Popen([sys.executable, "-m", "lotcontrol", "--config", str(config_path), "--data-dir",
                                str(data), "web"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            client = logged_in(web, url, "bench", PASSWORD, timeout=300)
            token = re.search(r'name="csrf" value="([^"]+)"', client.get("/residents/enroll").text).group(1)
            started = _memory(web.pid)
            middle = residents // 2
            pages = {"list": "/residents", "search": f"/residents?q=138%20{middle:04d}",
                     "one": f"/resident?name=Resident%20{middle:05d}",
                     "lookalikes": "/residents/lookalikes"}
            times: dict[str, list[float]] = {key: [] for key in pages}
            for _ in range(loads):
                for key, path in pages.items():
                    start = time.perf_counter()
                    answer = client.get(path)
                    times[key].append((time.perf_counter() - start) * 1000)
                    assert answer.status_code == 200, (path, answer.status_code)
            after_pages = _memory(web.pid)
            start = time.perf_counter()
            answer = client.post("/residents/enroll/photos", data={"name": "Bench Photo", "csrf": token},
                                 files=[("photos", (photo.name, photo.read_bytes(), "image/png"))])
            upload_s = time.perf_counter() - start
            enrolled = answer.status_code == 200 and "added resident" in answer.text
            after_enroll = _memory(web.pid)
        finally:
            web.terminate()
            web.wait(30)
        # the same command the console runs, here, for the child's own peak memory
        args = [*command(str(config_path), data, "bench", {}), *positional("Bench Photo 2", str(photo))]
        child = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, _, usage = os.wait4(child.pid, 0)
    return {"residents": residents, "loads": loads, "rss_mb_logged_in": started["VmRSS"],
            "peak_rss_mb_logged_in": started["VmHWM"], **{f"{key}_page": _summary(v) for key, v in times.items()},
            "rss_mb_after_pages": after_pages["VmRSS"], "peak_rss_mb_after_enrollment": after_enroll["VmHWM"],
            "upload_enrollment_s": round(upload_s, 2), "enrolled": enrolled,
            "enroll_child_peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=1400)
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--photo", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.residents, args.loads, args.photo)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, label in (("list", "residents list (all)"), ("search", "search"), ("one", "one resident"),
                       ("lookalikes", "look-alike review")):
        page = result[f"{key}_page"]
        print(f"{label}, {result['residents']} residents, {result['loads']} loads: median {page['median_ms']} ms, "
              f"p95 {page['p95_ms']} ms")
    print(f"web process RSS: {result['rss_mb_logged_in']} MB logged in (peak {result['peak_rss_mb_logged_in']} MB: the login's "
          f"argon2id check), {result['rss_mb_after_pages']} MB after the pages, peak {result['peak_rss_mb_after_enrollment']} MB "
          "after an enrollment by upload")
    print(f"enrollment by upload of one photo: {result['upload_enrollment_s']} s "
          f"({'enrolled' if result['enrolled'] else 'NOT enrolled'}); the enroll child's peak RSS "
          f"{result['enroll_child_peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
