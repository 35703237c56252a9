"""Settings: one object, read once at start-up. Nothing else in OpenVisit reads ``os.environ``.

Every setting comes from an ``OPENVISIT_``-prefixed environment variable (or a ``.env`` file).
Secrets also accept a ``*_FILE`` variant (``OPENVISIT_SECRET_KEY_FILE=/run/secrets/key``) so
they can come from Docker/Kubernetes secrets instead of the environment.

The embedded default needs no settings at all: SQLite in the working directory and an
in-process bus. Outside ``environment="development"`` placeholder secrets are refused, so a
production deployment cannot start with the demo key by accident.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from openvisit.errors import ConfigurationError
from openvisit.models.choices import EmailProvider, MediaBackend, SmsProvider

#: A well-known value that only development may use. Production refuses it (and anything short).
DEV_SECRET_KEY = "openvisit-development-secret-key-do-not-use-in-production"
_PLACEHOLDERS = {"", "changeme", "change-me", "changethis", "secret", DEV_SECRET_KEY}

#: Settings whose value may come from a file named by ``OPENVISIT_<NAME>_FILE``.
SECRET_FIELDS = (
    "secret_key",
    "field_encryption_keys",
    "database_url",
    "redis_url",
    "turn_secret",
    "oidc_client_secret",
    # Notifications
    "twilio_auth_token",
    "smpp_password",
    "azure_access_key",
    "smtp_password",
    "metrics_token",
    # Media backends
    "janus_url",
    "janus_api_secret",
    "janus_admin_key",
    "livekit_api_key",
    "livekit_api_secret",
)


class _FileSecretsSource(PydanticBaseSettingsSource):
    """Reads ``OPENVISIT_<NAME>_FILE`` for each secret field (trailing newline stripped)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in SECRET_FIELDS:
            path = os.environ.get(f"OPENVISIT_{name.upper()}_FILE")
            if path:
                try:
                    values[name] = Path(path).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ConfigurationError(
                        f"OPENVISIT_{name.upper()}_FILE names {path!r}, which cannot be read "
                        f"({exc.strerror})."
                    ) from exc
        return values


class Settings(BaseSettings):
    """Every setting of an OpenVisit deployment."""

    model_config = SettingsConfigDict(
        env_prefix="OPENVISIT_", env_file=".env", extra="ignore", frozen=True
    )

    environment: Literal["development", "test", "production"] = "development"
    #: The URL browsers and the EHR use to reach this deployment (links, redirect URIs).
    public_url: str = "http://127.0.0.1:8000"
    database_url: str = "sqlite+aiosqlite:///./openvisit.db"
    #: Empty = in-process bus (embedded default; only valid with a single web process).
    redis_url: str = ""
    secret_key: str = DEV_SECRET_KEY
    #: Comma-separated Fernet keys, newest first. Empty in development = derived from secret_key.
    field_encryption_keys: str = ""
    #: Run migrations on start-up (the embedded default); production runs `openvisit migrate`.
    auto_migrate: bool | None = None

    log_level: str = "INFO"
    log_json: bool = False

    # Durable jobs (see openvisit.jobs).
    job_lease_seconds: float = 60.0
    job_max_attempts: int = 8
    job_backoff_base_seconds: float = 5.0
    job_backoff_max_seconds: float = 3600.0
    job_poll_seconds: float = 1.0
    job_concurrency: int = 8
    #: Extra modules whose import registers job handlers (plug-ins).
    job_modules: list[str] = Field(default_factory=list)

    # MLLP listener.
    mllp_host: str = "127.0.0.1"
    mllp_port: int = 2575

    # TURN (coturn REST shared secret scheme).
    turn_urls: list[str] = Field(default_factory=list)
    turn_secret: str = ""
    turn_ttl_seconds: int = 3600
    stun_urls: list[str] = Field(default_factory=list)
    #: "relay" makes browsers use TURN only (JSEP RFC 8829 §4.1.1): for tests, or for sites
    #: that must never expose client addresses to peers.
    ice_transport_policy: Literal["all", "relay"] = "all"

    # Organisation IdP for provider/staff sign-in (OpenID Connect).
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""

    # Visits.
    join_window_before_minutes: int = 30
    join_window_after_minutes: int = 240
    #: The join window binds patients, not clinicians: a clinician may reopen a visit they
    #: ended (by mistake) for this long after it ended (0: never). A reopened visit takes
    #: patients again, for at least ``join_window_after_minutes`` from the reopening.
    visit_reopen_minutes: int = Field(default=30, ge=0, le=24 * 60)
    #: Invite links a visit may send by SMS or e-mail per hour (the clinician can always copy
    #: the link); the same link to the same address within the hour is one message.
    invite_sends_per_hour: int = Field(default=10, ge=0, le=1000)
    #: A clinician's join link also opens their clinic queue (``/v/{token}/queue``) until
    #: this long after its visit closed (ended, or its window passed): a working day.
    queue_link_hours: int = Field(default=12, ge=1, le=48)
    contact_grace_hours: int = 24
    #: Most participants admitted at once in a peer-to-peer mesh visit (each sends to all).
    mesh_max_participants: int = 6
    #: …and in a visit whose media go through an SFU (Janus, LiveKit): each browser sends
    #: once, so the limit is what a screen of tiles and the SFU can hold.
    sfu_max_participants: int = Field(default=16, ge=2, le=64)
    #: Device test: server-side loop-back calls held at once per web process (each decodes
    #: and re-encodes video), and the longest one may last.
    devicetest_max_calls: int = 8
    devicetest_call_seconds: int = 90
    #: …and at most this many of them for one client address (one machine cannot hold all).
    devicetest_calls_per_address: int = 2

    # Presence (openvisit.visits.presence): heartbeats and the sweep of dead sockets.
    #: A socket's ping refreshes its seat's ``last_seen_at`` at most this often.
    presence_heartbeat_seconds: float = Field(default=15.0, gt=0)
    #: A seat still "connected" but unseen for this long (its web process died) is marked
    #: disconnected by the periodic sweep. Pages ping every 20 s: keep this well above.
    presence_timeout_seconds: float = Field(default=75.0, gt=0)

    # Media (openvisit.media): which backend carries a new visit's audio and video.
    #: "mesh" (peer to peer over OpenVisit's signalling, the embedded default), "janus" or
    #: "livekit" (an SFU). A visit keeps the backend it was opened with. The SFUs' rooms and
    #: grants are managed; the room page's media path through them is not built yet
    #: (docs/deploy.md, "Status").
    media_backend: MediaBackend = "mesh"
    #: Janus's HTTP API, e.g. http://janus.internal:8088/janus (OpenVisit drives it; browsers
    #: never reach it with admin rights), its ``api_secret`` and the VideoRoom ``admin_key``.
    janus_url: str = ""
    janus_api_secret: str = ""
    janus_admin_key: str = ""
    #: Seconds a Janus request may take before it counts as failed (and its job retries).
    janus_timeout_seconds: float = 10.0
    #: LiveKit: the URL browsers connect to (wss://…) and the API key and secret that sign
    #: participant tokens and webhooks.
    livekit_url: str = ""
    livekit_api_key: str = ""
    livekit_api_secret: str = ""
    #: Lifetime of a participant's media grant (a LiveKit token); a page gets a new one on
    #: reconnect, and revocation does not wait for it to expire.
    media_grant_ttl_seconds: int = Field(default=600, ge=30, le=86_400)

    # Reports (openvisit.reports): a participant's call counts as poor when the 95th
    # percentile of its samples is over any of these (ITU-T G.114 puts one-way delay above
    # 150 ms, so a round trip above 400 ms, where conversation suffers).
    report_poor_rtt_ms: float = 400.0
    report_poor_jitter_ms: float = 50.0
    report_poor_loss_pct: float = 5.0
    #: Longest date range one report covers (days); a year and a day.
    report_max_days: int = 366

    # Notifications (openvisit.notify): SMS and e-mail confirmations and reminders.
    #: The SMS transport when the endpoint has no linked number naming its own provider.
    #: "outbox" keeps messages in the database for the /ops/outbox page (nothing leaves).
    sms_provider: SmsProvider = "outbox"
    #: "outbox" keeps e-mail in the database too; "smtp" sends through smtp_host.
    email_provider: EmailProvider = "outbox"
    #: Sending number (E.164) or alphanumeric sender id for endpoints without a linked number.
    sms_sender: str = ""
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    #: Twilio's API host; tests point it at a mock serving Twilio's OpenAPI spec.
    twilio_base_url: str = "https://api.twilio.com"
    smpp_host: str = ""
    smpp_port: int = 2775
    smpp_system_id: str = ""
    smpp_password: str = ""
    smpp_system_type: str = ""
    #: Keep an SMPP receiver bind (delivery receipts, STOP replies) in this web process.
    smpp_receiver: bool = True
    #: How long a send whose outcome is unknown waits for the SMSC's receipt before resending.
    smpp_receipt_wait_seconds: float = 300.0
    #: Azure Communication Services resource, e.g. https://NAME.communication.azure.com
    azure_endpoint: str = ""
    azure_access_key: str = ""
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: str = ""
    #: The From address of notification e-mail, e.g. visits@hospital.example
    smtp_from: str = ""
    smtp_starttls: bool = True
    #: Seconds a provider call may take before its outcome counts as unknown.
    notify_timeout_seconds: float = 15.0

    # Portal (openvisit.portal): staff sign-in, sessions, number provisioning.
    #: A signed-in portal session ends after this long without a request…
    portal_session_idle_minutes: int = 30
    #: …and in any case this long after sign-in.
    portal_session_max_hours: int = 12
    #: IdP subjects (``sub``) that become org admins of ``portal_default_organisation`` on
    #: their first sign-in: how a deployment with IdP sign-in only gets its first admin.
    portal_bootstrap_admin_subjects: list[str] = Field(default_factory=list)
    #: Slug of the organisation bootstrap admins join (created if missing).
    portal_default_organisation: str = "default"
    #: Data regions an organisation may be pinned to (DESIGN §2.10).
    portal_regions: list[str] = Field(
        default_factory=lambda: ["local", "us", "eu", "uk", "ca", "au", "apac"]
    )
    #: Seconds the outbox SMS provider waits between the steps of "provisioning" a number
    #: (it simulates a real provider's minutes-long purchase; nothing leaves the machine).
    portal_outbox_provision_step_seconds: float = 2.0

    # Scheduling feed (openvisit.feed): HL7 v2 SIU over MLLP and signed HTTPS.
    #: PEM certificate chain and key for MLLP over TLS (both empty = plain TCP).
    mllp_tls_cert: str = ""
    mllp_tls_key: str = ""
    #: CA bundle (PEM); when set, every MLLP client must present a certificate it signed.
    mllp_tls_ca: str = ""
    #: An idle connection (no byte outside a frame) is closed after this long.
    mllp_idle_timeout_seconds: float = 600.0
    #: A frame that stops arriving half-way is dropped (and the connection closed) after this.
    mllp_frame_timeout_seconds: float = 30.0
    mllp_max_frame_bytes: int = 1 << 20
    mllp_max_connections: int = 512
    #: Let several `openvisit mllp` processes share the port (SO_REUSEPORT, Linux): the
    #: kernel spreads connections over them, and each connection stays with one process.
    mllp_reuse_port: bool = False
    #: MSH-3/MSH-4 of our ACKs when the message did not name a receiver (MSH-5/MSH-6).
    hl7_ack_application: str = "OPENVISIT"
    hl7_ack_facility: str = "OPENVISIT"
    #: How long endpoint feed settings (senders, status map, zone) are cached per process.
    hl7_config_refresh_seconds: float = 5.0
    #: Allowed clock difference for iat/exp of signed HTTPS payloads (EHR-SPEC §6).
    hl7_jws_skew_seconds: int = 300

    # Security (issue 10): response headers and what is public.
    #: EHR origins (https://host[:port]) allowed to show the visit room, device test and
    #: launch pages inside their window for every organisation; each organisation adds its
    #: own EHR origins in the portal. Empty: only the organisations' lists apply.
    frame_ancestors: list[str] = Field(default_factory=list)
    #: Strict-Transport-Security max-age sent when public_url is https (0 = never send it).
    hsts_max_age_seconds: int = 31_536_000
    #: Serve /api/openapi.json and /api/docs. Unset: outside production only.
    expose_api_docs: bool | None = None
    #: Serve /metrics without a token. Unset: outside production only; in production,
    #: Prometheus sends ``Authorization: Bearer <metrics_token>``.
    expose_metrics: bool | None = None
    metrics_token: str = ""
    #: Show the version and backends on the home page. Unset: outside production only.
    expose_version: bool | None = None

    # Security (issue 10): EHR launch
    #: How long one organisation (IdP) sign-in vouches for the Epic-link provider launches of
    #: the same clinician in the same browser (HttpOnly cookie naming a server-side row).
    launch_provider_proof_hours: float = Field(default=12.0, gt=0, le=24 * 7)
    #: Expired launch states and nonces the periodic purge deletes per run (it runs again).
    nonce_purge_batch: int = Field(default=5000, ge=1)

    # Security (issue 10): realtime (signalling socket, device test, proxies, ICE).
    #: Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (uvicorn's
    #: ``forwarded_allow_ips``): comma-separated addresses or networks, "*" for any. Only
    #: list the load balancer: a forged header from anyone else is ignored.
    forwarded_allow_ips: str = "127.0.0.1,::1"
    #: Largest WebSocket message uvicorn reads (bytes); bigger frames are refused (close 1009)
    #: from their header, before their payload is buffered. A bit over the 64 KiB protocol cap.
    ws_max_size: int = Field(default=72 * 1024, ge=1024, le=1 << 20)
    #: Sockets that have not sent a valid ``hello`` yet, per client address (IPv6: per /64)
    #: and in the whole process; one more is closed at once (1013, try again later).
    ws_unauthenticated_per_address: int = Field(default=20, ge=1)
    ws_unauthenticated_total: int = Field(default=2000, ge=1)
    #: Seconds a new socket has to send ``hello`` before it is closed (4408).
    ws_hello_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    #: Relayed signalling per sending socket (token buckets: burst, then per second). A sender
    #: over budget has the excess dropped, and is closed (4429) if it keeps on.
    ws_candidates_burst: int = Field(default=120, ge=1)
    ws_candidates_per_second: float = Field(default=20.0, gt=0)
    ws_sdp_burst: int = Field(default=12, ge=1)
    ws_sdp_per_second: float = Field(default=1.0, gt=0)
    ws_restarts_burst: int = Field(default=6, ge=1)
    ws_restarts_per_second: float = Field(default=0.2, gt=0)
    #: Every other frame (ping, quality, leave, refused ones) per socket.
    ws_other_burst: int = Field(default=60, ge=1)
    ws_other_per_second: float = Field(default=10.0, gt=0)
    #: In-visit chat and lobby messages per sending seat in a web process (token buckets,
    #: kept across the seat's reconnects): the excess is dropped and counts as a strike.
    ws_chat_burst: int = Field(default=10, ge=1)
    ws_chat_per_second: float = Field(default=1.0, gt=0)
    ws_lobby_messages_burst: int = Field(default=3, ge=1)
    ws_lobby_messages_per_second: float = Field(default=0.1, gt=0)
    #: "relay": clinicians' browsers gather TURN relay candidates only (needs TURN), and the
    #: server drops any other candidate a staff seat sends to a patient, so patients never
    #: learn staff (hospital) addresses. "all": as ``ice_transport_policy``.
    staff_ice_transport_policy: Literal["all", "relay"] = "all"
    #: Device-test result posts accepted per context token and per client address in a
    #: rolling hour (per web process); more get 429 with Retry-After.
    devicetest_results_per_token_per_hour: int = Field(default=600, ge=1)
    devicetest_results_per_address_per_hour: int = Field(default=20, ge=1)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        import ipaddress

        for item in (part.strip() for part in value.split(",")):
            if not item or item == "*" or item.startswith("unix:"):
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"OPENVISIT_FORWARDED_ALLOW_IPS: {item!r} is not an IP address or network; "
                    "list your load balancer's addresses, e.g. 10.0.0.0/8,127.0.0.1."
                ) from None
        return value

    @model_validator(mode="after")
    def _staff_relay_needs_turn(self) -> Settings:
        if self.staff_ice_transport_policy == "relay" and not (
            self.turn_urls and self.turn_secret
        ):
            raise ValueError(
                "OPENVISIT_STAFF_ICE_TRANSPORT_POLICY=relay needs a TURN server: set "
                "OPENVISIT_TURN_URLS and OPENVISIT_TURN_SECRET, or use 'all'."
            )
        return self

    @model_validator(mode="after")
    def _media_backend_configured(self) -> Settings:
        if self.media_backend == "janus" and not self.janus_url:
            raise ValueError(
                "OPENVISIT_MEDIA_BACKEND=janus needs OPENVISIT_JANUS_URL (Janus's HTTP API, "
                "e.g. http://janus.internal:8088/janus).")
        if self.media_backend == "livekit" and not (
            self.livekit_url and self.livekit_api_key and self.livekit_api_secret
        ):
            raise ValueError(
                "OPENVISIT_MEDIA_BACKEND=livekit needs OPENVISIT_LIVEKIT_URL, "
                "OPENVISIT_LIVEKIT_API_KEY and OPENVISIT_LIVEKIT_API_SECRET.")
        if self.presence_timeout_seconds <= self.presence_heartbeat_seconds:
            raise ValueError(
                "OPENVISIT_PRESENCE_TIMEOUT_SECONDS must be longer than "
                "OPENVISIT_PRESENCE_HEARTBEAT_SECONDS, or live seats would be swept.")
        return self

    # Security (issue 10): portal sign-in, accounts, API tokens and outbound requests
    #: Password hashes checked at once, each in its own thread (argon2 takes ~0.2 s of CPU):
    #: the event loop never waits for one, and a flood of sign-ins cannot start more threads.
    portal_password_threads: int = Field(default=2, ge=1, le=64)
    #: Sign-ins that may wait for a free thread; beyond them a sign-in is told to retry (429).
    portal_password_queue: int = Field(default=64, ge=0, le=10_000)
    #: Outbound requests made for portal users (the FHIR base live check, approval discovery,
    #: token exchange, JWKS) may reach loopback, private (RFC 1918, ULA), link-local and CGNAT
    #: addresses. Unset: allowed in development and test (the sandbox on localhost), refused in
    #: production.
    outbound_allow_private: bool | None = None
    #: Host names and CIDR blocks those requests may reach even when private, e.g.
    #: ``["fhir.intranet.example", "10.20.0.0/16"]`` (a JSON list), for an EHR inside the network.
    outbound_allow_hosts: list[str] = Field(default_factory=list)
    #: The most bytes one such response may have (bigger ones are cut off and refused)…
    outbound_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    #: …and the longest one request may take, connecting and reading included.
    outbound_timeout_seconds: float = Field(default=15.0, gt=0, le=300)

    @field_validator("outbound_allow_hosts")
    @classmethod
    def _check_allowed_hosts(cls, value: list[str]) -> list[str]:
        import ipaddress

        cleaned = []
        for entry in (v.strip().lower().rstrip(".") for v in value):
            if not entry:
                continue
            if "/" in entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(
                        f"OPENVISIT_OUTBOUND_ALLOW_HOSTS: {entry!r} is not a CIDR block; write "
                        "e.g. 10.20.0.0/16 or fd00:1::/64, or a host name."
                    ) from None
            cleaned.append(entry)
        return cleaned

    @property
    def outbound_private_allowed(self) -> bool:
        """Whether portal-driven requests may reach non-public addresses (see above)."""
        if self.outbound_allow_private is not None:
            return self.outbound_allow_private
        return self.environment != "production"

    # Scheduling feed (issue 11)
    #: MLLP connections one client address may hold at once. Past it, that address's
    #: longest-idle connection makes room (an engine reconnecting after a silent network
    #: break is never locked out by its own stale connections); when all of them are busy the
    #: newcomer is refused. One address can so never fill mllp_max_connections.
    mllp_max_connections_per_peer: int = 32

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments win, then *_FILE secrets, then the environment, then .env.
        return (
            init_settings,
            _FileSecretsSource(settings_cls),
            env_settings,
            dotenv_settings,
        )

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.environment == "development":
            return self
        if self.secret_key.strip().lower() in _PLACEHOLDERS or len(self.secret_key) < 32:
            raise ValueError(
                "OPENVISIT_SECRET_KEY is a placeholder or shorter than 32 characters; outside "
                'development set a random value, e.g. `python -c "import secrets; '
                'print(secrets.token_urlsafe(48))"`.'
            )
        if not self.field_encryption_keys.strip():
            raise ValueError(
                "OPENVISIT_FIELD_ENCRYPTION_KEYS is empty; outside development contact details "
                "need their own Fernet key (`openvisit keys generate`)."
            )
        if self.uses_sqlite is False and not self.redis_url:
            raise ValueError(
                "OPENVISIT_REDIS_URL is empty but the database is not SQLite: several web "
                "processes need Redis for live updates. Set OPENVISIT_REDIS_URL."
            )
        return self

    def exposes(self, what: bool | None) -> bool:
        """An ``expose_*`` setting: explicit value, else true outside production."""
        return self.environment != "production" if what is None else what

    @cached_property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        return self.uses_sqlite if self.auto_migrate is None else self.auto_migrate

    def encryption_keys(self) -> list[str]:
        """Fernet keys, newest first; in development a key derived from ``secret_key``."""
        keys = [k.strip() for k in self.field_encryption_keys.split(",") if k.strip()]
        return keys


def load_settings(**overrides: Any) -> Settings:
    """Read the settings once; raises :class:`ConfigurationError` with the reason if invalid."""
    try:
        return Settings(**overrides)
    except ValueError as exc:
        raise ConfigurationError(f"Invalid settings: {exc}") from exc
