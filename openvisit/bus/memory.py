"""In-process bus: the embedded default (one process serves every socket)."""

from __future__ import annotations

import json

from openvisit.bus.base import Bus, Message


class MemoryBus(Bus):
    async def publish(self, channel: str, message: Message) -> None:
        # Round-trip through JSON so both backends accept and deliver exactly the same things.
        self.hub.dispatch(channel, json.loads(json.dumps(message)))

    async def ping(self) -> None:
        return None
