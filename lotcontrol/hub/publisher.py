"""The hub process: publishes every change to its residents, retained, for the lots.

Staff change residents with the ordinary commands on the hub's database (``lotcontrol --hub DIR
enroll ...``); the database's triggers give each change a revision (lotcontrol.hub.store). This
process looks every ``hub.poll_seconds`` for residents whose revision is newer than the one it
published, and publishes each, retained, QoS 1, on ``<prefix>/residents/<uid>`` (a removed resident:
its tombstone, which replaces the message that held the templates). On every (re)connect it
publishes everything again: a broker that lost its retained messages (restarted without
persistence, or replaced) gets them back. It refuses to start on a connection without TLS
(lotcontrol.fleet.residents.templates_refused). The broker being down changes nothing in the hub's
database: what changed meanwhile is published once it is back.

The same thread keeps what the lots publish (their status, state and events) in the hub's database
for ``status --lot all`` and ``events --lot all`` (lotcontrol.hub.village).
"""

from __future__ import annotations

import logging
import threading
import time

from ..config import Config
from ..errors import LotControlError
from ..fleet.mqtt import MqttLink
from ..fleet.residents import dumps, residents_topic, templates_refused
from ..store import Store
from . import passes as hub_passes
from . import store as hub_store
from .village import VillageWatch, prune

log = logging.getLogger("lotcontrol")


class TemplatesRefused(LotControlError, RuntimeError):
    """Face templates would travel over a connection without TLS."""


class Hub:
    """Publishes the hub's database. ``start()`` connects and runs the publishing thread; ``stop()``."""

    def __init__(self, store: Store, config: Config, link: MqttLink | None = None):
        refused = templates_refused(config.mqtt)
        if refused is not None:
            raise TemplatesRefused(f"the hub does not start: {refused}")
        self.store = store
        self.prefix = config.mqtt.topic_prefix
        self.poll_seconds = config.hub.poll_seconds
        self.link = link or MqttLink(config.mqtt, client_id="lotcontrol-hub", status_topic=None)
        self.published = 0
        self.passes_published = 0
        self._stopping = threading.Event()
        self._connected_anew = threading.Event()
        self._thread: threading.Thread | None = None
        self.link.on_connect(self._connected_anew.set)
        self.village = VillageWatch(self.link, self.prefix)  # what the lots publish, for status/events --lot
        # a connection of its own to write them: the one given may be in use by a caller meanwhile
        self.village_store: Store | None = None
        self.keep_days = config.events.keep_days
        self._next_prune = 0.0

    def start(self) -> "Hub":
        self.link.start()
        self._thread = threading.Thread(target=self._run, name="hub-publisher", daemon=True)
        self._thread.start()
        return self

    def wait(self) -> None:
        """Until ``stop()`` (a signal handler calls it)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def request_stop(self) -> None:
        """Ask ``wait()`` to return (safe in a signal handler)."""
        self._stopping.set()

    def stop(self) -> None:
        """Stop publishing and disconnect (what was handed to the link is sent first). Safe twice."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self.link.stop()
        if self.village_store is not None:
            self.village_store.close()
            self.village_store = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.publish_pending()
            except Exception:  # a database that is locked for long, a bug: logged, tried again
                log.exception("hub: publishing failed; trying again")
            try:
                self.keep_village()
            except Exception:  # what was taken from the queue is lost; the next messages are written
                log.exception("hub: the lots' state and events could not be written; going on")
            self._stopping.wait(self.poll_seconds)
        try:
            self.keep_village()  # what arrived before the stop
        except Exception:
            log.exception("hub: the lots' last state and events could not be written")

    def keep_village(self) -> int:
        """Write what the lots published since the last call; prune old events once an hour."""
        if self.village_store is None:
            self.village_store = Store(self.store.path)
        written = self.village.write(self.village_store)
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + 3600
            prune(self.village_store, self.keep_days)
        return written

    def publish_pending(self) -> int:
        """Hand every resident changed since it was published to the link (as much as its queue takes
        without dropping anything), then the visitor passes whose uses or revocation changed (and the
        pass key after a connect); returns how many residents."""
        anew = self._connected_anew.is_set()
        if anew:
            self._connected_anew.clear()
            count = hub_store.republish_all(self.store)
            log.info("hub: connected; publishing all %d resident(s) and tombstone(s) again", count)
        if not self.link.connected.is_set():
            if anew:
                self._connected_anew.set()  # the passes and the key are published again once connected
            return 0
        self.passes_published += hub_passes.publish(self.store, self.link, self.prefix, anew)
        room = max(0, self.link.config.queue_size // 2 - self.link.queued)
        done = []
        for uid, _ in hub_store.pending(self.store)[:room]:
            message = hub_store.message(self.store, uid)
            self.link.publish(residents_topic(self.prefix, uid), dumps(message), retain=True, qos=1)
            done.append((uid, message.revision))
            log.info("hub: published %s %s revision %d", "tombstone of" if message.removed else "resident",
                     message.name or uid, message.revision)
        hub_store.mark_published(self.store, done)
        self.published += len(done)
        return len(done)
