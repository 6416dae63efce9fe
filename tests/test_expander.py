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
    assert relay.chip.flush()  # written by the chip's writer thread, not by the caller
    assert bus.output(0x20, 3) is True and bus.chips[0x20].registers[OLAT] == 0b1000
    relay.close()
    assert bus.output(0x20, 3) is None  # back to an input: high impedance, the relay board's pull rules


def test_an_active_low_expander_relay_starts_high(factory):
    bus = factory.i2c.buses[1]
    relay = open_output(pin(9), active_high=False, pin_factory=factory)
    assert bus.output(0x20, 9) is True and relay.is_active is False  # PORT B, de-energized
    assert [level for _, _, _, level in bus.history] == [True]


def test_a_failing_write_is_the_chips_error_and_is_written_once_the_chip_answers(factory):
    bus = factory.i2c.buses[1]
    relay = open_output(pin(0), pin_factory=factory)
    chip = relay.chip
    switch(relay, True)
    assert chip.flush() and bus.output(0x20, 0) is True and chip.error is None
    bus.fail = True
    switch(relay, False)  # never raises, never waits: the writer thread tries
    assert chip.flush() and "Remote I/O error" in chip.error
    assert bus.chips[0x20].registers[OLAT] & 1  # the chip still has it on: not pretending it is off
    bus.fail = False
    assert chip.flush() and chip.error is None and bus.output(0x20, 0) is False


def test_a_silent_chip_stays_in_error_when_asked_back_the_level_it_last_took(factory):
    """Asked back to the level the chip last took (off failed, on again), the writer has nothing to
    write; it must still not call a chip that failed its last transfer answering again without hearing
    from it (the port's fault would clear while the chip stays silent)."""
    bus = factory.i2c.buses[1]
    relay = open_output(pin(0), pin_factory=factory)
    chip = relay.chip
    switch(relay, True)
    assert chip.flush() and chip.error is None
    bus.fail = True
    switch(relay, False)
    assert chip.flush() and "Remote I/O error" in chip.error
    switch(relay, True)  # what the chip's latch still holds: nothing to write
    assert chip.flush() and chip.error is not None and "Remote I/O error" in chip.error
    bus.fail = False
    assert chip.flush() and chip.error is None and bus.output(0x20, 0) is True


def test_a_write_that_hangs_on_a_stuck_bus_never_holds_the_caller(factory):
    """An I²C transfer can hang for the kernel's timeout (1 s on a Pi); the caller (the controller's
    loop) must not wait for it."""
    import threading

    bus = factory.i2c.buses[1]
    relay = open_output(pin(1), pin_factory=factory)
    release = bus.stick()
    caller = threading.Thread(target=lambda: (switch(relay, True), switch(relay, False), switch(relay, True)))
    caller.start()
    caller.join(30)  # a failure guard: the bus stays stuck until released, so a caller that waits on it never ends
    try:
        assert not caller.is_alive() and relay.is_active is True  # asked, and returned at once
        assert bus.stuck_transfer.wait(30)  # the writer thread is the one waiting on the bus
    finally:
        release.set()
    assert relay.chip.flush() and bus.output(0x20, 1) is True  # the last level asked for


def test_an_address_not_on_the_bus_and_a_missing_bus_are_clear_errors(factory):
    del factory.i2c.buses[1].chips[0x21]  # nothing answers there
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
        thread = chip._thread
        assert thread is not None and thread.is_alive()
        bus.chips[0x20].driven[2] = False
        chip.poll()
        assert seen == ["on"]
        import threading

        release, got = bus.stick(), []  # the loop's once-a-second re-read must not wait for a stuck bus
        reader = threading.Thread(target=lambda: got.append(line.is_active))
        reader.start()
        reader.join(30)  # a failure guard: the bus stays stuck until released
        release.set()
        assert not reader.is_alive() and got == [True]  # the polling thread's last reading
        line.close()  # the chip's last input: its thread ends
        assert chip._thread is None and not thread.is_alive()
    finally:
        expanders.close()


def test_a_bay_sensor_on_the_expander_counts_like_one_on_a_gpio(tmp_path, factory):
    from lotcontrol.config import parse_config
    from lotcontrol.store import Store

    from .lots import pump, sim_lot

    config = parse_config({"bays": {"hold_seconds": 1, "zones": [
        {"name": "yard", "occupied_high": False, "bays": [7, {"bus": 1, "address": 0x20, "pin": 8}]}]}})
    c = sim_lot(config, Store(tmp_path / "lot.db"), factory).controller
    assert [b["bay"] for b in c.bays.status(0.0)[0]["bays"]] == ["yard-1(GPIO7)", "yard-2(MCP23017 bus 1 0x20 GPB0)"]
    assert c.bays.counts()["yard"]["free"] == 1  # the expander's pull-up: free; GPIO7's simulated loop: occupied
    factory.i2c.buses[1].drive(0x20, 8, False)  # a bike: the sensor pulls its pin low
    pump(c, 0.5)
    pump(c, 2.0)
    assert c.bays.counts()["yard"] == {"free": 0, "occupied": 2, "unknown": 0}


def test_one_expander_pin_cannot_serve_a_bay_and_a_port():
    from lotcontrol.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"MCP23017 bus 1 0x20 GPA3 is used twice: by bays.zones\[0\].bays\[0\] "
                                          r"and by charging.ports\[0\].expander"):
        parse_config({"bays": {"zones": [{"name": "yard", "bays": [{"bus": 1, "address": 0x20, "pin": 3}]}]},
                      "fire": {"zones": [{"name": "east", "sprinklers": [5]}]},
                      "charging": {"ports": [{"id": "A", "zone": "east", "bay": "yard-1",
                                              "expander": {"bus": 1, "address": 0x20, "pin": 3}}]}})


def test_check_config_prints_ports_and_expander_pins_as_toml_that_reads_back():
    import tomllib

    from lotcontrol.config import dump_config, parse_config

    config = parse_config({"bays": {"zones": [{"name": "yard", "bays": [6, {"pin": 3}]}]},
                           "fire": {"zones": [{"name": "east", "sprinklers": [5]}]},
                           "charging": {"buses": [{"name": "rs485"}], "profiles": {"pile": {
                               "power": {"address": 4, "type": "uint16", "scale": 0.1},
                               "energy": {"address": 8, "type": "uint32", "scale": 0.01}, "switch_coil": 2}},
                               "ports": [{"id": "A", "zone": "east", "bay": "yard-1", "relay_pin": 24,
                                          "meter": {"bus": "rs485", "unit": 3, "profile": "pile"}},
                                         {"id": "B", "zone": "east", "bay": "yard-2", "expander": {"pin": 4}}]}})
    assert parse_config(tomllib.loads(dump_config(config))) == config


def test_check_config_asks_each_expander_address_and_notes_a_bus_this_machine_lacks():
    from lotcontrol.expander import check_addresses

    problems, notes = check_addresses([(1, 0x20), (1, 0x21), (3, 0x20)], SimulatedBuses(chips={1: (0x20,)}))
    assert problems == ["no MCP23017 answers at 0x21 on I2C bus 1 (check its address pins A0-A2 and `i2cdetect -y 1`)"]
    assert notes == ["I2C bus 3 is not on this machine (No such file or directory: '/dev/i2c-3'): its expanders "
                     "were not checked"]
