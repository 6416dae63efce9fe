"""Every scenario in hardware/rig/ passes on the rig (here those with neither a camera nor credentials;
test_rig_camera.py and test_rig_secrets.py the others); the rig itself reports failures and bad files."""

import re
from pathlib import Path

import pytest

from lotcontrol.sim.rig import RigError, load
from lotcontrol.sim.rig import run as run_scenario

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "hardware" / "rig").glob("*.toml"))


def marks(path: Path) -> list:
    """A scenario with a camera runs the real vision worker in lockstep with the simulated clock (it
    takes seconds of face work: `camera`, slow); one on the real clock takes real seconds (slow)."""
    scenario = load(path)
    if scenario.camera is not None:
        return [pytest.mark.camera, pytest.mark.slow]
    return [pytest.mark.slow] if scenario.clock == "real" else []


def with_credentials(path: Path) -> bool:
    """A scenario that plays cards, PINs or visitor passes: tests/test_rig_secrets.py runs it, checking
    that it passes and that none of them reaches an event, a log line or MQTT."""
    scenario = load(path)
    return bool(scenario.passes or any(r.card or r.pin for r in scenario.residents)
                or any(a.do in ("card", "card_bits", "keypad", "show_pass") for a in scenario.actions))


def scenarios(camera: bool) -> list:
    """The scenarios without credentials (those are test_rig_secrets.py's), with a camera
    (``camera=True``: tests/test_rig_camera.py runs them, so that another pytest worker can take them)
    or without one (here). Each scenario runs once in the suite."""
    params = [pytest.param(path, id=path.stem, marks=marks(path)) for path in SCENARIOS if not with_credentials(path)]
    return [p for p in params if any(m.name == "camera" for m in p.marks) == camera]


def passes(path: Path) -> None:
    report = run_scenario(path)
    if report.skipped:
        pytest.skip(report.skipped)
    failed = [f"{c.description}: observed {c.observed}" for c in report.checks if not c.passed]
    assert not failed, failed


@pytest.mark.parametrize("path", scenarios(camera=False))
def test_scenario(path):
    passes(path)


def test_every_scenario_runs_once_here_with_the_camera_or_with_its_secrets_checked():
    from . import test_rig_camera, test_rig_secrets

    def run_by(test) -> list[Path]:  # the scenarios a test is parametrized with
        [mark] = [m for m in test.pytestmark if m.name == "parametrize"]
        return [param.values[0] for param in mark.args[1]]

    here, camera = run_by(test_scenario), run_by(test_rig_camera.test_scenario)
    secrets = run_by(test_rig_secrets.test_no_card_pin_or_pass_reaches_an_event_a_log_line_or_mqtt)
    assert sorted(here + camera + secrets) == SCENARIOS
    assert {"modes_face_and_pin_camera", "wiegand_card_and_pin"} <= {p.stem for p in secrets}


def test_a_failing_expectation_is_reported_with_what_was_observed(tmp_path, run):
    scenario = tmp_path / "wrong.toml"
    scenario.write_text('name = "wrong on purpose"\nduration = 0.2\n[[expect]]\npin = 17\nhistory = [false, true]\n'
                        '[[expect]]\nevent = "gate.exit"\n'
                        '[[expect]]\npin = 17\nstate = true\nwithin = [0.0, 0.2]\n'
                        '[[expect]]\npin = 17\nstate = false\nwithin = [0.1, 0.2]\n')
    report = run_scenario(scenario)
    assert [(c.passed, c.observed.split(" at ")[0]) for c in report.checks][:3] == [
        (False, "[False]"), (False, "not seen"), (False, "not in that state then")]
    assert re.fullmatch(r"\[False\] at \[-?0\.\d+\] s", report.checks[0].observed)  # when each change happened
    assert report.checks[3].passed and report.checks[3].observed == "from 0.1 s"  # low since before the window
    result = run("rig", "run", scenario, "--junit", tmp_path / "rig.xml", data_dir=False)
    assert result.exit_code == 1
    assert result.output.startswith("FAIL  wrong on purpose")
    assert "      FAIL GPIO17 went through [False, True]: [False] at [" in result.output
    assert result.output.endswith("Error: 1 of 1 scenario(s) failed\n")
    assert 'failures="3"' in (tmp_path / "rig.xml").read_text()


@pytest.mark.parametrize("text, message", [
    ('name = "x"\n[[expect]]\nevent = "a"\n', "give a duration"),
    ('name = "x"\nduration = 1\n', "expect: Field required"),
    ('name = "x"\nduration = 1\n[[actions]]\nat = 1\ndo = "dance"\n[[expect]]\nevent = "a"\n', "actions.0.do"),
    ('name = "x"\nduration = 1\nbogus = 2\n[[expect]]\nevent = "a"\n', "bogus: Extra inputs are not permitted"),
    ('name = "x"\nduration = 1\n[[expect]]\nat = 1\n', "an expectation is about a pin, an event or the energy report"),
    ('name = "x"\nduration = 1\n[[expect]]\npin = 17\nat = 1\n', "say which state GPIO17 should be in"),
    ('name = "x"\nduration = 1\n[[expect]]\nenergy = "port"\nkwh = [0, 1]\n', "names the port or resident \\(name\\)"),
    ('name = "x"\nduration = 4000\nclock = "real"\n[[expect]]\nevent = "a"\n', "a real-time scenario runs at most 3600 s"),
    ('name = "x"\nduration = 1\n[[actions]]\nat = 1\ndo = "step_wall_clock"\nby = "3 days"\n[[expect]]\nevent = "a"\n',
     "step_wall_clock at 1.0 s: by = '3 days' is not a step"),
    ('name = "x"\nduration = 1\n[[actions]]\nat = 1\ndo = "step_wall_clock"\nby = "+1h"\n[[expect]]\nevent = "a"\n'
     'within = [0, 1]\n', "an event's `within` is measured on the wall clock"),
    ('name = "x"\nduration = 1\nclock = "real"\nclock_synced = false\n[[expect]]\nevent = "a"\n',
     "stepped and synchronised on the simulated clock only"),
    ('name = "x"\nduration = 1\nwall_start = "1970-01-01"\n[[expect]]\nevent = "a"\n', "wall_start '1970-01-01' is not an ISO time with its zone"),
    ('name = "x"\nduration = 1\n[[residents]]\nname = "Ann"\nlookalike_of = "Ann"\n[[expect]]\nevent = "a"\n',
     "Ann's lookalike_of 'Ann' is not another resident"),
    ('name = "x"\nduration = 1\n[[residents]]\nname = "Ann"\n[[actions]]\nat = 1\ndo = "passage"\nclaims = ["Ann"]\n'
     'distances = [0.3, 0.4]\n[[expect]]\nevent = "a"\n', "passage at 1.0 s: one distance for each of its claims"),
    *[(f'name = "x"\nduration = 1\n{camera}[[expect]]\nevent = "a"\n', message) for camera, message in [
        ('[camera]\nclip = "a.mp4"\nscript = [{ seconds = 1 }]\n', "give either a clip or a script"),
        ('[camera]\nfps = 15\n', "give either a clip or a script"),
        ('[camera]\nscript = [{ seconds = 0 }]\n', "camera.script.0.seconds"),
        ('[camera]\nclip = "a.mp4"\n[[actions]]\nat = 1\ndo = "unplug_camera"\n', "unplug_camera needs a camera script"),
        ('clock = "real"\n[camera]\nclip = "a.mp4"\n', "a camera scenario runs on the simulated clock"),
        ('[config.vision]\nliveness = "enforce"\n[camera]\nscript = [{ seconds = 1 }]\n',
         "liveness = \"enforce\" with a scripted camera: its still photos are flat pictures"),
        ('[camera]\nscript = [{ visitor = "Li", seconds = 1 }]\n', "shows the pass of 'Li', who has none in passes"),
        ('[[passes]]\nvisitor = "Li"\n[camera]\nscript = [{ visitor = "Li", photo = "a.jpg", seconds = 1 }]\n',
         "a photo or a visitor's pass, not both"),
        ('[[passes]]\nvisitor = "Li"\n[camera]\nscript = [{ seconds = 1 }]\n[[actions]]\nat = 1\ndo = "show_pass"\n'
         'visitor = "Li"\n', "a show_pass action is for scenarios without a camera"),
        ('[[passes]]\nvisitor = "Li"\n[[passes]]\nvisitor = "Li"\n', "two passes for one visitor"),
    ]],
])
def test_a_bad_scenario_file_names_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RigError, match=message):
        load(path)


def test_a_photo_enrolled_by_several_scenarios_is_analysed_once_unless_it_or_the_settings_change(
        tmp_path, monkeypatch):
    from lotcontrol import enroll
    from lotcontrol.config import EnrollConfig
    from lotcontrol.sim import rig

    analysed = []
    monkeypatch.setattr(rig, "_ANALYSED", {})
    monkeypatch.setattr(enroll, "analyse_photo", lambda path, settings: analysed.append(path) or (path, len(analysed)))
    photo, other = tmp_path / "a.jpg", tmp_path / "b.jpg"
    photo.write_bytes(b"one")
    other.write_bytes(b"one")
    settings = EnrollConfig()
    first = rig._analysed([str(photo), str(other)], settings)
    assert rig._analysed([str(photo)], settings) == first[:1] and len(analysed) == 2  # the same content: kept
    photo.write_bytes(b"two")
    assert rig._analysed([str(photo)], settings) == [(str(photo), 3)]  # changed: analysed again
    assert rig._analysed([str(photo)], EnrollConfig(min_face_px=settings.min_face_px + 1)) == [(str(photo), 4)]
    assert rig._analysed([str(tmp_path / "gone.jpg")] * 2, settings) == [(str(tmp_path / "gone.jpg"), 5),
                                                                         (str(tmp_path / "gone.jpg"), 6)]


def test_a_scripted_camera_films_its_shots_drops_out_while_unplugged_and_ends(tmp_path):
    """The still-photo camera behaves like a live one: real-time frames of each shot, no opening
    while unplugged, and the scene has moved on when it is plugged back in."""
    import json

    import numpy as np
    from PIL import Image

    from lotcontrol.vision.camera import SourceError, open_source

    Image.fromarray(np.full((100, 80, 3), 255, np.uint8)).save(tmp_path / "white.png")
    script = tmp_path / "camera.json"
    script.write_text(json.dumps({"fps": 10, "size": [160, 120], "unplugged": str(tmp_path / "unplugged"),
                                  "started": str(tmp_path / "started"),
                                  "shots": [{"photo": None, "seconds": 0.2}, {"photo": str(tmp_path / "white.png"),
                                                                             "seconds": 0.3}]}))
    with open_source(f"script:{script}") as camera:
        frames = []
        while (frame := camera.read()) is not None:
            frames.append(frame)
    assert camera.time_base == float((tmp_path / "started").read_text())
    # frame i is shot at i/10 s: the dark gate, then the photo (filling the middle) from 0.2 s. A slow
    # reader misses frames, as from a live camera (the arm64 check, under emulation, missed the last
    # one): what holds whatever the load is the order, that no photo frame comes early, and that the
    # script's five frames are the most there can be
    white = [f.image[60, 80].mean() > 240 for f in frames]
    assert 1 <= len(frames) <= 5 and white == sorted(white)
    assert all(f.time >= camera.time_base + 0.2 for f, w in zip(frames, white) if w)
    assert [f.time for f in frames] == sorted(f.time for f in frames)
    assert all(f.image.shape == (120, 160, 3) for f in frames)
    (tmp_path / "unplugged").touch()
    with pytest.raises(SourceError, match="cannot be opened \\(unplugged\\)"):
        open_source(f"script:{script}")
    (tmp_path / "unplugged").unlink()
    with open_source(f"script:{script}") as camera:  # the script is over by now: the scene has ended
        assert camera.read() is None


def _script(tmp_path, fps: float, shots: list) -> Path:
    import json

    import numpy as np
    from PIL import Image

    Image.fromarray(np.full((100, 80, 3), 255, np.uint8)).save(tmp_path / "white.png")
    script = tmp_path / "camera.json"
    script.write_text(json.dumps({"fps": fps, "size": [160, 120], "unplugged": str(tmp_path / "unplugged"),
                                  "started": str(tmp_path / "started"),
                                  "shots": [{"photo": None if photo is None else str(tmp_path / photo), "seconds": s}
                                            for photo, s in shots]}))
    return script


class _Allowance:
    """The rig's end of the pipe of allowed times, played from a list (EOFError when it runs out)."""

    def __init__(self, times):
        self.times = list(times)

    def recv(self):
        if not self.times:
            raise EOFError
        return self.times.pop(0)


def test_a_stepped_scripted_camera_hands_out_every_frame_once_its_time_is_allowed(tmp_path):
    """On the simulated clock the scripted camera films frame i at i/fps only once the rig allows
    that time, every frame in order, and says what is done whenever it has to wait; an unplugged
    camera fails on the first frame after the unplugging, and one opened later starts at the scene's
    time then. No real time is involved: how fast the machine is changes nothing."""
    from lotcontrol.vision.camera import SourceError, StepGate, open_source

    script = _script(tmp_path, 10, [(None, 0.2), ("white.png", 0.3)])
    reports = []
    gate = StepGate(_Allowance([0.0, 0.15, 0.3, 0.5]), lambda done, next: reports.append((done, next)), 0.0)
    camera = open_source(f"script:{script}", gate=gate)
    frames = [camera.read(), camera.read(), camera.read()]
    assert [(f.index, f.time, f.image[60, 80].mean() > 240) for f in frames] == [
        (0, 0.0, False), (1, 0.1, False), (2, 0.2, True)]
    assert reports == [(0.0, 0.1), (0.15, 0.2)]  # it waited for 0.1 s, then for 0.2 s
    (tmp_path / "unplugged").touch()  # at 0.3 s, before frame 3 (0.3 s) is released
    with pytest.raises(SourceError, match="unplugged"):
        camera.read()
    with pytest.raises(SourceError, match="cannot be opened"):
        open_source(f"script:{script}", gate=gate)
    (tmp_path / "unplugged").unlink()
    gate.advance(0.35)  # the worker's reconnect back-off, on the same clock
    camera = open_source(f"script:{script}", gate=gate)
    assert [(f.index, f.time) for f in (camera.read(),)] == [(4, 0.4)]  # where the scene is now
    assert camera.read() is None  # the script is over (0.5 s)
    assert reports[-1] == (0.3, 0.35)
    with pytest.raises(EOFError):  # the rig went away: the worker ends
        gate.advance(0.6)


def test_a_stepped_clip_starts_where_the_scene_is_and_hands_out_every_frame(tmp_path):
    from lotcontrol.sim.camera import film
    from lotcontrol.vision.camera import StepGate, open_source

    clip = film([(None, 1.0)], tmp_path / "clip.avi", fps=10, size=(160, 120))
    gate = StepGate(_Allowance([0.45, 1.0]), lambda done, next: None, 0.45)  # a worker started at 0.45 s
    camera = open_source(str(clip), gate=gate)
    frames = []
    while (frame := camera.read()) is not None:
        frames.append((frame.index, frame.time))
    camera.close()
    assert frames == [(i, i / 10) for i in range(5, 10)]
    assert camera.dropped == 0


@pytest.mark.camera
def test_the_stepped_vision_worker_reports_each_step_and_a_restarted_one_starts_where_the_scene_is(tmp_path):
    """The real worker process in lockstep: the supervisor's step_to(t) returns once the worker has
    handled its frames up to t (its FramesDone delivered), and a worker killed and started again
    gets a fresh pipe of allowed times and films from the simulated time of its start."""
    import queue

    from lotcontrol.config import parse_config, prepare_data_dir
    from lotcontrol.messages import FramesDone, GalleryLoaded, Heartbeat, SourceEnded, WorkerGone
    from lotcontrol.sim.clock import SimClock
    from lotcontrol.store import Store
    from lotcontrol.vision.supervisor import VisionWorker

    script = _script(tmp_path, 10, [(None, 1.0)])
    data_dir = prepare_data_dir(tmp_path / "data")
    Store.in_dir(data_dir).close()
    clock = SimClock()
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    worker = VisionWorker(parse_config({}), str(data_dir), f"script:{script}", deliver=inbox.put, clock=clock.now,
                          stepped=True)

    def drain():
        messages = []
        while not inbox.empty():
            messages.append(inbox.get_nowait())
        return messages

    worker.start()
    try:
        seen = []
        for t in (0.0, 0.1, 0.25):
            clock.advance_to(t)
            assert worker.step_to(t, timeout=300)
            seen.append([m for m in drain() if isinstance(m, FramesDone)])
        assert seen == [[FramesDone(0.0, 0.1)], [FramesDone(0.1, 0.2)], [FramesDone(0.25, 0.3)]]
        assert worker.next_frame == 0.3
        worker.kill()
        worker.process.join(300)
        clock.advance_to(0.5)
        assert worker.step_to(0.5, timeout=300)  # returns once its pipe has closed
        assert any(isinstance(m, WorkerGone) for m in drain())
        worker.start()  # as the controller's tick restarts it, at 0.5 s
        for t in (0.6, 1.0):
            clock.advance_to(t)
            assert worker.step_to(t, timeout=300)
        messages = drain()
        assert isinstance(messages[0], GalleryLoaded)
        assert [m.time for m in messages if isinstance(m, Heartbeat)] == [0.5]  # its time is the scene's
        assert [m for m in messages if isinstance(m, FramesDone)] == [FramesDone(0.6, 0.7)]
        assert [m.frames for m in messages if isinstance(m, SourceEnded)] == [5]  # 0.5 s to 0.9 s, none dropped
    finally:
        worker.stop()
