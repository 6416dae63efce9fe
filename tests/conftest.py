import os
import shutil
import sys
from pathlib import Path

# pytest's workers (make test: three) share two cores: numeric libraries get one thread each, as the vision worker does
# (supervisor.ONE_THREAD; importing it would load numpy before this is set). OpenBLAS's own pool on a
# loaded machine made a 1,024-square eigh in test_encoder_fit take 8.3 s of wall time, 1.6 s with one thread.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
assert "numpy" not in sys.modules, "numpy was loaded before the tests' thread limits were set"

import pytest
from click.testing import CliRunner

SHARED = Path(os.environ.get("LOTCONTROL_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FACES = SHARED / "faces"
FACES_LOT = SHARED / "faces-lot"


def need(path: Path) -> Path:
    """Skip the test, saying why, where the shared test photos are absent."""
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared face photos live beside the repository)")
    return path


def turning(folder: Path) -> list[Path]:
    """Tony Blair facing the camera, turned to his right, and (mirrored, written in ``folder``) to his
    left: every turn camera enrollment asks for, so a scripted camera's enrollment completes in one round
    of the shots instead of running to enroll.camera_seconds (none of his photos turns to his left)."""
    import cv2

    right, front = (need(FACES / "Tony_Blair" / f"Tony_Blair_{n:04d}.jpg") for n in (1, 2))
    nearly = need(FACES / "Tony_Blair" / "Tony_Blair_0004.jpg")
    mirrored = []
    for path in (right, nearly):
        out = folder / f"mirrored_{path.name}"
        assert cv2.imwrite(str(out), cv2.flip(cv2.imread(str(path)), 1)), out
        mirrored.append(out)
    return [right, front, mirrored[0], nearly, mirrored[1]]


def demo_portrait() -> Path:
    """The demo's photo (scikit-image's astronaut); the test skips, saying why, without the demo extra
    (`make test-fast EXTRAS=pi,test` on a Pi installs no scikit-image)."""
    pytest.importorskip("skimage", reason="scikit-image, the demo extra's, is not installed (EXTRAS without demo)")
    from lotcontrol.demo import portrait

    return portrait()


@pytest.fixture
def faces() -> Path:
    return need(FACES)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test reads the developer's own config or data: point every default at tmp_path."""
    for var in ("LOTCONTROL_CONFIG", "LOTCONTROL_DATA_DIR", "STATE_DIRECTORY", "CONFIGURATION_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


@pytest.fixture(autouse=True)
def _kernel_clock_synced(monkeypatch):
    """The machine running the tests may or may not have NTP synchronised (a container, a CI runner):
    no test depends on it. The real Clock and staff commands' events read "synchronised" (as where
    the kernel cannot be asked); tests of an unsynchronised clock use SimClock or patch this."""
    import lotcontrol.clock

    monkeypatch.setattr(lotcontrol.clock, "_ADJTIMEX", None)


@pytest.fixture(autouse=True)
def _stop_lots():
    """Stop every lot a test started with tests.lots.sim_lot (its poller, notifier and pins)."""
    from .lots import STARTED

    yield
    while STARTED:
        lot = STARTED.pop()
        try:
            lot.stop()
        except Exception:  # the test's pin factory may be reset already; nothing else to release
            pass


@pytest.fixture(autouse=True)
def _known_event_types(monkeypatch):
    """Every event the package logs during a test is on lotcontrol.event_types.TYPES (``events --type``
    checks types against it): a type made in a way tests/event_scan.py does not see fails here."""
    import lotcontrol
    from lotcontrol.event_types import TYPES
    from lotcontrol.store import Store

    package = Path(lotcontrol.__file__).resolve().parent
    unknown, log_event = [], Store.log_event

    def checked(self, type, *args, **kwargs):
        caller = Path(sys._getframe(1).f_code.co_filename)
        if package in caller.parents and type not in TYPES:
            unknown.append(f"{type} (logged from {caller.name})")
        return log_event(self, type, *args, **kwargs)

    monkeypatch.setattr(Store, "log_event", checked)
    yield
    assert not unknown, f"event types not on lotcontrol.event_types.TYPES: {unknown}"


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


class Cli:
    """Runs `lotcontrol --data-dir DATA ...` in-process and returns click's Result."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir

    def __call__(self, *args: str, input: str | None = None, data_dir: bool = True):
        from lotcontrol.cli import cli

        prefix = ["--data-dir", str(self.data_dir)] if data_dir else []
        return CliRunner().invoke(cli, [*prefix, *map(str, args)], input=input, catch_exceptions=False)


@pytest.fixture
def run(data_dir) -> Cli:
    return Cli(data_dir)


@pytest.fixture(scope="session")
def _enrolled_template(tmp_path_factory):
    """A data dir with three LFW people enrolled from three photos each, built once per session."""
    need(FACES)
    folder = tmp_path_factory.mktemp("enrolled") / "data"
    cli = Cli(folder)
    for person in ("Tony_Blair", "Serena_Williams", "Colin_Powell"):
        photos = sorted((FACES / person).glob("*.jpg"))[:3]
        result = cli("enroll", person, *photos)
        assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def enrolled(_enrolled_template, data_dir) -> Path:
    """A private copy of the enrolled data dir for one test."""
    shutil.copytree(_enrolled_template, data_dir)
    return data_dir


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A browser test that fails leaves a screenshot of the page (tests/test_web_browser.py): in
    $LOTCONTROL_FAILURE_SHOTS, by default the system's temporary folder, named after the test."""
    outcome = yield
    report = outcome.get_result()
    drivers = [v for v in getattr(item, "funcargs", {}).values() if hasattr(v, "save_screenshot")]
    if report.failed and report.when == "call" and drivers:
        import tempfile

        folder = Path(os.environ.get("LOTCONTROL_FAILURE_SHOTS", tempfile.gettempdir()))
        for n, driver in enumerate(drivers):
            path = folder / f"{item.name.replace('/', '_')}{f'-{n}' if n else ''}.png"
            try:
                driver.save_screenshot(str(path))
                report.sections.append(("browser screenshot", str(path)))
            except Exception as exc:  # the browser itself may be what failed
                report.sections.append(("browser screenshot", f"none: {exc}"))


# With -n (make test), each pytest-xdist worker takes whole files (--dist loadfile), in
# the order collected (--no-loadscope-reorder): these go first, longest first, so that no worker starts
# a long file when the others are nearly done. Seconds of wall time each under `make test` (docs/architecture.md,
# "How long the tests take"); a file missing here goes after them, in its usual order, and a stale name
# changes only the order.
LONGEST_FIRST = (
    "test_rig_camera.py",  # 45 s
    "test_web_browser_residents.py",  # 34 s
    "test_web_browser.py",  # 29 s
    "test_web_residents.py",  # 19 s
    "test_durability.py",  # 17 s
    "test_rig_secrets.py",  # 17 s
    "test_cli_residents.py",  # 15 s
    "test_rig.py",  # 15 s
    "test_liveness.py",  # 14 s
    "test_capture.py",  # 12 s
    "test_run.py",  # 10 s
    "test_tap.py",  # 8 s
    "test_supervisor.py",  # 7 s
    "test_passages.py",  # 6 s
    "test_web.py",  # 6 s
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order
