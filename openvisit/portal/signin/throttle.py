"""Throttle local sign-ins, so passwords cannot be guessed at the portal's speed.

Two counters per 15-minute window, kept in the database so every web replica sees them:

- per (account, client address): after 5 failures that account is refused *from that
  address* until the window ends. An attacker elsewhere cannot lock a real administrator out.
  The account is the canonical one the look-up found (its id), or the canonical spelling
  typed when none matches, so ``Admin``, ``acme/admin`` and a full-width ``ａｄｍｉｎ`` share
  one counter;
- per client address: after 30 failures, whatever the names, the address is refused.

**Count first, then check the password.** Each attempt adds one to both counters in a single
atomic upsert (``INSERT … ON CONFLICT DO UPDATE … RETURNING``, on SQLite and PostgreSQL alike),
committed in its own short transaction *before* the password is verified, and the counts it
returns decide: an attempt past a limit is refused without verifying anything. Concurrent
guesses therefore each get their own number, and at most 5 passwords are ever checked per
window however many arrive at once (a check-then-insert would let them all read "0" and all
be checked, and race on the insert). A success takes its attempt back: the account counter
starts again and the address counter goes down by one.

A refused attempt says when to try again. Keys are keyed hashes (``AppContext.hasher``):
neither names nor addresses are stored or logged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from openvisit.crypto import KeyedHasher
from openvisit.db import Database
from openvisit.errors import OpenVisitError
from openvisit.logs import get_logger
from openvisit.models import utcnow
from openvisit.portal import repository

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
        self.retry_after = max(1, int(retry_after.total_seconds()) + 1)


@dataclass(frozen=True)
class SigninThrottle:
    """The two counters that apply to one attempt."""

    name_key: str
    address_key: str

    @classmethod
    def of(cls, hasher: KeyedHasher, *, account: str, address: str) -> SigninThrottle:
        """``account`` is already canonical (an account id or the canonical spelling)."""
        return cls(
            name_key=hasher.hash(f"signin-name|{account}|{address}"),
            address_key=hasher.hash(f"signin-address|{address}"),
        )

    async def attempt(self, db: Database, *, now: datetime | None = None) -> None:
        """Count this attempt (committed at once); raise :class:`TooManySignins` past a limit.

        Uses its own transaction on purpose: the count must stand even if the request fails
        later, and no lock may be held while the password is being checked.
        """
        now = now or utcnow()
        async with db.transaction() as session:
            by_name = await repository.count_signin_attempt(session, key=self.name_key,
                                                            now=now, window=WINDOW)
            by_address = await repository.count_signin_attempt(session, key=self.address_key,
                                                               now=now, window=WINDOW)
            if by_address.attempts == 1:
                # A new window for this address: counters a day old tell nothing any more.
                await repository.forget_signin_counters(session, before=now - FORGET_AFTER)
        for counted, limit, scope in ((by_name, PER_NAME, "name"),
                                      (by_address, PER_ADDRESS, "address")):
            if counted.attempts > limit:
                log.warning("portal_signin_throttled", scope=scope)
                raise TooManySignins(counted.window_start + WINDOW - now)

    async def succeeded(self, db: Database) -> None:
        """A correct password: the account counter starts again, the address one gets its
        attempt back."""
        async with db.transaction() as session:
            await repository.clear_signin_counter(session, key=self.name_key)
            await repository.uncount_signin_attempt(session, key=self.address_key)
