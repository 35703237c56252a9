"""The dump scanner finds what it looks for, in every form (else a zero proves nothing)."""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

from hypothesis import given
from hypothesis import strategies as st

from tests.privacy.scanner import scan


@given(before=st.binary(max_size=7), after=st.binary(max_size=7),
       value=st.text(min_size=6, max_size=40).filter(lambda v: v.strip() == v))
def test_it_finds_a_value_inside_any_base64_text(before: bytes, after: bytes,
                                                 value: str) -> None:
    blob = before + value.encode() + after
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        assert scan({"b": encode(blob)}, [value]), (before, value, after)


def test_it_finds_plain_lower_and_url_encoded_forms() -> None:
    name = "Zdeňka Příkladová"
    for blob in (f"x{name}y", name.upper(), quote(name), quote_plus(name),
                 f"to={quote_plus('alex.sample+1@example.org')}&"):
        value = "alex.sample+1@example.org" if blob.startswith("to=") else name
        assert scan({"log": blob.encode()}, [value]), blob


def test_it_says_nothing_of_what_is_not_there() -> None:
    assert scan({"log": b"visit_id=1b2c event=joined"}, ["Zdenka", "+420601123456"]) == []
