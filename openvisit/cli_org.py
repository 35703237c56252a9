"""``openvisit org …``: the organisation's settings as the portal's Organisation page sets
them (phone region, time zone, SMS consents, after-visit page, chat, caregivers,
department names), for hospital IT's scripts; every change audited with actor ``cli``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from openvisit.cli_support import OrgOpt, print_settings, run
from openvisit.context import AppContext

org_app = typer.Typer(
    help="Organisation settings: phone region, time zone and SMS consents (as in the portal).",
    no_args_is_help=True,
)


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

    print_settings(run(main), as_json=as_json)


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

    given = run(main)
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

    typer.echo(f"after-visit page: {run(main) or '(none)'}")


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

    typer.echo("chat is kept, encrypted, until shortly after each visit" if run(main)
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

    typer.echo(f"patients may invite {run(main)} people to a visit")


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

    for line in run(main) or ["(no department names)"]:
        typer.echo(line)
