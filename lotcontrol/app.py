"""The composition root: one lot's controller process, put together, started and stopped in one place.

``lotcontrol run``, the rig, the benchmarks, the demo and the tests all start through ``Lot``. The
start-up order is the safety case's, in named steps:

1. ``init_lock``     one controller per data directory (an exclusive lock; a second one is refused
                     with the first one's PID, before it touches a pin);
2. ``init_outputs``  gate shut, charging off, siren silent, buzzer off; the latched alarms restored;
3. ``init_inputs``   the probes' first poll, then contacts and sensors; the first evaluation
                     (charging may come on now, in a zone whose every probe has been read); the
                     charging ports' meter pollers (a metered port comes on once its meter answered);
4. ``init_store``    the writer thread, which opens and checks the database (never before the fire
                     watch is up, and never blocking it: a locked or damaged database is degraded);
5. ``start_mqtt``    with ``mqtt.enabled``: the MQTT link, which connects in its own thread (a broker
                     that is down or refuses us is an event, never a stop), the events and state
                     it publishes, Home Assistant discovery and, if allowed, the remote gate button;
                     the hub's residents, applied to the lot's store by the writer thread;
6. ``start_vision``  the vision worker process, if there is a camera;
7. ``start_control`` the control socket the staff commands talk to;
8. ``start_signals`` SIGINT and SIGTERM stop the loop.

``stop()`` undoes them in reverse through an ``ExitStack``: every output is made safe even when
closing something else fails. Observers are called after every turn of the loop (``observe``), so a
benchmark or a test watches the controller without patching it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
from pathlib import Path
from typing import Callable

from .clock import Clock
from .config import Config
from .controller import Controller
from .errors import LotControlError
from .safety import latch
from .safety.probes import ProbePoller
from .service import notify
from .store import Store

log = logging.getLogger("lotcontrol")

LOCK_NAME = "controller.lock"


class AlreadyRunning(LotControlError, RuntimeError):
    """Another controller runs on the same data directory."""


class DirectoryLock:
    """An exclusive ``flock`` on ``DATA_DIR/controller.lock`` holding the owner's PID. The kernel
    drops it when the process dies, however it dies, so a stale file never locks anyone out."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / LOCK_NAME
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(self.fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise AlreadyRunning(
                f"another controller (PID {owner}) is running on {data_dir}; stop it first "
                f"(`systemctl stop lotcontrol`), or give this one another --data-dir") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the lock; the file stays (removing it would race a new owner)
            self.fd = -1


class Lot:
    """One lot's controller with everything around it. Use ``with Lot(...) as lot: lot.run()``."""

    def __init__(self, config: Config, data_dir: Path | None, *, pin_factory=None, clock: Clock | None = None,
                 store: Store | None = None, camera: str | None = None, as_fast_as_possible: bool = False,
                 control_socket: bool = False, signals: bool = False, deliver_wrapper=None):
        self.config = config
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.pin_factory = pin_factory
        self.clock = clock or Clock()
        self.store = store
        self.camera = camera
        self.as_fast_as_possible = as_fast_as_possible
        self.control_socket = control_socket
        self.signals = signals
        self.deliver_wrapper = deliver_wrapper  # a benchmark's hook on what the worker says
        self.controller: Controller | None = None
        self.control = None
        self.link = None  # the MQTT link (lotcontrol.fleet.mqtt), with mqtt.enabled
        self.residents = None  # the hub's residents kept in step (lotcontrol.fleet.residents), with mqtt.enabled
        self.passes = None  # the hub's visitor pass key and passes' states (lotcontrol.fleet.passes), with mqtt.enabled
        self.lock: DirectoryLock | None = None
        self._stack = contextlib.ExitStack()

    # --- the steps, in order ---

    def start(self) -> "Lot":
        try:
            self.init_lock()
            self.init_outputs()
            self.init_inputs()
            self.init_store()
            self.start_mqtt()
            self.start_vision()
            self.start_control()
            self.start_signals()
        except BaseException:
            self.stop()
            raise
        notify("READY=1")
        return self

    def init_lock(self) -> None:
        if self.data_dir is not None:
            self.lock = DirectoryLock(self.data_dir)
            self._stack.callback(self.lock.close)

    def init_outputs(self) -> None:
        state = None if self.data_dir is None else self.data_dir / latch.FILE_NAME
        snapshots = None if self.data_dir is None else self.data_dir / "snapshots"
        self.controller = Controller(self.config, None, pin_factory=self.pin_factory, clock=self.clock,
                                     snapshots=snapshots, state_path=state, inputs=False)
        self._stack.callback(self.controller.close)
        if not self.clock.simulated:  # on a simulated clock the rig writes between two instants
            self.controller.latch.start()
            self.controller.port_holds.start()
            self.controller.presence_file.start()

    def init_store(self) -> None:
        """The database, opened and checked by the writer thread: a database that is locked by another
        process, damaged or on a full disk never holds back the fire watch, which runs already; its
        events wait in memory (``store.degraded``) and face entry stays shut without residents."""
        writer = self.controller.writer
        opened = self.store is None and self.data_dir is not None
        if opened:
            data_dir = self.data_dir

            def open_checked() -> Store:
                store = Store.in_dir(data_dir)
                try:
                    store.check()
                except Exception:
                    store.close()
                    raise
                return store
            writer.opener = open_checked
        elif self.store is not None:
            self.store.check()
            writer.store = self.store
            writer.refresh_directory()
        else:
            return

        def close_store() -> None:
            # the last events are written first; a store is never closed under a writer still in it
            # (closing SQLite under a thread that uses the connection crashes the process)
            if writer.close() and opened and writer.store is not None:
                writer.store.close()
        self._stack.callback(close_store)
        if not self.clock.simulated:  # on a simulated clock the rig writes between two instants
            writer.start()

    def init_inputs(self) -> None:
        controller = self.controller
        controller.poller = ProbePoller(self.config.fire, controller.inbox.put, self.clock.now)
        controller.poller.poll()  # the first readings wait in the inbox for the first evaluation
        controller.open_inputs()
        if any(port.meter for port in self.config.charging.ports):  # meters, read by threads of their own
            from .charging.meters import MeterPollers  # pymodbus only where there are meters

            controller.meters = MeterPollers(self.config.charging, controller.inbox.put, self.clock.now)
        if not self.clock.simulated:  # on a simulated clock the rig decodes the reader's frames
            controller.poller.start()
            for reader in (controller.reader, controller.exit_reader):
                if reader is not None:
                    reader.start()
            if controller.meters is not None:
                controller.meters.start()

    def start_mqtt(self) -> None:
        """The link to the village. Building it reads files (a password, certificates); one that cannot
        be used is the event ``mqtt.failed`` and the lot goes on alone. Connecting happens in the link's
        own thread; the loop only ever appends to its bounded queue."""
        if not self.config.mqtt.enabled:
            return
        from .fleet.discovery import Discovery
        from .fleet.mqtt import MqttLink
        from .fleet.publish import LotPublisher
        from .fleet.remote import RemoteOpen
        from .messages import Notice

        controller = self.controller
        try:
            link = MqttLink(self.config.mqtt)
        except LotControlError as exc:
            controller.event("mqtt.failed", None, {"error": str(exc)})
            return
        try:  # the fire watch runs already: a part around it that fails to start is an event, not a stop
            link.on_status(lambda connected, detail: controller.inbox.put(
                Notice("mqtt.connected" if connected else "mqtt.disconnected", {"detail": detail})))
            publisher = LotPublisher(link, controller)
            if self.config.mqtt.discovery:
                Discovery(self.config, link, vision=self.camera is not None)
            if self.config.mqtt.allow_remote_open:
                RemoteOpen(link, controller.inbox.put)
            residents = self._resident_sync(link)
            self.passes = self._pass_sync(link)
        except Exception as exc:
            log.exception("mqtt: the link could not be set up")
            controller.event("mqtt.failed", None, {"error": f"{type(exc).__name__}: {exc}"[:500]})
            return
        publisher.attach()
        self.residents = residents
        self.link = controller.mqtt = link
        self._stack.callback(link.stop)
        link.start()

    def _resident_sync(self, link):
        """The hub's residents for this lot: each message is applied to the lot's own store on the
        writer thread (never on the loop); the vision worker and the loop see the change as they see a
        local enrollment. On a connection without TLS it does not subscribe (``fleet.residents_refused``)."""
        from .fleet.residents import ResidentSync
        from .writer import CallJob

        writer = self.controller.writer

        def submit(call) -> None:
            def apply(store) -> None:
                before = sync.changes
                call(store)
                if sync.changes != before:  # the loop decides on the new records at once
                    writer.refresh_directory()
            writer.put(CallJob("resident from the hub", apply))
        sync = ResidentSync(self.config.mqtt.lot, self.config.mqtt.topic_prefix, submit, self.controller.event)
        sync.subscribe(link, self.config.mqtt)
        return sync

    def _pass_sync(self, link):
        """The hub's pass key and its passes' uses and revocations, kept by the writer thread (TLS only)."""
        from .fleet.passes import PassSync
        from .writer import CallJob

        writer = self.controller.writer
        sync = PassSync(self.config.mqtt.topic_prefix, lambda call: writer.put(CallJob("visitor pass from the hub", call)),
                        self.controller.event, changed=writer.refresh_directory)
        sync.subscribe(link, self.config.mqtt)
        return sync

    def start_vision(self) -> None:
        if self.camera is None:
            return
        from .vision.supervisor import VisionWorker  # spawns the worker; never loads dlib here

        deliver = self.controller.inbox.put
        if self.deliver_wrapper is not None:
            deliver = self.deliver_wrapper(deliver)
        worker = VisionWorker(self.config, str(self.data_dir), self.camera, as_fast_as_possible=self.as_fast_as_possible,
                              deliver=deliver, clock=self.clock.now, stepped=self.clock.simulated)
        self.controller.worker = worker
        worker.start()
        self._stack.callback(worker.stop)
        self.controller.event("vision.started", None, {"source": worker.source})

    def start_control(self) -> None:
        if not self.control_socket:
            return
        from .control_socket import ControlServer

        self.control = ControlServer(self.data_dir, self.controller.inbox)
        self._stack.callback(self.control.close)

    def start_signals(self) -> None:
        if not self.signals:
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.signal(sig, lambda number, frame: self.controller.stop(signal.Signals(number).name))
            self._stack.callback(signal.signal, sig, previous)

    # --- running ---

    def observe(self, observer: Callable[[object | None], None]) -> None:
        """Call ``observer(message)`` after every turn of the loop, with the message it handled (None
        for a turn without one): tests and benchmarks watch the controller without patching it."""
        self.controller.observers.append(observer)

    def run(self) -> str:
        """The loop, until stopped or the video ends; returns why it stopped."""
        return self.controller.run()

    def stop(self) -> None:
        """Outputs safe first (the loop has ended: nothing drives them any more), then everything in
        reverse order; a step that fails to close stops no other. Safe to call twice."""
        notify("STOPPING=1")
        if self.controller is not None:
            self.controller.make_safe()
            self.controller.end_sessions()
        self._stack.close()

    def __enter__(self) -> "Lot":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
