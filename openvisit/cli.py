"""``openvisit`` command line: run the roles, migrate, manage accounts, endpoints and jobs."""

from __future__ import annotations

import asyncio
import getpass
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from openvisit.config import Settings, load_settings
from openvisit.context import AppContext
from openvisit.errors import OpenVisitError

app = typer.Typer(
    help="OpenVisit: EHR-launched video visits. Run `openvisit serve` to start everything.",
    no_args_is_help=True,
    add_completion=False,
    # Rich tracebacks print local variables, which can hold PHI and secrets.
    pretty_exceptions_enable=False,
)
admin_app = typer.Typer(help="Organisations and staff accounts.", no_args_is_help=True)
jobs_app = typer.Typer(help="Inspect and re-run durable jobs.", no_args_is_help=True)
keys_app = typer.Typer(help="Field-encryption keys.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
app.add_typer(jobs_app, name="jobs")
endpoint_app = typer.Typer(help="EHR endpoints (FHIR bases per environment).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(endpoint_app, name="endpoint")

T = TypeVar("T")


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except OpenVisitError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc


def _run(func: Callable[[AppContext], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run ``func`` with a started context; OpenVisit errors become a clear message + exit 1."""

    async def main() -> T:
        ctx = AppContext.create(settings or _settings())
        try:
            await ctx.start()
            return await func(ctx)
        finally:
            await ctx.close()

    try:
        return asyncio.run(main())
    except OpenVisitError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc


def _serve(settings: Settings, *, host: str, port: int, roles: tuple[str, ...]) -> None:
    import uvicorn

    from openvisit.app import create_app

    web = create_app(settings, roles=roles)
    uvicorn.run(web, host=host, port=port, log_config=None, **uvicorn_options(settings))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What ``openvisit serve``/``web`` pass to uvicorn besides the app and the address.

    X-Forwarded-For/-Proto are believed only from ``forwarded_allow_ips`` (the load
    balancer): from anyone else a forged header is ignored, so the sign-in throttle, the
    socket limits and the audit log see the real client. ``ws_max_size`` makes uvicorn refuse
    a WebSocket message bigger than that from its header (close 1009) instead of buffering up
    to its 16 MiB default before the signalling protocol's own 64 KiB check; the protocol
    class refuses non-UTF-8 text without logging a traceback.
    """
    from openvisit.signalling.server import SignallingWebSocketProtocol

    return {
        "ws": SignallingWebSocketProtocol,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "ws_max_size": settings.ws_max_size,
        "ws_ping_interval": 20,
        "ws_ping_timeout": 20,
    }


HostOpt = Annotated[str, typer.Option(help="Interface to listen on.")]
PortOpt = Annotated[int, typer.Option(help="TCP port for HTTP.")]


@app.command()
def serve(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    mllp_port: Annotated[
        int | None, typer.Option(help="TCP port of the HL7 MLLP listener.")
    ] = None,
    no_mllp: Annotated[bool, typer.Option(help="Do not start the MLLP listener.")] = False,
) -> None:
    """Run web + worker + MLLP listener in one process (the embedded default)."""
    settings = _settings(mllp_port=mllp_port)
    if settings.public_url == Settings.model_fields["public_url"].default and port != 8000:
        settings = _settings(mllp_port=mllp_port, public_url=f"http://{host}:{port}")
    roles = ("worker",) if no_mllp else ("worker", "mllp")
    typer.echo(
        f"OpenVisit on {settings.public_url}  (HTTP {host}:{port}"
        + ("" if no_mllp else f", MLLP {settings.mllp_host}:{settings.mllp_port}")
        + ")"
    )
    _serve(settings, host=host, port=port, roles=roles)


@app.command()
def web(host: HostOpt = "127.0.0.1", port: PortOpt = 8000) -> None:
    """Run only the web role (pages, API, signalling); scale out behind a load balancer."""
    _serve(_settings(), host=host, port=port, roles=())


def _run_until_signal(runner: Callable[[AppContext, asyncio.Event], Awaitable[None]]) -> None:
    async def main(ctx: AppContext) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runner(ctx, stop)

    _run(main)


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="Run due jobs, then exit.")] = False,
) -> None:
    """Run a job worker (any number may run side by side)."""
    from openvisit.app import run_worker
    from openvisit.jobs.worker import Worker

    if once:

        async def drain(ctx: AppContext) -> None:
            await Worker(ctx).run_until_empty(timeout=600)

        _run(drain)
        return
    _run_until_signal(run_worker)


@app.command()
def mllp(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port.")] = None,
) -> None:
    """Run the HL7 v2 MLLP listener for the scheduling feed."""
    from openvisit.app import run_mllp

    settings = _settings(mllp_host=host, mllp_port=port)

    async def main(ctx: AppContext) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_mllp(ctx, stop)

    _run(main, settings)


@app.command()
def migrate(
    downgrade: Annotated[
        str | None, typer.Option(help="Downgrade to this revision instead (e.g. base).")
    ] = None,
) -> None:
    """Bring the database schema up to date (or down to a revision)."""
    from openvisit.db import Database
    from openvisit.migrate import current_revision, downgrade_async, upgrade_async

    settings = _settings()

    async def main() -> str | None:
        db = Database(settings.database_url)
        try:
            if downgrade:
                await downgrade_async(db, downgrade)
            else:
                await upgrade_async(db)
            return await current_revision(db)
        finally:
            await db.dispose()

    revision = asyncio.run(main())
    typer.echo(f"database at revision {revision or 'base (empty)'}")


@admin_app.command("create")
def admin_create(
    username: Annotated[str, typer.Option(help="Sign-in name.")],
    org: Annotated[str, typer.Option(help="Organisation slug (created if missing).")] = "default",
    org_name: Annotated[str | None, typer.Option(help="Organisation display name.")] = None,
    role: Annotated[list[str] | None, typer.Option(help="Role(s); default org_admin.")] = None,
    password_file: Annotated[
        Path | None, typer.Option(help="Read the password from this file.")
    ] = None,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin.")] = False,
) -> None:
    """Create a local staff account (embedded default; IdP users sign in without one)."""
    from openvisit.portal.signin.service import create_local_account, get_or_create_organisation

    if password_file:
        password = password_file.read_text(encoding="utf-8").strip()
    elif password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().strip()
    else:
        password = getpass.getpass("Password: ")

    async def main(ctx: AppContext) -> str:
        async with ctx.transaction() as session:
            organisation = await get_or_create_organisation(session, org, display_name=org_name)
            account = await create_local_account(
                session,
                organisation,
                app=ctx,
                username=username,
                password=password,
                roles=role or ["org_admin"],
            )
            return str(account.id)

    account_id = _run(main)
    typer.echo(f"created account {username} ({account_id}) in organisation {org}")


@admin_app.command("roles")
def admin_roles(
    username: Annotated[str, typer.Option(help="Sign-in name of a local account.")],
    role: Annotated[list[str], typer.Option(
        help="Role(s) the account has from now on: org_admin, approver, reporter, operator.")],
    org: Annotated[str, typer.Option(help="Organisation slug.")] = "default",
) -> None:
    """Set a local account's roles (the server operator's way in; audited as "cli")."""
    from openvisit.portal.signin.service import ROLES, canonical_username
    from openvisit.portal.staff.service import set_roles_by_operator

    unknown = [r for r in role if r not in ROLES]
    if unknown or not role:
        raise typer.BadParameter(f"unknown role(s) {', '.join(unknown) or '(none given)'}; "
                                 f"choose from {', '.join(ROLES)}", param_hint="--role")

    async def main(ctx: AppContext) -> list[str]:
        async with ctx.transaction() as session:
            account = await set_roles_by_operator(session, organisation_slug=org,
                                                  username=username, roles=role)
            return list(account.roles)

    roles = _run(main)
    typer.echo(f"{canonical_username(username)} in {org} now has the roles {', '.join(roles)}")


@jobs_app.command("list")
def jobs_list(
    state: Annotated[
        str | None, typer.Option(help="pending, running, done, dead, cancelled")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only this job kind.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines output.")] = False,
) -> None:
    """List jobs (the dead letter with --state dead)."""
    from openvisit.jobs.service import list_jobs

    async def main(ctx: AppContext) -> list[dict[str, Any]]:
        async with ctx.transaction() as session:
            jobs = await list_jobs(session, state=state, kind=kind, limit=limit)
            return [
                {
                    "id": j.id,
                    "kind": j.kind,
                    "state": j.state,
                    "attempts": j.attempts,
                    "due_at": j.due_at.isoformat(),
                    "last_error": j.last_error,
                }
                for j in jobs
            ]

    for row in _run(main):
        if as_json:
            typer.echo(json.dumps(row))
        else:
            typer.echo(
                f"{row['id']:>8}  {row['state']:<9} {row['attempts']:>2}x  "
                f"{row['kind']:<28} {row['due_at']}  {row['last_error'] or ''}"
            )


@jobs_app.command("retry")
def jobs_retry(job_id: int) -> None:
    """Put a dead-lettered job back in the queue."""
    from openvisit.jobs.service import retry_dead

    async def main(ctx: AppContext) -> None:
        async with ctx.transaction() as session:
            await retry_dead(session, job_id)

    _run(main)
    typer.echo(f"job {job_id} queued again")


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new Fernet key for OPENVISIT_FIELD_ENCRYPTION_KEYS (put it first to rotate)."""
    from openvisit.crypto import generate_key

    typer.echo(generate_key())


@app.command()
def sandbox(
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port of the sandbox EHR.")] = 9000,
    openvisit_url: Annotated[
        str | None, typer.Option(help="Where OpenVisit runs (default: OPENVISIT_PUBLIC_URL).")
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option(help="Keep the sandbox's data and key here.")
    ] = None,
    client_id: Annotated[
        str, typer.Option(help="Client id registered for OpenVisit.")
    ] = "openvisit",
    demo: Annotated[
        bool, typer.Option(help="Demo mode: any appointment can be started at any time, a "
                           "fresh round on each start and on Reset demo, Send booking (SIU).")
    ] = False,
    mllp_port: Annotated[
        int | None, typer.Option(help="Demo mode: OpenVisit's MLLP port on 127.0.0.1, where "
                                 "Send booking (SIU) sends its HL7 message.")
    ] = None,
) -> None:
    """Run the built-in sandbox EHR (SMART server, FHIR store, schedule and portal pages).

    OpenVisit is pre-registered as a confidential client that authenticates with
    private_key_jwt against OpenVisit's own JWKS, for launches and for write-back's
    backend-services tokens (system/ scopes).
    """
    import uvicorn

    from openvisit.sandbox.app import create_sandbox_app
    from openvisit.sandbox.clients import openvisit_registration
    from openvisit.sandbox.runtime import DemoMode

    ov = (openvisit_url or _settings().public_url).rstrip("/")
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
    base = f"http://{host}:{port}"
    web = create_sandbox_app(
        base_url=base,
        state_path=state_dir,
        clients=[openvisit_registration(openvisit_url=ov, client_id=client_id)],
        provider_launch_url=f"{ov}/launch",
        patient_launch_url=f"{ov}/launch/patient",
        demo=DemoMode(mllp_port=mllp_port) if demo else None,
    )
    typer.echo(f"Sandbox EHR on {base}  (FHIR base {base}/fhir, schedule {base}/ehr/schedule)")
    uvicorn.run(web, host=host, port=port, log_config=None)


@app.command("demo-setup")
def demo_setup(
    sandbox_url: Annotated[str, typer.Option(help="Base URL of the sandbox EHR.")],
    org: Annotated[str, typer.Option(help="Organisation slug.")] = "default",
    org_name: Annotated[str, typer.Option(help="Its display name (in SMS and pages).")] = (
        "Sandbox Family Clinic"),
    timezone: Annotated[
        str | None, typer.Option(help="IANA zone of the sandbox (default: this machine's).")
    ] = None,
) -> None:
    """Make the demo ready: the sandbox as an approved endpoint and HL7 sender, SMS consents,
    an outbox sending number, confirmations on, write-back into the sandbox on (idempotent;
    used by `make demo`)."""
    from openvisit.demo import prepare

    zone = timezone or _local_zone()

    async def main(ctx: AppContext) -> str:
        done = await prepare(ctx, sandbox_url=sandbox_url, slug=org, name=org_name,
                             timezone=zone)
        return (f"endpoint {done.endpoint_id}  HL7 sender {done.sender}  SMS from {done.number}"
                f"  write-back {'on' if done.writeback else 'off'}")

    typer.echo(_run(main))


def _local_zone() -> str:
    """This machine's IANA zone name (from /etc/localtime or TZ), else UTC."""
    import os

    name = os.environ.get("TZ", "").lstrip(":")
    if not name:
        try:
            target = os.path.realpath("/etc/localtime")
            name = target.split("/zoneinfo/", 1)[1] if "/zoneinfo/" in target else ""
        except OSError:
            name = ""
    return name or "UTC"


@keys_app.command("rotate-signing")
def keys_rotate_signing(
    overlap_days: Annotated[
        float, typer.Option(help="Keep replaced keys published this long.")
    ] = 7.0,
) -> None:
    """Make a new SMART client signing key current (old keys stay in the JWKS for the overlap)."""
    from openvisit.launch.keys import rotate

    async def main(ctx: AppContext) -> list[str]:
        async with ctx.transaction() as session:
            return (await rotate(session, app=ctx, overlap_days=overlap_days)).kids

    typer.echo("published kids: " + ", ".join(_run(main)))


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

    typer.echo("added " + _run(main))


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

    warning = _run(main)
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

    for row in _run(main):
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

    legacy = _run(main)
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

    typer.echo("stored " + _run(main))


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

    typer.echo("senders: " + (", ".join(_run(main)) or "(none: feed off)"))


org_app = typer.Typer(
    help="Organisation settings: phone region, time zone and SMS consents (as in the portal).",
    no_args_is_help=True,
)
app.add_typer(org_app, name="org")
OrgOpt = Annotated[str, typer.Option("--org", help="Organisation slug.")]


def _print_settings(values: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(values))
        return
    for key, value in values.items():
        typer.echo(f"{key:<16} {value}")


@org_app.command("set")
def org_set(
    org: OrgOpt = "default",
    phone_region: Annotated[
        str | None,
        typer.Option(help="Country (ISO 3166, e.g. US, GB, CZ) of phone numbers the EHR sends "
                     "without a country code; the HL7 feed reads PID-13/14 with it."),
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="IANA time zone of the organisation, e.g. Europe/Prague.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Set the organisation's default phone region and time zone (audited, actor cli).

    Without options it prints the current values.

    Example: openvisit org set --org city-hospital --phone-region GB --timezone Europe/London
    """
    from openvisit.notify.commands import organisation, set_organisation

    async def main(ctx: AppContext) -> dict[str, Any]:
        if phone_region is None and timezone is None:
            async with ctx.transaction() as session:
                found = await organisation(session, org)
        else:
            found = await set_organisation(
                ctx, slug=org, phone_region=phone_region, timezone=timezone
            )
        return {"organisation": found.slug, "phone_region": found.default_phone_region,
                "timezone": found.timezone}

    _print_settings(_run(main), as_json=as_json)


@org_app.command("sms-consents")
def org_sms_consents(
    org: OrgOpt = "default",
    send: Annotated[
        bool,
        typer.Option("--send/--no-send",
                     help="OpenVisit may send SMS on the organisation's behalf."),
    ] = False,
    patients: Annotated[
        bool,
        typer.Option("--patients/--no-patients",
                     help="Patients agreed to receive visit messages by SMS."),
    ] = False,
) -> None:
    """Record (or withdraw) the two SMS consents the portal's SMS page asks for.

    Both are needed before an endpoint's notifications can be turned on; withdrawing either
    turns SMS off on every endpoint of the organisation.
    """
    from openvisit.notify.commands import set_consents

    async def main(ctx: AppContext) -> bool:
        found = await set_consents(ctx, slug=org, send=send, patients=patients)
        return found.sms_consent_send_at is not None and found.sms_consent_patients_at is not None

    given = _run(main)
    typer.echo("SMS consents given" if given else "SMS consents withdrawn: SMS is off")


@org_app.command("after-visit-url")
def org_after_visit_url(
    url: Annotated[str, typer.Argument(help='The page (https://…), or "" for none.')],
    org: OrgOpt = "default",
) -> None:
    """Where the "visit has ended" page sends patients (the patient portal, a survey)."""
    from openvisit.visits.service import set_after_visit_url

    async def main(ctx: AppContext) -> str | None:
        async with ctx.transaction() as session:
            found = await set_after_visit_url(session, slug=org, url=url, actor="cli")
            return found.after_visit_url

    typer.echo(f"after-visit page: {_run(main) or '(none)'}")


@org_app.command("store-chat")
def org_store_chat(
    on: Annotated[bool, typer.Option("--on/--off", help="Keep the in-visit chat or not.")],
    org: OrgOpt = "default",
) -> None:
    """Keep the in-visit chat (encrypted, deleted with the visit's contacts) or not (the
    default: chat only passes through, nothing is written)."""
    from openvisit.visits.chat import set_store_chat

    async def main(ctx: AppContext) -> bool:
        async with ctx.transaction() as session:
            found = await set_store_chat(session, slug=org, on=on, actor="cli")
            return found.store_chat

    typer.echo("chat is kept, encrypted, until shortly after each visit" if _run(main)
               else "chat is not kept")


@org_app.command("patient-guests")
def org_patient_guests(
    most: Annotated[int, typer.Argument(help="Family members or caregivers a patient may "
                                        "invite to a visit (0: none; default 2).")],
    org: OrgOpt = "default",
) -> None:
    """How many people a patient may invite to their own visit (each waits in the lobby,
    marked "invited by the patient", until the clinician admits them); audited."""
    from openvisit.visits.caregivers import set_limit

    async def main(ctx: AppContext) -> int:
        async with ctx.transaction() as session:
            return (await set_limit(session, slug=org, most=most, actor="cli")).patient_guests_max

    typer.echo(f"patients may invite {_run(main)} people to a visit")


@org_app.command("department")
def org_department(
    code: Annotated[str | None, typer.Argument(help="Department code as the feed sends it "
                                               "(AIL-3 / PV1-3), e.g. 10501.")] = None,
    name: Annotated[str | None, typer.Argument(help="What patients read, e.g. "
                                               "\"Family medicine\".")] = None,
    org: OrgOpt = "default",
    language: Annotated[
        str | None, typer.Option(help="Only for this language (en, es, cs, it); default: all.")
    ] = None,
    remove: Annotated[bool, typer.Option(help="Forget the code's name(s).")] = False,
) -> None:
    """Name a department code for patients (SMS, e-mail, the patient's page); without
    arguments, list the names. Example: openvisit org department 10501 "Medicina familiar"
    --language es"""
    from openvisit.notify import departments
    from openvisit.notify.commands import organisation

    async def main(ctx: AppContext) -> list[str]:
        async with ctx.transaction() as session:
            found = await organisation(session, org)
            if code is not None and remove:
                await departments.remove_names(session, organisation_id=found.id, code=code,
                                               language=language, actor="cli")
            elif code is not None:
                if name is None:
                    raise typer.BadParameter("give the name patients should read after the code")
                await departments.set_name(session, organisation_id=found.id, code=code,
                                           name=name, language=language, actor="cli")
            return [f"{entry.code:<12} " + "; ".join(
                        f"{lang or '*'}: {text}" for lang, text in sorted(entry.names.items()))
                    for entry in await departments.entries(session, organisation_id=found.id)]

    for line in _run(main) or ["(no department names)"]:
        typer.echo(line)


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

    _print_settings(_run(main), as_json=as_json)


def main() -> None:
    app()


if __name__ == "__main__":
    main()


def _register_privacy() -> None:
    from openvisit.privacy.commands import privacy_app

    app.add_typer(privacy_app, name="privacy")


_register_privacy()
