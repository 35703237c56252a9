"""The bus interface and the local fan-out hub both backends dispatch through.

Delivery is at-most-once and best effort, by design: the database is the source of truth and
the bus only says "something changed, here is what". A subscriber that may have missed
messages (its queue overflowed, or the Redis connection dropped) receives the :data:`RESYNC`
marker and must reload its state from the database.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

Message = dict[str, Any]
#: Channel name delivered to a subscription that may have missed messages.
RESYNC = "__resync__"


class Subscription:
    """A subscriber's inbox for one or more channels."""

    def __init__(self, channels: tuple[str, ...], *, maxsize: int = 1000) -> None:
        self.channels = channels
        self._queue: asyncio.Queue[tuple[str, Message]] = asyncio.Queue(maxsize=maxsize)
        self._overflowed = False

    def deliver(self, channel: str, message: Message) -> None:
        if self._overflowed:
            return
        try:
            self._queue.put_nowait((channel, message))
        except asyncio.QueueFull:
            # A consumer this far behind must resync from the database anyway: drop the
            # backlog and tell it so, rather than growing memory without bound.
            self._overflowed = True
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait((RESYNC, {}))

    def resync(self) -> None:
        self.deliver(RESYNC, {})

    def pending(self) -> int:
        """How many messages wait in this inbox (0: :meth:`get` would wait)."""
        return self._queue.qsize()

    async def get(self, timeout: float | None = None) -> tuple[str, Message]:
        """The next (channel, message); raises :class:`TimeoutError` after ``timeout``."""
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item[0] == RESYNC:
            self._overflowed = False
        return item

    def __aiter__(self) -> AsyncIterator[tuple[str, Message]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[tuple[str, Message]]:
        while True:
            yield await self.get()


class LocalHub:
    """Dispatches messages to the subscriptions of this process."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)

    def add(self, sub: Subscription) -> list[str]:
        """Register ``sub``; returns the channels that had no subscriber before."""
        new = [c for c in sub.channels if not self._subs.get(c)]
        for channel in sub.channels:
            self._subs[channel].add(sub)
        return new

    def remove(self, sub: Subscription) -> list[str]:
        """Unregister ``sub``; returns the channels that now have no subscriber."""
        gone = []
        for channel in sub.channels:
            subs = self._subs.get(channel)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[channel]
                    gone.append(channel)
        return gone

    def dispatch(self, channel: str, message: Message) -> None:
        for sub in tuple(self._subs.get(channel, ())):
            sub.deliver(channel, message)

    def resync_all(self) -> None:
        for sub in {s for subs in self._subs.values() for s in subs}:
            sub.resync()

    @property
    def channels(self) -> list[str]:
        return list(self._subs)


class Bus(ABC):
    """Publish JSON-able messages on named channels; subscribe to them."""

    def __init__(self) -> None:
        self.hub = LocalHub()

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect (no-op for the in-process bus)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Disconnect and stop background tasks."""

    @abstractmethod
    async def publish(self, channel: str, message: Message) -> None:
        """Send ``message`` to every subscriber of ``channel`` in every process."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise if the bus cannot carry messages right now."""

    async def _on_first_subscriber(self, channels: list[str]) -> None:  # noqa: B027
        """Backend hook: start listening to ``channels``."""

    async def _on_last_unsubscribe(self, channels: list[str]) -> None:  # noqa: B027
        """Backend hook: stop listening to ``channels``."""

    @asynccontextmanager
    async def subscribe(self, *channels: str, maxsize: int = 1000) -> AsyncIterator[Subscription]:
        """Subscribe for the duration of the ``async with`` block."""
        sub = Subscription(channels, maxsize=maxsize)
        new = self.hub.add(sub)
        try:
            if new:
                await self._on_first_subscriber(new)
            yield sub
        finally:
            gone = self.hub.remove(sub)
            if gone:
                await self._on_last_unsubscribe(gone)
