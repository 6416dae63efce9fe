"""The one MQTT client of lotcontrol: a paho-mqtt connection in its own threads that never blocks its caller.

Interface (every other module talks MQTT only through this)::

    link = MqttLink(config.mqtt)                 # [mqtt]: host, port, tls, username, password(_file), lot, ...
    link = MqttLink(config.mqtt, client_id="lotcontrol-hub", status_topic=None)  # the hub: no lot status
    link.topic("events", "gate.forced")          # -> "lotcontrol/<lot>/events/gate.forced"
    link.on_connect(callback)                    # callback() after every (re)connect, on the network thread
    link.on_status(callback)                     # callback(connected: bool, detail: str) on every change
    link.subscribe("lotcontrol/residents/#", on_message)   # on_message(topic: str, payload: bytes), on the
                                                 # network thread; kept across reconnects
    link.subscribe(topic, on_command, on_retained=refuse)  # retained messages to their own callback
    link.start()                                 # returns at once; connects (and reconnects) in the background
    link.publish(topic, payload, retain=False, qos=1)      # never blocks: queued; payload str, bytes, or any
                                                 # JSON-able object (sent as JSON)
    link.connected                               # a threading.Event, set while connected
    link.dropped, link.sent, link.queued         # counters: oldest messages dropped from a full queue, ...
    link.status()                                # {"broker", "connected", "queued", "dropped", "sent"}
    link.encrypted                               # True when the connection uses TLS
    link.stop()                                  # sends what is queued (2 s at most), `stopped`, disconnects

Availability: the will ``<prefix>/<lot>/status`` = ``offline`` (retained) is set before connecting, so the
broker announces a lot that died or lost its network; ``online`` is published (retained) on every connect
and ``stopped`` on a clean stop.

The caller's ``publish`` only appends to a bounded deque under a lock: when it is full the oldest message
is dropped and counted (``dropped``), so a broker that is down or slow costs the controller's loop
nothing. A sender thread hands queued messages to paho while connected; paho's network thread
(``loop_start``) reconnects with back-off (``reconnect_delay_set``: doubling from reconnect_min_seconds up
to reconnect_max_seconds). A callback that raises is logged and counted, never kills the network thread.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import ssl
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as paho

from ..config import MqttConfig
from ..errors import ConfigError

log = logging.getLogger("lotcontrol.mqtt")

STOP_FLUSH_SECONDS = 2.0
#: Messages handed to paho and not yet acknowledged (QoS 1) at most; the rest wait in the link's own queue,
#: where a full queue drops the oldest. Paho's own queue is bounded by this, never by dropping there.
PAHO_WINDOW = 100


class _QuietWhileAway(logging.Filter):
    """Paho logs an error at every retry while the broker is away; the link reports that once, itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


PAHO_LOG = logging.getLogger("lotcontrol.mqtt.paho")
PAHO_LOG.addFilter(_QuietWhileAway())


class MqttConfigError(ConfigError):
    """The [mqtt] settings point at something that cannot be used (a password file others can read, ...)."""


def read_password(path: str) -> str:
    """The first line of a password file that only its owner can read; MqttConfigError otherwise."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise MqttConfigError(f"mqtt.password_file {file} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise MqttConfigError(f"mqtt.password_file {file} is not UTF-8 text: name the file that holds the "
                              "password on its first line") from None
    private(path, "mqtt.password_file")
    password = text.splitlines()[0] if text else ""
    if not password:
        raise MqttConfigError(f"mqtt.password_file {file} is empty")
    return password


def private(path: str, key: str) -> None:
    """MqttConfigError unless only the owner can read ``path`` (a password or a private key)."""
    mode = Path(path).stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MqttConfigError(f"{key} {path} can be read by others (mode {stat.S_IMODE(mode):o}): "
                              f"run `chmod 600 {path}`")


def check_files(config: MqttConfig) -> str | None:
    """Check every file [mqtt] names (readable; the password file and the TLS key private to their
    owner) and return the broker password; MqttConfigError naming the key and the file otherwise.
    `check-config` runs it too."""
    password = config.password
    if config.password_file is not None:
        password = read_password(config.password_file)
    if config.tls is not None:
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(config.tls, key)
            if path is not None and not os.access(path, os.R_OK):
                raise MqttConfigError(f"mqtt.tls.{key} {path} cannot be read")
        if config.tls.key_file is not None:
            private(config.tls.key_file, "mqtt.tls.key_file")
    return password


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool


def encode(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


class MqttLink:
    """See the module's docstring."""

    def __init__(self, config: MqttConfig, *, client_id: str | None = None, status_topic: str | None = "status"):
        self.config = config
        self.prefix = config.topic_prefix
        self.status_topic = self.topic(status_topic) if status_topic else None
        self.connected = threading.Event()
        self.dropped = 0
        self.sent = 0
        self.callback_errors = 0
        self._queue: collections.deque[Outgoing] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._subscriptions: dict[str, tuple[int, Callable[[str, bytes], None]]] = {}
        self._connect_callbacks: list[Callable[[], None]] = []
        self._status_callbacks: list[Callable[[bool, str], None]] = []
        self._sender: threading.Thread | None = None
        self._started = False
        self._told: bool | None = None  # the last state told to on_status callbacks

        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or f"lotcontrol-{config.lot}",
                             clean_session=True, protocol=paho.MQTTv311)
        client.enable_logger(PAHO_LOG)
        client.max_queued_messages_set(PAHO_WINDOW)
        client.reconnect_delay_set(min_delay=config.reconnect_min_seconds, max_delay=config.reconnect_max_seconds)
        password = check_files(config)
        if config.username is not None:
            client.username_pw_set(config.username, password)
        self.encrypted = config.tls is not None
        if config.tls is not None:
            try:
                client.tls_set(ca_certs=config.tls.ca_file, certfile=config.tls.cert_file, keyfile=config.tls.key_file,
                               cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise MqttConfigError(f"mqtt.tls: the certificates cannot be used: {exc}") from None
        if self.status_topic is not None:
            client.will_set(self.status_topic, "offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        self.client = client

    # --- the interface ---

    def topic(self, *levels: str) -> str:
        """A topic of this lot: ``<prefix>/<lot>/<levels...>``."""
        return "/".join((self.prefix, self.config.lot, *levels))

    def on_connect(self, callback: Callable[[], None]) -> None:
        self._connect_callbacks.append(callback)

    def on_status(self, callback: Callable[[bool, str], None]) -> None:
        self._status_callbacks.append(callback)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def status(self) -> dict[str, Any]:
        """For `lotcontrol status`: cheap counters, safe to read from any thread."""
        return {"broker": f"{self.config.host}:{self.config.port}", "connected": self.connected.is_set(),
                "queued": self.queued, "dropped": self.dropped, "sent": self.sent}

    def start(self) -> "MqttLink":
        """Connect in the background (a broker that is down is tried again and again, with back-off)."""
        if self._started:
            return self
        self._started = True
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        self._sender.start()
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_seconds)
        self.client.loop_start()
        return self

    def publish(self, topic: str, payload: Any, retain: bool = False, qos: int = 1) -> None:
        """Queue one message; never blocks. A full queue drops its oldest message (counted in ``dropped``)."""
        message = Outgoing(topic, encode(payload), qos, retain)
        with self._cond:
            if self._stopping:
                return
            if len(self._queue) >= self.config.queue_size:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(message)
            self._cond.notify()

    def subscribe(self, topic_filter: str, callback: Callable[[str, bytes], None], qos: int = 1, *,
                  on_retained: Callable[[str, bytes], None] | None = None) -> None:
        """Call ``callback(topic, payload)`` for every message on ``topic_filter``, across reconnects; a
        retained message (one the broker kept from before) goes to ``on_retained`` instead, if given."""
        def deliver(client, userdata, message) -> None:
            target = on_retained if message.retain and on_retained is not None else callback
            self._guarded(target, message.topic, message.payload)
        self._subscriptions[topic_filter] = (qos, callback)
        self.client.message_callback_add(topic_filter, deliver)
        if self.connected.is_set():
            self.client.subscribe(topic_filter, qos)

    def stop(self) -> None:
        """Send what is queued (for STOP_FLUSH_SECONDS at most), announce ``stopped``, disconnect. Safe twice."""
        if not self._started:
            return
        deadline = time.monotonic() + STOP_FLUSH_SECONDS
        with self._cond:
            while self._queue and self.connected.is_set() and time.monotonic() < deadline:
                self._cond.wait(timeout=max(0.0, deadline - time.monotonic()))
            self._stopping = True
            self._queue.clear()
            self._cond.notify_all()
        if self._sender is not None:
            self._sender.join(timeout=STOP_FLUSH_SECONDS)
        if self.connected.is_set() and self.status_topic is not None:
            info = self.client.publish(self.status_topic, "stopped", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass  # not sent: the broker says `offline` by the will instead
        self.client.disconnect()
        self.client.loop_stop()
        self._started = False

    # --- the threads ---

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not (self._queue and self.connected.is_set()):
                    self._cond.wait()
                if self._stopping:
                    return
                message = self._queue.popleft()
                self._cond.notify_all()  # stop() waits for the queue to empty
            info = self.client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
            if info.rc == paho.MQTT_ERR_SUCCESS:
                self.sent += 1
                continue
            with self._cond:  # not taken: back to the front, unless newer messages filled the queue meanwhile
                if len(self._queue) < self.config.queue_size:
                    self._queue.appendleft(message)
                else:
                    self.dropped += 1
                if info.rc == paho.MQTT_ERR_QUEUE_SIZE:  # PAHO_WINDOW unacknowledged: wait for an ack
                    self._cond.wait(timeout=0.1)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._tell(False, f"refused by {self.config.host}:{self.config.port}: {reason_code}")
            return
        if self.status_topic is not None:
            client.publish(self.status_topic, "online", qos=1, retain=True)
        for topic_filter, (qos, _) in self._subscriptions.items():
            client.subscribe(topic_filter, qos)
        with self._cond:
            self.connected.set()
            self._cond.notify_all()
        for callback in self._connect_callbacks:
            self._guarded(callback)
        self._tell(True, f"connected to {self.config.host}:{self.config.port}")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected.is_set()
        with self._cond:
            self.connected.clear()
            self._cond.notify_all()
        if was and not self._stopping:
            self._tell(False, f"lost {self.config.host}:{self.config.port}: {reason_code}")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._cond:
            self._cond.notify_all()  # the sender may wait for room in paho's window

    def _on_connect_fail(self, client, userdata) -> None:
        self._tell(False, f"cannot reach {self.config.host}:{self.config.port}; trying again with back-off")

    def _tell(self, connected: bool, detail: str) -> None:
        """Tell the status callbacks about a change (not every failed try of a broker that stays away)."""
        if self._told is connected:
            return
        self._told = connected
        log.info("mqtt: %s", detail)
        for callback in self._status_callbacks:
            self._guarded(callback, connected, detail)

    def _guarded(self, callback: Callable, *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            self.callback_errors += 1
            log.exception("mqtt: a callback failed (%r); the connection goes on", callback)
