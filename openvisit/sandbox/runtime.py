"""The sandbox's shared pieces, built once per app and reachable from every request."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.templating import Jinja2Templates

from openvisit.sandbox.client_auth import JwksFetcher
from openvisit.sandbox.clients import ClientRegistry
from openvisit.sandbox.fhir_store import ResourceStore
from openvisit.sandbox.grants import GrantStore
from openvisit.sandbox.keys import ServerKey
from openvisit.sandbox.seed import build_seed


@dataclass(frozen=True, kw_only=True)
class SandboxUrls:
    """Every public URL of the sandbox, derived from its base URL (no trailing slash)."""

    base_url: str
    provider_launch_url: str
    patient_launch_url: str

    @property
    def fhir_base(self) -> str:
        return f"{self.base_url}/fhir"

    @property
    def issuer(self) -> str:
        # SMART: the id_token issuer is the FHIR base ("iss" of the launch).
        return self.fhir_base

    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/auth/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/auth/token"

    @property
    def jwks_uri(self) -> str:
        return f"{self.fhir_base}/.well-known/jwks.json"

    @property
    def smart_style_url(self) -> str:
        return f"{self.base_url}/static/smart-style.json"


@dataclass(frozen=True, kw_only=True)
class Lifetimes:
    """How long things live. Codes are short (RFC 6749 §4.1.2 recommends ≤ 10 min)."""

    launch: timedelta = timedelta(minutes=10)
    pending: timedelta = timedelta(minutes=10)
    code: timedelta = timedelta(seconds=60)
    access: timedelta = timedelta(hours=1)
    system_access: timedelta = timedelta(seconds=300)
    refresh: timedelta = timedelta(hours=12)
    id_token: timedelta = timedelta(hours=1)


def new_round() -> str:
    """A short tag that makes a demo round's appointment ids new to OpenVisit."""
    return secrets.token_hex(3)


@dataclass(kw_only=True)
class DemoMode:
    """Demo mode (:mod:`openvisit.sandbox.demo`): where its SIU messages go (no MLLP port:
    the "Send booking" button says the feed is off) and the current round of appointments."""

    mllp_host: str = "127.0.0.1"
    mllp_port: int | None = None
    round: str = field(default_factory=new_round)


@dataclass(kw_only=True)
class Sandbox:
    """Configuration and state of one sandbox EHR instance."""

    urls: SandboxUrls
    store: ResourceStore
    clients: ClientRegistry
    grants: GrantStore
    key: ServerKey
    now: Callable[[], datetime]
    templates: Jinja2Templates
    jwks_fetcher: JwksFetcher
    admin_token: str | None
    lifetimes: Lifetimes
    demo: DemoMode | None = None


def ensure_seeded(sandbox: Sandbox, *, force: bool = False) -> None:
    """Write today's seed unless the store already holds it (or ``force``). In demo mode the
    seed carries the current round's tag and replaces every appointment and encounter."""
    now = sandbox.now()
    day = now.date().isoformat()
    if force or sandbox.store.seeded_day != day:
        assert now.tzinfo is not None
        demo = sandbox.demo
        seed = build_seed(day=now.date(), tz=now.tzinfo, now=now,
                          round_tag=demo.round if demo else None)
        sandbox.store.replace_seed(seed, day=day,
                                   drop=("Appointment", "Encounter") if demo else ())
        sandbox.grants.prune(now=now)


def get_sandbox(request: Request) -> Sandbox:
    """The :class:`Sandbox` of the app serving ``request``."""
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox


def with_query(url: str, *, params: dict[str, str]) -> str:
    """``url`` with ``params`` added to its query, keeping what is already there."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
