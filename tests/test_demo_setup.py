"""``openvisit demo-setup`` (what `make demo` runs on every start): a second run changes
nothing, and the result is what the SMS path of the demo needs."""

from __future__ import annotations

from sqlalchemy import func, select

from openvisit.context import AppContext
from openvisit.demo import DEMO_NUMBER, prepare
from openvisit.feed.service import hl7_options
from openvisit.models import EhrEndpoint, Organisation, PhoneNumber
from openvisit.notify import departments
from openvisit.notify.commands import notification_settings


async def test_it_sets_up_the_demo_once_and_again_without_change(ctx: AppContext) -> None:
    first = await prepare(ctx, sandbox_url="http://127.0.0.1:9000", slug="default",
                          name="Sandbox Family Clinic", timezone="Europe/Madrid")
    again = await prepare(ctx, sandbox_url="http://127.0.0.1:9000/", slug="default",
                          name="Sandbox Family Clinic", timezone="Europe/Madrid")
    assert again == first
    async with ctx.transaction() as session:
        [endpoint] = (await session.scalars(select(EhrEndpoint))).all()
        assert endpoint.state == "approved" and endpoint.fhir_base == "http://127.0.0.1:9000/fhir"
        assert hl7_options(endpoint)["senders"] == ["OVSANDBOX^SANDBOXCLINIC"]
        org = await session.scalar(select(Organisation))
        assert org is not None and org.display_name == "Sandbox Family Clinic"
        assert await session.scalar(select(func.count()).select_from(PhoneNumber)) == 1
        assert await departments.display_name(session, organisation_id=org.id,
                                              department="10501", language="es") == \
            "Medicina familiar"
    shown = await notification_settings(ctx, endpoint_id=str(first.endpoint_id))
    assert shown["enabled"] is True and DEMO_NUMBER in str(shown)
