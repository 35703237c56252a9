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
)
admin_app = typer.Typer(help="Organisations and staff accounts.", no_args_is_help=True)
jobs_app = typer.Typer(help="Inspect and re-run durable jobs.", no_args_is_help=True)
keys_app = typer.Typer(help="Field-encryption keys.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
app.add_typer(jobs_app, name="jobs")
app.add_typer(keys_app, name="keys")

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
    uvicorn.run(web, host=host, port=port, log_config=None, proxy_headers=True,
                ws_ping_interval=20, ws_ping_timeout=20)


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
    typer.echo(f"OpenVisit on {settings.public_url}  (HTTP {host}:{port}"
               + ("" if no_mllp else f", MLLP {settings.mllp_host}:{settings.mllp_port}") + ")")
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
    from openvisit.portal.accounts import create_local_account, get_or_create_organisation

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
                session, organisation, username=username, password=password,
                roles=role or ["org_admin"],
            )
            return str(account.id)

    account_id = _run(main)
    typer.echo(f"created account {username} ({account_id}) in organisation {org}")


@jobs_app.command("list")
def jobs_list(
    state: Annotated[str | None, typer.Option(help="pending, running, done, dead, cancelled")] = None,
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
                {"id": j.id, "kind": j.kind, "state": j.state, "attempts": j.attempts,
                 "due_at": j.due_at.isoformat(), "last_error": j.last_error}
                for j in jobs
            ]

    for row in _run(main):
        if as_json:
            typer.echo(json.dumps(row))
        else:
            typer.echo(f"{row['id']:>8}  {row['state']:<9} {row['attempts']:>2}x  "
                       f"{row['kind']:<28} {row['due_at']}  {row['last_error'] or ''}")


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
