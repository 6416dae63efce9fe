"""Every scenario in hardware/rig/ passes on the rig; the rig itself reports failures and bad files."""

from pathlib import Path

import pytest

from lotcontrol.rig import RigError, load
from lotcontrol.rig import run as run_scenario

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "hardware" / "rig").glob("*.toml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path):
    report = run_scenario(path)
    if report.skipped:
        pytest.skip(report.skipped)
    failed = [f"{c.description}: observed {c.observed}" for c in report.checks if not c.passed]
    assert not failed, failed


def test_a_failing_expectation_is_reported_with_what_was_observed(tmp_path, run):
    scenario = tmp_path / "wrong.toml"
    scenario.write_text('name = "wrong on purpose"\nduration = 0.2\n[[expect]]\npin = 17\nhistory = [false, true]\n'
                        '[[expect]]\nevent = "gate.exit"\n')
    report = run_scenario(scenario)
    assert [(c.passed, c.observed) for c in report.checks] == [(False, "[False]"), (False, "not seen")]
    result = run("rig", "run", scenario, "--junit", tmp_path / "rig.xml", data_dir=False)
    assert result.exit_code == 1
    assert result.output.startswith("FAIL  wrong on purpose")
    assert "      FAIL GPIO17 went through [False, True]: [False]\n" in result.output
    assert result.output.endswith("Error: 1 of 1 scenario(s) failed\n")
    assert 'failures="2"' in (tmp_path / "rig.xml").read_text()


@pytest.mark.parametrize("text, message", [
    ('name = "x"\n[[expect]]\nevent = "a"\n', "give a duration"),
    ('name = "x"\nduration = 1\n', "expect: Field required"),
    ('name = "x"\nduration = 1\n[[actions]]\nat = 1\ndo = "dance"\n[[expect]]\nevent = "a"\n', "actions.0.do"),
    ('name = "x"\nduration = 1\nbogus = 2\n[[expect]]\nevent = "a"\n', "bogus: Extra inputs are not permitted"),
])
def test_a_bad_scenario_file_names_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RigError, match=message):
        load(path)
