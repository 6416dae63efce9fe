"""The controller's status for every open page: asked once per ``poll_seconds`` whoever watches,
with the database's change marks (the newest event, the residents' mark) read in the same poll.

One asyncio task asks the control socket (in a thread: the request blocks) while at least one browser
listens, and hands each answer to every listener's one-place queue (a slow browser skips to the
newest). Twenty browsers cost the controller what one does. A page that is rendered takes the last
answer if it is fresh, or asks once for all the pages waiting at that moment.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

from ..errors import LotControlError


@dataclass(frozen=True)
class Snapshot:
    seq: int
    status: dict[str, Any] | None  # None: the controller could not be asked
    error: Exception | None  # why the controller gave no status: said in the page's language (web/said.py)
    at: float  # time.monotonic()
    marks: dict[str, Any] | None = None  # the database's change marks (``StatusFeed.marks``); None: not read


class StatusFeed:
    def __init__(self, ask: Callable[[], dict[str, Any]], poll_seconds: float,
                 marks: Callable[[], dict[str, Any] | None] | None = None):
        """``ask``: one status request to the controller (blocking; raises LotControlError). ``marks``:
        the database's cheap change marks (blocking; None when it cannot be read), read in the same
        poll: the events and residents pages update when theirs moves."""
        self.ask, self.poll_seconds, self.marks = ask, poll_seconds, marks
        self.latest: Snapshot | None = None
        self.requests = 0  # how many times the controller was asked
        self._listeners: set[asyncio.Queue] = set()
        self._task: asyncio.Task | None = None
        self._fetching: asyncio.Future | None = None

    async def fetch(self) -> Snapshot:
        """Ask the controller now, once for every caller waiting at the same time."""
        if self._fetching is not None:
            return await asyncio.shield(self._fetching)
        self._fetching = asyncio.get_running_loop().create_future()
        try:
            self.requests += 1
            try:
                answer = await asyncio.to_thread(self.ask)
                status, error = answer, None
            except LotControlError as exc:
                status, error = None, exc
            marks = await asyncio.to_thread(self.marks) if self.marks is not None else None
            seq = (self.latest.seq + 1) if self.latest else 1
            self.latest = Snapshot(seq, status, error, time.monotonic(), marks)
            self._fetching.set_result(self.latest)
            for queue in list(self._listeners):
                if queue.full():
                    queue.get_nowait()  # a slow browser gets the newest, not a backlog
                queue.put_nowait(self.latest)
            return self.latest
        except BaseException as exc:
            self._fetching.set_exception(exc)
            self._fetching.exception()  # retrieved: no "never retrieved" warning
            raise
        finally:
            self._fetching = None

    async def current(self) -> Snapshot:
        """The last answer if it is younger than poll_seconds, else a new one."""
        if self.latest is not None and time.monotonic() - self.latest.at < self.poll_seconds:
            return self.latest
        return await self.fetch()

    async def listen(self) -> AsyncIterator[Snapshot]:
        """Every new answer, the current one first, for as long as the caller iterates."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=1)
        self._listeners.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll())
        try:
            last = await self.current()
            yield last
            while True:
                snapshot = await queue.get()
                if snapshot.seq > last.seq:  # the first answer may come in the queue too
                    last = snapshot
                    yield snapshot
        finally:
            self._listeners.discard(queue)

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    async def _poll(self) -> None:
        while self._listeners:
            await asyncio.sleep(self.poll_seconds)
            if self._listeners:
                await self.fetch()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
