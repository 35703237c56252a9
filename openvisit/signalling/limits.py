"""What one client may make a web process hold or do: pure counters, no framework.

- :class:`HelloGate` counts sockets that have not said a valid ``hello`` yet, per client
  address and in the whole process (``ws_unauthenticated_per_address``/``_total``);
- :class:`TokenBucket` is the classic rate limiter (capacity ``burst``, refilled at ``rate``
  per second); :class:`SenderBudget` holds one per kind of frame a socket sends, plus the
  "strikes" that decide when a sender that keeps flooding is closed.

Addresses are what uvicorn reports (X-Forwarded-For only from trusted proxies). IPv6 clients
are counted per /64, the block one subscriber usually holds, so rotating addresses inside it
does not multiply the allowance.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from openvisit.config import Settings

#: A sender may have this many frames dropped (refilled one a second) before it is closed.
STRIKES = 60


def address_key(host: str | None) -> str:
    """The key a client address is counted under (IPv6: its /64 network)."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class HelloGate:
    """Places for sockets before ``hello``; :meth:`enter` fails when the address or the
    process is full. Every successful ``enter`` must be matched by one ``leave``."""

    def __init__(self, *, per_address: int, total: int) -> None:
        self.per_address = per_address
        self.total = total
        self._by_key: dict[str, int] = {}
        self._count = 0
        #: Sockets refused so far (for sampled logging).
        self.refused = 0

    def enter(self, key: str) -> bool:
        held = self._by_key.get(key, 0)
        if held >= self.per_address or self._count >= self.total:
            return False
        self._by_key[key] = held + 1
        self._count += 1
        return True

    def leave(self, key: str) -> None:
        held = self._by_key.get(key, 0)
        if held <= 0:
            return
        self._count -= 1
        if held == 1:
            del self._by_key[key]
        else:
            self._by_key[key] = held - 1

    def held(self, key: str | None = None) -> int:
        return self._count if key is None else self._by_key.get(key, 0)


@dataclass
class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; :meth:`take` spends one if it can."""

    burst: float
    rate: float
    tokens: float = field(default=-1.0)
    stamp: float = 0.0

    def take(self, now: float, cost: float = 1.0) -> bool:
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


#: The budget each client frame type is charged to.
KIND_BUDGET = {"candidate": "candidate", "offer": "sdp", "answer": "sdp", "restart": "restart"}


class SenderBudget:
    """The rate limits of one socket's frames (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.buckets = {
            "candidate": TokenBucket(settings.ws_candidates_burst,
                                     settings.ws_candidates_per_second),
            "sdp": TokenBucket(settings.ws_sdp_burst, settings.ws_sdp_per_second),
            "restart": TokenBucket(settings.ws_restarts_burst, settings.ws_restarts_per_second),
            "other": TokenBucket(settings.ws_other_burst, settings.ws_other_per_second),
        }
        self.strikes = TokenBucket(STRIKES, 1.0)
        self.dropped = 0

    def allow(self, kind: str, now: float) -> bool:
        """May a frame of ``kind`` go through now? (Charges its bucket.)"""
        return self.buckets[KIND_BUDGET.get(kind, "other")].take(now)

    def strike(self, now: float) -> bool:
        """Count one dropped frame; False once the sender has used up its strikes."""
        self.dropped += 1
        return self.strikes.take(now)
