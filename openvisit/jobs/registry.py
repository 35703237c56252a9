"""Job handlers by kind, periodic jobs, and the context a handler receives."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.errors import ConfigurationError

if TYPE_CHECKING:
    from openvisit.context import AppContext


@dataclass(frozen=True)
class JobContext:
    """What a handler gets: the job's data and a session in the job's own transaction.

    Database changes made through ``session`` commit together with the job being marked
    done. ``idempotency_key`` must be passed to any outside call that supports one.
    """

    job_id: int
    kind: str
    payload: dict[str, Any]
    idempotency_key: str
    attempt: int
    session: AsyncSession
    app: AppContext


Handler = Callable[[JobContext], Awaitable[None]]


class Defer(Exception):
    """Raised by a handler to run the job again at ``until`` without spending an attempt.

    For waits that are not failures: quiet hours, a per-number send rate limit. Database
    changes the handler made before raising are rolled back.
    """

    def __init__(self, until: datetime, *, reason: str) -> None:
        super().__init__(reason)
        self.until = until
        self.reason = reason


_HANDLERS: dict[str, Handler] = {}
_PERIODIC: dict[str, timedelta] = {}



def job_handler(kind: str) -> Callable[[Handler], Handler]:
    """Register ``func`` as the handler of jobs of ``kind`` (one handler per kind)."""

    def register(func: Handler) -> Handler:
        existing = _HANDLERS.get(kind)
        if existing is not None and existing is not func:
            raise ConfigurationError(f"Two handlers registered for job kind {kind!r}.")
        _HANDLERS[kind] = func
        return func

    return register


def periodic_job(kind: str, *, every: timedelta) -> None:
    """Ask workers to enqueue a ``kind`` job once per ``every`` (idempotent per time bucket)."""
    _PERIODIC[kind] = every


def get_handler(kind: str) -> Handler | None:
    return _HANDLERS.get(kind)


def periodic_jobs() -> dict[str, timedelta]:
    return dict(_PERIODIC)


def load_modules(extra: list[str]) -> None:
    """Register the product's own job handlers, then the configured plug-in modules.

    The product's handlers are plain imports: importing each ``tasks`` module runs its
    ``@job_handler`` lines (imported here, not at the top, because those modules import this
    one to enqueue). ``extra`` is ``OPENVISIT_JOB_MODULES``: a deployment's own handlers,
    named in its configuration, which OpenVisit's code cannot name, hence the one dynamic
    import. Raises :class:`ConfigurationError` for a plug-in module that cannot be imported.
    """
    # Imported for their @job_handler registrations: nonce purge; send and contact purge;
    # number provisioning; media grants and rooms; the presence sweep; EHR write-back;
    # retention.
    import openvisit.launch.tasks
    import openvisit.media.tasks
    import openvisit.notify.tasks
    import openvisit.portal.tasks
    import openvisit.privacy.tasks
    import openvisit.visits.tasks
    import openvisit.writeback.tasks  # noqa: F401

    for name in extra:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(
                f"Job module {name!r} (OPENVISIT_JOB_MODULES) cannot be imported: {exc}"
            ) from exc
