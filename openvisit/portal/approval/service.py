"""Approval of an EHR endpoint by SMART sign-in to that very EHR.

The approver (EHR analyst) is signed in to the portal; OpenVisit then runs a SMART
*standalone* launch against the endpoint (SMART App Launch STU 2.2 §2.0: scope
``openid fhirUser``, PKCE S256, ``state`` kept single-use in :mod:`openvisit.nonces`, the
endpoint's client authentication: ``private_key_jwt`` with OpenVisit's keys or its client
secret), validates the id_token (OIDC Core §3.1.3.7) and compares its ``fhirUser`` with the
endpoint's named approver. Only then does the endpoint become approved. Proving the FHIR base
by signing in to it is the point: a wrong or swapped base URL cannot be approved.

The EHR's access token is thrown away unused; no EHR credentials or data are kept.

Two-person rule: an approver who configured the endpoint's current launch settings (created
it, or changed a launch field since its last approval, in person or through their API token)
cannot approve it; another approver must. Every request this flow makes to the EHR (discovery,
token exchange, JWKS) goes through the outbound guard (:func:`openvisit.outbound.portal_http`):
the FHIR base and the documents it serves are a portal user's input.

No transaction is open while the EHR is called (read → call out → write): the endpoint is
read in a read-only session, the ``state`` is spent in a transaction of its own, and the
approval (or the refused attempt) is written in one short transaction at the end, which
also checks the endpoint did not change while the approver was signing in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit import nonces
from openvisit.audit import record
from openvisit.context import AppContext
from openvisit.ehr_endpoints import service as endpoints
from openvisit.errors import InvalidInput, OpenVisitError, PermissionDenied
from openvisit.launch.keys import signing_keyset
from openvisit.logs import get_logger
from openvisit.models import EhrEndpoint, utcnow
from openvisit.outbound import portal_http
from openvisit.portal import repository
from openvisit.portal.endpoints.service import get_for, launch_snapshot
from openvisit.portal.signin.sessions import Principal
from openvisit.smart.authorize import build_authorize_request
from openvisit.smart.client_auth import client_auth_for
from openvisit.smart.discovery import SmartConfiguration, fetch_smart_configuration
from openvisit.smart.idtoken import JwksCache, parse_fhir_user, validate_id_token
from openvisit.smart.pkce import Pkce
from openvisit.smart.state import new_nonce, new_state
from openvisit.smart.token import exchange_code

log = get_logger(__name__)

SCOPE = "openid fhirUser"
STATE_SCOPE = "portal_approval"
STATE_TTL = timedelta(minutes=15)


class ApprovalRefused(PermissionDenied):
    """The approval cannot be completed; the message says why and what to do."""

    code = "approval_refused"


def redirect_uri(app: AppContext) -> str:
    return f"{app.settings.public_url}/portal/approval/callback"


def _jwks(app: AppContext) -> JwksCache:
    cache = app.services.portal_jwks
    if cache is None:
        cache = app.services.portal_jwks = JwksCache()
    return cache


def _env(endpoint: EhrEndpoint) -> str:
    return "test" if endpoint.environment == "test" else "production"


async def _configuration(app: AppContext, endpoint: EhrEndpoint) -> SmartConfiguration:
    # Fetched fresh, not cached: the admin may just have fixed the EHR's registration.
    try:
        config = await fetch_smart_configuration(portal_http(app),
                                                  fhir_base=endpoint.fhir_base)
    except OpenVisitError as exc:
        raise ApprovalRefused(
            f"OpenVisit could not read the SMART configuration of the {_env(endpoint)} EHR at "
            f"{endpoint.fhir_base}: {exc.message}", title="The EHR could not be reached",
            status_code=502, details={"environment": endpoint.environment}) from exc
    problems = [p for p in config.problems(launch_styles=("standalone",),
                                           auth_method=endpoint.auth_method,
                                           openid=True)
                if "https" not in p or endpoint.environment == "production"]
    if problems:
        raise ApprovalRefused(
            f"The {_env(endpoint)} EHR at {endpoint.fhir_base} cannot be used for the approval "
            "sign-in: " + "; ".join(problems) + ".", title="The EHR's SMART set-up is incomplete",
            details={"environment": endpoint.environment})
    return config


async def begin(*, app: AppContext, principal: Principal, endpoint_id: uuid.UUID) -> str:
    """Start the approval sign-in; returns the EHR authorization URL to send the browser to.

    Raises :class:`PermissionDenied` for a non-approver, :class:`InvalidInput` when the
    endpoint is not awaiting approval, :class:`ApprovalRefused` when the EHR cannot be used.
    """
    principal.require("approver", doing="approve EHR endpoints")
    if principal.account_id is None:
        raise PermissionDenied("Approval needs a person signed in to the portal, not an API "
                               "token: the approver signs in to the EHR in a browser.")
    async with app.db.read() as session:
        endpoint = await get_for(session, principal=principal, endpoint_id=endpoint_id)
        if endpoint.state == "approved":
            raise InvalidInput(f"The {_env(endpoint)} endpoint is already approved.")
        if not endpoint.approver_ehr_user:
            raise InvalidInput(f"The {_env(endpoint)} endpoint names no approver yet; an org "
                               "admin must enter the approver's EHR user first.")
        if endpoint.state != "awaiting_approval":
            raise InvalidInput(f"The {_env(endpoint)} endpoint is a draft: its FHIR base has "
                               "not passed the live check. Run the check again, then approve.")
        await _not_the_configurer(session, principal, endpoint)
        session.expunge(endpoint)
    config = await _configuration(app, endpoint)
    pkce, state, nonce = Pkce.new(), new_state(), new_nonce()
    async with app.transaction() as session:
        await nonces.put(session, scope=STATE_SCOPE, value=state, ttl=STATE_TTL, data={
            "endpoint_id": str(endpoint.id), "version": endpoint.version,
            "account_id": str(principal.account_id), "verifier": pkce.verifier,
            "nonce": nonce,
        })
    request = build_authorize_request(
        config, client_id=endpoint.client_id, redirect_uri=redirect_uri(app), scope=SCOPE,
        state=state, aud=endpoint.fhir_base, code_challenge=pkce.challenge, nonce=nonce,
    )
    log.info("approval_begin", endpoint_id=str(endpoint.id))
    return request.url


async def configurers(session: AsyncSession, endpoint: EhrEndpoint) -> set[uuid.UUID]:
    """The staff accounts that set the endpoint's launch settings since its last approval.

    From the audit log: ``endpoint.create`` and every ``endpoint.update`` that bumped the
    version (a launch-relevant change), after the newest ``endpoint.approve``. An API token's
    change counts for the person the token acts for.
    """
    people: set[uuid.UUID] = set()
    tokens: set[uuid.UUID] = set()
    for entry in await repository.endpoint_history(session, endpoint.id):
        if entry.action == "endpoint.approve":
            people.clear()
            tokens.clear()
            continue
        before, after = entry.before or {}, entry.after or {}
        if entry.action == "endpoint.update" and before.get("version") == after.get("version"):
            continue
        kind, _, ident = entry.actor.partition(":")
        try:
            which = uuid.UUID(ident)
        except ValueError:
            continue  # "cli", "system": no portal person
        if kind == "staff":
            people.add(which)
        elif kind == "api_token":
            tokens.add(which)
    people.update(await repository.token_owners(session, tokens))
    return people


async def _not_the_configurer(session: AsyncSession, principal: Principal,
                              endpoint: EhrEndpoint) -> None:
    if principal.account_id in await configurers(session, endpoint):
        raise ApprovalRefused(
            f"You configured this {_env(endpoint)} endpoint's launch settings, so another "
            "approver must approve it (two-person rule: configuring and approving are two "
            "people's acts). Ask another approver of your organisation.",
            title="Another approver must approve this",
            details={"environment": endpoint.environment})


def same_user(signed_in: str, approver: str, *, fhir_base: str) -> bool:
    """Whether the id_token's fhirUser names the configured approver.

    Either may be relative (``Practitioner/prac-1``) or absolute; two absolute values must
    also agree on the FHIR base, so an approver of one EHR cannot approve another.
    """
    try:
        got = parse_fhir_user(signed_in, fhir_base=fhir_base)
        want = parse_fhir_user(approver, fhir_base=fhir_base)
    except InvalidInput:
        return False
    return (got.resource_type, got.id, got.url.rstrip("/")) == (
        want.resource_type, want.id, want.url.rstrip("/"))


def _shown(fhir_user: str | None, *, fhir_base: str) -> str:
    """``Practitioner/x`` when the user lives under this FHIR base, else the value as given."""
    if not fhir_user:
        return "a user without a fhirUser claim"
    try:
        parsed = parse_fhir_user(fhir_user, fhir_base=fhir_base)
    except InvalidInput:
        return fhir_user[:120]
    relative = f"{parsed.resource_type}/{parsed.id}"
    return relative if parsed.url == f"{fhir_base}/{relative}" else parsed.url


@dataclass(frozen=True)
class ApprovalOutcome:
    """The endpoint, approved — or the refusal to show.

    Refusals after the ``state`` was spent are returned, not raised: the page shows them in
    the portal, and what they recorded (a wrong user's attempt) is already committed.
    """

    endpoint: EhrEndpoint | None
    refusal: OpenVisitError | None = None


async def complete(
    *, app: AppContext, principal: Principal, state: str | None, code: str | None,
    error: str | None = None, error_description: str | None = None,
) -> ApprovalOutcome:
    """Finish at the redirect URI: state, code exchange, id_token, approver check, approve.

    Raises the :mod:`openvisit.nonces` errors for a bad ``state``; returns every later
    refusal (an EHR refusal, another portal user, a changed endpoint, the wrong EHR user: see
    :class:`ApprovalOutcome`).
    """
    # Someone who cannot approve at all is turned away before the state is touched.
    principal.require("approver", doing="approve EHR endpoints")
    # Spent in a transaction of its own: it stays spent whatever happens next.
    data = await nonces.spend(app.db, scope=STATE_SCOPE, value=state)
    try:
        return await _finish(app=app, principal=principal, data=data, code=code,
                             error=error, error_description=error_description)
    except OpenVisitError as exc:
        return ApprovalOutcome(None, exc)


async def _finish(
    *, app: AppContext, principal: Principal, data: dict[str, Any],
    code: str | None, error: str | None, error_description: str | None,
) -> ApprovalOutcome:
    if data.get("account_id") != str(principal.account_id):
        raise ApprovalRefused("This approval sign-in was started by another portal user. "
                              "Start the approval again from your own portal session.")
    # 1. Read.
    endpoint_id = uuid.UUID(data["endpoint_id"])
    async with app.db.read() as session:
        endpoint = await get_for(session, principal=principal, endpoint_id=endpoint_id)
        session.expunge(endpoint)
    env = {"environment": endpoint.environment}
    if error:
        from openvisit.smart.errors import safe_ehr_text

        said = f" ({safe_ehr_text(error_description)})" if error_description else ""
        raise ApprovalRefused(
            f"The {_env(endpoint)} EHR did not sign you in: {safe_ehr_text(error, limit=60)}"
            f"{said}. Try again; if it keeps failing, check OpenVisit's client registration "
            f"(client id {endpoint.client_id}, redirect URI {redirect_uri(app)}) in the EHR.",
            title="The EHR refused the sign-in", details=env)
    if not code:
        raise ApprovalRefused("The EHR returned without an authorization code; try again.",
                              details=env)
    async with app.db.read() as session:
        await _not_the_configurer(session, principal, endpoint)
    _same_version(endpoint, data)

    # 2. Call out, with no session open.
    config = await _configuration(app, endpoint)
    keys = await signing_keyset(app) if endpoint.auth_method == "private_key_jwt" else None
    auth = client_auth_for(endpoint.auth_method,
                           client_id=endpoint.client_id,
                           secret=endpoints.client_secret(app, endpoint), keys=keys,
                           basic_form_encoded=endpoints.basic_form_encoded(endpoint))
    try:
        token = await exchange_code(portal_http(app), config=config, code=code,
                                    redirect_uri=redirect_uri(app),
                                    code_verifier=data["verifier"], auth=auth)
    except OpenVisitError as exc:
        raise ApprovalRefused(f"{exc.message} ({_env(endpoint)} EHR at {endpoint.fhir_base})"
                              + _basic_hint(endpoint, exc),
                              title="The EHR refused the sign-in", details=env) from exc
    if not token.id_token:
        raise ApprovalRefused(
            f"The {_env(endpoint)} EHR signed you in but did not say who you are (no id_token). "
            "OpenVisit's client needs the openid and fhirUser scopes in the EHR.", details=env)
    claims = await validate_id_token(portal_http(app), id_token=token.id_token, config=config,
                                     client_id=endpoint.client_id, jwks_cache=_jwks(app),
                                     nonce=data["nonce"])

    # 3. Write, in one short transaction.
    async with app.transaction() as session:
        current = await get_for(session, principal=principal, endpoint_id=endpoint_id)
        _same_version(current, data)  # not changed while the approver was signing in
        approver = current.approver_ehr_user or ""
        if not claims.fhir_user or not same_user(claims.fhir_user, approver,
                                                 fhir_base=current.fhir_base):
            who = _shown(claims.fhir_user, fhir_base=current.fhir_base)
            await record(session, actor=principal.actor, action="endpoint.approval_refused",
                         object_type="ehr_endpoint", object_id=str(current.id),
                         after={"signed_in_as": who, "approver": approver},
                         organisation_id=current.organisation_id)
            return ApprovalOutcome(current, ApprovalRefused(
                f"You signed in to the {_env(current)} EHR as {who}, but this endpoint names "
                f"{approver} as its approver. Sign in to the EHR as that user, or ask an org "
                "admin to change the approver.", title="Not the named approver", details=env))
        await endpoints.approve(session, endpoint=current, actor=principal.actor,
                                approver_ehr_user=approver)
        current.options = {**(current.options or {}), "approved_snapshot": {
            **launch_snapshot(current), "approved_at": utcnow().isoformat(),
            "approved_by": approver}}
        await session.flush()
    log.info("approval_complete", endpoint_id=str(current.id))
    return ApprovalOutcome(current)


def _same_version(endpoint: EhrEndpoint, data: dict[str, Any]) -> None:
    if endpoint.version != data.get("version"):
        raise ApprovalRefused(
            f"The {_env(endpoint)} endpoint was changed while you were signing in. Review the "
            "changes on its page and approve again.", title="The endpoint changed",
            details={"environment": endpoint.environment})


def _basic_hint(endpoint: EhrEndpoint, exc: OpenVisitError) -> str:
    """For invalid_client with a secret that form-encoding changes: say what to try."""
    if exc.details.get("ehr_error") != "invalid_client":
        return ""
    warning = endpoints.basic_encoding_warning(endpoint)
    return f". {warning}" if warning else ""
