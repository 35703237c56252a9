"""The application context: the long-lived objects one process shares.

Built once from :class:`~openvisit.config.Settings` by every process role (web, worker, mllp)
and handed to request dependencies and job handlers, so nothing reaches for globals.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.bus import Bus, create_bus
from openvisit.config import Settings
from openvisit.crypto import FieldCipher, KeyedHasher
from openvisit.db import Database, after_commit
from openvisit.privacy.refs import PatientRefs

if TYPE_CHECKING:  # the holders' types only; the objects are made by their packages
    from openvisit.devicetest.limits import ResultLimiter
    from openvisit.devicetest.loopback import LoopbackCalls
    from openvisit.feed.intake import SiuFeed
    from openvisit.feed.senders import SenderDirectory
    from openvisit.feed.signing import Verifier
    from openvisit.idp.client import IdpClient
    from openvisit.launch.service import LaunchCaches
    from openvisit.media.backend import MediaBackend
    from openvisit.notify.transport import EmailTransport, SmsTransport
    from openvisit.portal.signin.passwords import PasswordWorkers
    from openvisit.signalling.limits import HelloGate
    from openvisit.signalling.rooms import Rooms
    from openvisit.smart.idtoken import JwksCache
    from openvisit.smart.keys import KeySet
    from openvisit.visits.tokens import JoinLinks
    from openvisit.writeback.tokens import BackendTokens

JOBS_CHANNEL = "jobs.wakeup"


@dataclass
class Services:
    """The long-lived objects domain packages make for one process, one typed field each.

    Each is made on first use by its package's accessor (named beside each field), so a
    process that never serves a device test never starts its peers, and tests plant their
    own by assigning the field. :meth:`AppContext.close` closes those that hold connections
    or threads. A new package adds its field here, never a string key.
    """

    #: :func:`openvisit.visits.service.join_links`: the HKDF-derived link key (one per process).
    join_links: JoinLinks | None = None
    #: :func:`openvisit.visits.tx.transaction`: queues the room's SQLite transactions.
    sqlite_gate: asyncio.Lock | None = None
    #: :func:`openvisit.notify.providers.sms_transport` and ``email_transport``, by provider.
    sms_transports: dict[str, SmsTransport] = field(default_factory=dict)
    email_transports: dict[str, EmailTransport] = field(default_factory=dict)
    #: :func:`openvisit.feed.http.siu_feed`, ``verifier_for`` and
    #: :func:`openvisit.feed.senders.directory_for`.
    siu_feed: SiuFeed | None = None
    siu_verifier: Verifier | None = None
    siu_senders: SenderDirectory | None = None
    #: :func:`openvisit.devicetest.views.loopback_calls` and ``result_limiter``.
    devicetest_calls: LoopbackCalls | None = None
    devicetest_results: ResultLimiter | None = None
    #: :func:`openvisit.outbound.portal_http`: the guarded client for portal-driven requests.
    portal_http: httpx.AsyncClient | None = None
    #: :func:`openvisit.portal.signin.passwords.workers`: the argon2 threads.
    password_workers: PasswordWorkers | None = None
    #: The launch's discovery/JWKS caches and signing keys; the organisation IdP client; the
    #: approval's JWKS cache.
    launch_caches: LaunchCaches | None = None
    launch_keyset: tuple[str, KeySet] | None = None
    idp: IdpClient | None = None
    portal_jwks: JwksCache | None = None
    #: :func:`openvisit.writeback.tokens.backend_tokens`: backend-services tokens per endpoint.
    writeback_tokens: BackendTokens | None = None
    #: :func:`openvisit.media.backends.backend_named`: the media backends in use, by name.
    media_backends: dict[str, MediaBackend] = field(default_factory=dict)
    #: :func:`openvisit.signalling.endpoint.rooms_of` and ``gate_of``: this process's visit
    #: rooms and its count of sockets that have not said hello yet.
    visit_rooms: Rooms | None = None
    hello_gate: HelloGate | None = None

    async def aclose(self) -> None:
        """Close what holds connections or threads (transports, peers, clients, pools)."""
        transports: list[SmsTransport | EmailTransport] = [
            *self.sms_transports.values(), *self.email_transports.values()]
        self.sms_transports, self.email_transports = {}, {}
        for transport in transports:
            await transport.aclose()
        if self.devicetest_calls is not None:
            await self.devicetest_calls.aclose()
            self.devicetest_calls = None
        backends, self.media_backends = list(self.media_backends.values()), {}
        for backend in backends:
            await backend.aclose()
        if self.portal_http is not None:
            await self.portal_http.aclose()
            self.portal_http = None
        if self.password_workers is not None:
            await self.password_workers.aclose()
            self.password_workers = None


@dataclass
class AppContext:
    settings: Settings
    db: Database
    bus: Bus
    cipher: FieldCipher
    hasher: KeyedHasher
    #: Patient references: keyed hash + sealed copy (derived from ``cipher``'s keys).
    refs: PatientRefs = field(init=False)
    #: Per-process services, typed (see :class:`Services`).
    services: Services = field(default_factory=Services)
    http: httpx.AsyncClient = field(
        default_factory=lambda: httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=5.0),
            headers={"User-Agent": "OpenVisit"},
            follow_redirects=False,
        )
    )

    def __post_init__(self) -> None:
        self.refs = PatientRefs(self.cipher)

    @classmethod
    def create(cls, settings: Settings) -> AppContext:
        return cls(
            settings=settings,
            db=Database(settings.database_url),
            bus=create_bus(settings.redis_url),
            cipher=FieldCipher.from_settings(settings),
            hasher=KeyedHasher(settings.secret_key),
        )

    async def start(self) -> None:
        """Connect the bus and, on the embedded default, bring the schema up to date."""
        if self.settings.should_auto_migrate:
            from openvisit.migrate import upgrade_async

            await upgrade_async(self.db)
        await self.bus.start()

    async def close(self) -> None:
        await self.services.aclose()
        await self.bus.close()
        await self.http.aclose()
        await self.db.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A database transaction that wakes workers after commit if it enqueued jobs."""
        async with self.db.transaction() as session:
            yield session
            if session.info.get("openvisit.jobs_enqueued"):
                after_commit(session, self._wake_workers)

    async def _wake_workers(self) -> None:
        await self.bus.publish(JOBS_CHANNEL, {"wake": True})
