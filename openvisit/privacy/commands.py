"""``openvisit privacy …``: retention, erasure of one patient, re-keying (issue 18).

Registered on the main command line by :mod:`openvisit.cli`; each command runs in
:func:`openvisit.cli_support.run` (a started context, OpenVisit errors as a message and exit 1).
"""

from __future__ import annotations

from typing import Annotated

import typer

from openvisit.cli_support import OrgOpt, run
from openvisit.context import AppContext

privacy_app = typer.Typer(
    help="What is kept and for how long; erase one patient; re-key patient references.",
    no_args_is_help=True,
)


@privacy_app.command("retention")
def retention(
    org: OrgOpt = "default",
    visits: Annotated[int | None, typer.Option(
        help="Days visits, their events, call quality, chat, device tests and appointments "
        "are kept after they end (default 400).")] = None,
    messages: Annotated[int | None, typer.Option(
        help="Days the message log and sent write-backs are kept (default 400).")] = None,
    audit: Annotated[int | None, typer.Option(
        help="Days the audit log is kept (default 2190, six years; at least 30).")] = None,
) -> None:
    """Show or change what the organisation keeps and for how long (audited). Contact
    details are not here: they go when the visit ends, plus the grace period."""
    from openvisit.errors import NotFound
    from openvisit.privacy.repository import organisation_by_slug
    from openvisit.privacy.retention import Retention, set_retention

    async def main(ctx: AppContext) -> Retention:
        async with ctx.transaction() as session:
            if visits is None and messages is None and audit is None:
                found = await organisation_by_slug(session, org)
                if found is None:
                    raise NotFound(f"There is no organisation {org!r}.")
                return Retention.of(found)
            return await set_retention(session, slug=org, actor="cli", visit_days=visits,
                                       message_days=messages, audit_days=audit)

    kept: Retention = run(main)
    typer.echo(f"visits       {kept.visit_days} days\nmessages     {kept.message_days} days\n"
               f"audit log    {kept.audit_days} days")


@privacy_app.command("erase-patient")
def erase_patient(
    ref: Annotated[str, typer.Argument(
        help="The patient reference as the EHR sends it: Patient/123 (FHIR) or "
        "AUTHORITY|MRN (HL7 PID-3).")],
    org: OrgOpt = "default",
    yes: Annotated[bool, typer.Option("--yes", help="Do it (without it: refuse).")] = False,
) -> None:
    """Remove everything about one patient in the organisation: appointments, contacts,
    messages, visits, events, call quality, chat, write-back rows (audited, counts only)."""
    from openvisit.privacy.erasure import Erased
    from openvisit.privacy.erasure import erase_patient as erase

    if not yes:
        typer.echo("error: this deletes the patient's records for good; add --yes to do it",
                   err=True)
        raise typer.Exit(2)

    async def main(ctx: AppContext) -> Erased:
        async with ctx.transaction() as session:
            return await erase(session, app=ctx, slug=org, ref=ref, actor="cli")

    done: Erased = run(main)
    typer.echo(f"erased: {done.appointments} appointments, {done.visits} visits; "
               f"{done.seats_forgotten} seats of shared visits made anonymous")


@privacy_app.command("rekey")
def rekey() -> None:
    """Rewrite every stored patient reference under the newest field-encryption key (run
    after putting a new key first in OPENVISIT_FIELD_ENCRYPTION_KEYS, before removing the
    old one)."""
    from openvisit.privacy.erasure import rekey as run_rekey

    async def main(ctx: AppContext) -> int:
        return await run_rekey(ctx)

    typer.echo(f"re-keyed {run(main)} rows")
