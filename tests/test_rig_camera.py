"""Every scenario in hardware/rig/ with a camera passes on the rig: the real vision worker on the
scripted camera or a recorded clip, in lockstep with the simulated clock (tests/test_rig.py runs the
others, and tests the rig itself; those with cards, PINs or passes run in test_rig_secrets.py)."""

import pytest

from .test_rig import passes, scenarios


@pytest.mark.parametrize("path", scenarios(camera=True))
def test_scenario(path):
    passes(path)
