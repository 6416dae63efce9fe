"""The lot's own inputs: bay sensors, the gate's beams, the door contact and the exit button.

Each is an ``InputLine`` (lotcontrol.pins) whose changes become messages for the controller's
inbox, with the time. Debounce, holds and what a change means are decided in the controller's loop
(site.bays, site.door, safety.debounce), not here.
"""

from __future__ import annotations

from typing import Callable

from ..config import Config
from ..messages import BaySensor, BeamBroken, DoorChange, ExitChange
from ..pins import InputLine, open_line, read_input
from .bays import bay_name


class SiteInputs:
    """Opens the inputs and wires their callbacks to ``deliver``. Closes what it opened on failure."""

    def __init__(self, config: Config, deliver: Callable[[object], None], *, pin_factory=None,
                 clock: Callable[[], float]):
        self.lines: list[InputLine] = []
        self.bays: dict[tuple[str, str], InputLine] = {}
        self.door: InputLine | None = None
        self.exit: InputLine | None = None

        def line(name, pin, pull_up, message):
            made = open_line(name, pin, pull_up=pull_up, message=message, deliver=deliver, clock=clock,
                             pin_factory=pin_factory)
            self.lines.append(made)
            return made

        try:
            for zone in config.bays.zones:
                for index, pin in enumerate(zone.bays):
                    name = bay_name(zone, index)
                    self.bays[(zone.name, name)] = line(
                        name, pin, not zone.occupied_high,
                        (lambda z, n: lambda occupied, time: BaySensor(z, n, occupied, time))(zone.name, name))
            beams = config.bays.beams
            if beams is not None:
                for which, pin in (("outer", beams.outer_pin), ("inner", beams.inner_pin)):
                    line(f"beam-{which}(GPIO{pin})", pin, False,
                         (lambda w: lambda broken, time: BeamBroken(w, time) if broken else None)(which))
            gate = config.gate
            if gate.door_pin is not None:
                # pulled up, the contact closes to ground while the door is shut: active = shut
                self.door = line(f"door(GPIO{gate.door_pin})", gate.door_pin, True,
                                 lambda shut, time: DoorChange(None if shut is None else not shut, time))
            if gate.exit_pin is not None:
                # pulled up, the button closes to ground while pressed: active = pressed
                self.exit = line(f"exit-button(GPIO{gate.exit_pin})", gate.exit_pin, True,
                                 lambda pressed, time: ExitChange(pressed, time))
        except Exception:
            self.close()
            raise

    def door_open(self) -> bool | None:
        if self.door is None:
            return False
        shut = read_input(self.door.device)
        return None if shut is None else not shut

    def exit_pressed(self) -> bool | None:
        return None if self.exit is None else read_input(self.exit.device)

    def bay_readings(self) -> dict[tuple[str, str], bool | None]:
        return {key: read_input(line.device) for key, line in self.bays.items()}

    def close(self) -> None:
        for line in self.lines:
            line.close()
