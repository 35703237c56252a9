"""The short-lived provider proof: "this browser signed in with the organisation's IdP as the
clinician linked to this EHR user", so an Epic-link provider launch may skip the IdP.

Epic's encrypted link says *which* EHR user opened it, but the link itself is a bearer value:
whoever holds it (a patient who was sent one, a shoulder-surfer, a proxy log) could replay it
within its validity. So every Epic-link provider seat needs something the patient cannot have:
a fresh IdP sign-in whose subject matches the :class:`~openvisit.models.ProviderLink` of that
EHR user, or this proof, left by such a sign-in in the same browser.

The proof is a random value in an ``HttpOnly`` cookie; the server keeps only its SHA-256 (a
:mod:`openvisit.nonces` row, scope ``provider_proof``) bound to the endpoint, the EHR user and
the IdP issuer + subject, expiring after ``launch_provider_proof_hours``. It is checked
against the *current* provider link on every use, so re-linking the EHR user (or changing the
IdP) voids it at once. ``SameSite=None; Secure`` on https, because Epic opens the link from
another site, often inside a frame; on plain http (development only) browsers refuse
``SameSite=None`` without ``Secure``, so it falls back to ``Lax``.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from openvisit import nonces
from openvisit.config import Settings
from openvisit.models import ProviderLink

SCOPE = "provider_proof"


def cookie_name(settings: Settings) -> str:
    # __Host- pins the cookie to this origin (no Domain, Path=/, Secure): https only.
    secure = settings.public_url.startswith("https://")
    return "__Host-ov_provider_proof" if secure else "ov_provider_proof"


def from_request(request: Request, settings: Settings) -> str | None:
    """The proof value the browser sent, if any."""
    return request.cookies.get(cookie_name(settings))


async def issue(
    session: AsyncSession,
    *,
    settings: Settings,
    endpoint_id: uuid.UUID,
    ehr_user_id: str,
    idp_issuer: str,
    idp_subject: str,
) -> str:
    """Store a new proof and return the value to put in the cookie (see :func:`set_cookie`)."""
    value = secrets.token_urlsafe(32)
    await nonces.put(
        session,
        scope=SCOPE,
        value=value,
        ttl=timedelta(hours=settings.launch_provider_proof_hours),
        data={"endpoint_id": str(endpoint_id), "ehr_user_id": ehr_user_id,
              "idp_issuer": idp_issuer, "idp_subject": idp_subject},
    )
    return value


def set_cookie(response: Response, *, settings: Settings, value: str) -> None:
    secure = settings.public_url.startswith("https://")
    response.set_cookie(
        cookie_name(settings),
        value,
        max_age=int(settings.launch_provider_proof_hours * 3600),
        path="/",
        secure=secure,
        httponly=True,
        samesite="none" if secure else "lax",
    )


async def verify(
    session: AsyncSession,
    *,
    settings: Settings,
    value: str | None,
    endpoint_id: uuid.UUID,
    ehr_user_id: str,
) -> bool:
    """True when ``value`` is a live proof for this endpoint and EHR user whose IdP subject is
    still the one linked to that EHR user, by the IdP configured now."""
    data = await nonces.peek(session, scope=SCOPE, value=value)
    issuer = settings.oidc_issuer.rstrip("/")
    if (
        data is None
        or not issuer
        or data.get("endpoint_id") != str(endpoint_id)
        or data.get("ehr_user_id") != ehr_user_id
        or data.get("idp_issuer") != issuer
    ):
        return False
    link = await session.scalar(
        select(ProviderLink).where(
            ProviderLink.endpoint_id == endpoint_id, ProviderLink.ehr_user_id == ehr_user_id
        )
    )
    return (
        link is not None
        and link.idp_issuer == issuer
        and secrets.compare_digest(link.idp_subject, str(data.get("idp_subject", "")))
    )
