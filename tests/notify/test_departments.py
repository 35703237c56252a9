"""Department names for patients (issue 15 item 9): the feed's code becomes the name the
organisation gave it, in the patient's language, in the SMS that goes out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.errors import InvalidInput
from openvisit.models import AuditLog, OutboxMessage, utcnow
from openvisit.notify import departments
from tests.notify.support import make_appointment, make_site, run_jobs


async def _texts(app: AppContext) -> list[str]:
    async with app.transaction() as session:
        rows = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
        return [app.cipher.decrypt(r.text_enc) for r in rows]


async def test_it_names_the_code_per_language_with_a_fallback(app: AppContext) -> None:
    site = await make_site(app, offsets=[])
    org = site.organisation_id
    async with app.transaction() as session:
        await departments.set_name(session, organisation_id=org, code="10501",
                                   name="Family medicine", actor="test")
        await departments.set_name(session, organisation_id=org, code="10501",
                                   name="  Medicina   familiar ", language="es", actor="test")
        await departments.set_name(session, organisation_id=org, code="10501",
                                   name="Medicina de familia", language="es", actor="test")
    async with app.transaction() as session:
        names = {lang: await departments.display_name(session, organisation_id=org,
                                                      department="10501", language=lang)
                 for lang in ("en", "es", "cs")}
        assert names == {"en": "Family medicine", "es": "Medicina de familia",
                         "cs": "Family medicine"}
        # No name: a bare code is left out, a name written for people stays.
        assert await departments.display_name(session, organisation_id=org,
                                              department="CARD_7", language="en") is None
        assert await departments.display_name(session, organisation_id=org,
                                              department="Cardiology", language="en") == \
            "Cardiology"
        [entry] = await departments.entries(session, organisation_id=org)
        assert entry.names == {"": "Family medicine", "es": "Medicina de familia"}
        audit = (await session.scalars(select(AuditLog.action).where(
            AuditLog.action.like("department.%")))).all()
        assert audit == ["department.name"] * 3
        assert await departments.remove_names(session, organisation_id=org, code="10501",
                                              language="es", actor="test") == 1
        assert await departments.display_name(session, organisation_id=org,
                                              department="10501", language="es") == \
            "Family medicine"


async def test_it_refuses_what_it_cannot_show(app: AppContext) -> None:
    site = await make_site(app, offsets=[])
    async with app.transaction() as session:
        for kwargs, field in (({"code": " ", "name": "X"}, "code"),
                              ({"code": "1", "name": ""}, "name"),
                              ({"code": "1", "name": "x" * 81}, "name"),
                              ({"code": "1", "name": "X", "language": "fr"}, "language")):
            with pytest.raises(InvalidInput) as caught:
                await departments.set_name(session, organisation_id=site.organisation_id,
                                           actor="test", **kwargs)  # type: ignore[arg-type]
            assert caught.value.details["field"] == field


async def test_it_puts_the_name_not_the_code_in_the_sms(app: AppContext) -> None:
    site = await make_site(app, offsets=[], tz="Europe/Madrid")
    async with app.transaction() as session:
        await departments.set_name(session, organisation_id=site.organisation_id,
                                   code="10501", name="Medicina familiar", language="es",
                                   actor="test")
    start = utcnow() + timedelta(days=2)
    await make_appointment(app, site, start_at=start, department="10501", language="es")
    await make_appointment(app, site, start_at=start, department="10501",
                           mobile="+420601123457")
    await run_jobs(app)
    spanish, english = sorted(await _texts(app), key=lambda t: "videoconsulta" not in t)
    assert spanish.startswith("Example Hospital: tiene una videoconsulta (Medicina familiar) el ")
    assert "10501" not in spanish
    assert english.startswith("Example Hospital: your video visit is booked for ")
    assert "10501" not in english
