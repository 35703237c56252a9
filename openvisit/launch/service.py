"""SMART App Launch into a visit: begin (authorize), complete (token → context → visit seat).

SMART App Launch IG STU 2.2 §2.0 (EHR launch, standalone launch). The flow keeps no browser
state at all — no cookies, no sessionStorage — because Oracle PowerChart embeds apps in a
browser that mishandles both; ``state`` is a single-use row in the database, so any web
replica can complete a launch another one began. It is spent in its own transaction, so an
``error=`` callback or a refused code cannot leave it reusable.

Who gets a clinician seat (docs/security.md): a SMART launch needs the EHR's validated
id_token naming a ``Practitioner`` (plus the one-time IdP link when an IdP is configured); an
Epic context link needs the organisation's IdP sign-in matching the EHR user's
:class:`ProviderLink`, or the short-lived proof such a sign-in left (:mod:`.proof`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit import nonces
from openvisit.audit import record
from openvisit.context import AppContext
from openvisit.endpoints.service import (
    LaunchRefused,
    client_secret,
    endpoint_for_launch,
    get_endpoint,
)
from openvisit.errors import OpenVisitError
from openvisit.launch import proof
from openvisit.launch.fhir import AppointmentFacts, FhirReader, resolve_appointment
from openvisit.launch.keys import load_keyset
from openvisit.launch.proof import ProviderProof
from openvisit.logs import get_logger
from openvisit.models import Appointment, EhrEndpoint, utcnow
from openvisit.outbound import portal_http
from openvisit.smart.authorize import build_authorize_request
from openvisit.smart.client_auth import client_auth_for
from openvisit.smart.context import LaunchContext, resolve_launch_context
from openvisit.smart.discovery import DiscoveryCache, SmartConfiguration
from openvisit.smart.idtoken import JwksCache, parse_fhir_user, validate_id_token
from openvisit.smart.pkce import Pkce
from openvisit.smart.state import new_nonce, new_state
from openvisit.smart.token import exchange_code

log = get_logger(__name__)

Kind = Literal["provider", "patient"]
STATE_TTL = timedelta(minutes=10)
SCOPES: dict[Kind, str] = {
    "provider": "launch openid fhirUser online_access user/Appointment.rs user/Encounter.rs "
    "user/Patient.rs",
    "patient": "launch openid fhirUser patient/Appointment.rs",
}
STANDALONE_SCOPES: dict[Kind, str] = {
    "provider": "openid fhirUser online_access user/Appointment.rs user/Encounter.rs",
    "patient": "launch/patient openid fhirUser patient/Appointment.rs",
}


@dataclass
class LaunchCaches:
    """Per-process caches: discovery documents and EHR JWKS (so a launch costs no fetch)."""

    discovery: DiscoveryCache
    jwks: JwksCache


def caches(app: AppContext) -> LaunchCaches:
    found = app.extras.get("launch")
    if not isinstance(found, LaunchCaches):
        found = LaunchCaches(discovery=DiscoveryCache(ttl_seconds=3600), jwks=JwksCache())
        app.extras["launch"] = found
    return found


@dataclass(frozen=True)
class Redirect:
    """Where to send the browser: GET ``url``, or POST ``form`` to it (authorize-post)."""

    url: str
    form: dict[str, str] | None = None


def redirect_uri(app: AppContext) -> str:
    return f"{app.settings.public_url}/launch/callback"


async def _configuration(app: AppContext, endpoint: EhrEndpoint) -> SmartConfiguration:
    try:
        return await caches(app).discovery.get(portal_http(app), fhir_base=endpoint.fhir_base)
    except OpenVisitError as exc:
        raise LaunchRefused(
            f"OpenVisit could not read the SMART configuration of the {endpoint.environment} "
            f"EHR at {endpoint.fhir_base}: {exc.message}",
            title="The EHR could not be reached",
            status_code=502,
            details={"environment": endpoint.environment},
        ) from exc


async def begin(
    session: AsyncSession,
    *,
    app: AppContext,
    kind: Kind,
    iss: str | None = None,
    launch: str | None = None,
    endpoint_id: uuid.UUID | None = None,
    appointment_hint: str | None = None,
) -> Redirect:
    """Start an EHR launch (``iss`` + ``launch``) or a standalone one (``endpoint_id``).

    Raises :class:`LaunchRefused` for an unknown or unapproved endpoint, or an EHR whose SMART
    configuration lacks what OpenVisit needs (PKCE S256, the token endpoint…).
    """
    if endpoint_id is not None:
        endpoint = await get_endpoint(session, endpoint_id)
        if endpoint.state != "approved":
            raise LaunchRefused(
                f"The {endpoint.environment} endpoint is not approved yet.",
                title="Endpoint not approved",
                details={"environment": endpoint.environment},
            )
    else:
        endpoint = await endpoint_for_launch(session, iss=iss or "")
        if not launch:
            raise LaunchRefused(
                "The EHR opened OpenVisit without a launch parameter; check the launch URL in "
                f"the {endpoint.environment} EHR record.",
                title="This launch is incomplete",
                details={"environment": endpoint.environment},
            )
    config = await _configuration(app, endpoint)
    problems = [
        p
        for p in config.problems(
            launch_styles=(),
            auth_method=endpoint.auth_method,
            openid=True,
        )
        if "https" not in p.lower()
    ]
    if problems:
        raise LaunchRefused(
            f"The {endpoint.environment} EHR at {endpoint.fhir_base} cannot be used: "
            + "; ".join(problems),
            title="The EHR's SMART configuration is incomplete",
            details={"environment": endpoint.environment},
        )
    pkce, state, nonce = Pkce.new(), new_state(), new_nonce()
    await nonces.put(
        session,
        scope="smart_state",
        value=state,
        ttl=STATE_TTL,
        data={
            "endpoint_id": str(endpoint.id),
            "kind": kind,
            "verifier": pkce.verifier,
            "nonce": nonce,
            "appointment_hint": appointment_hint,
            "standalone": launch is None,
        },
    )
    scopes = SCOPES[kind] if launch else STANDALONE_SCOPES[kind]
    request = build_authorize_request(
        config,
        client_id=endpoint.client_id,
        redirect_uri=redirect_uri(app),
        scope=scopes,
        state=state,
        aud=endpoint.fhir_base,
        code_challenge=pkce.challenge,
        launch=launch,
        nonce=nonce,
    )
    log.info(
        "launch_begin",
        endpoint_id=str(endpoint.id),
        kind=kind,
        style="ehr" if launch else "standalone",
    )
    return Redirect(url=request.url, form=dict(request.form) if request.method == "POST" else None)


@dataclass(frozen=True)
class LaunchOutcome:
    """Where the browser goes next, and what the launch resolved (for tests and benches)."""

    redirect: str
    appointment_id: uuid.UUID
    visit_id: uuid.UUID
    needs_idp: bool
    ehr_round_trips: int
    #: Seconds spent waiting for the EHR (token, JWKS, FHIR) during this request.
    ehr_seconds: float = 0.0


async def complete(
    session: AsyncSession,
    *,
    app: AppContext,
    state: str | None,
    code: str | None,
    error: str | None = None,
    error_description: str | None = None,
) -> LaunchOutcome:
    """Finish a launch at the redirect URI: check state, exchange the code, find the visit.

    Raises :class:`LaunchRefused` for an EHR error, and the :mod:`openvisit.nonces` errors for
    a missing, mismatched, expired or replayed ``state``.
    """
    # Spent before anything else, in a transaction of its own: it stays spent if this fails.
    data = await nonces.spend(app.db, scope="smart_state", value=state)
    endpoint = await get_endpoint(session, uuid.UUID(data["endpoint_id"]))
    env = {"environment": endpoint.environment}
    if error:
        raise LaunchRefused(
            f"The {endpoint.environment} EHR refused the sign-in: {error}"
            + (f" ({error_description[:160]})" if error_description else "")
            + ". Check OpenVisit's app registration and scopes in the EHR.",
            title="The EHR refused the sign-in",
            details=env,
        )
    if not code:
        raise LaunchRefused("The EHR returned without an authorization code.", details=env)
    config = await _configuration(app, endpoint)
    keys = (
        await load_keyset(session, app=app) if endpoint.auth_method == "private_key_jwt" else None
    )
    auth = client_auth_for(
        endpoint.auth_method,
        client_id=endpoint.client_id,
        secret=client_secret(app, endpoint),
        keys=keys,
    )
    ehr_started = time.perf_counter()
    try:
        token = await exchange_code(
            portal_http(app),
            config=config,
            code=code,
            redirect_uri=redirect_uri(app),
            code_verifier=data["verifier"],
            auth=auth,
        )
    except OpenVisitError as exc:
        raise LaunchRefused(
            f"{exc.message} ({endpoint.environment} EHR at {endpoint.fhir_base})",
            title="The EHR refused the sign-in",
            details=env,
            status_code=exc.status_code,
        ) from exc
    round_trips = 1
    fhir_user: str | None = None
    if token.id_token:
        jwks_before = caches(app).jwks.fetches
        claims = await validate_id_token(
            portal_http(app),
            id_token=token.id_token,
            config=config,
            client_id=endpoint.client_id,
            jwks_cache=caches(app).jwks,
            nonce=data["nonce"],
        )
        fhir_user = claims.fhir_user
        round_trips += caches(app).jwks.fetches - jwks_before
    kind: Kind = data["kind"]
    user_ref = _user_ref(fhir_user, endpoint=endpoint)
    if kind == "provider":
        # Before any FHIR read: without a validated Practitioner there is nothing to seat.
        _require_practitioner(user_ref, endpoint=endpoint, has_id_token=bool(token.id_token))
    context = resolve_launch_context(token, fhir_user=fhir_user)
    if context.appointment_id is None and data.get("appointment_hint"):
        context = LaunchContext(
            appointment_id=data["appointment_hint"],
            encounter_id=context.encounter_id,
            patient_id=context.patient_id,
            user_ref=context.user_ref,
        )
    reader = FhirReader(portal_http(app), base=endpoint.fhir_base, access_token=token.access_token)
    facts = await resolve_appointment(reader, context, timezone=endpoint.timezone, now=utcnow())
    round_trips += reader.calls
    ehr_seconds = time.perf_counter() - ehr_started
    appointment = await upsert_appointment(session, endpoint=endpoint, facts=facts, source="fhir")
    outcome = await enter_visit(
        session,
        app=app,
        endpoint=endpoint,
        appointment=appointment,
        kind=kind,
        user_ref=user_ref,
        patient_ref=context.patient_id and f"Patient/{context.patient_id}",
        round_trips=round_trips,
    )
    return replace(outcome, ehr_seconds=ehr_seconds)


def _require_practitioner(
    user_ref: str | None, *, endpoint: EhrEndpoint, has_id_token: bool
) -> None:
    """Refuse a provider seat unless the EHR vouched for a ``Practitioner`` (fhirUser)."""
    if user_ref and user_ref.startswith("Practitioner/"):
        return
    why = (
        "the EHR returned no id_token"
        if not has_id_token
        else "the signed-in EHR user is not a Practitioner"
        if user_ref
        else "the id_token has no fhirUser"
    )
    raise LaunchRefused(
        f"A clinician's seat needs the EHR to say which clinician is signed in, and {why}. "
        "Ask the EHR analyst to grant OpenVisit the openid and fhirUser scopes; patients use "
        "the patient launch.",
        title="Not signed in as a clinician",
        details={"environment": endpoint.environment},
    )


def _user_ref(fhir_user: str | None, *, endpoint: EhrEndpoint) -> str | None:
    if not fhir_user:
        return None
    parsed = parse_fhir_user(fhir_user, fhir_base=endpoint.fhir_base)
    return f"{parsed.resource_type}/{parsed.id}"


async def upsert_appointment(
    session: AsyncSession, *, endpoint: EhrEndpoint, facts: AppointmentFacts, source: str
) -> Appointment:
    """Create or refresh the local copy of an EHR appointment (ids and times only)."""
    appointment = await session.scalar(
        select(Appointment).where(
            Appointment.endpoint_id == endpoint.id,
            Appointment.ehr_appointment_id == facts.ehr_appointment_id,
        )
    )
    if appointment is None:
        appointment = Appointment(
            organisation_id=endpoint.organisation_id,
            endpoint_id=endpoint.id,
            ehr_appointment_id=facts.ehr_appointment_id,
            source=source,
        )
        session.add(appointment)
    appointment.status = facts.status
    appointment.start_at = facts.start_at or appointment.start_at
    appointment.end_at = facts.end_at or appointment.end_at
    appointment.patient_ref = facts.patient_ref or appointment.patient_ref
    appointment.provider_ehr_id = facts.practitioner_ref or appointment.provider_ehr_id
    appointment.department = facts.department or appointment.department
    appointment.encounter_id = facts.encounter_id or appointment.encounter_id
    await session.flush()
    return appointment


async def enter_visit(
    session: AsyncSession,
    *,
    app: AppContext,
    endpoint: EhrEndpoint,
    appointment: Appointment,
    kind: Kind,
    user_ref: str | None,
    patient_ref: str | None,
    round_trips: int = 0,
    provider_proof: ProviderProof = "ehr_id_token",
    proof_cookie: str | None = None,
    link_window: tuple[datetime, datetime] | None = None,
) -> LaunchOutcome:
    """Open (or find) the appointment's visit and hand out the right seat.

    ``provider_proof="ehr_id_token"`` (SMART): a provider whose EHR user id is not yet linked
    to an IdP subject is sent to the one-time IdP sign-in first (when an IdP is configured);
    afterwards launches go straight to the visit. ``"idp"`` (Epic context link): every
    provider launch signs in with the IdP unless ``proof_cookie`` is a live proof for this
    EHR user; without an IdP it is refused outside development. ``link_window`` is passed to
    :func:`~openvisit.visits.service.open_visit`. Raises :class:`LaunchRefused`.
    """
    from openvisit.visits.service import open_visit, seat_link

    env = {"environment": endpoint.environment}
    if kind == "provider" and not (user_ref and user_ref.startswith("Practitioner/")):
        raise LaunchRefused(
            "The EHR did not say which clinician is signed in (no Practitioner fhirUser). "
            "Ask the EHR analyst to grant OpenVisit the openid and fhirUser scopes.",
            details=env,
        )
    visit = await open_visit(session, app=app, appointment=appointment, link_window=link_window)
    action = f"launch.{kind}"
    if kind == "provider":
        assert user_ref is not None
        needs_idp = await proof.needs_idp(
            session,
            app=app,
            endpoint=endpoint,
            user_ref=user_ref,
            provider_proof=provider_proof,
            proof_cookie=proof_cookie,
        )
        if needs_idp:
            pending = new_state()
            await nonces.put(
                session,
                scope="provider_pending",
                value=pending,
                ttl=STATE_TTL,
                data={
                    "endpoint_id": str(endpoint.id),
                    "ehr_user_id": user_ref,
                    "visit_id": str(visit.id),
                    "proof": provider_proof,
                },
            )
            return LaunchOutcome(
                redirect=f"{app.settings.public_url}/launch/idp?pending={pending}",
                appointment_id=appointment.id,
                visit_id=visit.id,
                needs_idp=True,
                ehr_round_trips=round_trips,
            )
        if provider_proof == "idp" and not app.settings.oidc_issuer:
            # Development only (_needs_idp refuses this elsewhere): keep the demo working, loudly.
            action = "launch.provider_unverified"
            log.warning(
                "launch_provider_unverified",
                endpoint_id=str(endpoint.id),
                visit_id=str(visit.id),
                reason="no_idp_configured",
            )
        url = await seat_link(session, app=app, visit=visit, role="provider", ehr_user_id=user_ref)
    else:
        url = await seat_link(
            session,
            app=app,
            visit=visit,
            role="patient",
            patient_ref=patient_ref or appointment.patient_ref,
            language=appointment.language,
        )
    await record(
        session,
        actor=f"{kind}:{user_ref or 'unknown'}",
        action=action,
        object_type="visit",
        object_id=str(visit.id),
        organisation_id=endpoint.organisation_id,
    )
    log.info("launch_complete", kind=kind, visit_id=str(visit.id), endpoint_id=str(endpoint.id))
    return LaunchOutcome(
        redirect=url,
        appointment_id=appointment.id,
        visit_id=visit.id,
        needs_idp=False,
        ehr_round_trips=round_trips,
    )
