"""The soak (`lotcontrol rig soak`): a week at the lot on the simulated clock keeps its promises, and
the soak reports a lost event and a leak when there is one. Both run real days of a lot, with the
real database on the disk (measured: 161 s for the week and 59 s for the 3 days, on 2 cores at a load
average of about 9 from other work): `slow`, so `make test` runs them and `make test-fast` does not."""

import pytest

from lotcontrol.cli.rig import soak_problems
from lotcontrol.sim.soak import GOAL_BYTES_PER_DAY, MEMORY_GROWTH_LIMIT, Soak, memory_growth


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    return Soak(7, tmp_path_factory.mktemp("soak") / "lot", retention_days=2, keep_days=7).run()


def test_a_week_at_the_lot_loses_nothing_and_stays_within_its_budgets(week):
    s = week.summary()
    assert s["passages"] > 6 * 1800 and s["bikes_plugged_in"] > 100 and s["drills"] >= 1
    assert week.restarts >= 1 and s["events_lost"] == 0
    assert all(c.chain_ok and c.chain_events > 0 for c in week.crashes) and week.final_chain_ok
    assert s["latched_alarms_restored"] >= 1 and week.latch_kept  # the drill's alarm, latched through a crash
    assert s["written_bytes_per_day"] < GOAL_BYTES_PER_DAY
    assert memory_growth(week) < MEMORY_GROWTH_LIMIT
    # bounded: snapshots older than retention_days (2) are gone every day from the third on
    per_day = max(r.passages for r in week.rows)
    assert all(r.snapshots <= 3 * per_day for r in week.rows)
    assert max(r.snapshots for r in week.rows[3:]) < max(r.snapshots for r in week.rows[:3]) * 1.5
    assert soak_problems(week) == []


def test_the_soak_reports_an_acknowledged_event_lost_and_a_leak(tmp_path):
    report = Soak(3, tmp_path / "lot", lose=True, leak=20_000).run()  # the first crash is in the day-3 drill
    assert report.restarts == 1 and report.events_lost == 1
    assert memory_growth(report) > MEMORY_GROWTH_LIMIT
    assert any("1 acknowledged event(s) lost" in p for p in soak_problems(report))
