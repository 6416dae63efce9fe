"""Every scenario in hardware/rig/ passes on the rig; the rig itself reports failures and bad files."""

import re
from pathlib import Path

import pytest

from lotcontrol.sim.rig import RigError, load
from lotcontrol.sim.rig import run as run_scenario

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "hardware" / "rig").glob("*.toml"))


def _marks(path: Path) -> list:
    """A scenario with a camera (or on the real clock) runs in real time: slow, and `camera` if filmed."""
    scenario = load(path)
    marks = []
    if scenario.camera is not None:
        marks += [pytest.mark.camera, pytest.mark.slow]
    elif scenario.clock == "real":
        marks.append(pytest.mark.slow)
    return marks


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem, marks=_marks(p)) for p in SCENARIOS])
def test_scenario(path):
    report = run_scenario(path)
    if report.skipped:
        pytest.skip(report.skipped)
    failed = [f"{c.description}: observed {c.observed}" for c in report.checks if not c.passed]
    assert not failed, failed


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
    *[(f'name = "x"\nduration = 1\n{camera}[[expect]]\nevent = "a"\n', message) for camera, message in [
        ('[camera]\nclip = "a.mp4"\nscript = [{ seconds = 1 }]\n', "give either a clip or a script"),
        ('[camera]\nfps = 15\n', "give either a clip or a script"),
        ('[camera]\nscript = [{ seconds = 0 }]\n', "camera.script.0.seconds"),
        ('[camera]\nclip = "a.mp4"\n[[actions]]\nat = 1\ndo = "unplug_camera"\n', "unplug_camera needs a camera script"),
    ]],
])
def test_a_bad_scenario_file_names_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RigError, match=message):
        load(path)


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
    # frame i is shot at i/10 s: the photo (filling the middle) from 0.2 s; a slow reader may miss some
    assert [(f.index, f.image[60, 80].mean() > 240) for f in frames] == [(f.index, f.index >= 2) for f in frames]
    assert frames[0].index == 0 and frames[-1].index == 4
    assert all(f.image.shape == (120, 160, 3) for f in frames)
    (tmp_path / "unplugged").touch()
    with pytest.raises(SourceError, match="cannot be opened \\(unplugged\\)"):
        open_source(f"script:{script}")
    (tmp_path / "unplugged").unlink()
    with open_source(f"script:{script}") as camera:  # the script is over by now: the scene has ended
        assert camera.read() is None
