"""ICE server configuration for browsers: STUN URLs and short-lived TURN credentials.

TURN credentials follow the "TURN REST API" shared-secret scheme
(draft-uberti-behave-turn-rest-00, as implemented by coturn's ``--use-auth-secret``):
``username = "<unix expiry>:<participant id>"`` and
``credential = base64(HMAC-SHA1(turn_secret, username))``. The TURN server recomputes the
credential from its copy of the secret and refuses it after the expiry, so nothing is stored
and a leaked credential is useless after ``turn_ttl_seconds``. RFC 7635 (third-party
authorisation) is the standards-track successor; coturn speaks this older scheme.
ICE itself is RFC 8445; ``iceTransportPolicy`` is from JSEP (RFC 8829 §4.1.1).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from typing import Any

from openvisit.config import Settings


def turn_credentials(secret: str, *, user: str, ttl_seconds: int,
                     now: float | None = None) -> tuple[str, str]:
    """``(username, credential)`` valid for ``ttl_seconds`` from ``now``."""
    expiry = int(now if now is not None else time.time()) + ttl_seconds
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_config(settings: Settings, *, participant_id: uuid.UUID, staff: bool = False,
               now: float | None = None) -> dict[str, Any]:
    """The ``RTCConfiguration`` subset a browser needs: ``iceServers`` and the policy.

    TURN entries appear only when both ``turn_urls`` and ``turn_secret`` are set. The policy
    is ``ice_transport_policy``, except that staff seats get "relay" when
    ``staff_ice_transport_policy`` says so (their addresses then stay behind TURN; see
    :mod:`openvisit.signalling.ice`).
    """
    servers: list[dict[str, Any]] = []
    if settings.stun_urls:
        servers.append({"urls": list(settings.stun_urls)})
    if settings.turn_urls and settings.turn_secret:
        username, credential = turn_credentials(
            settings.turn_secret, user=str(participant_id),
            ttl_seconds=settings.turn_ttl_seconds, now=now,
        )
        servers.append(
            {"urls": list(settings.turn_urls), "username": username, "credential": credential}
        )
    return {
        "iceServers": servers,
        "iceTransportPolicy": (
            "relay" if staff and settings.staff_ice_transport_policy == "relay"
            else settings.ice_transport_policy
        ),
        "ttl": settings.turn_ttl_seconds,
    }
