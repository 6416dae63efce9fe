"""A real Mosquitto broker for tests, on 127.0.0.1 on a free port, started and stopped by the test.

Use the fixtures in a test module (import them so pytest sees them)::

    from .broker import broker, make_broker, tls_files, watch  # noqa: F401  (pytest fixtures)

    def test_plain(broker):                 # anonymous, plain TCP, started
        broker.port, broker.host

    def test_secure(make_broker):           # any options; each broker is stopped at teardown
        b = make_broker(users={"lot-A": "secret"}, acl="user lot-A\\ntopic readwrite lotcontrol/A/#\\n",
                        tls=True, require_certificate=False)
        b.tls.ca, b.tls.client_cert, b.tls.client_key   # files for the client side

    def test_late(make_broker):
        b = make_broker(start=False)        # port chosen, nothing listening yet
        ...; b.start()                      # same port; b.stop() / b.start() again later
        b.kill()                            # SIGKILL: clients see the connection drop

``watch(broker)`` gives a Watcher that records every message (``wait(topic, payload)``, ``messages()``).
Every test that uses one is skipped, with the reason, where the mosquitto binary is missing.
``Broker.log()`` returns what the broker logged (connections, ACL denials) for a failing test's message.
Waiting is by polling the port against a deadline, never a fixed sleep.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
HOST = "127.0.0.1"
START_SECONDS = 10.0


def need_mosquitto() -> str:
    if MOSQUITTO is None:
        pytest.skip("the mosquitto binary is missing: `apt-get install mosquitto` (make test does it as root)")
    return MOSQUITTO


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (CN lot-A)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """Generate the CA and certificates with the openssl CLI (EC P-256 keys: fast)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl binary is missing, so no test certificates can be made")
    folder.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=lotcontrol test CA")
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, cn in (("server", "127.0.0.1"), ("client", "lot-A")):
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    for path in folder.glob("*.key"):
        path.chmod(0o600)
    return TlsFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key",
                    folder / "client.crt", folder / "client.key")


class Broker:
    """One Mosquitto process and its generated configuration in ``folder``."""

    def __init__(self, folder: Path, *, port: int | None = None, users: dict[str, str] | None = None,
                 acl: str | None = None, tls: TlsFiles | None = None, require_certificate: bool = False,
                 config_text: str | None = None):
        self.binary = need_mosquitto()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = port or free_port()
        self.tls = tls
        self.users = dict(users or {})
        self.process: subprocess.Popen | None = None
        self.config_path = self.folder / "mosquitto.conf"
        self.log_path = self.folder / "mosquitto.log"
        lines = [f"listener {self.port} {HOST}", "persistence false", "log_dest stderr",
                 "log_type error", "log_type warning", "log_type notice", "log_type information",
                 "connection_messages true", "log_timestamp_format %H:%M:%S"]
        if os.geteuid() == 0:
            lines.append("user root")  # as root mosquitto would become `mosquitto`, who cannot read tmp files
        if config_text is not None:  # a configuration of one's own, served on this broker's port
            lines += [line for line in config_text.splitlines() if not line.startswith("listener ")]
        elif self.users:
            passwords = self.folder / "passwords"
            passwords.touch(mode=0o600)
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password],
                               check=True, capture_output=True)
            lines += [f"password_file {passwords}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None and config_text is None:
            acl_path = self.folder / "acl"
            acl_path.write_text(acl)
            acl_path.chmod(0o600)
            lines.append(f"acl_file {acl_path}")
        if tls is not None and config_text is None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.server_cert}", f"keyfile {tls.server_key}",
                      f"require_certificate {'true' if require_certificate else 'false'}", "tls_version tlsv1.2"]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self) -> "Broker":
        """Start the broker and return once it accepts connections on its port."""
        if self.running:
            return self
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen([self.binary, "-c", str(self.config_path)], stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode} on start:\n{self.log()}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"mosquitto did not listen on {HOST}:{self.port} within "
                                       f"{START_SECONDS} s:\n{self.log()}") from None
                time.sleep(0.01)  # a poll interval against the deadline, not a wait for something

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """A clean stop (SIGTERM), waited for; safe to call twice."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL, waited for: every client's connection drops at once."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> TlsFiles:
    """One CA and certificate set per test session (generating them takes a moment)."""
    need_mosquitto()
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def make_broker(tmp_path, request):
    """A factory: ``make_broker(users=..., acl=..., tls=True|TlsFiles, require_certificate=..., port=...,
    start=True)``; every broker it made is stopped at teardown."""
    made: list[Broker] = []

    def make(*, start: bool = True, tls: bool | TlsFiles = False, **options) -> Broker:
        if tls is True:
            tls = request.getfixturevalue("tls_files")
        broker = Broker(tmp_path / f"broker{len(made)}", tls=tls or None, **options)
        made.append(broker)
        return broker.start() if start else broker

    yield make
    for broker in made:
        broker.stop()


@pytest.fixture
def broker(make_broker) -> Broker:
    """An anonymous plain-TCP broker, started."""
    return make_broker()


class Watcher:
    """A plain paho client that records every message on ``topics`` (default ``#``), for assertions.

    ``wait(topic, payload=None)`` returns the first message on ``topic`` (with that payload, if given)
    received since the watcher started, waiting on a condition up to ``timeout`` seconds;
    ``messages(topic)`` lists what arrived. Retained messages arrive too (``message.retain``).
    """

    def __init__(self, broker: Broker, topics: str | list[str] = "#", *, username: str | None = None,
                 password: str | None = None, tls: TlsFiles | None = None):
        import paho.mqtt.client as paho

        self._cond = threading.Condition()
        self.received: list = []
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"watcher-{id(self)}")
        if username is not None:
            client.username_pw_set(username, password)
        if tls is not None:
            client.tls_set(ca_certs=str(tls.ca), certfile=str(tls.client_cert), keyfile=str(tls.client_key))
        subscribed = threading.Event()
        filters = [topics] if isinstance(topics, str) else topics
        client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in filters])
        client.on_subscribe = lambda *args: subscribed.set()
        client.on_message = self._on_message
        client.connect(broker.host, broker.port)
        client.loop_start()
        self.client = client
        if not subscribed.wait(30):  # a failure guard, as in wait()
            self.close()
            raise RuntimeError(f"the watcher could not subscribe to {filters} on port {broker.port}:\n{broker.log()}")

    def _on_message(self, client, userdata, message) -> None:
        with self._cond:
            self.received.append(message)
            self._cond.notify_all()

    def messages(self, topic: str | None = None) -> list:
        with self._cond:
            return [m for m in self.received if topic is None or m.topic == topic]

    def wait(self, topic: str, payload: bytes | str | None = None, timeout: float = 30.0, *, after: int = 0,
             count: int = 1):
        """The ``count``-th message on ``topic`` (equal to ``payload`` if given) among those received from
        index ``after`` on; AssertionError naming what did arrive if none comes within ``timeout`` (a failure
        guard, long for a loaded machine: the wait ends as soon as the message comes)."""
        if isinstance(payload, str):
            payload = payload.encode()

        def found():
            matching = [m for m in self.received[after:]
                        if m.topic == topic and (payload is None or m.payload == payload)]
            return matching[count - 1] if len(matching) >= count else None
        with self._cond:
            if not self._cond.wait_for(found, timeout):
                seen = [(m.topic, m.payload[:80]) for m in self.received[after:]]
                raise AssertionError(f"no message on {topic} {payload!r} within {timeout} s; received {seen}")
            return found()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def watch():
    """``watch(broker, topics="#", ...)`` -> a Watcher, closed at teardown."""
    made: list[Watcher] = []

    def make(broker: Broker, topics: str | list[str] = "#", **options) -> Watcher:
        made.append(Watcher(broker, topics, **options))
        return made[-1]
    yield make
    for watcher in made:
        watcher.close()


def mqtt_config(broker: Broker, lot: str = "A", **overrides):
    """An [mqtt] section that points at ``broker`` (fast reconnects for tests); TLS files when it has TLS."""
    from lotcontrol.config import MqttConfig

    settings = {"enabled": True, "host": broker.host, "port": broker.port, "lot": lot,
                "reconnect_min_seconds": 0.1, "reconnect_max_seconds": 0.5}
    if broker.tls is not None:
        settings["tls"] = {"ca_file": str(broker.tls.ca), "cert_file": str(broker.tls.client_cert),
                           "key_file": str(broker.tls.client_key)}
    return MqttConfig.model_validate({**settings, **overrides})
