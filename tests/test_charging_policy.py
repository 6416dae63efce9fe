"""What each charging port's relay does in each safety state (lotcontrol.policy.port_switches), over
every combination, and that it never lets power in where the zone contactor would not."""

import itertools

from lotcontrol import policy


def test_every_safety_state_and_demand():
    zones = ("east", "west")
    ports = {"e1": ("east", True), "e2": ("east", False), "w1": ("west", True), "x1": ("nowhere", True)}
    for inputs_read, alarm, east, west, held in itertools.product([False, True], repeat=5):
        state = policy.SafetyState(inputs_read, alarm, {"east": east, "west": west}, held)
        got = policy.port_switches(state, ports)
        contactors = policy.outputs(state).chargers
        for port, (zone, wants) in ports.items():
            expected = inputs_read and not alarm and wants and {"east": east, "west": west}.get(zone, False)
            assert got[port] is expected, (port, state)
            if zone in zones:  # never on where the zone's contactor is off: the contactor is the second line
                assert not got[port] or contactors[zone]
        assert got["x1"] is False  # a zone the fire watch does not know is never powered
        assert got["e2"] is False  # a port its logic wants off stays off whatever the fire watch says


def test_the_cases_by_name():
    normal = policy.SafetyState(True, False, {"east": True, "west": True}, False)
    ports = {"e1": ("east", True), "w1": ("west", True)}
    assert policy.port_switches(normal, ports) == {"e1": True, "w1": True}
    prealarm_east = policy.SafetyState(True, False, {"east": False, "west": True}, False)
    assert policy.port_switches(prealarm_east, ports) == {"e1": False, "w1": True}  # its own zone only
    alarm = policy.SafetyState(True, True, {"east": True, "west": True}, False)
    assert policy.port_switches(alarm, ports) == {"e1": False, "w1": False}  # an alarm cuts every port
    before = policy.SafetyState(False, False, {"east": True, "west": True}, False)
    assert policy.port_switches(before, ports) == {"e1": False, "w1": False}  # nothing before the inputs are read
