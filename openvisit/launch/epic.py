"""Epic's legacy encrypted context link as a second launch style (EHR-SPEC §2).

The endpoint's ``options["epic_link"]`` holds the configuration, because Epic does not publish
the cipher details: ``key_enc`` (the key, encrypted with the field cipher), ``key_format``
(``base64`` for a 32-byte AES-256 key, ``secret`` for a plain-text secret whose SHA-1 gives an
AES-128 key), ``mode`` (see :class:`~openvisit.smart.epic_context.EpicCipherMode`) and
``param`` (the query parameter Epic appends; default ``data``). Names in the link are dropped
by the decryptor and never reach this module.
"""

from __future__ import annotations

import time
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.context import AppContext
from openvisit.endpoints.service import LaunchRefused, get_endpoint
from openvisit.launch.fhir import AppointmentFacts
from openvisit.launch.service import Kind, LaunchOutcome, enter_visit, upsert_appointment
from openvisit.smart.epic_context import (
    EpicCipherMode,
    decrypt_epic_link,
    epic_key_from_base64,
    epic_key_from_secret,
)


async def launch_from_link(
    session: AsyncSession,
    *,
    app: AppContext,
    endpoint_id: uuid.UUID,
    kind: Kind,
    token: str,
) -> LaunchOutcome:
    """Decrypt the link, find or create its visit, and hand out the seat.

    The visit is keyed on the conference id (group visits) or else the session id (the CSN).
    Raises ``EpicLinkInvalid``/``EpicLinkExpired`` for a bad or old link.
    """
    endpoint = await get_endpoint(session, endpoint_id)
    env = {"environment": endpoint.environment}
    config = (endpoint.options or {}).get("epic_link")
    if endpoint.vendor != "epic" or not isinstance(config, dict) or not config.get("key_enc"):
        raise LaunchRefused(
            f"The {endpoint.environment} endpoint has no Epic context-link key configured.",
            title="Encrypted links are not set up",
            details=env,
        )
    secret = app.cipher.decrypt(config["key_enc"])
    key = (
        epic_key_from_secret(secret)
        if config.get("key_format") == "secret"
        else epic_key_from_base64(secret)
    )
    context = decrypt_epic_link(
        token, key=key, mode=EpicCipherMode(config.get("mode", "cbc-zero-iv")), now=time.time()
    )
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
        session, endpoint=endpoint, facts=facts, source="epic-link"
    )
    user_ref = f"Practitioner/{external}" if kind == "provider" and external else None
    return await enter_visit(
        session,
        app=app,
        endpoint=endpoint,
        appointment=appointment,
        kind=kind,
        user_ref=user_ref,
        patient_ref=facts.patient_ref,
    )
