"""``openvisit org`` and ``openvisit endpoint notifications`` (issue 11, item 10).

Run as hospital IT would, in a real process against the run's database; the settings and
the audit log must be exactly what the portal's SMS page would have written.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from openvisit.cli import app as cli
from openvisit.context import AppContext
from openvisit.feed.intake import SiuFeed
from openvisit.models import AuditLog, Contact, Organisation, PhoneNumber, SmsSettings
from tests.feed.support import make_endpoint, siu
from tests.support.backend import subprocess_env


def openvisit(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openvisit", *args],
        env=subprocess_env(db_url),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "command", [["org"], ["org", "set"], ["org", "sms-consents"], ["endpoint", "notifications"]]
)
def test_it_explains_the_new_commands(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])

    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert "phone" in result.output.lower() or "sms" in result.output.lower()


async def audit(ctx: AppContext, action: str) -> list[AuditLog]:
    async with ctx.transaction() as session:
        return list(await session.scalars(select(AuditLog).where(AuditLog.action == action)))


async def test_it_sets_the_phone_region_the_feed_then_reads_numbers_with(
    ctx: AppContext, db_url: str
) -> None:
    await make_endpoint(ctx, senders=("EPIC^EPICADT",), slug="city-hospital", region="US")

    done = openvisit(db_url, "org", "set", "--org", "city-hospital", "--phone-region", "gb",
                     "--json")
    wrong = openvisit(db_url, "org", "set", "--org", "city-hospital", "--phone-region", "XX")
    format_ = openvisit(db_url, "org", "set", "--org", "city-hospital", "--phone-region", "USA")
    nobody = openvisit(db_url, "org", "set", "--org", "nowhere", "--phone-region", "GB")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["phone_region"] == "GB"
    assert wrong.returncode == 1 and "'XX' is not a country with phone numbers" in wrong.stderr
    assert format_.returncode == 1 and "two-letter country code" in format_.stderr
    assert nobody.returncode == 1 and "no organisation 'nowhere'" in nobody.stderr
    [entry] = await audit(ctx, "organisation.update")
    assert entry.actor == "cli"
    # A UK mobile written nationally is now read as +44.
    reply = await SiuFeed(ctx).handle(siu(phone="07400 123456", control_id="GB-1"))
    assert reply.code == "AA"
    async with ctx.transaction() as session:
        org = await session.scalar(select(Organisation).where(Organisation.slug == "city-hospital"))
        [mobile] = await session.scalars(select(Contact).where(Contact.kind == "sms"))
    assert org is not None and org.default_phone_region == "GB"
    assert ctx.cipher.decrypt(mobile.value_enc) == "+447400123456"


async def test_it_configures_notifications_with_the_portal_rules_and_audit(
    ctx: AppContext, db_url: str
) -> None:
    endpoint = await make_endpoint(ctx, senders=("EPIC^EPICADT",), slug="city-hospital")
    async with ctx.transaction() as session:
        session.add(PhoneNumber(organisation_id=endpoint.organisation_id, e164="+12025550111",
                                provider="outbox", state="active"))
    eid = str(endpoint.id)

    refused = openvisit(db_url, "endpoint", "notifications", eid, "--enable",
                        "--number", "+12025550111")
    consents = openvisit(db_url, "org", "sms-consents", "--org", "city-hospital", "--send",
                         "--patients")
    enabled = openvisit(db_url, "endpoint", "notifications", eid, "--enable", "--number",
                        "+12025550111", "--reminders", "1d, 2h", "--quiet-hours", "21:00-08:00",
                        "--language", "es", "--json")
    partial = openvisit(db_url, "endpoint", "notifications", eid, "--no-confirmations", "--json")
    bad = openvisit(db_url, "endpoint", "notifications", eid, "--reminders", "soon")
    quiet = openvisit(db_url, "endpoint", "notifications", eid, "--quiet-hours", "21:00")
    shown = openvisit(db_url, "endpoint", "notifications", eid)

    assert refused.returncode == 1 and "Give both SMS consents" in refused.stderr
    assert consents.returncode == 0 and "consents given" in consents.stdout
    assert enabled.returncode == 0, enabled.stderr
    assert json.loads(enabled.stdout) | {"endpoint": None} == {
        "endpoint": None, "organisation": "city-hospital", "phone_region": "US",
        "enabled": True, "confirmations": True, "reminders": "1d, 2h",
        "quiet_hours": "21:00-08:00", "language": "es", "rate_per_minute": 60,
        "transliterate": True, "number": "+12025550111", "consents": True,
    }
    after = json.loads(partial.stdout)
    assert (after["confirmations"], after["reminders"], after["enabled"]) == (False, "1d, 2h",
                                                                              True)
    assert bad.returncode == 1 and "'soon' is not a reminder time" in bad.stderr
    assert quiet.returncode == 1 and "HH:MM-HH:MM" in quiet.stderr
    assert shown.returncode == 0 and "quiet_hours      21:00-08:00" in shown.stdout
    async with ctx.transaction() as session:
        row = await session.get(SmsSettings, endpoint.id)
    assert row is not None and row.reminder_offsets_minutes == [1440, 120]
    assert row.consent_terms_at is not None and row.quiet_hours_end == "08:00"
    entries = await audit(ctx, "sms.configure")
    assert [e.actor for e in entries] == ["cli", "cli"]
    assert [e.actor for e in await audit(ctx, "sms.consents")] == ["cli"]
