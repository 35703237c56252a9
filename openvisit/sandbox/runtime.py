"""The sandbox's shared pieces, built once per app and reachable from every request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.templating import Jinja2Templates

from openvisit.sandbox.client_auth import JwksFetcher
from openvisit.sandbox.clients import ClientRegistry
from openvisit.sandbox.fhir_store import ResourceStore
from openvisit.sandbox.grants import GrantStore
from openvisit.sandbox.keys import ServerKey


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


def get_sandbox(request: Request) -> Sandbox:
    """The :class:`Sandbox` of the app serving ``request``."""
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox


def with_query(url: str, *, params: dict[str, str]) -> str:
    """``url`` with ``params`` added to its query, keeping what is already there."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
