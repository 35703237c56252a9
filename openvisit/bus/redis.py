"""Redis pub/sub bus: lets any web replica serve any socket.

One Redis connection per process carries every channel this process listens to; messages
fan out to local subscriptions through the hub. If the connection drops, the reader
reconnects with backoff, re-subscribes, and tells every subscription to resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from openvisit.bus.base import Bus, Message
from openvisit.logs import get_logger

log = get_logger(__name__)


class RedisBus(Bus):
    def __init__(self, url: str, *, prefix: str = "openvisit:") -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=3, socket_timeout=5, health_check_interval=15
        )
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._has_channels = asyncio.Event()
        #: Redis confirms a SUBSCRIBE asynchronously; these are resolved by the reader when
        #: the confirmation arrives, so ``subscribe()`` returns only once messages will flow.
        self._confirming: dict[str, list[asyncio.Future[None]]] = {}

    async def start(self) -> None:
        self._pubsub = self._redis.pubsub()
        self._reader = asyncio.create_task(self._read_loop(), name="redis-bus-reader")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8.2
        await self._redis.aclose()

    async def publish(self, channel: str, message: Message) -> None:
        await self._redis.publish(self.prefix + channel, json.dumps(message))

    async def ping(self) -> None:
        await asyncio.wait_for(self._redis.ping(), timeout=2.0)

    async def _on_first_subscriber(self, channels: list[str]) -> None:
        assert self._pubsub is not None, "RedisBus.start() was not called"
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[None]] = []
        for channel in channels:
            future: asyncio.Future[None] = loop.create_future()
            self._confirming.setdefault(self.prefix + channel, []).append(future)
            waits.append(future)
        async with self._lock:
            await self._pubsub.subscribe(*(self.prefix + c for c in channels))
            self._has_channels.set()
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout=5.0)
        except TimeoutError:
            # The reader reconnects and resyncs on its own; a subscriber is never stuck here.
            log.warning("bus_subscribe_unconfirmed", channels=len(channels))

    async def _on_last_unsubscribe(self, channels: list[str]) -> None:
        if self._pubsub is None:
            return
        async with self._lock:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(*(self.prefix + c for c in channels))

    async def _read_loop(self) -> None:
        backoff = 0.5
        while True:
            await self._has_channels.wait()
            assert self._pubsub is not None
            try:
                raw: dict[str, Any] | None = await self._pubsub.get_message(
                    ignore_subscribe_messages=False, timeout=1.0
                )
                backoff = 0.5
            except (RedisError, OSError, RuntimeError):
                log.warning("bus_connection_lost", backoff_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                await self._resubscribe()
                continue
            if raw is None:
                continue
            channel = raw["channel"]
            if isinstance(channel, bytes):
                channel = channel.decode()
            if raw.get("type") == "subscribe":
                for future in self._confirming.pop(channel, []):
                    if not future.done():
                        future.set_result(None)
                continue
            if raw.get("type") != "message":
                continue
            try:
                message = json.loads(raw["data"])
            except (ValueError, TypeError):
                log.warning("bus_message_not_json", channel=channel)
                continue
            self.hub.dispatch(channel.removeprefix(self.prefix), message)

    async def _resubscribe(self) -> None:
        """Open a fresh pub/sub connection for the current channels; tell everyone to resync."""
        async with self._lock:
            old = self._pubsub
            self._pubsub = self._redis.pubsub()
            if old is not None:
                with contextlib.suppress(RedisError, OSError):
                    await old.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8.2
            channels = self.hub.channels
            if not channels:
                # A pub/sub with no channel has no connection to read from yet.
                self._has_channels.clear()
            try:
                if channels:
                    await self._pubsub.subscribe(*(self.prefix + c for c in channels))
            except (RedisError, OSError):
                return
        log.info("bus_reconnected", channels=len(channels))
        self.hub.resync_all()
