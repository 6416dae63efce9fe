"""The soak (`lotcontrol rig soak`): a week at the lot on the simulated clock keeps its promises, and
the soak reports a lost event and a leak when there is one. Both run real days of a lot with the
real controller, writer and database on the disk, at a twentieth of the traffic (`--scale 0.05`:
70 residents, ~100 passages a day, 10 ports, of which 2 on an expander) so that the file takes
seconds; the full traffic, a year of it, is `lotcontrol rig soak --days 365` (docs/benchmarks.md,
"A year at the lot"). `slow`: `make test` runs them, `make test-fast` does not."""

import re

import pytest

from lotcontrol.cli.rig import soak_problems
from lotcontrol.sim.soak import GOAL_BYTES_PER_DAY, MEMORY_GROWTH_LIMIT, Soak, SoakError, memory_growth


pytestmark = pytest.mark.slow

SCALE = 0.05


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    # days 1 and 2 metered (fsynced as the product writes: most of the test's time), no other
    return Soak(7, tmp_path_factory.mktemp("soak") / "lot", retention_days=2, keep_days=7, scale=SCALE,
                meter_first=2, meter_every=None).run()


def test_a_week_at_the_lot_loses_nothing_and_stays_within_its_budgets(week):
    s = week.summary()
    assert s["passages"] > 7 * 80 and s["bikes_plugged_in"] > 20 and s["drills"] >= 1
    assert week.restarts >= 2 and s["events_lost"] == 0  # the drill's crash (day 3) and the week's (day 6)
    assert all(c.chain_ok and c.chain_events > 0 for c in week.crashes) and week.final_chain_ok
    assert s["latched_alarms_restored"] >= 1 and week.latch_kept  # the drill's alarm, latched through a crash
    # the bytes written are measured on days 1-2 (fsynced as the product writes; day 1 fills the
    # empty files and is not counted), not on the others
    assert s["metered_days"] == [1, 2] and all(r.written_bytes is None for r in week.rows[2:])
    assert 0 < s["written_bytes_per_day"] < GOAL_BYTES_PER_DAY
    assert memory_growth(week) < MEMORY_GROWTH_LIMIT
    # bounded: snapshots older than retention_days (2) are gone every day from the third on
    per_day = max(r.passages for r in week.rows)
    assert all(r.snapshots <= 3 * per_day for r in week.rows)
    assert max(r.snapshots for r in week.rows[3:]) < max(r.snapshots for r in week.rows[:3]) * 1.5
    assert soak_problems(week) == []


def _heap_with_free_memory() -> list[bytes]:
    """What earlier tests can leave in a pytest worker's process: 120 MB freed in a heap kept
    fragmented by small objects between its chunks (after a 10 MB block, glibc takes 200 kB from the
    heap, not from mmap). A leak made of the heap's memory reuses it and the RSS does not grow: the
    leak check failed so in a full run (1 MB of growth seen for 40 MB leaked)."""
    block = b"\x01" * (10 << 20)
    del block
    chunks, pins = [], []
    for i in range(600):
        chunks.append(b"\x5a" * 200_000)
        pins.append(b"p" * 3000 + bytes([i % 256]))
    del chunks
    return pins


def test_the_soak_reports_an_acknowledged_event_lost_and_a_leak(tmp_path):
    pins = _heap_with_free_memory()
    # the first crash: day 3's drill; no day metered (fsynced), which would only make it slower
    report = Soak(3, tmp_path / "lot", lose=True, leak=200_000, scale=SCALE, meter_first=0, meter_every=None).run()
    del pins
    assert report.restarts == 1 and report.events_lost == 1
    # 200 kB a passage, about 200 passages on days 2 and 3: 40 MB over day 1's
    assert memory_growth(report) > MEMORY_GROWTH_LIMIT
    assert any("1 acknowledged event(s) lost" in p for p in soak_problems(report))


@pytest.mark.parametrize("kwargs, message", [({"scale": 0.001}, "--scale must be between 0.01 and 1, not 0.001"),
                                             ({"meter_every": -1}, "--meter-every must be 0 (every day) or more")])
def test_a_soak_that_cannot_be_run_as_asked_says_why(tmp_path, kwargs, message):
    with pytest.raises(SoakError, match=re.escape(message)):
        Soak(1, tmp_path / "lot", **kwargs)
