"""Add, change, approve and look up EHR endpoints.

An endpoint is one FHIR base in one environment (test or production). Launches are accepted
only from an approved endpoint whose FHIR base equals the launch's ``iss``; mixing up the test
and production records is the most common set-up error, so every refusal names the
environment it found (or did not find).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record, snapshot
from openvisit.context import AppContext
from openvisit.ehr_endpoints import repository
from openvisit.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from openvisit.models import EhrEndpoint, Organisation, utcnow
from openvisit.models.choices import EndpointState
from openvisit.models.endpoint import AUTH_METHODS, ENVIRONMENTS, VENDORS
from openvisit.smart.client_auth import changed_by_form_encoding


def normalise_fhir_base(url: str) -> str:
    """Lower-case scheme and host, no trailing slash, no query or fragment.

    Raises :class:`InvalidInput` for anything that is not an absolute http(s) URL.
    """
    text = (url or "").strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise InvalidInput(
            f"{text!r} is not a FHIR base URL: it must be an absolute https:// address such as "
            "https://ehr.example.org/api/FHIR/R4."
        )
    if parts.query or parts.fragment:
        raise InvalidInput(
            "A FHIR base URL has no query string or fragment (nothing after ? or #)."
        )
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, "", ""))


class LaunchRefused(PermissionDenied):
    """A launch that cannot be accepted; the page names the environment and what to check."""

    code = "launch_refused"


async def add_endpoint(
    session: AsyncSession,
    *,
    app: AppContext,
    organisation: Organisation,
    fhir_base: str,
    environment: str,
    vendor: str,
    client_id: str,
    client_secret: str | None = None,
    auth_method: str | None = None,
    name: str | None = None,
    approver_ehr_user: str | None = None,
    approved: bool = False,
    timezone: str | None = None,
    options: dict[str, Any] | None = None,
    raw_basic_credentials: bool = False,
    actor: str,
) -> EhrEndpoint:
    """Register an endpoint in ``draft`` (or ``approved`` when told so from the CLI).

    ``raw_basic_credentials`` sends client_secret_basic credentials unencoded (see
    :func:`basic_form_encoded`).

    Raises :class:`InvalidInput` for an unknown vendor/environment/method or a bad URL and
    :class:`Conflict` when the organisation already has this FHIR base.
    """
    base = normalise_fhir_base(fhir_base)
    _check_choice("environment", environment, ENVIRONMENTS)
    _check_choice("vendor", vendor, VENDORS)
    method = auth_method or ("client_secret_basic" if client_secret else "private_key_jwt")
    _check_choice("authentication method", method, AUTH_METHODS)
    if method.startswith("client_secret") and not client_secret:
        raise InvalidInput(f"The {method} method needs the client secret the EHR issued.")
    if not client_id.strip():
        raise InvalidInput("The client id the EHR issued to OpenVisit is required.")
    for existing in await repository.by_fhir_base(session, base):
        if existing.organisation_id == organisation.id:
            raise Conflict(
                f"This organisation already has the FHIR base {base} "
                f"(its {existing.environment} endpoint)."
            )
    endpoint = EhrEndpoint(
        organisation_id=organisation.id,
        name=name or f"{vendor} {environment}",
        vendor=vendor,
        environment=environment,
        fhir_base=base,
        client_id=client_id.strip(),
        client_secret_enc=app.cipher.encrypt(client_secret) if client_secret else None,
        auth_method=method,
        approver_ehr_user=approver_ehr_user,
        state="approved" if approved else "draft",
        approved_at=utcnow() if approved else None,
        approved_by=actor if approved else None,
        timezone=timezone or organisation.timezone,
        options=_with_basic_options(options or {}, secret=client_secret,
                                    raw=raw_basic_credentials or None),
    )
    session.add(endpoint)
    await session.flush()
    await record(
        session,
        actor=actor,
        action="endpoint.create",
        obj=endpoint,
        organisation_id=organisation.id,
    )
    return endpoint


def _check_choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidInput(f"Unknown {what} {value!r}; choose one of: {', '.join(allowed)}.")


async def approve(
    session: AsyncSession, *, endpoint: EhrEndpoint, actor: str, approver_ehr_user: str | None
) -> EhrEndpoint:
    """Mark the endpoint approved by ``approver_ehr_user`` (checked by the caller's sign-in)."""
    before = snapshot(endpoint)
    endpoint.state = "approved"
    endpoint.approved_at = utcnow()
    endpoint.approved_by = approver_ehr_user or actor
    await session.flush()
    await record(
        session,
        actor=actor,
        action="endpoint.approve",
        obj=endpoint,
        before=before,
        organisation_id=endpoint.organisation_id,
    )
    return endpoint


async def endpoint_for_launch(session: AsyncSession, *, iss: str) -> EhrEndpoint:
    """The approved endpoint a launch with this ``iss`` belongs to.

    Raises :class:`LaunchRefused` with an actionable message when the FHIR base is unknown or
    the endpoint is not approved.
    """
    if not iss:
        raise LaunchRefused(
            "The EHR opened OpenVisit without saying which FHIR server it is (no iss "
            "parameter). Check the launch URL in the EHR's OpenVisit record.",
            title="This launch is missing information",
        )
    try:
        base = normalise_fhir_base(iss)
    except InvalidInput as exc:
        raise LaunchRefused(exc.message, title="This launch is not valid") from exc
    endpoints = await repository.by_fhir_base(session, base)
    if not endpoints:
        raise LaunchRefused(
            f"This FHIR base URL is not configured in OpenVisit: {base}. Are the test and "
            "production records swapped?",
            title="Unknown EHR",
            details={
                "hint": "An administrator adds the endpoint in the OpenVisit portal (or "
                "with `openvisit endpoint add`). If it exists for the other environment, "
                "the EHR record points at the wrong OpenVisit endpoint.",
                "fhir_base": base,
            },
        )
    approved = [e for e in endpoints if e.state == "approved"]
    if not approved:
        endpoint = endpoints[0]
        raise LaunchRefused(
            f"The {endpoint.environment} endpoint {base} is not approved yet (it is "
            f"{endpoint.state.replace('_', ' ')}). The named EHR approver must approve it in "
            "the OpenVisit portal before clinicians can launch visits.",
            title="Endpoint not approved",
            details={"environment": endpoint.environment, "fhir_base": base},
        )
    return approved[0]


async def get_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> EhrEndpoint:
    endpoint = await repository.by_id(session, endpoint_id)
    if endpoint is None:
        raise NotFound(f"There is no EHR endpoint {endpoint_id}.")
    return endpoint


def client_secret(app: AppContext, endpoint: EhrEndpoint) -> str | None:
    """The endpoint's client secret in clear, for the token request only."""
    return app.cipher.decrypt(endpoint.client_secret_enc) if endpoint.client_secret_enc else None


#: ``options`` keys. ``basic_credentials``: ``"raw"`` sends client_secret_basic's id and secret
#: unencoded (for token servers that do not form-decode the Basic header); absent = RFC 6749
#: §2.3.1 form-encoding. ``secret_changes_when_form_encoded``: set whenever a secret is stored
#: (one bit about the secret, so pages can warn without decrypting it).
BASIC_CREDENTIALS = "basic_credentials"
SECRET_ENCODES = "secret_changes_when_form_encoded"


def basic_form_encoded(endpoint: EhrEndpoint) -> bool:
    """Whether client_secret_basic form-encodes id and secret (RFC 6749 §2.3.1, the default)."""
    return (endpoint.options or {}).get(BASIC_CREDENTIALS) != "raw"


def basic_encoding_warning(endpoint: EhrEndpoint) -> str | None:
    """A warning when the secret (or id) changes under form-encoding and raw credentials are
    off: a server that does not decode the Basic header then compares ``a%2Bb`` with the
    ``a+b`` it issued and answers ``invalid_client``. ``None`` otherwise."""
    if endpoint.auth_method != "client_secret_basic" or not basic_form_encoded(endpoint):
        return None
    if not ((endpoint.options or {}).get(SECRET_ENCODES)
            or changed_by_form_encoding(endpoint.client_id)):
        return None
    return ("The client secret (or id) contains characters such as + / = that OAuth's "
            "client_secret_basic form-encodes (RFC 6749 §2.3.1). Many EHR token servers do "
            "not decode them and then refuse OpenVisit with invalid_client. If the approval "
            "sign-in or launches fail with invalid_client, turn on \"Send the Basic "
            "credentials unencoded\" for this endpoint (or use client_secret_post).")


def _with_basic_options(options: dict[str, Any], *, secret: str | None,
                        raw: bool | None) -> dict[str, Any]:
    out = dict(options)
    if secret is not None:
        out[SECRET_ENCODES] = bool(secret) and changed_by_form_encoding(secret)
    if raw is not None:
        if raw:
            out[BASIC_CREDENTIALS] = "raw"
        else:
            out.pop(BASIC_CREDENTIALS, None)
    return out


#: Fields whose change alters what a launch does; changing one sends an approved endpoint
#: back for approval (see openvisit.portal.endpoints.service for why launches then wait).
LAUNCH_FIELDS = ("fhir_base", "environment", "vendor", "client_id", "auth_method", "client_secret")
#: ``raw_basic_credentials`` changes only how the same secret is sent, not which EHR or client
#: registration a launch uses, so it does not send the endpoint back for approval.
EDITABLE_FIELDS = (*LAUNCH_FIELDS, "name", "approver_ehr_user", "timezone",
                   "raw_basic_credentials")


async def update_endpoint(
    session: AsyncSession,
    *,
    app: AppContext,
    endpoint: EhrEndpoint,
    changes: dict[str, Any],
    actor: str,
) -> set[str]:
    """Apply ``changes`` (keys from :data:`EDITABLE_FIELDS`); returns the fields that changed.

    A change to a :data:`LAUNCH_FIELDS` field bumps ``version`` and moves an approved endpoint
    to ``awaiting_approval`` (``draft`` when no approver is named). ``client_secret`` ``None``
    keeps the stored secret, ``""`` removes it. Raises :class:`InvalidInput` like
    :func:`add_endpoint` and :class:`Conflict` for a FHIR base the organisation already has.
    """
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise InvalidInput(
            f"These endpoint fields cannot be changed: {', '.join(sorted(unknown))}."
        )
    before = snapshot(endpoint)
    changed: set[str] = set()
    if "fhir_base" in changes:
        base = normalise_fhir_base(changes["fhir_base"])
        if base != endpoint.fhir_base:
            for existing in await repository.by_fhir_base(session, base):
                if existing.organisation_id == endpoint.organisation_id:
                    raise Conflict(
                        f"This organisation already has the FHIR base {base} "
                        f"(its {existing.environment} endpoint)."
                    )
            endpoint.fhir_base = base
            changed.add("fhir_base")
    for name, allowed in (
        ("environment", ENVIRONMENTS),
        ("vendor", VENDORS),
        ("auth_method", AUTH_METHODS),
    ):
        value = changes.get(name)
        if value is not None and value != getattr(endpoint, name):
            _check_choice(name.replace("_", " "), value, allowed)
            setattr(endpoint, name, value)
            changed.add(name)
    if changes.get("client_id") is not None and changes["client_id"].strip() != endpoint.client_id:
        if not changes["client_id"].strip():
            raise InvalidInput("The client id the EHR issued to OpenVisit is required.")
        endpoint.client_id = changes["client_id"].strip()
        changed.add("client_id")
    secret = changes.get("client_secret")
    if secret is not None:
        endpoint.client_secret_enc = app.cipher.encrypt(secret) if secret else None
        endpoint.options = _with_basic_options(endpoint.options or {}, secret=secret, raw=None)
        changed.add("client_secret")
    raw = changes.get("raw_basic_credentials")
    if raw is not None and bool(raw) != (not basic_form_encoded(endpoint)):
        endpoint.options = _with_basic_options(endpoint.options or {}, secret=None, raw=raw)
        changed.add("raw_basic_credentials")
    if endpoint.auth_method.startswith("client_secret") and not endpoint.client_secret_enc:
        raise InvalidInput(
            f"The {endpoint.auth_method} method needs the client secret the EHR issued."
        )
    for name in ("name", "approver_ehr_user", "timezone"):
        if name in changes and changes[name] != getattr(endpoint, name):
            setattr(endpoint, name, changes[name])
            changed.add(name)
    if not changed:
        return changed
    if changed & set(LAUNCH_FIELDS):
        endpoint.version += 1
        if endpoint.state == "approved":
            endpoint.state = "awaiting_approval" if endpoint.approver_ehr_user else "draft"
    await session.flush()
    await record(
        session,
        actor=actor,
        action="endpoint.update",
        obj=endpoint,
        before=before,
        organisation_id=endpoint.organisation_id,
    )
    return changed


async def set_state(
    session: AsyncSession, *, endpoint: EhrEndpoint, state: EndpointState, actor: str
) -> None:
    """Move an endpoint between ``draft`` and ``awaiting_approval`` (approval has its own call)."""
    _check_choice("state", state, ("draft", "awaiting_approval"))
    if endpoint.state == state:
        return
    before = {"state": endpoint.state}
    endpoint.state = state
    await session.flush()
    action = "endpoint.submit" if state != "draft" else "endpoint.draft"
    await record(
        session,
        actor=actor,
        action=action,
        object_type="ehr_endpoint",
        object_id=str(endpoint.id),
        before=before,
        after={"state": state, "version": endpoint.version},
        organisation_id=endpoint.organisation_id,
    )


async def remove_endpoint(session: AsyncSession, *, endpoint: EhrEndpoint, actor: str) -> None:
    """Delete an endpoint (its SMS settings, links and context tokens go with it); audited."""
    before = snapshot(endpoint)
    await session.delete(endpoint)
    await session.flush()
    await record(
        session,
        actor=actor,
        action="endpoint.delete",
        object_type="ehr_endpoint",
        object_id=before["id"],
        before=before,
        organisation_id=endpoint.organisation_id,
    )


async def launch_frame_ancestors(session: AsyncSession) -> list[str]:
    """The EHR origins that may frame launch pages: every organisation's list (the launch
    page is shown before its endpoint, and so its organisation, is known)."""
    return await repository.all_frame_ancestors(session)


async def list_endpoints(session: AsyncSession) -> list[EhrEndpoint]:
    """Every endpoint of every organisation (the operator's CLI)."""
    return await repository.for_organisation(session)
