"""The authorization endpoint and the code grant, refusals first (RFC 6749 §4.1, RFC 7636,
SMART App Launch 2.2)."""

from __future__ import annotations

from datetime import timedelta

import httpx

from .conftest import SECRET, Clock
from .flows import authorize_params, code_for, exchange, follow_authorize, provider_launch
from .helpers import FHIR, REDIRECT, forms, pkce_pair, query

PROVIDER_SCOPE = "launch openid fhirUser online_access user/Appointment.rs user/Patient.rs"
BASIC = ("ov-secret", SECRET)


async def _refused(http: httpx.AsyncClient, **changes: str) -> dict[str, str]:
    _, challenge = pkce_pair()
    launch = await provider_launch(http)
    params = authorize_params(
        client_id="ov-secret", scope=PROVIDER_SCOPE, challenge=challenge, launch=launch
    )
    params.update(changes)
    params = {k: v for k, v in params.items() if v != ""}
    response = await http.get("/auth/authorize", params=params)
    assert response.status_code == 302, response.text
    assert response.headers["location"].startswith(REDIRECT)
    return query(response.headers["location"])


async def test_it_shows_unknown_clients_and_redirect_uris_on_a_page(
    http: httpx.AsyncClient,
) -> None:
    _, challenge = pkce_pair()
    for changes in (
        {"client_id": "nobody"},
        {"redirect_uri": "https://evil.test/cb"},
        {"redirect_uri": REDIRECT + "/"},
        {"redirect_uri": ""},
    ):
        params = authorize_params(client_id="ov-secret", scope="openid", challenge=challenge)
        params.update(changes)
        response = await http.get("/auth/authorize", params={k: v for k, v in params.items() if v})
        assert response.status_code == 400
        assert "location" not in response.headers
        assert "Cannot sign in" in response.text


async def test_it_redirects_other_errors_with_state(http: httpx.AsyncClient) -> None:
    cases = [
        ({"code_challenge": ""}, "invalid_request"),
        ({"code_challenge_method": ""}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"aud": "https://other-ehr.test/fhir"}, "invalid_request"),
        ({"aud": ""}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"launch": "not-a-launch"}, "invalid_request"),
        ({"scope": "made-up patient/Observation.rs?code=x"}, "invalid_scope"),
    ]
    for changes, error in cases:
        result = await _refused(http, **changes)
        assert result["error"] == error, (changes, result)
        assert result["state"] == "state-1234567890"
    no_state = await _refused(http, state="")
    assert no_state["error"] == "invalid_request" and "state" not in no_state
    plain = await _refused(http, code_challenge_method="plain")
    assert "S256" in plain["error_description"]


async def test_it_sends_access_denied_when_the_user_declines(http: httpx.AsyncClient) -> None:
    _, challenge = pkce_pair()
    params = authorize_params(client_id="ov-secret", scope="openid fhirUser", challenge=challenge)
    result = await follow_authorize(http, params, action="deny")
    assert result == {
        "error": "access_denied",
        "error_description": "the user declined",
        "state": "state-1234567890",
    }


async def test_it_accepts_authorize_by_post(http: httpx.AsyncClient) -> None:
    _, challenge = pkce_pair()
    launch = await provider_launch(http)
    params = authorize_params(
        client_id="ov-secret", scope=PROVIDER_SCOPE, challenge=challenge, launch=launch
    )
    page = await http.post("/auth/authorize", data=params)
    assert page.status_code == 200
    (form,) = forms(page.text)
    assert form.fields["user"] == "Practitioner/prac-1"  # the launching user is preselected


async def test_it_issues_launch_context_for_a_provider_launch(http: httpx.AsyncClient) -> None:
    launch = await provider_launch(http, practitioner="prac-2", appointment="appt-5")
    code, verifier = await code_for(
        http, client_id="ov-secret", scope=PROVIDER_SCOPE, launch=launch
    )
    response = await exchange(http, code, verifier, auth=BASIC)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == PROVIDER_SCOPE
    assert (body["patient"], body["encounter"]) == ("pat-5", "enc-5")
    assert body["fhirContext"] == [{"reference": "Appointment/appt-5"}]
    assert body["need_patient_banner"] is True
    assert body["smart_style_url"].endswith("/static/smart-style.json")
    assert "refresh_token" in body and "id_token" in body


async def test_it_refuses_missing_and_wrong_pkce_verifiers(http: httpx.AsyncClient) -> None:
    for verifier in (None, "x" * 43, pkce_pair()[0]):
        code, _ = await code_for(http, client_id="ov-secret", scope="openid fhirUser")
        response = await exchange(http, code, verifier, auth=BASIC)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"


async def test_it_refuses_a_reused_code_and_revokes_its_tokens(http: httpx.AsyncClient) -> None:
    code, verifier = await code_for(http, client_id="ov-secret", scope="openid user/Patient.rs")
    first = await exchange(http, code, verifier, auth=BASIC)
    token = first.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await http.get("/fhir/Patient/pat-1", headers=headers)).status_code == 200
    second = await exchange(http, code, verifier, auth=BASIC)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert (await http.get("/fhir/Patient/pat-1", headers=headers)).status_code == 401


async def test_it_refuses_expired_codes_and_other_redirect_uris(
    http: httpx.AsyncClient, clock: Clock
) -> None:
    code, verifier = await code_for(http, client_id="ov-secret", scope="openid")
    wrong = await exchange(http, code, verifier, auth=BASIC, redirect_uri=REDIRECT + "?x=1")
    assert wrong.json()["error"] == "invalid_grant"
    code, verifier = await code_for(http, client_id="ov-secret", scope="openid")
    clock.offset += timedelta(seconds=61)
    late = await exchange(http, code, verifier, auth=BASIC)
    assert late.json() == {
        "error": "invalid_grant",
        "error_description": "authorization code has expired",
    }


async def test_it_refuses_bad_client_credentials(http: httpx.AsyncClient) -> None:
    code, verifier = await code_for(http, client_id="ov-secret", scope="openid")
    for auth, form in (
        (("ov-secret", "wrong"), {}),
        (None, {}),
        (None, {"client_id": "ov-secret"}),
        (BASIC, {"client_secret": SECRET}),
    ):
        response = await exchange(http, code, verifier, auth=auth, **form)
        assert response.status_code in {400, 401}
        assert response.json()["error"] in {"invalid_client", "invalid_request"}
    bad = await exchange(http, code, verifier, auth=("ov-secret", "wrong"))
    assert bad.status_code == 401 and bad.headers["www-authenticate"].startswith("Basic")
    good = await exchange(http, code, verifier, client_id="ov-secret", client_secret=SECRET)
    assert good.status_code == 200  # client_secret_post; earlier failures did not burn the code


async def test_it_lets_a_public_client_in_with_pkce_alone(http: httpx.AsyncClient) -> None:
    code, verifier = await code_for(http, client_id="ov-public", scope="openid fhirUser")
    anonymous = await exchange(http, code, verifier)
    assert anonymous.json()["error"] == "invalid_client"
    response = await exchange(http, code, verifier, client_id="ov-public")
    assert response.status_code == 200, response.text


async def test_it_grants_less_than_asked_and_says_so(http: httpx.AsyncClient) -> None:
    launch = await provider_launch(http)
    code, verifier = await code_for(
        http,
        client_id="ov-narrow",
        launch=launch,
        scope="launch openid fhirUser offline_access user/Patient.rs patient/Appointment.rs",
    )
    body = (await exchange(http, code, verifier, auth=("ov-narrow", SECRET))).json()
    assert body["scope"] == "launch openid fhirUser patient/Appointment.rs"
    assert "refresh_token" not in body


async def test_it_offers_a_patient_picker_for_standalone_launch(http: httpx.AsyncClient) -> None:
    verifier, challenge = pkce_pair()
    params = authorize_params(
        client_id="ov-secret",
        challenge=challenge,
        scope="launch/patient openid fhirUser user/Patient.rs",
    )
    page = await http.get("/auth/authorize", params=params)
    (form,) = forms(page.text)
    assert "Practitioner/prac-3" in form.radios["user"] and "Patient/pat-2" in form.radios["user"]
    assert "Patient/pat-7" in form.options["patient"]
    result = await follow_authorize(
        http, params, user="Practitioner/prac-3", patient="Patient/pat-7"
    )
    body = (await exchange(http, result["code"], verifier, auth=BASIC)).json()
    assert body["patient"] == "pat-7" and "encounter" not in body and "fhirContext" not in body

    verifier, challenge = pkce_pair()
    params = authorize_params(
        client_id="ov-public",
        challenge=challenge,
        scope="launch/patient openid fhirUser patient/*.rs",
    )
    page = await http.get("/auth/authorize", params=params)
    (form,) = forms(page.text)
    assert all(u.startswith("Patient/") for u in form.radios["user"])
    result = await follow_authorize(http, params, user="Patient/pat-4")
    body = (await exchange(http, result["code"], verifier, client_id="ov-public")).json()
    assert body["patient"] == "pat-4"


async def test_it_publishes_discovery_documents(http: httpx.AsyncClient) -> None:
    smart = (await http.get("/fhir/.well-known/smart-configuration")).json()
    assert smart["issuer"] == FHIR and smart["code_challenge_methods_supported"] == ["S256"]
    for capability in (
        "launch-ehr",
        "launch-standalone",
        "client-confidential-asymmetric",
        "client-confidential-symmetric",
        "context-ehr-patient",
        "context-ehr-encounter",
        "sso-openid-connect",
        "permission-v1",
        "permission-v2",
        "authorize-post",
    ):
        assert capability in smart["capabilities"]
    assert set(smart["token_endpoint_auth_methods_supported"]) == {
        "private_key_jwt",
        "client_secret_basic",
        "client_secret_post",
    }
    assert smart["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert set(smart["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
    }
    for path in ("/fhir/.well-known/openid-configuration", "/.well-known/openid-configuration"):
        oidc = (await http.get(path)).json()
        assert oidc["issuer"] == FHIR and oidc["jwks_uri"] == smart["jwks_uri"]
    jwks = (await http.get(smart["jwks_uri"].removeprefix("http://sandbox.test"))).json()
    assert jwks["keys"][0]["kty"] == "RSA" and "d" not in jwks["keys"][0]
