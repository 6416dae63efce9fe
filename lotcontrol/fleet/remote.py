"""The one command a lot takes over MQTT: open the gate once, and only with ``mqtt.allow_remote_open``.

It is Home Assistant's button (``<prefix>/<lot>/command/gate/open``, payload ``open``) and goes
through the controller's inbox as the control socket's ``gate.open`` does, with the gate's usual
opening time. Nothing else is listened for: no fire reset, no drill, no bay count — those stay at the
lot's own terminal. A payload that is not ``open``, or a retained one (a command kept by the broker
would open the gate again at every reconnect), is refused as the event ``mqtt.command_refused``; a
refusal never stops anything. An empty payload (clearing a retained one) is no command and ignored. The answer to each command is published on ``command/result``.

The inbox is the fire inputs' way to the loop too, first come first served, so a flood on the command
topic (an automation in a loop, good payloads or bad) must not queue in front of a sprinkler's contact
change: at most ``BURST`` presses or refusals, then ``RATE`` a second, go in; the rest are dropped,
counted (``dropped``) and said as ``dropped`` in the next event let in.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable

from ..messages import Command, Notice
from .mqtt import MqttLink

PRESS = b"open"
COMMAND = ("command", "gate", "open")
BURST = 10  # presses or refusals let into the inbox at once
RATE = 2.0  # and this many a second after that


def command_topic(link: MqttLink) -> str:
    return link.topic(*COMMAND)


class RemoteOpen:
    """Listens on the gate's command topic and hands valid presses to the controller's inbox."""

    def __init__(self, link: MqttLink, put: Callable[[object], None], clock: Callable[[], float] = time.monotonic):
        self.link = link
        self.put = put
        self.clock = clock
        self.topic = command_topic(link)
        self.dropped = 0  # presses and refusals not let into the inbox (a flood)
        self._said = 0  # of which said in an event already
        self._tokens, self._filled = float(BURST), clock()
        link.subscribe(self.topic, self.on_press, on_retained=self.on_retained)

    def on_press(self, topic: str, payload: bytes) -> None:
        if not payload:
            return  # someone cleared a retained command: nothing was asked
        if not self._admit():
            return
        if payload.strip() != PRESS:
            shown = payload[:40].decode("utf-8", "replace")
            self._refuse(f"the payload must be {PRESS.decode()!r}, not {shown!r} ({len(payload)} bytes)")
            return
        self.put(Notice("mqtt.command", {"command": "gate.open", "topic": topic, **self._dropped()}))
        self.put(Command("gate.open", {}, self._answer))

    def on_retained(self, topic: str, payload: bytes) -> None:
        if self._admit():
            self._refuse("a retained command is never obeyed (clear it: publish an empty retained message)")

    def _admit(self) -> bool:
        """Whether one more may go into the inbox now (called on the link's one network thread)."""
        now = self.clock()
        self._tokens, self._filled = min(float(BURST), self._tokens + (now - self._filled) * RATE), now
        if self._tokens < 1.0:
            self.dropped += 1
            return False
        self._tokens -= 1.0
        return True

    def _dropped(self) -> dict[str, int]:
        """``{"dropped": n}`` when presses were dropped since the last event said so, else nothing."""
        if self.dropped == self._said:
            return {}
        self._said = self.dropped
        return {"dropped": self.dropped}

    def _refuse(self, reason: str) -> None:
        self.put(Notice("mqtt.command_refused", {"topic": self.topic, "reason": reason, **self._dropped()}))
        self._answer({"ok": False, "message": reason})

    def _answer(self, answer: dict) -> None:
        with contextlib.suppress(Exception):  # the loop's reply: queued, never waits
            self.link.publish(self.link.topic("command", "result"), {"command": "gate.open", **answer})
