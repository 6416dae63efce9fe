"""The MCP23017 driver against the simulated chip's registers, through lotcontrol.pins' one way of
opening an output or an input."""

import pytest

from lotcontrol.config import ExpanderPin
from lotcontrol.expander import ExpanderError, Expanders
from lotcontrol.pins import InputLine, open_input, open_output, read_input, switch
from lotcontrol.sim.i2c import IODIR, OLAT, SimulatedBuses
from lotcontrol.sim.pins import simulated_factory


@pytest.fixture
def factory():
    factory = simulated_factory()
    yield factory
    factory.reset()


def pin(n, address=0x20):
    return ExpanderPin(bus=1, address=address, pin=n)


def test_an_expander_output_starts_off_and_never_glitches_on(factory):
    bus = factory.i2c.buses[1]
    relay = open_output(pin(3), pin_factory=factory)
    assert bus.output(0x20, 3) is False and relay.is_active is False
    assert bus.history == [(bus.history[0][0], 0x20, 3, False)]  # became an output at its off level
    switch(relay, True)
    assert bus.output(0x20, 3) is True and bus.chips[0x20].registers[OLAT] == 0b1000
    relay.close()
    assert bus.output(0x20, 3) is None  # back to an input: high impedance, the relay board's pull rules


def test_an_active_low_expander_relay_starts_high(factory):
    bus = factory.i2c.buses[1]
    relay = open_output(pin(9), active_high=False, pin_factory=factory)
    assert bus.output(0x20, 9) is True and relay.is_active is False  # PORT B, de-energized
    assert [level for _, _, _, level in bus.history] == [True]


def test_a_failing_write_raises_and_the_state_stays_what_the_chip_has(factory):
    bus = factory.i2c.buses[1]
    relay = open_output(pin(0), pin_factory=factory)
    switch(relay, True)
    bus.fail = True
    with pytest.raises(OSError):
        switch(relay, False)
    assert relay.is_active is True  # not pretending it is off
    bus.fail = False
    switch(relay, False)
    assert bus.output(0x20, 0) is False


def test_an_address_not_on_the_bus_and_a_missing_bus_are_clear_errors(factory):
    with pytest.raises(ExpanderError, match=r"no MCP23017 at 0x21 on I2C bus 1 answers"):
        open_output(pin(0, address=0x21), pin_factory=factory)
    with pytest.raises(ExpanderError, match="I2C bus 3 cannot be opened"):
        open_output(ExpanderPin(bus=3, address=0x20, pin=0), pin_factory=factory)


def test_a_pin_cannot_serve_two_roles(factory):
    open_output(pin(5), pin_factory=factory)
    with pytest.raises(ExpanderError, match="pin 5 of the MCP23017 at 0x20 on I2C bus 1 is already in use"):
        open_input(pin(5), pull_up=True, pin_factory=factory)


def test_an_expander_input_is_an_input_line_like_a_gpio(factory):
    """A bay sensor (or any contact) on the expander: pulled up by the chip, its changes delivered
    as messages through the same InputLine the GPIO inputs use; unreadable reads as None."""
    bus = factory.i2c.buses[1]
    messages = []
    device = open_input(pin(12), pull_up=True, pin_factory=factory)
    assert bus.chips[0x20].registers[IODIR + 1] & 0b10000  # an input, with its pull-up on
    line = InputLine("bay-1(expander)", device, lambda state, time: (state, time), messages.append, lambda: 7.0)
    assert line.last is False  # pulled up, nothing closing it: inactive
    bus.drive(0x20, 12, False)  # the sensor closes to ground
    bus.drive(0x20, 12, True)
    assert messages == [(True, 7.0), (False, 7.0)]
    bus.fail = True
    assert read_input(device) is None and line.reread(8.0) == (None, 8.0)  # never a normal state
    bus.fail = False
    bus.drive(0x20, 12, False)
    assert messages[-1] == (True, 7.0)


def test_polled_inputs_without_an_interrupt_line():
    """On a bus that reports no changes (a real one, without the INT line wired), the chip's own
    thread polls; here its ``poll()`` is called directly."""
    buses = SimulatedBuses()
    bus = buses.buses[1]
    bus.interrupts = None  # as smbus2.SMBus: no such attribute
    del bus.interrupts
    expanders = Expanders(buses)
    chip = expanders.chip(1, 0x20)
    seen = []
    try:
        from lotcontrol.expander import ExpanderInput

        line = ExpanderInput(chip, 2, pull_up=True)
        line.when_activated = lambda: seen.append("on")
        assert chip._thread is not None and chip._thread.is_alive()
        bus.chips[0x20].driven[2] = False
        chip.poll()
        assert seen == ["on"]
    finally:
        expanders.close()
    assert not chip._thread.is_alive()
