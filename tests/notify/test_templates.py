"""Every template in every language: present, rendering, short, free of names and clinic detail."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from openvisit.notify import gsm, render

FACTS = render.Facts(
    organisation="Nemocnice Example", department="Kardiologie",
    start_at=datetime(2030, 3, 16, 9, 30, tzinfo=UTC), timezone="Europe/Prague",
    # As long as a production link gets: https, a real host name, the 55-character token.
    link="https://visits.hospital-example.org/v/" + "A" * 22 + "." + "B" * 32,
)


@pytest.mark.parametrize("language", render.LANGUAGES)
def test_it_has_every_template_in_every_language(language: str) -> None:
    missing = [name for name in render.template_names()
               if not (render.TEMPLATE_DIR / language / name).is_file()]
    assert missing == []


@pytest.mark.parametrize("language", render.LANGUAGES)
@pytest.mark.parametrize("message", render.MESSAGES)
def test_it_renders_each_sms_within_two_parts(language: str, message: str) -> None:
    text = render.render_sms(message, language=language, facts=FACTS)
    assert "\n" not in text and "  " not in text
    assert "STOP" in text
    assert "10:30" in text  # local time in Prague, not UTC
    assert "Kardiologie" in text and "Nemocnice Example" in text
    assert (FACTS.link in text) == (message in render.WITH_LINK)
    assert gsm.is_gsm(text)
    assert gsm.segments(text) <= 2, (language, message, len(text))


@pytest.mark.parametrize("language", render.LANGUAGES)
@pytest.mark.parametrize("message", render.MESSAGES)
def test_it_renders_each_email(language: str, message: str) -> None:
    mail = render.render_email(message, language=language, facts=FACTS)
    assert mail.subject and "\n" not in mail.subject and "{" not in mail.subject
    assert "10:30" in mail.text and "10:30" in mail.html
    assert f'lang="{language}"' in mail.html
    assert (FACTS.link in mail.text) == (message in render.WITH_LINK)
    assert (f'href="{FACTS.link}"' in mail.html) == (message in render.WITH_LINK)
    assert "{{" not in mail.text + mail.html


def test_it_leaves_out_the_department_when_there_is_none() -> None:
    facts = render.Facts(organisation="Clinic", department=None, start_at=FACTS.start_at,
                         timezone="UTC", link=FACTS.link)
    text = render.render_sms("booked", language="en", facts=facts)
    assert "()" not in text and "video visit is booked" in text


def test_it_escapes_html_in_e_mail() -> None:
    facts = render.Facts(organisation="<b>Clinic</b>", department="A&E", start_at=FACTS.start_at,
                         timezone="UTC", link=FACTS.link)
    html = render.render_email("booked", language="en", facts=facts).html
    assert "<b>Clinic</b>" not in html and "&lt;b&gt;Clinic&lt;/b&gt;" in html
    assert "A&amp;E" in html


def test_it_keeps_accents_when_they_fit_and_drops_them_when_they_cost_parts() -> None:
    assert gsm.prepare("Vaše konzultace", transliterate_when_shorter=True) == "Vaše konzultace"
    long_czech = "Připomínáme Vaši videokonzultaci. " * 3
    plain = gsm.prepare(long_czech, transliterate_when_shorter=True)
    assert plain.startswith("Pripominame Vasi") and gsm.segments(plain) < gsm.segments(long_czech)
    assert gsm.prepare(long_czech, transliterate_when_shorter=False) == long_czech
    assert gsm.prepare("10:30\u202fAM", transliterate_when_shorter=False) == "10:30 AM"


def test_it_counts_sms_parts_like_a_handset() -> None:
    assert gsm.segments("a" * 160) == 1 and gsm.segments("a" * 161) == 2
    assert gsm.segments("€" * 80) == 1 and gsm.segments("€" * 81) == 2  # two septets each
    assert gsm.segments("č" * 70) == 1 and gsm.segments("č" * 71) == 2
    assert gsm.decode(gsm.encode("Price: 5€ [ok] _x_ ñ")) == "Price: 5€ [ok] _x_ ñ"
