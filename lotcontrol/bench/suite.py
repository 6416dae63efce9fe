"""`lotcontrol bench`: every measurement once, each beside the plain face_recognition way where one
applies (measured in the same run), printed as one table or one JSON document.

Figures: decision latency and CPU per decision on a clip, the whole clip's CPU, an empty scene's
CPU, peak memory of the controller and its vision worker, matching one face against 1k/10k/100k
templates, a sprinkler burst's way to the outputs under face load, enrollment throughput, and the
charging ports (a burst to every port relay with the meters polled, the tick per port, Modbus RTU
poll cycles). The
detailed benchmarks (more runs, the lot-scale stranger test, the accuracy sweep, probe latency)
are the modules beside this one: ``python -m lotcontrol.bench.gate --lot`` and so on.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Callable

from lotcontrol.config import Config


def run(shared: Path, *, runs: int = 3, burst_trials: int = 100, say: Callable[[str], None] = print) -> dict:
    """All figures; ``say`` hears what is being measured (it takes about three minutes here)."""
    from . import charging, enrollment, fire, fleet, gate, matching, mqtt

    started = time.monotonic()
    results: dict = {"taken": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "machine": machine(), "shared": str(shared) if (shared / "faces").is_dir() else None}
    with tempfile.TemporaryDirectory(prefix="lotcontrol-bench-") as tmp:
        tmp = Path(tmp)
        say("matching one face against 1k / 10k / 100k templates")
        results["matching"] = matching.run()
        say("enrollment throughput")
        (tmp / "enrollment").mkdir()
        results["enrollment"] = enrollment.measure(shared, tmp / "enrollment")
        say(f"sprinkler burst -> outputs, {burst_trials} trials with face work in 2 processes, as many with "
            f"the database locked too, {burst_trials // 3} with the face work on the controller's thread")
        with fire.face_work_in_processes():
            in_processes = fire.burst_trials(burst_trials, tmp)
            locked = fire.burst_trials(burst_trials, tmp, database_locked=True)
        with fire.face_work_in_thread():
            in_thread = fire.burst_trials(burst_trials // 3, tmp)
        results["burst"] = {"ours": fire.summary(in_processes), "in_thread": fire.summary(in_thread),
                            "database_locked": fire.summary(locked)}
        say("MQTT: the loop's turn and the controller's memory with it off and on, events per second, sprinkler "
            "bursts with the broker down and flooding the lot")
        (tmp / "mqtt").mkdir()
        results["mqtt"] = mqtt.run(turns=20000, events=5000, trials=30, folder=tmp / "mqtt")
        say("central enrollment: a removal or enrollment at the hub to a lot's gallery, connected and after "
            "being offline (1,400 residents at the hub; about a minute)")
        results["fleet"] = fleet.run(residents=1400, trials=8, restarts=3)
        kind = "hamilton" if results["shared"] else "demo"
        config = Config()
        (tmp / "gate").mkdir()
        where = gate.scene(kind, shared, tmp / "gate", config)
        say(f"the gate on the {where.name} ({runs} runs at its own rate, then every frame, an empty scene, "
            "memory, and the plain loop at 1/4 and 1/2 scale)")
        results["gate"] = gate.measure(where, tmp / "gate", runs, config)
    results["charging"] = charging.measure(burst_trials, say=say)
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} cores{', ' + model if model else ''}, Python {platform.python_version()}"


# One row: (figure, ours, plain loop at 1/4 scale, plain at 1/2 scale); None where nothing applies.
Row = tuple[str, str, str | None, str | None]


def gate_rows(g: dict) -> list[Row]:
    ours, plain, half = g["ours"], g["plain"], g["plain_half_scale"]

    def both(key: str, unit: str, digits: int = 2) -> tuple[str, str, str]:
        return (_fmt(ours[key], unit, digits), _vs(plain[key], ours[key], unit, digits),
                _vs(half[key], ours[key], unit, digits))

    scene = f"{g['scene']}, {g['resident']} fully visible from {g['visible_from_s']} s"
    return [
        (f"decision latency at the clip's own rate, median of {g['runs']} runs over 3 search phases ({scene})", *both("latency_s", " s")),
        ("CPU per decision (first face detected -> decision)", *both("cpu_per_decision_s", " s")),
        ("one face encoding, CPU, median of 15 (the unit of the targets)", _fmt(ours.get("encoding_s"), " s", 3), None, None),
        *(((f"encoder space {ours['encoder']}: CPU per face, in dlib encodings (target: at most 0.25)",
            f"{ours['encoder_s']:.3f} s = {ours['encoder_encodings']:.2f}", None, None),) if "encoder_s" in ours else ()),
        ("decision latency / CPU per decision, in face encodings (targets: at most 3 / 2)",
         f"{ours.get('latency_encodings')} / {ours.get('cpu_per_decision_encodings')}", None, None),
        ("whole clip, every frame: CPU", *both("clip_cpu_s", " s")),
        ("whole clip, every frame: clip time of the deciding frame", *both("decided_at_s", " s")),
        ("empty static scene at 15 fps: CPU, % of one core", *both("empty_scene_core_pct", " %", 1)),
        *((f"whole clip, every frame: CPU ({name})", _fmt(c["ours_cpu_s"], " s"), None,
           _vs(c["plain_half_scale_cpu_s"], c["ours_cpu_s"], " s")) for name, c in g.get("other_clips", {}).items()),
        ("peak memory (RSS): controller process", _fmt(ours["controller_rss_mb"], " MB", 0), None, None),
        ("peak memory (RSS): vision worker process (plain: its one process)", _fmt(ours["worker_rss_mb"], " MB", 0),
         _vs(plain["rss_mb"], ours["worker_rss_mb"], " MB", 0), _vs(half["rss_mb"], ours["worker_rss_mb"], " MB", 0)),
    ]


def rows(results: dict) -> list[Row]:
    table: list[Row] = gate_rows(results["gate"])
    for m in results["matching"]:
        table.append((f"match one face against {m['templates']:,} templates (plain: face_distance)",
                      _fmt(m["gallery_ms"], " ms"), _vs(m["naive_ms"], m["gallery_ms"], " ms"), None))
    burst, in_thread = results["burst"]["ours"], results["burst"]["in_thread"]
    for key in ("p50_ms", "p99_ms"):
        table.append((f"sprinkler burst -> charger off + gate open, {key[:3]}, face work running "
                      "(plain: on the controller's thread)", _fmt(burst[key], " ms", 1),
                      _vs(in_thread[key], burst[key], " ms", 1), None))
    locked = results["burst"]["database_locked"]
    table.append(("sprinkler burst -> charger off + gate open, p99, face work running and the database locked "
                  "by another process the whole time", _fmt(locked["p99_ms"], " ms", 1), None, None))
    table += mqtt_rows(results.get("mqtt") or {})
    table += fleet_rows(results.get("fleet") or {})
    e = results["enrollment"]
    table.append((f"enrollment, {e['photos']} photos, all {e['cores']} cores: photos per second",
                  _fmt(e["ours_photos_per_s"], "/s", 1), _vs(e["plain_photos_per_s"], e["ours_photos_per_s"], "/s", 1),
                  None))
    if "charging" in results:  # no plain way to compare with
        from .charging import rows as charging_rows

        table += [(figure, value, None, None) for figure, value in charging_rows(results["charging"])]
    return table


def mqtt_rows(m: dict) -> list[Row]:
    """MQTT on against MQTT off (the plain column), where a broker could be started."""
    if "events_per_second" not in m:
        return []
    turn, burst, rss = m["loop_turn"], m["burst_to_outputs"], m["peak_rss_mb"]
    up, off = turn["mqtt on, broker up"]["mean_us"], turn["mqtt off"]["mean_us"]
    table: list[Row] = [("one turn of the controller's loop, mean, MQTT on and connected (plain: MQTT off)",
                         _fmt(up, " µs", 1), _vs(off, up, " µs", 1), None)]
    for load in ("broker down", "broker flooding"):
        ours, plain = burst[f"mqtt on, {load}"]["p99_ms"], burst["mqtt off"]["p99_ms"]
        table.append((f"sprinkler burst -> charger off + gate open, p99, MQTT on, {load} (plain: MQTT off)",
                      _fmt(ours, " ms", 1), _vs(plain, ours, " ms", 1), None))
    ours, plain = rss["mqtt on, broker up"], rss["mqtt off"]
    table.append(("peak memory (RSS): controller process, MQTT on (plain: MQTT off)", _fmt(ours, " MB", 0),
                  _vs(plain, ours, " MB", 0), None))
    table.append(("events per second one lot publishes to a local Mosquitto (QoS 1)",
                  _fmt(m["events_per_second"], "/s", 0), None, None))
    return table


def fleet_rows(f: dict) -> list[Row]:
    """Central enrollment's propagation (the target is 5 s), where a broker could be started."""
    if "remove_connected_to_gallery" not in f:
        return []
    table: list[Row] = []
    for key, label in (("remove_connected_to_gallery", "remove at the hub -> gone from a connected lot's gallery"),
                       ("remove_offline_from_lot_start_to_gallery",
                        "remove at the hub while a lot is off -> gone from its gallery, from its start"),
                       ("enroll_connected_to_gallery", "enroll at the hub -> in a connected lot's gallery")):
        for quantile in ("p50", "p99"):
            table.append((f"{label}, {quantile}", _fmt(f[key][f"{quantile}_ms"] / 1000, " s"), None, None))
    return table


def _fmt(value: float | None, unit: str, digits: int = 2) -> str:
    return "never" if value is None else f"{value:.{digits}f}{unit}"


def _vs(plain: float | None, ours: float | None, unit: str, digits: int = 2) -> str:
    """The plain figure with ours as a share of it."""
    text = _fmt(plain, unit, digits)
    if plain and ours is not None:
        text += f" (ours {ours / plain:.2f}x)"
    return text


def table(table_rows: list[Row]) -> str:
    header = ("figure", "lotcontrol", "plain loop (1/4 scale)", "plain at 1/2 scale")
    cells = [header] + [tuple("" if c is None else c for c in row) for row in table_rows]
    widths = [max(len(r[i]) for r in cells) for i in range(4)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)
