"""SMART App Launch into a visit: begin (authorize), complete (token → context → visit seat).

SMART App Launch IG STU 2.2 §2.0 (EHR launch, standalone launch). The flow keeps no browser
state at all — no cookies, no sessionStorage — because Oracle PowerChart embeds apps in a
browser that mishandles both; ``state`` is a single-use row in the database, so any web
replica can complete a launch another one began. It is spent in its own transaction, so an
``error=`` callback or a refused code cannot leave it reusable.

Who gets a clinician seat (docs/security.md): a SMART launch needs the EHR's validated
id_token naming a ``Practitioner`` (plus the one-time IdP link when an IdP is configured); an
Epic context link needs the organisation's IdP sign-in matching the EHR user's
:class:`ProviderLink`, or the short-lived proof such a sign-in left (:mod:`.proof`). A patient
seat goes only to the patient of the appointment (:mod:`.patient`).

Transactions: no step holds one while it waits on the EHR (read → call out → write). The
endpoint is read in a read-only session (at the callback: in the short transaction that
spends the ``state``); discovery, the token exchange, the EHR's JWKS and the FHIR reads run
with no session open; the rows (the ``state`` at the start; the appointment, the visit and
the seat at the end) are written in short transactions of their own. On SQLite a write
transaction is the database's one write lock: held across a 2-second token call it would
stall the SIU feed and every other writer for those 2 seconds.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from openvisit import i18n, nonces
from openvisit.context import AppContext
from openvisit.ehr_endpoints.service import (
    LaunchRefused,
    basic_encoding_warning,
    basic_form_encoded,
    client_secret,
    endpoint_for_launch,
    get_endpoint,
)
from openvisit.errors import InvalidInput, NotFound, OpenVisitError
from openvisit.launch import identity, messages
from openvisit.launch import scopes as launch_scopes
from openvisit.launch.fhir import (
    EhrRecordMissing,
    EhrRefused,
    FhirReader,
    resolve_appointment,
)
from openvisit.launch.identity import PatientIdentity
from openvisit.launch.keys import signing_keyset, stored_keyset
from openvisit.launch.patient import check_appointment_is_theirs, seat_patient
from openvisit.launch.seats import (
    STATE_TTL,
    Kind,
    LaunchOutcome,
    enter_visit,
    upsert_appointment,
)
from openvisit.logs import get_logger
from openvisit.models import EhrEndpoint, utcnow
from openvisit.outbound import portal_http
from openvisit.smart.authorize import build_authorize_request
from openvisit.smart.client_auth import client_auth_for
from openvisit.smart.context import is_fhir_id, resolve_launch_context
from openvisit.smart.discovery import DiscoveryCache, SmartConfiguration
from openvisit.smart.errors import safe_ehr_text
from openvisit.smart.idtoken import JwksCache, parse_fhir_user, validate_id_token
from openvisit.smart.keys import KeySet
from openvisit.smart.pkce import Pkce
from openvisit.smart.state import new_nonce, new_state
from openvisit.smart.token import exchange_code

__all__ = ["STATE_TTL", "Kind", "LaunchOutcome", "Redirect", "begin", "complete",
           "enter_visit", "upsert_appointment"]

log = get_logger(__name__)


@dataclass
class LaunchCaches:
    """Per-process caches: discovery documents and EHR JWKS (so a launch costs no fetch)."""

    discovery: DiscoveryCache
    jwks: JwksCache


def caches(app: AppContext) -> LaunchCaches:
    found = app.services.launch_caches
    if found is None:
        found = LaunchCaches(discovery=DiscoveryCache(ttl_seconds=3600), jwks=JwksCache())
        app.services.launch_caches = found
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
            permanent=exc.permanent,
            details={"environment": endpoint.environment},
        ) from exc


async def _read_endpoint(
    app: AppContext, *, endpoint_id: uuid.UUID | None = None, iss: str | None = None
) -> EhrEndpoint:
    """The endpoint, read in a read-only session and detached from it (no transaction stays
    open; its loaded values remain readable)."""
    async with app.db.read() as session:
        if endpoint_id is not None:
            endpoint = await get_endpoint(session, endpoint_id)
        else:
            endpoint = await endpoint_for_launch(session, iss=iss or "")
        session.expunge(endpoint)
    return endpoint


def _require_approved(endpoint: EhrEndpoint) -> None:
    if endpoint.state != "approved":
        raise LaunchRefused(
            f"The {endpoint.environment} endpoint is not approved (it is "
            f"{endpoint.state.replace('_', ' ')}); launches from it are refused until the named "
            "EHR approver approves it in the OpenVisit portal.",
            title="Endpoint not approved",
            details={"environment": endpoint.environment},
        )


async def begin(
    *,
    app: AppContext,
    kind: Kind,
    iss: str | None = None,
    launch: str | None = None,
    endpoint_id: uuid.UUID | None = None,
    appointment_hint: str | None = None,
    language: str | None = None,
) -> Redirect:
    """Start an EHR launch (``iss`` + ``launch``) or a standalone one (``endpoint_id``).

    ``appointment_hint`` (standalone only) names the appointment when the EHR's context does
    not; ``language`` is the patient page's language, kept for the callback's pages. Raises
    :class:`LaunchRefused` for an unknown or unapproved endpoint, or an EHR whose SMART
    configuration lacks what OpenVisit needs (PKCE S256, the token endpoint…), and
    :class:`InvalidInput` for a hint that is not a FHIR id. A patient launch raises them
    reworded for the patient (:mod:`openvisit.launch.messages`).
    """
    try:
        return await _begin(app=app, kind=kind, iss=iss, launch=launch,
                            endpoint_id=endpoint_id, appointment_hint=appointment_hint,
                            language=language)
    except OpenVisitError as exc:
        if kind == "patient":
            messages.for_patient(exc)  # the page is worded for the patient
        raise


async def _begin(
    *, app: AppContext, kind: Kind, iss: str | None, launch: str | None,
    endpoint_id: uuid.UUID | None, appointment_hint: str | None, language: str | None,
) -> Redirect:
    if appointment_hint is not None and not is_fhir_id(appointment_hint):
        raise InvalidInput(
            "The appointment in the launch address is not a FHIR id (letters, digits, '-' "
            "and '.', at most 64). Copy the appointment's id from the EHR.",
            details={"field": "appointment"},
        )
    if endpoint_id is not None:
        endpoint = await _read_endpoint(app, endpoint_id=endpoint_id)
        _require_approved(endpoint)
    else:
        endpoint = await _read_endpoint(app, iss=iss)
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
    scope = launch_scopes.requested(kind, ehr_launch=launch is not None, config=config)
    pkce, state, nonce = Pkce.new(), new_state(), new_nonce()
    async with app.transaction() as session:
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
                "scope": scope,
                "lang": language,
            },
        )
    request = build_authorize_request(
        config,
        client_id=endpoint.client_id,
        redirect_uri=redirect_uri(app),
        scope=scope,
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


async def complete(
    *,
    app: AppContext,
    state: str | None,
    code: str | None,
    error: str | None = None,
    error_description: str | None = None,
) -> LaunchOutcome:
    """Finish a launch at the redirect URI: check state, exchange the code, find the visit.

    Raises :class:`LaunchRefused` for an EHR error, a clinician the EHR did not vouch for or
    a patient seat that is not that patient's (:class:`~.patient.PatientMismatch`), and the
    :mod:`openvisit.nonces` errors for a missing, mismatched, expired or replayed ``state``.
    After the state is read, a patient launch's errors are reworded for the patient in the
    language the launch began in, a clinician's stay in English.
    """
    # 1. Spend and read, in one short transaction of its own: the state stays spent whatever
    # happens next (an error= callback, a refused code, an endpoint removed meanwhile).
    async with app.transaction() as session:
        data = await nonces.take(session, scope="smart_state", value=state)
        endpoint = await session.get(EhrEndpoint, uuid.UUID(data["endpoint_id"]))
        keys = None
        if endpoint is not None:
            session.expunge(endpoint)
            if endpoint.auth_method == "private_key_jwt":
                keys = await stored_keyset(session, app=app)
    kind: Kind = data["kind"]
    i18n.activate((data.get("lang") or i18n.DEFAULT_LANGUAGE) if kind == "patient"
                  else i18n.DEFAULT_LANGUAGE)
    try:
        if endpoint is None:
            raise NotFound("The EHR endpoint of this launch no longer exists.")
        return await _complete(app=app, data=data, kind=kind, endpoint=endpoint, keys=keys,
                               code=code, error=error, error_description=error_description)
    except OpenVisitError as exc:
        if kind == "patient":
            messages.for_patient(exc)  # the page is worded for the patient
        raise


async def _complete(
    *, app: AppContext, data: dict[str, Any], kind: Kind, endpoint: EhrEndpoint,
    keys: KeySet | None, code: str | None, error: str | None, error_description: str | None,
) -> LaunchOutcome:
    env = {"environment": endpoint.environment}
    if error:
        said = f" ({safe_ehr_text(error_description)})" if error_description else ""
        raise LaunchRefused(
            f"The {endpoint.environment} EHR refused the sign-in: "
            f"{safe_ehr_text(error, limit=60)}{said}. Check OpenVisit's app registration and "
            "scopes in the EHR.",
            title="The EHR refused the sign-in",
            details={**env, "ehr_error": safe_ehr_text(error, limit=60)},
        )
    if not code:
        raise LaunchRefused("The EHR returned without an authorization code.", details=env)
    _require_approved(endpoint)

    # 2. Call out: no session is open from here until the rows are written.
    config = await _configuration(app, endpoint)
    if keys is None and endpoint.auth_method == "private_key_jwt":
        keys = await signing_keyset(app)  # first use: created in a transaction of its own
    auth = client_auth_for(
        endpoint.auth_method,
        client_id=endpoint.client_id,
        secret=client_secret(app, endpoint),
        keys=keys,
        basic_form_encoded=basic_form_encoded(endpoint),
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
        hint = basic_encoding_warning(endpoint) if exc.details.get("ehr_error") == \
            "invalid_client" else None
        raise LaunchRefused(
            f"{exc.message} ({endpoint.environment} EHR at {endpoint.fhir_base})"
            + (f". {hint}" if hint else ""),
            title="The EHR refused the sign-in",
            details={**env, **exc.details},
            status_code=exc.status_code,
            permanent=exc.permanent,
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
    user_ref = _user_ref(fhir_user, endpoint=endpoint)
    if kind == "provider":
        # Before any FHIR read: without a validated Practitioner there is nothing to seat.
        _require_practitioner(user_ref, endpoint=endpoint, has_id_token=bool(token.id_token))
    context = resolve_launch_context(token, fhir_user=fhir_user,
                                     appointment_hint=data.get("appointment_hint"))
    patient_ref = (seat_patient(context, user_ref=user_ref, environment=endpoint.environment)
                   if kind == "patient" else None)
    reader = FhirReader(portal_http(app), base=endpoint.fhir_base, access_token=token.access_token)
    patient: PatientIdentity | None = None
    try:
        facts = await resolve_appointment(reader, context, timezone=endpoint.timezone,
                                          now=utcnow(), fall_back_to_patient=kind == "patient")
        if kind == "provider":  # who is waiting, for the clinician's page only (never kept)
            patient = await identity.read(reader, facts.patient_ref)
    except (EhrRefused, EhrRecordMissing) as exc:
        raise _fhir_refusal(exc, endpoint=endpoint, asked=data.get("scope"),
                            granted=token.scope) from exc
    finally:
        round_trips += reader.calls
    if patient_ref is not None:
        check_appointment_is_theirs(facts, patient_ref=patient_ref,
                                    environment=endpoint.environment)
    ehr_seconds = time.perf_counter() - ehr_started

    # 3. Write: one short transaction for the appointment, the visit and the seat.
    async with app.transaction() as session:
        current = await get_endpoint(session, endpoint.id)
        _require_approved(current)  # not changed while the EHR was answering
        appointment = await upsert_appointment(session, app=app, endpoint=current, facts=facts,
                                               source="fhir")
        outcome = await enter_visit(
            session,
            app=app,
            endpoint=current,
            appointment=appointment,
            kind=kind,
            user_ref=user_ref,
            patient_ref=patient_ref,
            round_trips=round_trips,
        )
    return replace(outcome, ehr_seconds=ehr_seconds, patient=patient)


def _fhir_refusal(exc: EhrRefused | EhrRecordMissing, *, endpoint: EhrEndpoint,
                  asked: str | None, granted: str | None) -> LaunchRefused:
    """The EHR's FHIR refusal, said as the EHR's answer, with what to check where."""
    env, base = endpoint.environment, endpoint.fhir_base
    details = {"environment": env, "http_status": exc.http_status}
    if isinstance(exc, EhrRecordMissing):
        return LaunchRefused(
            f"The {env} EHR at {base} says the {exc.resource_type} this launch names does not "
            "exist (HTTP 404): the launch points at a record the signed-in user cannot see, or "
            f"one that was deleted. Launch the visit again from the appointment in the {env} "
            "EHR; if it keeps happening, ask the EHR analyst to check the launch context "
            "OpenVisit's app receives.",
            title="The EHR does not have this appointment", status_code=404, details=details)
    scopes = f" ({asked})" if asked else ""
    got = (f"; the EHR granted: {safe_ehr_text(granted)}" if granted else
           "; the EHR did not say which scopes it granted")
    return LaunchRefused(
        f"The {env} EHR's FHIR server at {base} refused OpenVisit's request for the "
        f"{exc.resource_type} (HTTP {exc.http_status}), so the visit could not be found. This "
        f"is the EHR's answer. Check, for the {env} environment: that the EHR's OpenVisit "
        "record for this environment is the one that launched this visit (test and production "
        "have separate registrations and client ids), that OpenVisit's app registration in "
        f"the EHR is active, and that it grants the scopes OpenVisit asks for{scopes}{got}.",
        title="The EHR refused to share the appointment", status_code=502, details=details)


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
