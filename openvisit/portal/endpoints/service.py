"""EHR endpoints as the portal manages them: create, change, check live, remove.

Life cycle: **draft** (saved, but the live check failed or no approver is named) →
**awaiting approval** (the FHIR base passed the live check and an approver is named) →
**approved** (the approver proved, by SMART sign-in to that very EHR, that the base is real;
see :mod:`openvisit.portal.approval.service`).

**Editing an approved endpoint.** Changing a field that alters what a launch does (FHIR base,
environment, vendor, client id, authentication method or secret) sends the endpoint back to
awaiting approval, and *launches from it are refused meanwhile* with a page that names the
environment and says approval is pending. We chose this over "keep launching with the last
approved version" because an approval attests one exact FHIR base + client registration:
launching on the old snapshot while the portal shows the new values would make what
clinicians get differ from what the admin sees — precisely the test/production confusion
approval exists to catch — and a snapshot with the *old* secret or base may simply no longer
work. The portal therefore warns before such a save, says who must re-approve, and the
approver sees exactly what changed (``options["approved_snapshot"]`` keeps the last approved
launch-relevant values for that diff). Cosmetic edits (name, time zone, approver) and SMS
settings never touch approval. To move a production endpoint to a new FHIR base without a
gap, add the new base as a second endpoint, approve it, then remove the old one.

**No transaction across the live check.** Creating, changing and re-checking an endpoint call
the FHIR base over the network (seconds, for a slow or unreachable server); on SQLite a write
transaction held meanwhile would stall the SIU feed and every other writer. So each runs read
(a read-only session, the endpoint detached from it) → live check (no session) → write (one
short transaction, which refuses with :class:`~openvisit.errors.Conflict` if the endpoint
changed while it was being checked).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.context import AppContext
from openvisit.ehr_endpoints import service as endpoints
from openvisit.errors import Conflict, InvalidInput, NotFound
from openvisit.launch.epic_config import EpicLinkConfig, save_link_key
from openvisit.models import EhrEndpoint, Organisation
from openvisit.outbound import portal_http
from openvisit.portal import repository
from openvisit.portal.endpoints.checks import CheckResult, CheckStep, check_fhir_base
from openvisit.portal.signin.sessions import Principal
from openvisit.smart.idtoken import parse_fhir_user

_APPROVER_TYPES = ("Practitioner", "PractitionerRole", "Person")


class CheckFailed(InvalidInput):
    """The FHIR base did not pass the live check; ``result`` has every step."""

    code = "fhir_base_check_failed"

    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.first_error or "The FHIR base check failed.",
                         details={"field": "fhir_base", "check": result.as_dict()})
        self.result = result


@dataclass
class EndpointInput:
    """What the endpoint form or the JSON API sends (``None`` = leave unchanged)."""

    fhir_base: str | None = None
    environment: str | None = None
    vendor: str | None = None
    client_id: str | None = None
    auth_method: str | None = None
    client_secret: str | None = None
    name: str | None = None
    approver_ehr_user: str | None = None
    timezone: str | None = None
    #: client_secret_basic without RFC 6749 form-encoding (servers that do not decode it).
    raw_basic_credentials: bool | None = None

    def changes(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def normalise_approver(value: str | None) -> str | None:
    """``Practitioner/<id>`` or the absolute URL, checked; empty → None.

    Raises :class:`InvalidInput` (field ``approver_ehr_user``) for anything else.
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        parsed = parse_fhir_user(text)
    except InvalidInput:
        parsed = None
    if parsed is None or parsed.resource_type not in _APPROVER_TYPES:
        raise InvalidInput(
            "Enter the approver's EHR user as the EHR names it in fhirUser: Practitioner/<id> "
            "(for example Practitioner/prac-1) or the full URL …/Practitioner/<id>. Ask the "
            "EHR analyst for their Practitioner id.", details={"field": "approver_ehr_user"},
        )
    return text.rstrip("/") if "://" in text else f"{parsed.resource_type}/{parsed.id}"


def _check_timezone(value: str | None) -> None:
    if value is None:
        return
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"{value!r} is not a time zone; use an IANA name such as "
                           "Europe/Prague or America/Chicago.",
                           details={"field": "timezone"}) from None


async def live_check(
    app: AppContext, *, fhir_base: str, vendor: str, environment: str, auth_method: str
) -> CheckResult:
    """Normalise the URL and run :func:`check_fhir_base` through the outbound guard; a
    malformed URL fails step one. Callers check the caller is an org admin."""
    try:
        base = endpoints.normalise_fhir_base(fhir_base)
    except InvalidInput as exc:
        env = "Test" if environment == "test" else "Production"
        steps = [CheckStep("url", "Address", "failed", f"{env} environment: {exc.message}")]
        return CheckResult(fhir_base=fhir_base.strip(), environment=environment, steps=steps)
    return await check_fhir_base(portal_http(app), fhir_base=base, vendor=vendor,
                                 environment=environment, auth_method=auth_method)


async def get_for(session: AsyncSession, *, principal: Principal,
                  endpoint_id: uuid.UUID) -> EhrEndpoint:
    """The endpoint if it belongs to the principal's organisation, else :class:`NotFound`."""
    endpoint = await session.get(EhrEndpoint, endpoint_id)
    if endpoint is None or endpoint.organisation_id != principal.organisation_id:
        raise NotFound("There is no such EHR endpoint in your organisation.")
    return endpoint


async def snapshot_for(app: AppContext, *, principal: Principal,
                       endpoint_id: uuid.UUID) -> EhrEndpoint:
    """:func:`get_for` in a read-only session, detached from it: its values stay readable and
    no transaction stays open (for views that call out to the network next)."""
    async with app.db.read() as session:
        endpoint = await get_for(session, principal=principal, endpoint_id=endpoint_id)
        session.expunge(endpoint)
    return endpoint


def _unchanged_since(current: EhrEndpoint, read: EhrEndpoint) -> None:
    if current.version != read.version or launch_snapshot(current) != launch_snapshot(read):
        raise Conflict(f"The {current.environment} endpoint was changed by someone else while "
                       "OpenVisit was checking it. Reload the page and try again.")


async def list_for(session: AsyncSession, *, principal: Principal) -> list[EhrEndpoint]:
    return await repository.endpoints_of(session, principal.organisation_id)


def last_check(endpoint: EhrEndpoint) -> dict[str, Any] | None:
    check = (endpoint.options or {}).get("check")
    return check if isinstance(check, dict) else None


async def _review(session: AsyncSession, endpoint: EhrEndpoint, *, actor: str) -> None:
    """draft ↔ awaiting approval from the last check and the approver (approved stays)."""
    if endpoint.state == "approved":
        return
    check = last_check(endpoint)
    ready = bool(endpoint.approver_ehr_user and check and check.get("ok"))
    await endpoints.set_state(session, endpoint=endpoint,
                              state="awaiting_approval" if ready else "draft", actor=actor)


def _store_check(endpoint: EhrEndpoint, result: CheckResult) -> None:
    endpoint.options = {**(endpoint.options or {}), "check": result.as_dict()}


def _method(data: EndpointInput) -> str:
    return data.auth_method or ("client_secret_basic" if data.client_secret else "private_key_jwt")


async def create(
    app: AppContext, *, principal: Principal, data: EndpointInput,
    save_failed_check: bool = False,
) -> tuple[EhrEndpoint, CheckResult]:
    """Check the FHIR base live, then add the endpoint (draft or awaiting approval) in a
    transaction of its own; returns it (committed) and the check.

    Raises :class:`CheckFailed` when the check fails (unless ``save_failed_check``: then it
    is saved as a draft to fix later), :class:`InvalidInput`/:class:`Conflict` for bad input.
    """
    principal.require("org_admin", doing="add EHR endpoints")
    approver = normalise_approver(data.approver_ehr_user)
    _check_timezone(data.timezone)
    if not data.fhir_base:
        raise InvalidInput("Enter the FHIR base URL of the EHR.", details={"field": "fhir_base"})
    vendor, environment, method = data.vendor or "generic", data.environment or "test", \
        _method(data)
    result = await live_check(app, fhir_base=data.fhir_base, vendor=vendor,
                              environment=environment, auth_method=method)
    if not result.ok and not save_failed_check:
        raise CheckFailed(result)
    async with app.transaction() as session:
        organisation = await session.get(Organisation, principal.organisation_id)
        assert organisation is not None
        try:
            endpoint = await endpoints.add_endpoint(
                session, app=app, organisation=organisation, fhir_base=data.fhir_base,
                environment=environment, vendor=vendor, client_id=data.client_id or "",
                client_secret=data.client_secret or None, auth_method=method,
                name=(data.name or "").strip() or None, approver_ehr_user=approver,
                timezone=data.timezone, raw_basic_credentials=bool(data.raw_basic_credentials),
                actor=principal.actor,
            )
        except (InvalidInput, Conflict) as exc:
            raise type(exc)(exc.message, details={"field": _field_of(exc.message)}) from exc
        _store_check(endpoint, result)
        await _review(session, endpoint, actor=principal.actor)
    return endpoint, result


def _field_of(message: str) -> str:
    lowered = message.lower()
    for needle, name in (("client id", "client_id"), ("secret", "client_secret"),
                         ("environment", "environment"), ("vendor", "vendor"),
                         ("method", "auth_method")):
        if needle in lowered:
            return name
    return "fhir_base"


async def update(
    app: AppContext, *, principal: Principal, endpoint: EhrEndpoint, data: EndpointInput,
    save_failed_check: bool = False,
) -> tuple[EhrEndpoint, set[str], CheckResult | None]:
    """Change an endpoint; re-run the live check when a launch-relevant field changes.

    ``endpoint`` is the version the change was made against (e.g. :func:`snapshot_for`); the
    live check runs with no transaction open, then the change is written in a transaction
    of its own. Returns the endpoint as saved, the changed fields and the new check (None
    when none was needed). Raises like :func:`create`, and :class:`Conflict` when the
    endpoint changed meanwhile.
    """
    principal.require("org_admin", doing="change EHR endpoints")
    changes = data.changes()
    if "approver_ehr_user" in changes:
        changes["approver_ehr_user"] = normalise_approver(changes["approver_ehr_user"])
    if "name" in changes:
        changes["name"] = changes["name"].strip() or endpoint.name
    _check_timezone(data.timezone)
    relevant = {"fhir_base", "vendor", "environment", "auth_method"}
    result: CheckResult | None = None
    wanted = {k: changes[k] for k in relevant if k in changes}
    if any(str(v) != str(getattr(endpoint, k)) for k, v in wanted.items()):
        result = await live_check(
            app, fhir_base=changes.get("fhir_base", endpoint.fhir_base),
            vendor=changes.get("vendor", endpoint.vendor),
            environment=changes.get("environment", endpoint.environment),
            auth_method=changes.get("auth_method", endpoint.auth_method))
        if not result.ok and not save_failed_check:
            raise CheckFailed(result)
    async with app.transaction() as session:
        current = await get_for(session, principal=principal, endpoint_id=endpoint.id)
        _unchanged_since(current, endpoint)
        try:
            changed = await endpoints.update_endpoint(session, app=app, endpoint=current,
                                                      changes=changes, actor=principal.actor)
        except (InvalidInput, Conflict) as exc:
            raise type(exc)(exc.message, details={"field": _field_of(exc.message)}) from exc
        if result is not None:
            _store_check(current, result)
        await _review(session, current, actor=principal.actor)
    return current, changed, result


async def recheck(
    app: AppContext, *, principal: Principal, endpoint_id: uuid.UUID
) -> tuple[EhrEndpoint, CheckResult]:
    """Run the live check again for a saved endpoint and update its state (org admins only:
    it makes the server fetch URLs). Read → check (no transaction) → write; raises
    :class:`NotFound`, and :class:`Conflict` when the endpoint changed meanwhile."""
    principal.require("org_admin", doing="check EHR endpoints")
    endpoint = await snapshot_for(app, principal=principal, endpoint_id=endpoint_id)
    result = await live_check(app, fhir_base=endpoint.fhir_base, vendor=endpoint.vendor,
                              environment=endpoint.environment, auth_method=endpoint.auth_method)
    async with app.transaction() as session:
        current = await get_for(session, principal=principal, endpoint_id=endpoint_id)
        _unchanged_since(current, endpoint)
        _store_check(current, result)
        await session.flush()
        await _review(session, current, actor=principal.actor)
    return current, result


async def remove(session: AsyncSession, *, principal: Principal, endpoint: EhrEndpoint) -> None:
    """Delete an endpoint that has no appointments yet (history is never deleted here)."""
    principal.require("org_admin", doing="remove EHR endpoints")
    count = await repository.appointment_count_for_endpoint(session, endpoint.id)
    if count:
        raise Conflict(
            f"The {endpoint.environment} endpoint {endpoint.fhir_base} has {count} "
            "appointment(s); visits and reports depend on it, so it cannot be removed. Change "
            "its settings instead.")
    await endpoints.remove_endpoint(session, endpoint=endpoint, actor=principal.actor)


def changes_since_approval(endpoint: EhrEndpoint) -> list[tuple[str, str, str]]:
    """(field, approved value, current value) for each launch field changed since approval."""
    snap = (endpoint.options or {}).get("approved_snapshot")
    if not isinstance(snap, dict):
        return []
    current = launch_snapshot(endpoint)
    return [(k, str(snap.get(k)), str(current[k])) for k in current
            if k not in ("version", "approved_at", "approved_by") and snap.get(k) != current[k]]


def launch_snapshot(endpoint: EhrEndpoint) -> dict[str, Any]:
    """The launch-relevant values an approval attests (no secret: only whether one is set)."""
    return {"fhir_base": endpoint.fhir_base, "environment": endpoint.environment,
            "vendor": endpoint.vendor, "client_id": endpoint.client_id,
            "auth_method": endpoint.auth_method,
            "client_secret_set": endpoint.client_secret_enc is not None,
            "version": endpoint.version}


def basic_encoding_warning(endpoint: EhrEndpoint) -> str | None:
    """The portal's warning about a secret that form-encoding changes (see
    :func:`openvisit.ehr_endpoints.service.basic_encoding_warning`)."""
    return endpoints.basic_encoding_warning(endpoint)


def launch_changes(endpoint: EhrEndpoint, data: EndpointInput) -> list[str]:
    """Launch-relevant fields ``data`` would change (a new secret always counts)."""
    changes = data.changes()
    found = []
    for name in endpoints.LAUNCH_FIELDS:
        if name not in changes:
            continue
        if name == "client_secret":
            found.append(name)
        elif name == "fhir_base":
            try:
                if endpoints.normalise_fhir_base(changes[name]) != endpoint.fhir_base:
                    found.append(name)
            except InvalidInput:
                found.append(name)
        elif str(changes[name]).strip() != str(getattr(endpoint, name)):
            found.append(name)
    return found


# --- Epic encrypted context links ------------------------------------------------------------


@dataclass
class EpicLinkInput:
    """The Epic-link form of one link kind (``allow_legacy_modes`` is the opt-in checkbox)."""

    kind: str
    key: str
    key_format: str = "base64"
    mode: str = "gcm"
    param: str | None = None
    allow_legacy_modes: bool = False


def epic_link_summary(endpoint: EhrEndpoint) -> dict[str, Any] | None:
    """What the endpoint page shows of the Epic-link set-up (None for other vendors)."""
    if endpoint.vendor != "epic":
        return None
    return EpicLinkConfig.of(endpoint.options).summary()


async def set_epic_link_key(
    session: AsyncSession, *, app: AppContext, principal: Principal, endpoint: EhrEndpoint,
    data: EpicLinkInput,
) -> EpicLinkConfig:
    """Store the key of one link kind (org admins only).

    Raises :class:`InvalidInput` (``details["field"]`` names the form field) for a missing or
    malformed key, the other kind's key, or a legacy mode without the opt-in; see
    :func:`openvisit.launch.epic_config.with_key`.
    """
    principal.require("org_admin", doing="set Epic link keys")
    if not data.key.strip():
        raise InvalidInput("Paste the key (or secret) the Epic analyst gave you for "
                           f"{data.kind} links.", details={"field": "key"})
    return await save_link_key(
        session, app=app, endpoint=endpoint, kind=data.kind, secret=data.key,
        key_format=data.key_format, mode=data.mode, param=data.param,
        allow_legacy_modes=data.allow_legacy_modes, actor=principal.actor,
    )
