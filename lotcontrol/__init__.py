"""lotcontrol: the controller for an e-bike charging lot.

Two processes: the controller (GPIO, policy, database; never loads dlib) and its vision worker.
The layout (docs/architecture.md has the import rules, tests/test_architecture.py enforces them):

- ``app``          the composition root: builds, starts and stops one lot in the safety case's order
- ``controller``   the loop: messages in (``messages``), outputs out (``policy``), events to ``writer``
- ``policy``       who may enter and what every output does, as pure functions
- ``safety/``      the fire watch: zones (pure), probes, debounce, the latched state, fire pins
- ``site/``        the lot's own devices: gate relay, door, bays, their inputs
- ``vision/``      the vision worker process: camera, pipeline, faces, matcher, verdict, supervisor
- ``pins``         GPIO access: pin factories, input lines, switching outputs
- ``store``, ``writer``, ``config``, ``notify``, ``service``, ``control_socket``, ``clock``
- ``enroll``       putting residents' photos on file
- ``sim/``         the simulator: rig, scripted camera, simulated pins, simulated clock, faults
- ``cli/``, ``bench/``, ``demo``  the staff command line, the benchmarks, ``make demo``
"""

__version__ = "0.2.0"
