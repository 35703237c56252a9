"""SMART discovery, its TTL cache and the /metadata check, against the in-process fake EHR."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from openvisit.smart.discovery import (
    DiscoveryCache,
    SmartConfiguration,
    fetch_capability_statement,
    fetch_smart_configuration,
)
from openvisit.smart.errors import EhrCapabilityMissing, SmartDiscoveryError

from .fake_ehr import FHIR_BASE, TOKEN_URL, FakeEhr, capability_statement, smart_configuration


async def test_it_fetches_and_parses_the_smart_configuration(
    http: httpx.AsyncClient, ehr: FakeEhr
) -> None:
    ehr.smart_config["management_endpoint"] = "https://ehr.test/manage"
    config = await fetch_smart_configuration(http, fhir_base=FHIR_BASE + "/")
    assert config.token_endpoint == TOKEN_URL
    assert config.supports_pkce_s256()
    assert config.supports("authorize-post")
    assert config.model_extra == {
        "response_types_supported": ["code"],
        "management_endpoint": "https://ehr.test/manage",
    }
    assert config.problems() == []
    config.require(launch_styles=("ehr", "standalone"), auth_method="client_secret_basic")


async def test_it_names_a_missing_token_endpoint(http: httpx.AsyncClient, ehr: FakeEhr) -> None:
    del ehr.smart_config["token_endpoint"]
    with pytest.raises(EhrCapabilityMissing, match="no token_endpoint") as caught:
        await fetch_smart_configuration(http, fhir_base=FHIR_BASE)
    assert caught.value.permanent
    assert caught.value.problems == ["no token_endpoint"]


def _config(**changes: object) -> SmartConfiguration:
    return SmartConfiguration.model_validate(smart_configuration() | changes)


def test_it_says_when_the_ehr_does_not_support_pkce_s256() -> None:
    config = _config(code_challenge_methods_supported=["plain"])
    with pytest.raises(EhrCapabilityMissing, match="the EHR does not support PKCE S256") as err:
        config.require()
    assert err.value.status_code == 502 and err.value.code == "ehr_capability_missing"


def test_it_lists_every_problem_at_once() -> None:
    config = _config(
        authorization_endpoint=None,
        capabilities=[],
        code_challenge_methods_supported=[],
        token_endpoint_auth_methods_supported=["client_secret_basic"],
        token_endpoint_auth_signing_alg_values_supported=["RS256"],
        issuer=None,
        jwks_uri="http://ehr.test/jwks",
    )
    problems = config.problems()
    assert "no authorization_endpoint" in problems
    assert "jwks_uri is not an https:// URL" in problems
    assert any("PKCE S256" in p for p in problems)
    assert any("launch-ehr" in p for p in problems)
    assert "the EHR does not accept private_key_jwt client authentication" in problems
    assert any("RS384 or ES384" in p for p in problems)
    assert any("sso-openid-connect" in p for p in problems)
    assert "no issuer (needed to check the id_token)" in problems


def test_it_falls_back_to_capabilities_when_auth_methods_are_absent() -> None:
    config = _config(token_endpoint_auth_methods_supported=[])
    assert config.problems() == []
    bare = _config(token_endpoint_auth_methods_supported=[], capabilities=["launch-ehr"])
    assert "the EHR does not advertise client-confidential-asymmetric" in bare.problems(
        openid=False
    )


def test_it_allows_plain_http_only_on_loopback() -> None:
    config = _config(
        token_endpoint="http://127.0.0.1:8000/token",
        authorization_endpoint="http://localhost:8000/authorize",
        jwks_uri="http://localhost:8000/jwks",
    )
    assert config.problems() == []


async def test_it_reports_a_wrong_base_url_with_a_hint(
    http: httpx.AsyncClient, ehr: FakeEhr
) -> None:
    with pytest.raises(SmartDiscoveryError, match=r"HTTP 404 .*R4") as caught:
        await fetch_smart_configuration(http, fhir_base="https://ehr.test/fhir/dstu2")
    assert caught.value.permanent


async def test_it_marks_server_errors_retryable(http: httpx.AsyncClient, ehr: FakeEhr) -> None:
    ehr.discovery_status = 503
    with pytest.raises(SmartDiscoveryError, match="HTTP 503") as caught:
        await fetch_smart_configuration(http, fhir_base=FHIR_BASE)
    assert caught.value.permanent is False


async def test_it_marks_an_unreachable_ehr_retryable(closed_port: int) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(SmartDiscoveryError, match="could not reach") as caught:
            await fetch_smart_configuration(client, fhir_base=f"http://127.0.0.1:{closed_port}/r4")
    assert caught.value.permanent is False


async def test_it_marks_a_silent_ehr_as_timed_out(silent_server: int) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=0.3) as client:
        with pytest.raises(SmartDiscoveryError, match="did not answer in time") as caught:
            await fetch_smart_configuration(client, fhir_base=f"http://127.0.0.1:{silent_server}")
    assert caught.value.permanent is False


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_it_fetches_discovery_once_per_ttl(http: httpx.AsyncClient, ehr: FakeEhr) -> None:
    clock = FakeClock()
    cache = DiscoveryCache(ttl_seconds=60, clock=clock)
    first = await cache.get(http, fhir_base=FHIR_BASE)
    again = await cache.get(http, fhir_base=FHIR_BASE + "/")
    assert again is first and ehr.hits["discovery"] == 1
    clock.now += 61
    await cache.get(http, fhir_base=FHIR_BASE)
    assert ehr.hits["discovery"] == 2
    cache.invalidate(FHIR_BASE)
    await cache.get(http, fhir_base=FHIR_BASE)
    assert ehr.hits["discovery"] == 3


async def test_it_shares_one_fetch_between_concurrent_callers(
    http: httpx.AsyncClient, ehr: FakeEhr
) -> None:
    cache = DiscoveryCache(ttl_seconds=60)
    results = await asyncio.gather(*(cache.get(http, fhir_base=FHIR_BASE) for _ in range(5)))
    assert ehr.hits["discovery"] == 1 and len({id(r) for r in results}) == 1


async def test_it_does_not_cache_failures(http: httpx.AsyncClient, ehr: FakeEhr) -> None:
    cache = DiscoveryCache(ttl_seconds=60)
    ehr.discovery_status = 500
    with pytest.raises(SmartDiscoveryError):
        await cache.get(http, fhir_base=FHIR_BASE)
    ehr.discovery_status = 200
    assert (await cache.get(http, fhir_base=FHIR_BASE)).token_endpoint == TOKEN_URL


async def test_it_accepts_an_r4_capability_statement(http: httpx.AsyncClient) -> None:
    summary = await fetch_capability_statement(http, fhir_base=FHIR_BASE)
    assert summary.fhir_version == "4.0.1"
    assert summary.software_name == "FakeEHR"
    assert {"Appointment", "Patient"} <= summary.resource_types


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (capability_statement("3.0.2"), r"FHIR 3\.0\.2 \(STU3\).*R4 \(4\.0\.x\)"),
        (capability_statement("5.0.0"), r"FHIR 5\.0\.0 \(R5\)"),
        ({"resourceType": "Conformance", "fhirVersion": "1.0.2"}, "returned a FHIR Conformance"),
        ({"resourceType": "OperationOutcome"}, "returned a FHIR OperationOutcome"),
        ({"hello": "world"}, "returned no FHIR resource"),
        ("<html>Sign in</html>", r"did not return JSON \(got text/html\)"),
    ],
)
async def test_it_rejects_what_is_not_an_r4_capability_statement(
    http: httpx.AsyncClient, ehr: FakeEhr, metadata: object, message: str
) -> None:
    ehr.metadata = metadata  # type: ignore[assignment]
    with pytest.raises(SmartDiscoveryError, match=message) as caught:
        await fetch_capability_statement(http, fhir_base=FHIR_BASE)
    assert caught.value.permanent


async def test_it_says_when_metadata_is_unreachable(closed_port: int) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(SmartDiscoveryError, match="could not reach") as caught:
            await fetch_capability_statement(client, fhir_base=f"http://127.0.0.1:{closed_port}")
    assert not caught.value.permanent
