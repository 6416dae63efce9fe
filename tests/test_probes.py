"""The probe poller reads every probe within one poll, concurrently, and the configuration refuses
more probes than one poll can read."""

import threading
import time

import pytest

from lotcontrol.config import parse_config
from lotcontrol.errors import ConfigError
from lotcontrol.messages import Reading
from lotcontrol.safety import probes
from lotcontrol.safety.probes import (CONVERSION_SECONDS, PARALLEL_READS, ProbePoller, poll_duration,
                                      probes_per_poll)

IDS = [f"28-{i:012x}" for i in range(1, 61)]
def all_at_once(count, real):
    """A fake ``read_probe`` that answers only once ``count`` reads are in flight together: a poll that
    reads one probe after another gets no answer from the first (a fault), whatever the machine's load.
    The wait is a failure guard below the poll's own limit (10 s here), not a timing assertion."""
    together = threading.Barrier(count)

    def read(folder, probe, now):
        together.wait(timeout=8)
        return real(folder, probe, now)

    return read


def tree(tmp_path, count=14, milli="21500"):
    """A fake 1-Wire tree: ``<probe>/temperature`` in millidegrees, for ``count`` probes."""
    folder = tmp_path / "w1"
    for probe in IDS[:count]:
        (folder / probe).mkdir(parents=True)
        (folder / probe / "temperature").write_text(milli + "\n")
    return folder


def settings(folder, count=14, **fire):
    zones = [{"name": f"z{i}", "probes": IDS[start:start + 7]} for i, start in enumerate(range(0, count, 7))]
    return parse_config({"fire": {"w1_path": str(folder), "zones": zones, **fire}}).fire


@pytest.fixture
def make_poller():
    made = []

    def make(fire):
        delivered: list[Reading] = []
        poller = ProbePoller(fire, delivered.append, time.monotonic)
        made.append(poller)
        return poller, delivered

    yield make
    for poller in made:
        poller.close()


def reader_threads(before=frozenset()):
    """The probe-read threads alive now, less those of other pollers that were there ``before``
    (tests elsewhere in the same process may leave a lot running)."""
    return [t for t in threading.enumerate() if t.name.startswith("probe-read") and t not in before]


def test_one_poll_reads_all_probes_at_once(tmp_path, monkeypatch, make_poller):
    # Fails on the old sequential poll: its first read waits for 13 others that never start.
    folder = tree(tmp_path, 14)
    monkeypatch.setattr(probes, "read_probe", all_at_once(14, probes.read_probe))
    poller, delivered = make_poller(settings(folder, 14, poll_seconds=10.0, stale_seconds=20.0))
    poller.poll()
    assert [r.probe for r in delivered] == IDS[:14]  # one each, in the configured order
    assert all(r.celsius == 21.5 and r.fault is None for r in delivered), [r.fault for r in delivered]


def test_a_probe_whose_read_raises_is_a_fault_and_the_others_arrive(tmp_path, monkeypatch, make_poller):
    folder = tree(tmp_path, 14)
    real = probes.read_probe

    def failing(folder, probe, now):
        if probe == IDS[3]:
            raise RuntimeError("bus error")
        return real(folder, probe, now)

    monkeypatch.setattr(probes, "read_probe", failing)
    poller, delivered = make_poller(settings(folder, 14))
    poller.poll()
    assert len(delivered) == 14
    broken = [r for r in delivered if r.probe == IDS[3]]
    assert broken == [Reading(IDS[3], None, "read failed (RuntimeError: bus error)", broken[0].time)]
    assert all(r.celsius == 21.5 for r in delivered if r.probe != IDS[3])


def test_a_probe_that_hangs_is_a_fault_and_the_poll_returns(tmp_path, monkeypatch, make_poller):
    folder = tree(tmp_path, 7)
    real = probes.read_probe
    release = threading.Event()

    def hanging(folder, probe, now):
        if probe == IDS[0]:
            release.wait(30)
        return real(folder, probe, now)

    monkeypatch.setattr(probes, "read_probe", hanging)
    others = frozenset(reader_threads())
    fire = settings(folder, 7, poll_seconds=0.5, stale_seconds=5)
    poller, delivered = make_poller(fire)
    limit = probes.read_limit(fire)
    started = time.monotonic()
    poller.poll()
    took = time.monotonic() - started
    try:
        assert limit <= took < limit + 5.0  # it returns (the slack is for a loaded machine)
        assert len(delivered) == 7
        assert delivered[0].celsius is None and delivered[0].fault == f"no answer within {limit:g} s"
        assert all(r.celsius == 21.5 for r in delivered[1:])
        # the next poll does not start a second read of the hanging probe, and still says so
        delivered.clear()
        poller.poll()
        assert delivered[0].fault == "no answer (an earlier read is still running)"
        assert len(delivered) == 7 and all(r.celsius == 21.5 for r in delivered[1:])
    finally:
        release.set()
    poller.close()
    assert not reader_threads(others)


def test_the_bulk_conversion_is_triggered_before_the_probes_are_read(tmp_path, monkeypatch, make_poller):
    folder = tree(tmp_path, 14)
    bus = folder / "w1_bus_master1"
    bus.mkdir()
    (bus / "therm_bulk_read").write_text("0\n")
    seen = []
    real = probes.read_probe

    def reading(folder, probe, now):
        seen.append((bus / "therm_bulk_read").read_text())  # what the bus said when the probe was read
        return real(folder, probe, now)

    monkeypatch.setattr(probes, "read_probe", reading)
    poller, delivered = make_poller(settings(folder, 14))
    poller.poll()
    assert (bus / "therm_bulk_read").read_text() == "trigger"
    assert seen == ["trigger"] * 14
    assert len(delivered) == 14 and all(r.celsius == 21.5 for r in delivered)
    assert not poller.bulk_failed


def test_a_bulk_file_that_errors_falls_back_to_parallel_reads(tmp_path, monkeypatch, make_poller):
    folder = tree(tmp_path, 14)
    (folder / "w1_bus_master1" / "therm_bulk_read").mkdir(parents=True)  # writing to it fails
    monkeypatch.setattr(probes, "read_probe", all_at_once(14, probes.read_probe))
    poller, delivered = make_poller(settings(folder, 14, poll_seconds=10.0, stale_seconds=20.0))
    poller.poll()
    assert len(delivered) == 14 and all(r.celsius == 21.5 and r.fault is None for r in delivered)
    assert list(poller.bulk_failed) == [folder / "w1_bus_master1" / "therm_bulk_read"]


def test_a_bulk_conversion_still_running_is_waited_for(tmp_path, monkeypatch, make_poller):
    folder = tree(tmp_path, 7)
    bulk = folder / "w1_bus_master1" / "therm_bulk_read"
    bulk.parent.mkdir()
    bulk.write_text("0")
    states = iter(["-1", "-1", "1"])
    real_open = open

    def kernel_open(path, mode="r", *args, **kwargs):
        if str(path) == str(bulk) and mode == "r":
            bulk.write_text(next(states, "1"))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(probes, "open", kernel_open, raising=False)
    poller, delivered = make_poller(settings(folder, 7))
    poller.poll()
    assert bulk.read_text() == "1" and next(states, None) is None  # read until it stopped converting
    assert len(delivered) == 7 and all(r.celsius == 21.5 for r in delivered)


def test_close_twice_is_safe_and_leaves_no_read_threads(tmp_path):
    folder = tree(tmp_path, 14)
    delivered = []
    others = frozenset(reader_threads())
    poller = ProbePoller(settings(folder, 14, poll_seconds=0.1, stale_seconds=5), delivered.append, time.monotonic)
    poller.poll()
    poller.start()
    assert len(delivered) >= 14
    poller.close()
    poller.close()
    assert not reader_threads(others)
    assert not poller._thread.is_alive()
    count = len(delivered)
    poller.poll()  # a poll after close still says something for every probe
    assert len(delivered) == count + 14 and all(r.fault for r in delivered[count:])


def test_the_capacity_model():
    assert (CONVERSION_SECONDS, PARALLEL_READS) == (0.75, 16)
    assert poll_duration(1) == poll_duration(16) == 0.75 and poll_duration(17) == 1.5
    fire = parse_config({}).fire
    assert probes_per_poll(fire) == 16
    assert probes_per_poll(parse_config({"fire": {"poll_seconds": 1.5}}).fire) == 32
    assert probes_per_poll(parse_config({"fire": {"poll_seconds": 0.2, "stale_seconds": 5}}).fire) == 16


def test_sixteen_probes_at_the_defaults_are_accepted():
    zones = [{"name": "east", "probes": IDS[:10]}, {"name": "west", "probes": IDS[10:16]}]
    assert len(parse_config({"fire": {"zones": zones}}).fire.zones[1].probes) == 6


@pytest.mark.parametrize("fire, message", [
    ({"zones": [{"name": "east", "probes": IDS[:20]}, {"name": "west", "probes": IDS[20:40]}]},
     r"^lot\.toml: fire: 40 probes cannot all be read within fire\.poll_seconds \(1 s\): at most 16 fit "
     r"\(16 read in parallel, 0\.75 s each\); raise fire\.poll_seconds or split the probes over more controllers$"),
    ({"poll_seconds": 1.5, "zones": [{"name": f"z{i}", "probes": IDS[i * 11:(i + 1) * 11]} for i in range(3)]},
     r"fire: 33 probes cannot all be read within fire\.poll_seconds \(1\.5 s\): at most 32 fit"),
    ({"zones": [{"name": "east", "probes": IDS[:17]}]},
     r"fire: 17 probes cannot all be read within fire\.poll_seconds \(1 s\): at most 16 fit"),
    ({"poll_seconds": 0.5, "stale_seconds": 1.2, "zones": [{"name": "east", "probes": IDS[:1]}]},
     r"fire: 1 probe cannot be read within half of fire\.stale_seconds \(1\.2 s\): at most 0 fit .*"
     r"raise fire\.stale_seconds to at least 1\.5 s$"),
])
def test_too_many_probes_are_refused_naming_how_many_fit(fire, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"fire": fire}, source="lot.toml")
