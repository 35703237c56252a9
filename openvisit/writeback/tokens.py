"""Backend-services tokens for write-back, one per endpoint, cached until they expire.

SMART App Launch STU 2.2 §5.1.4: ``grant_type=client_credentials``, ``system/…`` scopes, the
client authenticated by ``private_key_jwt`` (the same signing keys and assertion code as the
launch: :func:`openvisit.launch.keys.signing_keyset`, :func:`openvisit.smart.client_auth.
client_auth_for`, :func:`openvisit.smart.token.client_credentials`). The user's launch token
is never stored or used here: write-back runs in a worker, long after the user has gone.
The cache lives in ``app.services.writeback_tokens`` (per process, never in the database).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from openvisit.ehr_endpoints.service import basic_form_encoded, client_secret
from openvisit.launch.keys import signing_keyset
from openvisit.launch.service import caches
from openvisit.models import EhrEndpoint
from openvisit.outbound import portal_http
from openvisit.smart.client_auth import client_auth_for
from openvisit.smart.token import client_credentials

if TYPE_CHECKING:
    from openvisit.context import AppContext

#: Renew this long before the EHR's expiry, so a token never expires mid-request.
MARGIN_SECONDS = 30.0
#: SMART backend tokens live at most 300 s; an answer without ``expires_in`` is taken as that.
DEFAULT_LIFETIME = 300.0


@dataclass
class BackendTokens:
    """Cached ``(access_token, expires_at)`` per ``(endpoint id, endpoint version, scope)``:
    a changed endpoint (new client id or key) gets a new token."""

    clock: Callable[[], float] = time.monotonic
    _cache: dict[tuple[uuid.UUID, int, str], tuple[str, float]] = field(default_factory=dict)

    async def token(self, app: AppContext, endpoint: EhrEndpoint, *, scope: str) -> str | None:
        """A valid token for ``endpoint`` (asks the EHR only when the cached one is near
        expiry). Raises what :func:`openvisit.smart.token.client_credentials` raises."""
        key = (endpoint.id, endpoint.version, scope)
        cached = self._cache.get(key)
        now = self.clock()
        if cached is not None and cached[1] - MARGIN_SECONDS > now:
            return cached[0]
        config = await caches(app).discovery.get(portal_http(app), fhir_base=endpoint.fhir_base)
        keys = await signing_keyset(app) if endpoint.auth_method == "private_key_jwt" else None
        auth = client_auth_for(endpoint.auth_method, client_id=endpoint.client_id,
                               secret=client_secret(app, endpoint), keys=keys,
                               basic_form_encoded=basic_form_encoded(endpoint))
        answer = await client_credentials(portal_http(app), config=config, scope=scope,
                                          auth=auth)
        lifetime = float(answer.expires_in or DEFAULT_LIFETIME)
        self._cache[key] = (answer.access_token, now + lifetime)
        return answer.access_token

    def forget(self, endpoint_id: uuid.UUID) -> None:
        """Drop the endpoint's tokens (the EHR answered 401 to one)."""
        for key in [k for k in self._cache if k[0] == endpoint_id]:
            del self._cache[key]


def backend_tokens(app: AppContext) -> BackendTokens:
    """The process's token cache (made on first use; tests plant their own)."""
    found = app.services.writeback_tokens
    if found is None:
        found = app.services.writeback_tokens = BackendTokens()
    return found
