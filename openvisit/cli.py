"""``openvisit`` command line: run the roles, migrate, manage accounts, endpoints and jobs."""

from __future__ import annotations

import asyncio
import getpass
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from openvisit.cli_endpoint import endpoint_app
from openvisit.cli_org import org_app
from openvisit.cli_support import run, settings_or_exit
from openvisit.config import Settings
from openvisit.context import AppContext
from openvisit.privacy.commands import privacy_app

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
app.add_typer(keys_app, name="keys")
app.add_typer(endpoint_app, name="endpoint")
app.add_typer(org_app, name="org")
app.add_typer(privacy_app, name="privacy")



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
    settings = settings_or_exit(mllp_port=mllp_port)
    if settings.public_url == Settings.model_fields["public_url"].default and port != 8000:
        settings = settings_or_exit(mllp_port=mllp_port, public_url=f"http://{host}:{port}")
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
    _serve(settings_or_exit(), host=host, port=port, roles=())


def _run_until_signal(runner: Callable[[AppContext, asyncio.Event], Awaitable[None]]) -> None:
    async def main(ctx: AppContext) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runner(ctx, stop)

    run(main)


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

        run(drain)
        return
    _run_until_signal(run_worker)


@app.command()
def mllp(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port.")] = None,
) -> None:
    """Run the HL7 v2 MLLP listener for the scheduling feed."""
    from openvisit.app import run_mllp

    settings = settings_or_exit(mllp_host=host, mllp_port=port)

    async def main(ctx: AppContext) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_mllp(ctx, stop)

    run(main, settings)


@app.command()
def migrate(
    downgrade: Annotated[
        str | None, typer.Option(help="Downgrade to this revision instead (e.g. base).")
    ] = None,
) -> None:
    """Bring the database schema up to date (or down to a revision)."""
    from openvisit.db import Database
    from openvisit.migrate import current_revision, downgrade_async, upgrade_async

    settings = settings_or_exit()

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

    account_id = run(main)
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

    roles = run(main)
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

    for row in run(main):
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

    run(main)
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

    ov = (openvisit_url or settings_or_exit().public_url).rstrip("/")
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

    typer.echo(run(main))


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

    typer.echo("published kids: " + ", ".join(run(main)))


def main() -> None:
    app()


if __name__ == "__main__":
    main()


