"""Token requests against the fake EHR: code exchange, refresh, errors and retryability."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from openvisit.smart.authorize import build_authorize_request, parse_authorize_response
from openvisit.smart.client_auth import ClientSecretBasic, ClientSecretPost, KeySet, PrivateKeyJwt
from openvisit.smart.context import resolve_launch_context
from openvisit.smart.discovery import (
    DiscoveryCache,
    SmartConfiguration,
    fetch_smart_configuration,
)
from openvisit.smart.errors import SmartTokenError
from openvisit.smart.idtoken import JwksCache, validate_id_token
from openvisit.smart.pkce import Pkce
from openvisit.smart.state import new_nonce, new_state
from openvisit.smart.token import TokenResponse, exchange_code, refresh

from .fake_ehr import CLIENT_ID, FHIR_BASE, REDIRECT_URI, TOKEN_URL, FakeEhr

SCOPE = "launch openid fhirUser user/Appointment.rs"


@pytest.mark.parametrize("prefer_post", [False, True])
async def test_it_runs_a_whole_ehr_launch(
    http: httpx.AsyncClient, ehr: FakeEhr, client_keys: KeySet, prefer_post: bool
) -> None:
    config = await DiscoveryCache().get(http, fhir_base=FHIR_BASE)
    pkce, state, nonce = Pkce.new(), new_state(), new_nonce()
    request = build_authorize_request(
        config,
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT_URI,
        scope=SCOPE,
        state=state,
        aud=FHIR_BASE,
        code_challenge=pkce.challenge,
        launch="launch-123",
        nonce=nonce,
        prefer_post=prefer_post,
    )
    if request.method == "POST":
        answer = await http.post(request.url, data=dict(request.form))
    else:
        answer = await http.get(request.url)
    assert answer.status_code == 302
    callback = dict(parse_qsl(urlsplit(answer.headers["location"]).query))
    code = parse_authorize_response(callback, expected_state=state)

    token = await exchange_code(
        http,
        config=config,
        code=code,
        redirect_uri=REDIRECT_URI,
        code_verifier=pkce.verifier,
        auth=PrivateKeyJwt(CLIENT_ID, keys=client_keys),
    )
    assert token.token_type == "Bearer" and token.expires_in == 3600
    assert token.fhir_context[0].reference == "Appointment/apt-9"
    assert token.need_patient_banner is True and token.tenant == "t1"
    assert token.extras == {"vendor_extra": {"x": 1}}
    assert token.access_token not in repr(token) and "refresh_token='" not in repr(token)
    assert ehr.last_form["code_verifier"] == pkce.verifier
    assert ehr.verified[-1]["claims"]["aud"] == TOKEN_URL

    assert token.id_token is not None
    claims = await validate_id_token(
        http,
        id_token=token.id_token,
        config=config,
        client_id=CLIENT_ID,
        jwks_cache=JwksCache(),
        nonce=nonce,
    )
    context = resolve_launch_context(token, fhir_user=claims.fhir_user)
    assert (context.appointment_id, context.encounter_id, context.patient_id) == (
        "apt-9",
        "enc-4",
        "pat-7",
    )
    assert context.user_ref == "Practitioner/prac-1" and context.primary == "appointment"


async def _token(http: httpx.AsyncClient, ehr: FakeEhr, keys: KeySet, **form: str) -> TokenResponse:
    pkce = Pkce.new()
    code = ehr.issue_code(challenge=pkce.challenge, scope="user/Appointment.rs")
    config = await fetch_smart_configuration(http, fhir_base=FHIR_BASE)
    return await exchange_code(
        http,
        config=config,
        code=form.get("code", code),
        redirect_uri=form.get("redirect_uri", REDIRECT_URI),
        code_verifier=form.get("code_verifier", pkce.verifier),
        auth=PrivateKeyJwt(CLIENT_ID, keys=keys),
    )


async def test_it_fails_pkce_with_the_wrong_verifier(
    http: httpx.AsyncClient, ehr: FakeEhr, client_keys: KeySet
) -> None:
    with pytest.raises(SmartTokenError, match="invalid_grant \\(PKCE verification failed\\)"):
        await _token(http, ehr, client_keys, code_verifier=Pkce.new().verifier)


async def test_it_carries_the_ehr_error_code_in_the_message(
    http: httpx.AsyncClient, ehr: FakeEhr, client_keys: KeySet
) -> None:
    with pytest.raises(SmartTokenError) as caught:
        await _token(http, ehr, client_keys, code="used-or-expired")
    error = caught.value
    assert error.message.startswith(
        "The EHR refused the sign-in: invalid_grant (authorization code expired)."
    )
    assert "start again from the EHR" in error.message
    assert error.ehr_error == "invalid_grant" and error.permanent
    assert error.details == {"ehr_error": "invalid_grant"}


@pytest.mark.parametrize(
    ("status", "body", "permanent", "message"),
    [
        (503, {"error": "temporarily_unavailable"}, False, "temporarily_unavailable"),
        (500, "<html>oops</html>", False, "HTTP 500 without an OAuth error"),
        (429, {"error": "slow_down"}, False, "slow_down"),
        (404, "<html>not here</html>", True, "HTTP 404 without an OAuth error"),
        (200, {"token_type": "Bearer"}, True, r"malformed \(access_token\)"),
        (200, "<html>login</html>", True, "did not return JSON"),
        (
            200,
            {"error": "invalid_request", "error_description": "bad"},
            True,
            r"invalid_request \(bad\)",
        ),
    ],
)
async def test_it_classifies_token_endpoint_failures(
    http: httpx.AsyncClient,
    ehr: FakeEhr,
    client_keys: KeySet,
    status: int,
    body: object,
    permanent: bool,
    message: str,
) -> None:
    ehr.next_answer = (status, body)
    with pytest.raises(SmartTokenError, match=message) as caught:
        await _token(http, ehr, client_keys)
    assert caught.value.permanent is permanent


async def test_it_never_quotes_tokens_echoed_by_the_ehr(
    http: httpx.AsyncClient, ehr: FakeEhr, client_keys: KeySet
) -> None:
    secret_code = "SplxlOBeZQQYbYS6WxSbIA_abcdefghijkl"
    ehr.next_answer = (
        400,
        {"error": "invalid_grant", "error_description": f"code {secret_code} \x00 was used\n" * 20},
    )
    with pytest.raises(SmartTokenError) as caught:
        await _token(http, ehr, client_keys)
    assert secret_code not in caught.value.message and "\x00" not in caught.value.message
    assert len(caught.value.message) < 400


async def test_it_retries_a_timed_out_token_endpoint(
    silent_server: int, client_keys: KeySet
) -> None:
    config = SmartConfiguration(token_endpoint=f"http://127.0.0.1:{silent_server}/token")
    async with httpx.AsyncClient(trust_env=False, timeout=0.3) as client:
        with pytest.raises(SmartTokenError, match="did not answer in time") as caught:
            await exchange_code(
                client,
                config=config,
                code="c",
                redirect_uri=REDIRECT_URI,
                code_verifier=Pkce.new().verifier,
                auth=PrivateKeyJwt(CLIENT_ID, keys=client_keys),
            )
    assert caught.value.permanent is False


async def test_it_refreshes_and_the_new_refresh_token_replaces_the_old(
    http: httpx.AsyncClient, ehr: FakeEhr, client_keys: KeySet
) -> None:
    first = await _token(http, ehr, client_keys)
    config = await fetch_smart_configuration(http, fhir_base=FHIR_BASE)
    assert first.refresh_token is not None
    auth = ClientSecretBasic(CLIENT_ID, secret=ehr.client_secret)
    second = await refresh(
        http,
        config=config,
        refresh_token=first.refresh_token,
        auth=auth,
        scope="user/Appointment.rs",
    )
    assert second.refresh_token and second.refresh_token != first.refresh_token
    assert ehr.last_form == {
        "grant_type": "refresh_token",
        "refresh_token": first.refresh_token,
        "scope": "user/Appointment.rs",
    }
    with pytest.raises(SmartTokenError, match="refused to renew access: invalid_grant"):
        await refresh(http, config=config, refresh_token=first.refresh_token, auth=auth)


async def test_it_authenticates_with_client_secret_post_and_reports_a_bad_secret(
    http: httpx.AsyncClient, ehr: FakeEhr, client_keys: KeySet
) -> None:
    first = await _token(http, ehr, client_keys)
    config = await fetch_smart_configuration(http, fhir_base=FHIR_BASE)
    assert first.refresh_token is not None
    good = ClientSecretPost(CLIENT_ID, secret=ehr.client_secret)
    again = await refresh(http, config=config, refresh_token=first.refresh_token, auth=good)
    assert again.refresh_token is not None
    with pytest.raises(SmartTokenError, match=r"invalid_client.*JWKS URL or certificate"):
        await refresh(
            http,
            config=config,
            refresh_token=again.refresh_token,
            auth=ClientSecretPost(CLIENT_ID, secret="wrong"),
        )


def test_it_parses_vendor_token_responses() -> None:
    token = TokenResponse.model_validate(
        {
            "access_token": "a",
            "token_type": "bearer",
            "expires_in": "570",
            "scope": "a b",
            "patient": "p1",
            "encounter": "e1",
            "resource": "Appointment/9",
            "intent": "reconcile",
            "fhirContext": [
                "Appointment/1",
                {
                    "reference": "Location/2",
                    "role": "https://x/r",
                    "identifier": {"system": "s", "value": "v"},
                },
            ],
            "need_patient_banner": "false",
            "epic.dstu2.patient": "T1",
        }
    )
    assert token.token_type == "Bearer" and token.expires_in == 570
    assert token.scopes == {"a", "b"} and token.resource == "Appointment/9"
    assert token.fhir_context[0].reference == "Appointment/1"
    assert token.fhir_context[1].identifier == {"system": "s", "value": "v"}
    assert token.need_patient_banner is False
    assert token.extras == {"epic.dstu2.patient": "T1"}
    assert token.expires_at(issued_at=1000.0) == 1570.0
