"""``openvisit endpoint …``: EHR endpoints (add, list, credentials, Epic links, the HL7
feed's certificate and senders, notification settings), as the portal sets them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from openvisit.cli_support import print_settings, run
from openvisit.context import AppContext

endpoint_app = typer.Typer(help="EHR endpoints (FHIR bases per environment).", no_args_is_help=True)


@endpoint_app.command("add")
def endpoint_add(
    fhir_base: Annotated[str, typer.Option(help="FHIR base URL (the launch's iss).")],
    client_id: Annotated[str, typer.Option(help="Client id the EHR issued to OpenVisit.")],
    environment: Annotated[str, typer.Option(help="test or production")] = "test",
    vendor: Annotated[str, typer.Option(help="generic, epic or oracle")] = "generic",
    client_secret: Annotated[
        str | None, typer.Option(help="Client secret (omit for private_key_jwt).")
    ] = None,
    auth_method: Annotated[
        str | None,
        typer.Option(help="private_key_jwt, client_secret_basic, client_secret_post or none."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="A label for people.")] = None,
    timezone: Annotated[
        str | None, typer.Option(help="IANA zone of the EHR's local times.")
    ] = None,
    approved: Annotated[bool, typer.Option(help="Mark approved at once (no portal step).")] = False,
    org: Annotated[str, typer.Option(help="Organisation slug (created if missing).")] = "default",
    raw_basic_credentials: Annotated[
        bool,
        typer.Option(help="client_secret_basic: send id and secret unencoded (for token "
                     "servers that do not form-decode the Basic header)."),
    ] = False,
) -> None:
    """Register an EHR endpoint; launches are accepted only from approved endpoints."""
    from openvisit.ehr_endpoints.service import add_endpoint
    from openvisit.portal.signin.service import get_or_create_organisation

    async def main(ctx: AppContext) -> str:
        async with ctx.transaction() as session:
            organisation = await get_or_create_organisation(session, org)
            endpoint = await add_endpoint(
                session,
                app=ctx,
                organisation=organisation,
                fhir_base=fhir_base,
                environment=environment,
                vendor=vendor,
                client_id=client_id,
                client_secret=client_secret,
                auth_method=auth_method,
                name=name,
                approved=approved,
                timezone=timezone,
                raw_basic_credentials=raw_basic_credentials,
                actor="cli",
            )
            return f"{endpoint.id}  {endpoint.environment}  {endpoint.state}  {endpoint.fhir_base}"

    typer.echo("added " + run(main))


@endpoint_app.command("basic-credentials")
def endpoint_basic_credentials(
    endpoint_id: str,
    raw: Annotated[
        bool,
        typer.Option("--raw/--form-encoded",
                     help="Send client_secret_basic's id and secret unencoded (--raw), or "
                     "form-encoded as RFC 6749 §2.3.1 says (--form-encoded, the default)."),
    ],
) -> None:
    """How client_secret_basic sends the client id and secret to this endpoint's EHR.

    RFC 6749 form-encodes them inside the Basic header; many token servers do not decode
    that, so a secret with + / = fails there with invalid_client until --raw is set.
    """
    import uuid

    from openvisit.ehr_endpoints.service import (
        basic_encoding_warning,
        get_endpoint,
        update_endpoint,
    )
    from openvisit.errors import InvalidInput

    async def main(ctx: AppContext) -> str | None:
        async with ctx.transaction() as session:
            try:
                endpoint = await get_endpoint(session, uuid.UUID(endpoint_id))
            except ValueError as exc:
                raise InvalidInput(f"{endpoint_id!r} is not an endpoint id.") from exc
            await update_endpoint(session, app=ctx, endpoint=endpoint,
                                  changes={"raw_basic_credentials": raw}, actor="cli")
            return basic_encoding_warning(endpoint)

    warning = run(main)
    typer.echo("client_secret_basic credentials: " + ("unencoded" if raw else "form-encoded"))
    if warning:
        typer.echo(f"warning: {warning}", err=True)


@endpoint_app.command("list")
def endpoint_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines output.")] = False,
) -> None:
    """List EHR endpoints with their environment and approval state."""
    from openvisit.ehr_endpoints.service import basic_form_encoded, list_endpoints

    async def main(ctx: AppContext) -> list[dict[str, str]]:
        async with ctx.transaction() as session:
            return [
                {
                    "id": str(e.id),
                    "environment": e.environment,
                    "vendor": e.vendor,
                    "state": e.state,
                    "fhir_base": e.fhir_base,
                    "client_id": e.client_id,
                    "auth_method": e.auth_method,
                    "basic_credentials": "form-encoded" if basic_form_encoded(e) else "raw",
                }
                for e in await list_endpoints(session)
            ]

    for row in run(main):
        typer.echo(
            json.dumps(row)
            if as_json
            else f"{row['id']}  {row['environment']:<10} {row['vendor']:<7} "
            f"{row['state']:<18} {row['fhir_base']}"
        )


@endpoint_app.command("epic-link")
def endpoint_epic_link(
    endpoint_id: str,
    kind: Annotated[
        str, typer.Option(help="Which links this key opens: provider or patient.")
    ],
    key_file: Annotated[Path, typer.Option(help="File holding the key or secret.")],
    key_format: Annotated[
        str, typer.Option(help="base64 (AES-256 key) or secret (AES-128)")
    ] = "base64",
    mode: Annotated[
        str,
        typer.Option(help="gcm; or cbc-zero-iv, cbc-iv-prefix, ecb with --allow-legacy-mode"),
    ] = "gcm",
    param: Annotated[str, typer.Option(help="Query parameter Epic appends.")] = "data",
    allow_legacy_mode: Annotated[
        bool | None,
        typer.Option(
            "--allow-legacy-mode/--no-allow-legacy-mode",
            help="Opt this endpoint in to unauthenticated CBC/ECB links (legacy Epic builds).",
        ),
    ] = None,
) -> None:
    """Set the provider or the patient key of Epic's encrypted context link for an endpoint.

    Each kind needs its own key: a link opens only the seat of the kind whose key decrypts it.
    """
    import uuid

    from openvisit.ehr_endpoints.service import get_endpoint
    from openvisit.errors import InvalidInput
    from openvisit.launch.epic_config import LEGACY_RISK, save_link_key

    if kind not in ("provider", "patient"):
        raise typer.BadParameter("kind must be provider or patient")
    secret = key_file.read_text(encoding="utf-8").strip()

    async def main(ctx: AppContext) -> bool:
        async with ctx.transaction() as session:
            try:
                endpoint = await get_endpoint(session, uuid.UUID(endpoint_id))
            except ValueError as exc:
                raise InvalidInput(f"{endpoint_id!r} is not an endpoint id.") from exc
            config = await save_link_key(
                session, app=ctx, endpoint=endpoint, kind=kind, secret=secret,
                key_format=key_format, mode=mode, param=param,
                allow_legacy_modes=allow_legacy_mode, actor="cli",
            )
            return config.keys[kind].legacy

    legacy = run(main)
    typer.echo(f"Epic encrypted {kind} link configured ({mode}, {key_format} key, ?{param}=…)")
    if legacy:
        typer.echo(f"warning: {mode} is unauthenticated. {LEGACY_RISK}", err=True)


@endpoint_app.command("certificate")
def endpoint_certificate(endpoint_id: str, path: Path) -> None:
    """Upload the certificate that signs HTTPS scheduling messages for this environment."""
    from openvisit.feed.commands import upload_certificate

    async def main(ctx: AppContext) -> str:
        p = await upload_certificate(ctx, endpoint_id=endpoint_id, path=path, actor="cli")
        return (
            f"{p.subject}  {p.public_key_type}  sha256 {p.thumbprint_sha256}"
            f"  valid {p.not_before:%Y-%m-%d} to {p.not_after:%Y-%m-%d}"
        )

    typer.echo("stored " + run(main))


@endpoint_app.command("hl7-senders")
def endpoint_hl7_senders(
    endpoint_id: str,
    senders: Annotated[list[str] | None, typer.Argument(help='"APP^FACILITY" or "APP"')] = None,
    status: Annotated[list[str] | None, typer.Option(help="SCH-25 CODE=status")] = None,
    jws_issuer: Annotated[str | None, typer.Option(help="iss of signed HTTPS payloads")] = None,
) -> None:
    """Set which HL7 senders (MSH-3/MSH-4) feed this endpoint's appointments."""
    from openvisit.feed.commands import set_hl7_senders, set_status_map

    pairs = [s.partition("=") for s in status or []]
    if any(not c or not v for c, _, v in pairs):
        raise typer.BadParameter("--status takes CODE=status, e.g. --status SCHED=booked")

    async def main(ctx: AppContext) -> list[str]:
        saved = await set_hl7_senders(
            ctx,
            endpoint_id=endpoint_id,
            senders=senders or [],
            jws_issuer=jws_issuer,
            actor="cli",
        )
        if pairs:
            await set_status_map(
                ctx,
                endpoint_id=endpoint_id,
                actor="cli",
                mapping={c.strip(): v.strip() for c, _, v in pairs},
            )
        return saved

    typer.echo("senders: " + (", ".join(run(main)) or "(none: feed off)"))


@endpoint_app.command("notifications")
def endpoint_notifications(
    endpoint_id: Annotated[str, typer.Argument(help="Endpoint id (openvisit endpoint list).")],
    enable: Annotated[
        bool | None,
        typer.Option("--enable/--disable",
                     help="Send confirmations and reminders: SMS to a mobile, else e-mail."),
    ] = None,
    confirmations: Annotated[
        bool | None,
        typer.Option("--confirmations/--no-confirmations",
                     help="Tell the patient when a visit is booked, moved or cancelled."),
    ] = None,
    reminders: Annotated[
        str | None,
        typer.Option(help='Reminder times before the visit, e.g. "1d, 2h, 30m"; "" for none.'),
    ] = None,
    quiet_hours: Annotated[
        str | None,
        typer.Option(help='Local hours without messages, e.g. "21:00-08:00"; "none" for none.'),
    ] = None,
    language: Annotated[
        str | None, typer.Option(help="Language when PID-15 names none (en, es, cs, it).")
    ] = None,
    rate: Annotated[
        int | None, typer.Option(help="Messages per minute per sending number (1-6000).")
    ] = None,
    transliterate: Annotated[
        bool | None,
        typer.Option("--transliterate/--no-transliterate",
                     help="Replace letters outside GSM 7-bit (č → c) to keep SMS short."),
    ] = None,
    number: Annotated[
        str | None,
        typer.Option(help='Sending number (E.164 or id) of the organisation; "none" unlinks.'),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Show or change an endpoint's notification (SMS / e-mail) settings, as the portal does.

    Only the options given change; without options the settings are printed.

    Turning notifications on needs both SMS consents (openvisit org sms-consents) and a number.

    Example: openvisit endpoint notifications ID --enable --reminders "1d, 1h"
    """
    from openvisit.notify.commands import (
        NotificationChanges,
        configure_notifications,
        notification_settings,
    )

    changes = NotificationChanges(
        enabled=enable, confirmations=confirmations, reminders=reminders,
        quiet_hours=quiet_hours, language=language, rate_per_minute=rate,
        transliterate=transliterate, number=number,
    )

    async def main(ctx: AppContext) -> dict[str, Any]:
        if changes == NotificationChanges():
            return await notification_settings(ctx, endpoint_id=endpoint_id)
        return await configure_notifications(ctx, endpoint_id=endpoint_id, changes=changes)

    print_settings(run(main), as_json=as_json)
