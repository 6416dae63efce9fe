"""Charging ports: how fast a burst reaches the port relays while the meters are polled flat out,
what the ports cost the loop's tick, and how long a Modbus RTU poll of N meters takes.

    .venv/bin/python -m lotcontrol.bench.charging [--trials 100] [--ports 40]

- **burst -> every port relay off**: the lot as `lotcontrol run` starts it (through lotcontrol.app),
  its loop on a thread, ``--ports`` ports (8 on GPIO relays, the rest on two MCP23017s on the
  simulated I²C bus), each with an SDM120 meter on a pymodbus server in this process (Modbus TCP on
  127.0.0.1), all read every second (``poll_seconds`` 1; the poller thread and the server's thread
  compete with the loop for the interpreter). A sprinkler contact opens; the time until the
  last port relay is off is read from the simulated pins' and the simulated I²C bus's own
  timestamps (the 20 ms contact debounce included). Then the contact closes, the alarm is reset,
  and the next trial waits until every port is charging again.
- **tick**: the loop's ``tick()`` on the simulated clock (no threads), with 0 ports and with
  ``--ports`` ports charging, mean of 20,000 ticks.
- **RTU poll cycle**: one poll of 10, 40 and 100 SDM120 meters at 9,600 and 19,200 baud, measured:
  the real poller (pymodbus's RTU client on a serial port) against pymodbus's serial server through a
  pseudo-terminal pair whose joining thread holds every chunk for its time on the wire (11 bits a
  byte at the baud rate); beside it the framing model of `check-config` (lotcontrol.charging.timing)
  with no turnaround (the simulated meters answer in about a millisecond) and with the default
  20 ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from lotcontrol.app import Lot
from lotcontrol.charging.timing import meter_seconds
from lotcontrol.config import ChargingConfig, parse_config, prepare_data_dir
from lotcontrol.sim.clock import SimClock
from lotcontrol.sim.meters import SimulatedMeters, charge_curve
from lotcontrol.sim.pins import simulated_factory

from .fire import reset, wait_for

SPRINKLER, CHARGER, SIREN = 5, 23, 22
GPIO_RELAYS = [6, 12, 13, 16, 19, 20, 21, 26]


def lot_config(ports: int, url: str | None, poll_seconds: float = 1.0):
    table = []
    for i in range(ports):
        switch = ({"relay_pin": GPIO_RELAYS[i]} if i < len(GPIO_RELAYS)
                  else {"expander": {"bus": 1, "address": 0x20 + (i - len(GPIO_RELAYS)) // 16,
                                     "pin": (i - len(GPIO_RELAYS)) % 16}})
        table.append({"id": f"P{i + 1:02d}", "zone": "east", "bay": f"east-{i + 1}", **switch,
                      **({"meter": {"bus": "rs485", "unit": i + 1}} if url else {})})
    buses = [{"name": "rs485", "port": url, "baud": 115200, "turnaround_seconds": 0.0}] if url else []
    return parse_config({"fire": {"siren_pin": SIREN, "zones": [
        {"name": "east", "sprinklers": [SPRINKLER], "charger_pin": CHARGER}]},
        "charging": {"poll_seconds": poll_seconds, "meter_lost_polls": 20, "buses": buses, "ports": table}})


def relays_off_at(factory, config) -> float | None:
    """When the last port relay went off (monotonic), or None while one is still on."""
    last = 0.0
    buses = factory.i2c.buses[1]
    for port in config.charging.ports:
        if port.relay_pin is not None:
            pin = factory.pin(port.relay_pin)
            if pin.state:
                return None
            last = max(last, pin.history[-1][0])
        else:
            e = port.expander
            if buses.output(e.address, e.pin):
                return None
            last = max(last, max(t for t, a, p, _ in buses.history if (a, p) == (e.address, e.pin)))
    return last


def all_on(factory, config) -> bool:
    buses = factory.i2c.buses[1]
    return all(factory.pin(p.relay_pin).state if p.relay_pin is not None
               else buses.output(p.expander.address, p.expander.pin) for p in config.charging.ports)


def burst_trials(trials: int, ports: int, tmp: Path) -> tuple[list[float], int]:
    profile = ChargingConfig().meter_profiles()["sdm120"]
    meters = SimulatedMeters({u: charge_curve(200.0, taper_at=1e9) for u in range(1, ports + 1)}, profile)
    factory = simulated_factory()
    config = lot_config(ports, meters.url)
    latencies = []
    try:
        with Lot(config, prepare_data_dir(tmp / "data"), pin_factory=factory) as lot:
            thread = threading.Thread(target=lot.run, name="controller", daemon=True)
            thread.start()
            try:
                sprinkler = factory.pin(SPRINKLER)
                for _ in range(trials):
                    wait_for(lambda: all_on(factory, config))
                    time.sleep(0.05)  # a moment of polling before the burst
                    start = time.monotonic()
                    sprinkler.drive_high()
                    wait_for(lambda: relays_off_at(factory, config) is not None)
                    latencies.append(relays_off_at(factory, config) - start)
                    sprinkler.drive_low()
                    reset(lot)
            finally:
                lot.controller.stop("benchmark over")
                thread.join()
    finally:
        meters.close()
        factory.reset()
    return latencies, meters.requests


def tick_cost(ports: int, ticks: int = 20000) -> float:
    """Mean seconds of one ``tick()`` with ``ports`` ports (no meters: each on for its timer)."""
    factory = simulated_factory()
    clock = SimClock()
    try:
        with Lot(lot_config(ports, None), None, pin_factory=factory, clock=clock) as lot:
            c = lot.controller
            t = 0.0
            for _ in range(200):
                t += 0.05
                clock.advance_to(t)
                c.tick(t)
            started = time.perf_counter()
            for _ in range(ticks):
                t += 0.05
                clock.advance_to(t)
                c.tick(t)
            return (time.perf_counter() - started) / ticks
    finally:
        factory.reset()


def rtu_poll(meters: int, baud: int) -> float:
    """Seconds one poll of ``meters`` SDM120s takes over a paced serial line at ``baud``."""
    from lotcontrol.charging.meters import BusPoller

    profile = ChargingConfig().meter_profiles()["sdm120"]
    sim = SimulatedMeters({u: charge_curve(100.0 + u) for u in range(1, meters + 1)}, profile, framing="rtu", baud=baud)
    settings = lot_config(meters, sim.url, poll_seconds=60.0)
    bus = settings.charging.buses[0].model_copy(update={"baud": baud, "timeout_seconds": 1.0})
    readings = []
    poller = BusPoller(bus, [(p.id, p.meter, profile) for p in settings.charging.ports], 60.0, readings.append,
                       time.monotonic)
    try:
        poller.poll()
        if any(r.error for r in readings):
            raise RuntimeError(f"a simulated meter did not answer: {[r.error for r in readings if r.error][:1]}")
        return poller.last_cycle
    finally:
        poller.close()
        sim.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(trials: int = 100, ports: int = 40, meters: tuple[int, ...] = (10, 40, 100),
            say=lambda text: None) -> dict:
    """Every figure of this module, as `lotcontrol bench` keeps them."""
    sdm120 = ChargingConfig().meter_profiles()["sdm120"]
    say(f"charging: one RTU poll of {', '.join(map(str, meters))} meters at 9,600 and 19,200 baud")
    rtu = [{"baud": baud, "meters": n, "measured_s": round(rtu_poll(n, baud), 3),
            "model_s": round(n * meter_seconds(baud, sdm120, 0.0), 3),
            "model_turnaround_s": round(n * meter_seconds(baud, sdm120, 0.02), 3)}
           for baud in (9600, 19200) for n in meters]
    say(f"charging: the loop's tick with 0, {ports} and 100 ports")
    tick = {str(n): round(tick_cost(n) * 1e6, 1) for n in (0, ports, 100)}
    say(f"charging: burst -> all {ports} port relays off, {trials} trials, meters polled")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        latencies, requests = burst_trials(trials, ports, Path(tmp))
        seconds = time.monotonic() - started
    ms = [x * 1000 for x in latencies]
    burst = {"ports": ports, "trials": len(ms), "requests_per_s": round(requests / seconds),
             "p50_ms": round(statistics.median(ms), 1), "p99_ms": round(percentile(ms, 0.99), 1),
             "max_ms": round(max(ms), 1)}
    return {"rtu": rtu, "tick_us": tick, "burst": burst}


def rows(c: dict) -> list[tuple[str, str]]:
    """(figure, value) lines for a table."""
    b = c["burst"]
    out = [(f"sprinkler burst -> all {b['ports']} port relays off, meters polled ({b['requests_per_s']} Modbus "
            f"requests/s), {b['trials']} trials: p50 / p99 / max", f"{b['p50_ms']:.1f} / {b['p99_ms']:.1f} / "
            f"{b['max_ms']:.1f} ms")]
    out += [(f"loop tick with {n} charging ports", f"{us:.1f} µs") for n, us in c["tick_us"].items()]
    most = max(c["tick_us"], key=int)
    if int(most):  # the controller's CPU per port: what a port adds to each 50 ms tick
        per = (c["tick_us"][most] - c["tick_us"]["0"]) / int(most)
        out.append((f"loop CPU per charging port (tick with {most} ports less tick with none, per port; "
                    "a tick every 50 ms)", f"{per:.2f} µs a tick, {per * 20 / 1e6 * 100:.4f} % of a core"))
    out += [(f"RTU poll of {r['meters']} SDM120 meters at {r['baud']} baud: measured (model without / with 20 ms "
             "turnaround)", f"{r['measured_s']:.2f} s ({r['model_s']:.2f} / {r['model_turnaround_s']:.2f} s)")
            for r in c["rtu"]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--ports", type=int, default=40)
    parser.add_argument("--meters", type=int, nargs="*", default=[10, 40, 100], help="meters per RTU poll")
    args = parser.parse_args()
    results = measure(args.trials, args.ports, tuple(args.meters))
    print("| figure | value |\n| --- | --- |")
    for figure, value in rows(results):
        print(f"| {figure} | {value} |")


if __name__ == "__main__":
    main()
