"""Throttle failed local sign-ins, so passwords cannot be guessed at the portal's speed.

Two counters per 15-minute window, kept in the database so every web replica sees them:

- per (account name, client address): after 5 failures that name is refused *from that
  address* until the window ends. An attacker elsewhere cannot lock a real administrator out;
- per client address: after 30 failures, whatever the names, the address is refused.

A refused attempt does not even check the password, and says when to try again. A success
clears its (name, address) counter. Keys are keyed hashes (``AppContext.hasher``): neither
names nor addresses are stored or logged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.crypto import KeyedHasher
from openvisit.errors import OpenVisitError
from openvisit.logging import get_logger
from openvisit.models import SigninFailure, utcnow

log = get_logger(__name__)

WINDOW = timedelta(minutes=15)
PER_NAME = 5
PER_ADDRESS = 30
FORGET_AFTER = timedelta(days=1)


class TooManySignins(OpenVisitError):
    status_code = 429
    code = "too_many_signins"

    def __init__(self, retry_after: timedelta) -> None:
        minutes = max(1, math.ceil(retry_after.total_seconds() / 60))
        super().__init__(
            f"Too many failed sign-ins from here. Wait {minutes} minute"
            f"{'s' if minutes != 1 else ''} and try again, or ask an administrator of your "
            "organisation to reset your password.",
            title="Sign-in paused",
            permanent=False,
        )
        self.retry_after = int(retry_after.total_seconds()) + 1


@dataclass(frozen=True)
class SigninThrottle:
    """The two counters that apply to one attempt."""

    name_key: str
    address_key: str

    @classmethod
    def of(cls, hasher: KeyedHasher, *, login: str, address: str) -> SigninThrottle:
        return cls(
            name_key=hasher.hash(f"signin-name|{login.strip().lower()}|{address}"),
            address_key=hasher.hash(f"signin-address|{address}"),
        )

    async def check(self, session: AsyncSession, *, now: datetime | None = None) -> None:
        """Raise :class:`TooManySignins` while either counter is locked."""
        now = now or utcnow()
        for key in (self.name_key, self.address_key):
            row = await session.get(SigninFailure, key)
            if row is not None and row.locked_until is not None and row.locked_until > now:
                log.warning("portal_signin_throttled",
                            scope="name" if key == self.name_key else "address")
                raise TooManySignins(row.locked_until - now)

    async def failed(self, session: AsyncSession, *, now: datetime | None = None) -> None:
        """Count one failure on both counters; lock a counter that reached its limit."""
        now = now or utcnow()
        for key, limit in ((self.name_key, PER_NAME), (self.address_key, PER_ADDRESS)):
            row = await session.get(SigninFailure, key)
            if row is None:
                # Counters a day old tell nothing any more: drop them as new ones come.
                await session.execute(delete(SigninFailure).where(
                    SigninFailure.window_start < now - FORGET_AFTER))
                row = SigninFailure(key=key, failures=0, window_start=now)
                session.add(row)
            elif row.window_start + WINDOW <= now:
                row.failures, row.window_start, row.locked_until = 0, now, None
            row.failures += 1
            if row.failures >= limit:
                row.locked_until = row.window_start + WINDOW
        await session.flush()

    async def succeeded(self, session: AsyncSession) -> None:
        """A correct password from this address: its name counter starts again."""
        row = await session.get(SigninFailure, self.name_key)
        if row is not None:
            await session.delete(row)
            await session.flush()
