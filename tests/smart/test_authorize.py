"""Authorization request building (GET and authorize-post) and the redirect back."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from openvisit.errors import InvalidInput
from openvisit.smart.authorize import (
    build_authorize_request,
    build_authorize_url,
    parse_authorize_response,
)
from openvisit.smart.discovery import SmartConfiguration
from openvisit.smart.errors import EhrCapabilityMissing, SmartAuthorizeError

from .fake_ehr import CLIENT_ID, FHIR_BASE, REDIRECT_URI, smart_configuration

COMMON = {
    "client_id": CLIENT_ID,
    "redirect_uri": REDIRECT_URI,
    "scope": ["launch", "openid", "fhirUser", "user/Appointment.rs"],
    "state": "st-1",
    "aud": FHIR_BASE,
    "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
}


def test_it_builds_an_ehr_launch_url_keeping_the_endpoints_query() -> None:
    url = build_authorize_url(
        "https://ehr.test/oauth2/authorize?tenant=t1&client_id=stale", launch="L 1+2", **COMMON
    )
    parts = urlsplit(url)
    assert parts.netloc == "ehr.test" and parts.path == "/oauth2/authorize"
    pairs = parse_qsl(parts.query)
    assert pairs[0] == ("tenant", "t1")
    query = dict(pairs)
    assert len(pairs) == len(query), "no parameter may appear twice"
    assert query == {
        "tenant": "t1",
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "launch": "L 1+2",
        "scope": "launch openid fhirUser user/Appointment.rs",
        "state": "st-1",
        "aud": FHIR_BASE,
        "code_challenge": COMMON["code_challenge"],
        "code_challenge_method": "S256",
    }
    assert "+" not in parts.query.replace("%2B", "")  # spaces are %20, never '+'


def test_it_leaves_out_launch_for_standalone_and_adds_a_nonce() -> None:
    url = build_authorize_url("https://ehr.test/authorize", nonce="n-1", **COMMON)
    query = dict(parse_qsl(urlsplit(url).query))
    assert "launch" not in query and query["nonce"] == "n-1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"state": ""}, "needs state"),
        ({"aud": "Patient/1"}, "absolute FHIR base"),
        ({"launch": ""}, "empty launch"),
        ({"extra_params": {"scope": "x"}}, "may not override scope"),
    ],
)
def test_it_refuses_unusable_arguments(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        build_authorize_url("https://ehr.test/authorize", **(COMMON | change))  # type: ignore[arg-type]


def test_it_refuses_an_endpoint_with_a_fragment() -> None:
    with pytest.raises(InvalidInput, match="fragment"):
        build_authorize_url("https://ehr.test/authorize#x", **COMMON)  # type: ignore[arg-type]


def test_it_posts_the_form_when_authorize_post_is_supported() -> None:
    config = SmartConfiguration.model_validate(smart_configuration())
    request = build_authorize_request(config, prefer_post=True, launch="L1", **COMMON)  # type: ignore[arg-type]
    assert request.method == "POST"
    assert request.url == "https://ehr.test/oauth2/authorize?tenant=t1"
    assert request.form["launch"] == "L1" and request.form["code_challenge_method"] == "S256"
    plain = build_authorize_request(config, **COMMON)  # type: ignore[arg-type]
    assert plain.method == "GET" and not plain.form


def test_it_falls_back_to_get_without_authorize_post() -> None:
    document = smart_configuration()
    document["capabilities"].remove("authorize-post")
    config = SmartConfiguration.model_validate(document)
    request = build_authorize_request(config, prefer_post=True, **COMMON)  # type: ignore[arg-type]
    assert request.method == "GET" and "code_challenge=" in request.url


def test_it_needs_an_authorization_endpoint() -> None:
    config = SmartConfiguration.model_validate(
        smart_configuration() | {"authorization_endpoint": None}
    )
    with pytest.raises(EhrCapabilityMissing, match="no authorization_endpoint"):
        build_authorize_request(config, **COMMON)  # type: ignore[arg-type]


def test_it_returns_the_code_when_state_matches() -> None:
    assert parse_authorize_response({"code": "c1", "state": "st-1"}, expected_state="st-1") == "c1"


@pytest.mark.parametrize("params", [{"code": "c1"}, {"code": "c1", "state": "other"}])
def test_it_refuses_a_response_for_another_session(params: dict[str, str]) -> None:
    with pytest.raises(SmartAuthorizeError, match="state mismatch") as caught:
        parse_authorize_response(params, expected_state="st-1")
    assert caught.value.status_code == 403


def test_it_explains_an_ehr_refusal_without_echoing_secrets() -> None:
    params = {
        "error": "access_denied",
        "state": "st-1",
        "error_description": "user said no to code eyJhbGciOiJSUzI1NiJ9.abcdefghijklmnopqrstuvwxyz",
    }
    with pytest.raises(SmartAuthorizeError, match="did not grant access: access_denied") as err:
        parse_authorize_response(params, expected_state="st-1")
    assert "eyJhbGci" not in err.value.message and "[redacted]" in err.value.message
    assert err.value.ehr_error == "access_denied" and err.value.permanent


def test_it_treats_temporary_ehr_refusals_as_retryable() -> None:
    with pytest.raises(SmartAuthorizeError) as caught:
        parse_authorize_response(
            {"error": "temporarily_unavailable", "state": "s"}, expected_state="s"
        )
    assert caught.value.permanent is False


def test_it_needs_a_code() -> None:
    with pytest.raises(SmartAuthorizeError, match="without an authorization code"):
        parse_authorize_response({"state": "s"}, expected_state="s")
