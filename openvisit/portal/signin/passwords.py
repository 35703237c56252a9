"""Password hashing and checking off the event loop, in a bounded number of threads.

An argon2id verification costs ~0.2 s of CPU on purpose. Run on the event loop it would stop
every other request of the process (pages, WebSockets, ``/healthz``) for that long, and a few
concurrent sign-ins would stop it for seconds. So hashing and checking run in a pool of its
own, ``portal_password_threads`` threads per process (argon2-cffi releases the GIL); up to
``portal_password_queue`` more calls wait for a thread, and past that a sign-in is answered
"busy, try again in a moment" (429) at once: a flood of sign-ins costs a bounded number of
threads and a bounded queue, never a thread each.

The pool's threads run at a lower CPU priority (nice +10, on Linux per thread, inherited by
the lane threads argon2 starts), so when sign-ins keep every core busy the event loop still
gets the CPU first: pages and health checks stay fast while sign-ins wait their turn.

Contract: :meth:`PasswordWorkers.run` returns the function's result or raises
:class:`SigninBusy`. One :class:`PasswordWorkers` per process, in ``AppContext.services``.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from openvisit.context import AppContext
from openvisit.errors import OpenVisitError
from openvisit.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")
#: How much lower than the event loop the hashing threads run (``nice`` increment).
NICE = 10


class SigninBusy(OpenVisitError):
    """Every password thread is busy and the queue is full."""

    status_code = 429
    code = "signin_busy"

    def __init__(self) -> None:
        super().__init__("Many people are signing in right now. Wait a few seconds and try "
                         "again.", title="Sign-in busy", permanent=False)
        self.retry_after = 5


def _lower_priority() -> None:
    # Linux keeps a nice value per thread (PRIO_PROCESS with a thread id); elsewhere this
    # would renice the whole process, so it is only done where it means the thread.
    if not hasattr(os, "setpriority") or not os.path.isdir("/proc/self/task"):
        return
    try:
        import threading

        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + NICE)
    except OSError:
        pass


class PasswordWorkers:
    """At most ``threads`` argon2 calls at once; at most ``queue`` more waiting."""

    def __init__(self, *, threads: int, queue: int) -> None:
        self.threads = threads
        self.queue = queue
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ov-argon2",
                                        initializer=_lower_priority)
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Calls running or waiting now."""
        return self._admitted

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """``function(*args)`` in a password thread; :class:`SigninBusy` when full."""
        if self._admitted >= self.threads + self.queue:
            log.warning("portal_password_queue_full", admitted=self._admitted)
            raise SigninBusy()
        self._admitted += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, functools.partial(function, *args))
        finally:
            self._admitted -= 1

    async def aclose(self) -> None:
        """Stop the threads (``AppContext.close`` calls this); queued calls are dropped."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def workers(app: AppContext) -> PasswordWorkers:
    """This process's password workers (made on first use from the settings)."""
    found = app.services.password_workers
    if found is None:
        found = PasswordWorkers(threads=app.settings.portal_password_threads,
                                queue=app.settings.portal_password_queue)
        app.services.password_workers = found
    return found
