"""E-mail over SMTP to a real server (aiosmtpd): plain text and HTML, a stable Message-ID."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from openvisit.context import AppContext
from openvisit.models import utcnow
from openvisit.notify import providers
from openvisit.notify.email.transport import message_id
from tests.notify.support import logs, make_appointment, make_site, planned, run_jobs
from tests.peers.fixtures import SmtpServer

FROM = "visits@hospital.example"


@pytest.fixture
def smtp_app(configure: Callable[..., AppContext], smtp_server: SmtpServer) -> AppContext:
    return configure(email_provider="smtp", smtp_host=smtp_server.host,
                     smtp_port=smtp_server.port, smtp_from=FROM, smtp_starttls=False)


async def test_it_e_mails_a_patient_without_a_mobile(
    smtp_app: AppContext, smtp_server: SmtpServer,
) -> None:
    address = "first.patient@example.org"
    site = await make_site(smtp_app, offsets=[], language="it")
    appt = await make_appointment(smtp_app, site, start_at=utcnow() + timedelta(days=2),
                                  mobile=None, email=address)
    [item] = await planned(smtp_app, appt)
    await run_jobs(smtp_app)
    [mail] = [m for m in smtp_server.messages() if m["To"] == address]
    assert mail["Message-ID"] == message_id(item.key, sender=FROM)
    assert mail["From"] == f"Example Hospital <{FROM}>"
    assert mail["Subject"].startswith("Televisita fissata per ")
    plain = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert "https://visits.example.test/v/" in plain.get_content()
    assert 'href="https://visits.example.test/v/' in html.get_content()
    [log] = await logs(smtp_app, appt)
    assert (log.channel, log.status, log.recipient_masked) == ("email", "sent", "f***@example.org")
    assert log.provider_message_id == mail["Message-ID"]


async def test_it_repeats_the_message_id_when_it_must_send_again(
    smtp_app: AppContext, smtp_server: SmtpServer,
) -> None:
    """SMTP cannot be asked what it took; a resend after an unknown outcome carries the same
    Message-ID, so mail clients show the two copies as one message."""
    address = "second.patient@example.org"
    mail = providers.email_transport(smtp_app, "smtp")
    for _ in range(2):
        await mail.send(to=address, subject="Hello", text="Body", html=None, sender=FROM,
                        sender_name="Clinic", reference="notify:resend-1")
    copies = [m for m in smtp_server.messages() if m["To"] == address]
    assert len(copies) == 2
    assert {m["Message-ID"] for m in copies} == {message_id("notify:resend-1", sender=FROM)}
