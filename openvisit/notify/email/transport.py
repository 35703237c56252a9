"""E-mail over SMTP with ``aiosmtplib`` (STARTTLS and AUTH when configured).

A connection per message: notification mail is a trickle, and a fresh session never meets a
server that silently dropped an idle one.

**Exactly-once.** SMTP cannot be asked what it accepted. Each message's ``Message-ID`` is
derived from the job key, so a resend after an unknown outcome (the connection broke after
``DATA`` was sent, before the server's ``250``) carries the same Message-ID, and mail
clients that thread by it show one message. Residual risk: in that window the patient can
receive two copies of the same e-mail; we prefer that to a lost link.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import ClassVar

import aiosmtplib

from openvisit.context import AppContext
from openvisit.errors import ConfigurationError, OutboundError
from openvisit.models import utcnow
from openvisit.notify.transport import (
    EmailTransport,
    OutcomeUnknown,
    RecipientRejected,
    SendResult,
)


def message_id(reference: str, *, sender: str) -> str:
    """A Message-ID that is the same for every attempt of one job (RFC 5322 §3.6.4)."""
    domain = sender.rpartition("@")[2] or "openvisit.invalid"
    return f"<{hashlib.sha256(reference.encode()).hexdigest()[:32]}@{domain}>"


def build(
    *, to: str, subject: str, text: str, html: str | None, sender: str, sender_name: str,
    reference: str, calendar: str | None = None,
) -> EmailMessage:
    """The MIME message: plain text, plus an HTML alternative when given, plus the visit's
    calendar file (``visit.ics``, text/calendar; method=PUBLISH) when given."""
    msg = EmailMessage()
    msg["From"] = formataddr((sender_name, sender)) if sender_name else sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = message_id(reference, sender=sender)
    # Automated, transactional: ask autoresponders not to reply (RFC 3834).
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    if calendar is not None:
        msg.add_attachment(calendar.encode("utf-8"), maintype="text", subtype="calendar",
                           filename="visit.ics", params={"method": "PUBLISH",
                                                         "charset": "utf-8"})
    return msg


class SmtpEmail(EmailTransport):
    """Sends through the configured SMTP relay."""

    name: ClassVar[str] = "smtp"

    def __init__(self, app: AppContext) -> None:
        settings = app.settings
        if not settings.smtp_host or not settings.smtp_from:
            raise ConfigurationError(
                "E-mail provider smtp needs OPENVISIT_SMTP_HOST and OPENVISIT_SMTP_FROM."
            )
        self.settings = settings

    async def send(
        self, *, to: str, subject: str, text: str, html: str | None, sender: str,
        sender_name: str, reference: str, retain_until: datetime | None = None,
        calendar: str | None = None,
    ) -> SendResult:
        settings = self.settings
        msg = build(to=to, subject=subject, text=text, html=html, sender=sender,
                    sender_name=sender_name, reference=reference, calendar=calendar)
        try:
            await aiosmtplib.send(
                msg, hostname=settings.smtp_host, port=settings.smtp_port,
                username=settings.smtp_username or None,
                password=settings.smtp_password or None,
                start_tls=settings.smtp_starttls, timeout=settings.notify_timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [err.code for err in exc.recipients]
            if codes and all(code >= 500 for code in codes):
                raise RecipientRejected("The mail server refused the recipient.") from exc
            raise OutboundError("The mail server deferred the recipient.") from exc
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPConnectTimeoutError) as exc:
            raise OutboundError("The mail server cannot be reached.") from exc
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise OutboundError("The mail server refused our login; check "
                                "OPENVISIT_SMTP_USERNAME and OPENVISIT_SMTP_PASSWORD.") from exc
        except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected) as exc:
            raise OutcomeUnknown("The mail server went silent mid-message.",
                                 code="smtp_no_answer") from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise OutboundError(f"The mail server refused the message ({exc.code}).",
                                permanent=exc.code >= 500) from exc
        except aiosmtplib.SMTPException as exc:
            raise OutboundError(f"SMTP failed ({type(exc).__name__}).") from exc
        return SendResult(provider_message_id=str(msg["Message-ID"]))


def email_transport(app: AppContext) -> EmailTransport:
    return SmtpEmail(app)
