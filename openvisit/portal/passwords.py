"""Password hashing and checking off the event loop, in a bounded number of threads.

An argon2id verification costs ~0.2 s of CPU on purpose. Run on the event loop it would stop
every other request of the process (pages, WebSockets, ``/healthz``) for that long, and a few
concurrent sign-ins would stop it for seconds. So hashing and checking run in worker threads
(argon2-cffi releases the GIL), at most ``portal_password_threads`` at once per process; up to
``portal_password_queue`` more wait for a thread, and past that a sign-in is answered "busy,
try again in a moment" (429) at once: a flood of sign-ins costs a bounded number of threads
and a bounded queue, never a thread each.

Contract: :meth:`PasswordWorkers.run` returns the function's result or raises
:class:`SigninBusy`. One :class:`PasswordWorkers` per process, in ``AppContext.extras``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from openvisit.context import AppContext
from openvisit.errors import OpenVisitError
from openvisit.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")
EXTRAS_KEY = "portal.passwords"


class SigninBusy(OpenVisitError):
    """Every password thread is busy and the queue is full."""

    status_code = 429
    code = "signin_busy"

    def __init__(self) -> None:
        super().__init__("Many people are signing in right now. Wait a few seconds and try "
                         "again.", title="Sign-in busy", permanent=False)
        self.retry_after = 5


class PasswordWorkers:
    """At most ``threads`` argon2 calls at once; at most ``queue`` more waiting."""

    def __init__(self, *, threads: int, queue: int) -> None:
        self.threads = threads
        self.queue = queue
        self._limiter = anyio.CapacityLimiter(threads)
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Calls running or waiting now."""
        return self._admitted

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """``function(*args)`` in a worker thread; :class:`SigninBusy` when full."""
        if self._admitted >= self.threads + self.queue:
            log.warning("portal_password_queue_full", admitted=self._admitted)
            raise SigninBusy()
        self._admitted += 1
        try:
            return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)
        finally:
            self._admitted -= 1


def workers(app: AppContext) -> PasswordWorkers:
    """This process's password workers (made on first use from the settings)."""
    found = app.extras.get(EXTRAS_KEY)
    if not isinstance(found, PasswordWorkers):
        found = PasswordWorkers(threads=app.settings.portal_password_threads,
                                queue=app.settings.portal_password_queue)
        app.extras[EXTRAS_KEY] = found
    return found
