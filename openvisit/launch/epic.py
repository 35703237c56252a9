"""Epic's legacy encrypted context link as a second launch style (EHR-SPEC §2).

The endpoint's ``options["epic_link"]`` holds one key per link kind (see
:mod:`openvisit.launch.epic_config`): a link is decrypted only with the key of its route's
kind, so a patient's link sent to the provider route is as unreadable as a forged one (the
same message for every failure). A clinician's seat additionally needs the organisation's IdP
sign-in or its proof (:mod:`openvisit.launch.proof`). The visit's join window comes from the
link's ``Timestamp`` and ``LinkValidityPeriod`` unless the appointment's start is known.
Names in the link are dropped by the decryptor and never reach this module.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.context import AppContext
from openvisit.ehr_endpoints.service import LaunchRefused, get_endpoint
from openvisit.launch.epic_config import EpicLinkConfig, derive_key
from openvisit.launch.fhir import AppointmentFacts
from openvisit.launch.seats import Kind, LaunchOutcome, enter_visit, upsert_appointment
from openvisit.logs import get_logger
from openvisit.smart.epic_context import EpicContext, decrypt_epic_link

log = get_logger(__name__)


def _link_key(app: AppContext, *, config: EpicLinkConfig, kind: Kind, environment: str) -> bytes:
    """The AES key of ``kind`` links; :class:`LaunchRefused` when they cannot be accepted."""
    env = {"environment": environment}
    if config.old_layout and not config.keys:
        raise LaunchRefused(
            f"The {environment} endpoint's encrypted links use the old single-key set-up, which "
            "let a patient's link open a clinician's seat, so they are refused. An administrator "
            "sets a provider key and a separate patient key (portal: the endpoint's \"Epic "
            "encrypted links\"; CLI: openvisit endpoint epic-link --kind provider|patient).",
            title="Encrypted links must be set up again",
            details=env,
        )
    key = config.keys.get(kind)
    if key is None:
        raise LaunchRefused(
            f"The {environment} endpoint has no Epic context-link key for {kind} links.",
            title="Encrypted links are not set up",
            details=env,
        )
    if key.legacy and not config.allow_legacy_modes:
        raise LaunchRefused(
            f"The {environment} endpoint's {kind} links use {key.mode.value}, an unauthenticated "
            "mode, without the administrator's legacy opt-in. Set the key again with gcm, or "
            "record the opt-in for this endpoint.",
            title="Encrypted links are not set up",
            details=env,
        )
    return derive_key(app.cipher.decrypt(key.key_enc), key.key_format)


def link_window(context: EpicContext) -> tuple[datetime, datetime]:
    """``(issued, valid until)`` of a decrypted link, as aware UTC datetimes."""
    return (
        datetime.fromtimestamp(context.timestamp, UTC),
        datetime.fromtimestamp(context.expires_at, UTC),
    )


async def launch_from_link(
    session: AsyncSession,
    *,
    app: AppContext,
    endpoint_id: uuid.UUID,
    kind: Kind,
    token: str,
    proof_cookie: str | None = None,
) -> LaunchOutcome:
    """Decrypt the link with the ``kind`` key, find or create its visit, hand out the seat.

    The visit is keyed on the conference id (group visits) or else the session id (the CSN).
    Raises ``EpicLinkInvalid``/``EpicLinkExpired`` for a bad or old link (a link of the other
    kind is a bad link), :class:`LaunchRefused` for an endpoint that is not approved or not
    set up, or a provider launch that cannot be proven (see :func:`enter_visit`).
    """
    endpoint = await get_endpoint(session, endpoint_id)
    env = {"environment": endpoint.environment}
    config = EpicLinkConfig.of(endpoint.options)
    if endpoint.vendor != "epic" or not (config.keys or config.old_layout):
        raise LaunchRefused(
            f"The {endpoint.environment} endpoint has no Epic context-link key configured.",
            title="Encrypted links are not set up",
            details=env,
        )
    if endpoint.state != "approved":
        raise LaunchRefused(
            f"The {endpoint.environment} endpoint is not approved yet (it is "
            f"{endpoint.state.replace('_', ' ')}); launches from it are refused until the named "
            "EHR approver approves it in the OpenVisit portal.",
            title="Endpoint not approved",
            details=env,
        )
    key = _link_key(app, config=config, kind=kind, environment=endpoint.environment)
    context = decrypt_epic_link(token, key=key, mode=config.keys[kind].mode, now=time.time())
    visit_key = (
        f"Conference/{context.conference_id}"
        if context.conference_id
        else f"CSN/{context.session_id}"
        if context.session_id
        else None
    )
    if visit_key is None:
        raise LaunchRefused(
            "The Epic link names neither a session (CSN) nor a conference id.", details=env
        )
    external = context.external_id
    facts = AppointmentFacts(
        ehr_appointment_id=visit_key,
        status="booked",
        start_at=None,
        end_at=None,
        patient_ref=(
            f"{context.external_id_type or 'ExternalID'}/{external}"
            if kind == "patient" and external
            else None
        ),
        practitioner_ref=None,
        department=context.department,
        encounter_id=context.session_id,
    )
    appointment = await upsert_appointment(
        session, app=app, endpoint=endpoint, facts=facts, source="epic-link"
    )
    user_ref = f"Practitioner/{external}" if kind == "provider" and external else None
    log.info("epic_link_read", endpoint_id=str(endpoint.id), kind=kind,
             appointment_id=str(appointment.id))
    return await enter_visit(
        session,
        app=app,
        endpoint=endpoint,
        appointment=appointment,
        kind=kind,
        user_ref=user_ref,
        patient_ref=facts.patient_ref,
        provider_proof="idp",
        proof_cookie=proof_cookie,
        link_window=link_window(context),
    )
