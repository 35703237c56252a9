"""Pub/sub bus: one interface, two backends (in-process for the embedded default, Redis)."""

from openvisit.bus.base import RESYNC, Bus, Message, Subscription
from openvisit.bus.memory import MemoryBus
from openvisit.bus.redis import RedisBus


def create_bus(redis_url: str) -> Bus:
    """Redis when a URL is configured, else the in-process bus (single web process only)."""
    return RedisBus(redis_url) if redis_url else MemoryBus()


__all__ = ["RESYNC", "Bus", "MemoryBus", "Message", "RedisBus", "Subscription", "create_bus"]
