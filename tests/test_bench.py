"""The benchmark suite's report: every figure beside the plain way's, with the ratio, and "never"
where a loop never decided. (The measurements themselves run in `lotcontrol bench`, not here.)"""

from lotcontrol.bench import suite

GATE = {"scene": "Hamilton clip", "resident": "Lin-Manuel Miranda", "visible_from_s": 2.736, "runs": 3,
        "ours": {"latency_s": 0.634, "cpu_per_decision_s": 0.605, "clip_cpu_s": 3.24, "decided_at_s": 3.003,
                 "empty_scene_core_pct": 4.04, "controller_rss_mb": 179.4, "worker_rss_mb": 213.1,
                 "encoding_s": 0.0761, "latency_encodings": 8.3, "cpu_per_decision_encodings": 7.9,
                 "encoder": "faceres", "encoder_s": 0.0168, "encoder_encodings": 0.22},
        "plain": {"latency_s": None, "cpu_per_decision_s": None, "clip_cpu_s": 0.94, "decided_at_s": None,
                  "empty_scene_core_pct": 6.26, "rss_mb": 205.2},
        "plain_half_scale": {"latency_s": 0.114, "cpu_per_decision_s": 0.092, "clip_cpu_s": 8.4,
                             "decided_at_s": 2.736, "empty_scene_core_pct": 21.71, "rss_mb": 214.0},
        "other_clips": {"people_walking_toward_camera.mp4": {"ours_cpu_s": 1.65, "plain_half_scale_cpu_s": 20.06}}}
RESULTS = {"gate": GATE,
           "matching": [{"templates": 100_000, "load_s": None, "gallery_ms": 1.77, "naive_ms": 31.05}],
           "burst": {"ours": {"p50_ms": 20.3, "p99_ms": 24.1}, "in_thread": {"p50_ms": 80.0, "p99_ms": 328.8},
                     "database_locked": {"p50_ms": 20.4, "p99_ms": 25.0}},
           "enrollment": {"photos": 61, "cores": 2, "ours_photos_per_s": 12.0, "plain_photos_per_s": 6.0}}


def test_each_figure_stands_beside_the_plain_one_with_the_ratio():
    rows = {row[0]: row[1:] for row in suite.rows(RESULTS)}
    latency = next(v for k, v in rows.items() if k.startswith("decision latency"))
    assert latency == ("0.63 s", "never", "0.11 s (ours 5.56x)")
    assert rows["whole clip, every frame: CPU"] == ("3.24 s", "0.94 s (ours 3.45x)", "8.40 s (ours 0.39x)")
    assert rows["match one face against 100,000 templates (plain: face_distance)"] == (
        "1.77 ms", "31.05 ms (ours 0.06x)", None)
    assert rows["enrollment, 61 photos, all 2 cores: photos per second"] == ("12.0/s", "6.0/s (ours 2.00x)", None)
    locked = next(v for k, v in rows.items() if "database locked" in k)
    assert locked == ("25.0 ms", None, None)
    assert rows["one face encoding, CPU, median of 15 (the unit of the targets)"] == ("0.076 s", None, None)
    assert rows["decision latency / CPU per decision, in face encodings (targets: at most 3 / 2)"] == ("8.3 / 7.9", None, None)
    assert rows["whole clip, every frame: CPU (people_walking_toward_camera.mp4)"] == ("1.65 s", None, "20.06 s (ours 0.08x)")
    assert rows["encoder space faceres: CPU per face, in dlib encodings (target: at most 0.25)"] == (
        "0.017 s = 0.22", None, None)
    assert len(rows) == 11 + 1 + 2 + 1 + 1


def test_the_table_is_markdown_with_one_line_per_figure():
    lines = suite.table(suite.rows(RESULTS)).splitlines()
    assert lines[0].startswith("| figure ") and set(lines[1]) <= {"|", "-", " "}
    assert len(lines) == 2 + len(suite.rows(RESULTS))
    assert len({len(line) for line in lines}) == 1  # columns line up


def test_central_enrollment_figures_join_the_table_where_a_broker_ran():
    figures = {"p50_ms": 957, "p99_ms": 1819, "max_ms": 1819, "n": 20, "target_met": True}
    fleet = {key: figures for key in ("remove_connected_to_gallery", "remove_offline_from_lot_start_to_gallery",
                                      "enroll_connected_to_gallery")}
    rows = {row[0]: row[1:] for row in suite.rows({**RESULTS, "fleet": fleet})}
    assert rows["remove at the hub -> gone from a connected lot's gallery, p99"] == ("1.82 s", None, None)
    assert len(rows) == len(suite.rows(RESULTS)) + 6
    assert suite.rows({**RESULTS, "fleet": {"note": "mosquitto is missing: nothing measured"}}) == suite.rows(RESULTS)
