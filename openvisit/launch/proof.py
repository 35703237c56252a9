"""What proves a clinician: when a launch must go through the organisation's IdP
(:func:`needs_idp`), the EHR user ↔ IdP subject check after it (:func:`link_provider`), and the
short-lived provider proof: "this browser signed in with the organisation's IdP as the
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
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from openvisit import nonces
from openvisit.audit import record
from openvisit.config import Settings
from openvisit.ehr_endpoints.service import LaunchRefused, get_endpoint
from openvisit.launch import repository
from openvisit.logs import get_logger
from openvisit.models import EhrEndpoint, ProviderLink, Visit

if TYPE_CHECKING:
    from openvisit.context import AppContext

log = get_logger(__name__)

#: What vouches for a provider seat: the EHR's id_token (SMART) or the organisation's IdP
#: sign-in on every launch, or its short-lived proof cookie (Epic context link).
ProviderProof = Literal["ehr_id_token", "idp"]

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
        data={
            "endpoint_id": str(endpoint_id),
            "ehr_user_id": ehr_user_id,
            "idp_issuer": idp_issuer,
            "idp_subject": idp_subject,
        },
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
    link = await repository.provider_link(session, endpoint_id=endpoint_id, ehr_user_id=ehr_user_id)
    return (
        link is not None
        and link.idp_issuer == issuer
        and secrets.compare_digest(link.idp_subject, str(data.get("idp_subject", "")))
    )


async def needs_idp(
    session: AsyncSession,
    *,
    app: AppContext,
    endpoint: EhrEndpoint,
    user_ref: str,
    provider_proof: ProviderProof,
    proof_cookie: str | None,
) -> bool:
    """Whether this provider must sign in with the IdP now.

    ``"ehr_id_token"`` (SMART): only once, to create the :class:`ProviderLink`, and only when
    an IdP is configured. ``"idp"`` (Epic link): unless ``proof_cookie`` verifies; with no
    IdP configured, never in development (the caller logs it) and otherwise
    :class:`LaunchRefused` naming the settings to set.
    """
    settings = app.settings
    if provider_proof == "ehr_id_token":
        if not settings.oidc_issuer:
            return False
        link = await repository.provider_link(
            session, endpoint_id=endpoint.id, ehr_user_id=user_ref
        )
        return link is None
    if settings.oidc_issuer:
        return not await verify(
            session,
            settings=settings,
            value=proof_cookie,
            endpoint_id=endpoint.id,
            ehr_user_id=user_ref,
        )
    if settings.environment == "development":
        return False
    log.warning("launch_provider_refused", endpoint_id=str(endpoint.id), reason="no_idp")
    raise LaunchRefused(
        "A clinician's Epic link is a bearer link: on its own it does not prove who opened it, "
        "so OpenVisit needs the organisation's sign-in for every clinician seat from it, and no "
        "identity provider is configured. The operator sets OPENVISIT_OIDC_ISSUER, "
        "OPENVISIT_OIDC_CLIENT_ID and OPENVISIT_OIDC_CLIENT_SECRET (and registers "
        f"{settings.public_url}/launch/idp/callback as a redirect URI at the identity "
        "provider), then restarts OpenVisit. Patients' links keep working meanwhile.",
        title="Clinician sign-in is not set up",
        details={
            "environment": endpoint.environment,
            "settings": [
                "OPENVISIT_OIDC_ISSUER",
                "OPENVISIT_OIDC_CLIENT_ID",
                "OPENVISIT_OIDC_CLIENT_SECRET",
            ],
        },
    )


@dataclass(frozen=True)
class ProviderSignedIn:
    """Where the clinician goes after the IdP sign-in, and the proof cookie to leave (if any)."""

    url: str
    proof: str | None


async def link_provider(
    session: AsyncSession,
    *,
    app: AppContext,
    pending: dict[str, Any],
    idp_issuer: str,
    idp_subject: str,
) -> ProviderSignedIn:
    """Check (or, on first use, store) the EHR user ↔ IdP subject link; return the seat URL.

    Raises :class:`LaunchRefused` when the EHR user is already linked to another IdP subject:
    the person who signed in is not the clinician the EHR (or the link) names. For an Epic
    context-link launch (``pending["proof"] == "idp"``) a provider proof is issued too.
    """
    from openvisit.visits.service import seat_link

    endpoint = await get_endpoint(session, uuid.UUID(pending["endpoint_id"]))
    ehr_user_id: str = pending["ehr_user_id"]
    link = await repository.provider_link(session, endpoint_id=endpoint.id, ehr_user_id=ehr_user_id)
    if link is None:
        link = ProviderLink(
            organisation_id=endpoint.organisation_id,
            endpoint_id=endpoint.id,
            ehr_user_id=ehr_user_id,
            idp_issuer=idp_issuer,
            idp_subject=idp_subject,
        )
        session.add(link)
        await session.flush()
        await record(
            session,
            actor=f"provider:{ehr_user_id}",
            action="provider_link.create",
            obj=link,
            organisation_id=endpoint.organisation_id,
        )
    elif link.idp_issuer != idp_issuer or link.idp_subject != idp_subject:
        log.warning(
            "provider_link_mismatch", endpoint_id=str(endpoint.id), provider_link_id=str(link.id)
        )
        raise LaunchRefused(
            "You signed in to the organisation as someone other than the clinician this EHR "
            "user is linked to, so OpenVisit cannot seat you as that clinician. Sign out of the "
            "organisation's sign-in and open the visit again from the EHR as yourself. If the "
            "link itself is wrong, an administrator must correct it.",
            title="Signed in as someone else",
            details={"environment": endpoint.environment},
        )
    visit = await session.get(Visit, uuid.UUID(pending["visit_id"]))
    if visit is None:
        raise LaunchRefused("The visit this sign-in was for no longer exists; launch again.")
    url: str = await seat_link(
        session, app=app, visit=visit, role="provider", ehr_user_id=ehr_user_id
    )
    issued = None
    if pending.get("proof") == "idp":
        issued = await issue(
            session,
            settings=app.settings,
            endpoint_id=endpoint.id,
            ehr_user_id=ehr_user_id,
            idp_issuer=idp_issuer,
            idp_subject=idp_subject,
        )
    await record(
        session,
        actor=f"provider:{ehr_user_id}",
        action="launch.provider",
        object_type="visit",
        object_id=str(visit.id),
        organisation_id=endpoint.organisation_id,
    )
    return ProviderSignedIn(url=url, proof=issued)
