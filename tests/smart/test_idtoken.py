"""id_token validation against the fake EHR's JWKS (tokens signed by Authlib), and fhirUser."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable

import httpx
import pytest

from openvisit.errors import InvalidInput
from openvisit.smart.discovery import SmartConfiguration
from openvisit.smart.errors import EhrCapabilityMissing, IdTokenInvalid, SmartDiscoveryError
from openvisit.smart.idtoken import (
    FhirUser,
    JwksCache,
    parse_fhir_user,
    validate_id_token,
)

from .fake_ehr import CLIENT_ID, FHIR_BASE, ISSUER, FakeEhr, JsonWebKey


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _validate(
    http: httpx.AsyncClient,
    config: SmartConfiguration,
    token: str,
    cache: JwksCache | None = None,
    **kw: object,
) -> object:
    return await validate_id_token(
        http,
        id_token=token,
        config=config,
        client_id=CLIENT_ID,
        jwks_cache=cache or JwksCache(),
        **kw,
    )  # type: ignore[arg-type]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


async def test_it_accepts_a_valid_token_and_returns_fhir_user(
    http: httpx.AsyncClient, ehr: FakeEhr, config: SmartConfiguration
) -> None:
    token = ehr.make_id_token({"nonce": "n-1", "name": "Jane Roe"})
    claims = await validate_id_token(
        http,
        id_token=token,
        config=config,
        client_id=CLIENT_ID,
        jwks_cache=JwksCache(),
        nonce="n-1",
    )
    assert claims.subject == "user-1" and claims.issuer == ISSUER
    assert claims.fhir_user == f"{FHIR_BASE}/Practitioner/prac-1"
    assert "Jane" not in repr(claims)


async def test_it_accepts_the_smart_v1_profile_claim(
    http: httpx.AsyncClient, ehr: FakeEhr, config: SmartConfiguration
) -> None:
    token = ehr.make_id_token({"fhirUser": None, "profile": "Practitioner/p-2"})
    claims = await _validate(http, config, token)
    assert claims.fhir_user == "Practitioner/p-2"  # type: ignore[attr-defined]


@pytest.mark.parametrize("alg", ["RS384", "ES256", "ES384"])
async def test_it_accepts_every_allowed_asymmetric_algorithm(
    http: httpx.AsyncClient, ehr: FakeEhr, config: SmartConfiguration, alg: str
) -> None:
    if alg.startswith("ES"):
        curve = {"ES256": "P-256", "ES384": "P-384"}[alg]
        ehr.ehr_keys.append(
            JsonWebKey.generate_key("EC", curve, is_private=True, options={"kid": f"ec-{alg}"})
        )
        token = ehr.make_id_token({}, alg=alg, key=ehr.ehr_keys[-1], kid=f"ec-{alg}")
    else:
        token = ehr.make_id_token({}, alg=alg)
    assert (await _validate(http, config, token)).subject == "user-1"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("make_claims", "reason"),
    [
        (lambda now: {"aud": "someone-else"}, r"another application \(aud\)"),
        (lambda now: {"aud": [CLIENT_ID, "other"], "azp": "other"}, r"\(azp\)"),
        (lambda now: {"iss": "https://evil.test"}, r"different server than this EHR \(iss\)"),
        (lambda now: {"exp": now - 121}, "has expired"),
        (lambda now: {"iat": now + 600}, "issued in the future"),
        (lambda now: {"nonce": "other"}, r"different sign-in attempt \(nonce\)"),
        (lambda now: {"sub": ""}, r"no subject \(sub\)"),
    ],
)
async def test_it_rejects_tokens_with_bad_claims(
    http: httpx.AsyncClient,
    ehr: FakeEhr,
    config: SmartConfiguration,
    make_claims: Callable[[int], dict[str, object]],
    reason: str,
) -> None:
    # Times relative to when the test runs: computed at collection, "600 s in the future"
    # was already the past when a long suite reached this test.
    claims = make_claims(int(time.time()))
    with pytest.raises(IdTokenInvalid, match=reason) as caught:
        await _validate(
            http, config, ehr.make_id_token(claims), nonce="n-1" if "nonce" in claims else None
        )
    assert caught.value.status_code == 401


async def test_it_tolerates_two_minutes_of_clock_skew(
    http: httpx.AsyncClient, ehr: FakeEhr, config: SmartConfiguration
) -> None:
    now = int(time.time())
    token = ehr.make_id_token({"exp": now - 100, "iat": now - 400})
    assert await _validate(http, config, token)
    with pytest.raises(IdTokenInvalid, match="expired"):
        await _validate(http, config, token, leeway_seconds=0)


async def test_it_requires_the_nonce_when_one_was_sent(
    http: httpx.AsyncClient, ehr: FakeEhr, config: SmartConfiguration
) -> None:
    with pytest.raises(IdTokenInvalid, match="nonce"):
        await _validate(http, config, ehr.make_id_token({}), nonce="n-1")


async def test_it_rejects_alg_none(
    http: httpx.AsyncClient, ehr: FakeEhr, config: SmartConfiguration
) -> None:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": CLIENT_ID, "sub": "u", "iat": now, "exp": now + 60}
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(body)}."
    with pytest.raises(IdTokenInvalid, match="signed with none, which OpenVisit never accepts"):
        await _validate(http, config, unsigned)
    assert "jwks" not in ehr.hits, "the alg is refused before any key is fetched"


async def test_it_rejects_hs256_even_keyed_with_the_ehrs_public_key(
    http: httpx.AsyncClient, ehr: FakeEhr, config: SmartConfiguration
) -> None:
    # The classic algorithm-confusion attack: HMAC keyed with the published RSA key.
    public_pem = ehr.ehr_keys[0].as_pem(is_private=False)
    now = int(time.time())
    body = {"iss": ISSUER, "aud": CLIENT_ID, "sub": "u", "iat": now, "exp": now + 60}
    signing_input = f"{_b64({'alg': 'HS256', 'kid': 'ehr-1'})}.{_b64(body)}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
    with pytest.raises(IdTokenInvalid, match="signed with HS256"):
        await _validate(http, config, forged)


async def test_it_rejects_a_token_signed_by_an_unpublished_key(
    http: httpx.AsyncClient, ehr: FakeEhr, config: SmartConfiguration
) -> None:
    clock = Clock()
    cache = JwksCache(clock=clock, refetch_cooldown_seconds=30)
    stranger = JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": "x"})
    token = ehr.make_id_token({}, key=stranger, kid="x")
    with pytest.raises(IdTokenInvalid, match=r"unknown kid"):
        await _validate(http, config, token, cache)
    assert ehr.hits["jwks"] == 1, "no refetch right after a fresh fetch"
    clock.now += 31
    with pytest.raises(IdTokenInvalid, match=r"unknown kid"):
        await _validate(http, config, token, cache)
    assert ehr.hits["jwks"] == 2, "refetched once, then gave up"


async def test_it_rejects_a_forged_signature_under_a_known_kid(
    http: httpx.AsyncClient, ehr: FakeEhr, config: SmartConfiguration
) -> None:
    impostor = JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": "ehr-1"})
    with pytest.raises(IdTokenInvalid, match="signature does not verify"):
        await _validate(http, config, ehr.make_id_token({}, key=impostor))


async def test_it_refetches_the_jwks_once_when_the_ehr_rotates(
    http: httpx.AsyncClient, ehr: FakeEhr, config: SmartConfiguration
) -> None:
    clock = Clock()
    cache = JwksCache(clock=clock, ttl_seconds=3600, refetch_cooldown_seconds=30)
    await _validate(http, config, ehr.make_id_token({}), cache)
    clock.now += 60
    ehr.ehr_keys.insert(
        0, JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": "ehr-2"})
    )
    await _validate(http, config, ehr.make_id_token({}, kid="ehr-2"), cache)
    assert ehr.hits["jwks"] == 2
    await _validate(http, config, ehr.make_id_token({}, kid="ehr-2"), cache)
    assert ehr.hits["jwks"] == 2, "the refreshed set is cached"
    clock.now += 3601
    await _validate(http, config, ehr.make_id_token({}, kid="ehr-2"), cache)
    assert ehr.hits["jwks"] == 3, "the TTL expired"


@pytest.mark.parametrize("garbage", ["", "a.b", "!!!.e30.sig", "e30.e30.sig"])
async def test_it_rejects_unreadable_tokens(
    http: httpx.AsyncClient, config: SmartConfiguration, garbage: str
) -> None:
    with pytest.raises(IdTokenInvalid):
        await _validate(http, config, garbage)


async def test_it_needs_issuer_and_jwks_uri(
    http: httpx.AsyncClient, ehr: FakeEhr, config: SmartConfiguration
) -> None:
    bare = config.model_copy(update={"jwks_uri": None})
    with pytest.raises(EhrCapabilityMissing, match="sso-openid-connect"):
        await _validate(http, bare, ehr.make_id_token({}))


async def test_it_reports_an_unusable_jwks(
    http: httpx.AsyncClient, ehr: FakeEhr, config: SmartConfiguration
) -> None:
    ehr.ehr_keys.clear()
    with pytest.raises(SmartDiscoveryError, match="no usable signing key") as caught:
        await _validate(http, config, "e30.e30.sig".replace("e30", _b64({"alg": "RS256"}), 1))
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "https://ehr/fhir/Practitioner/123",
            FhirUser("Practitioner", "123", "https://ehr/fhir/Practitioner/123"),
        ),
        (
            "https://ehr/fhir/Patient/e.Ab-9/_history/3",
            FhirUser("Patient", "e.Ab-9", "https://ehr/fhir/Patient/e.Ab-9"),
        ),
        ("RelatedPerson/7", FhirUser("RelatedPerson", "7", "RelatedPerson/7")),
    ],
)
def test_it_parses_fhir_user(value: str, expected: FhirUser) -> None:
    assert parse_fhir_user(value) == expected
    assert parse_fhir_user("https://ehr/fhir/Practitioner/123") == (
        "Practitioner",
        "123",
        "https://ehr/fhir/Practitioner/123",
    )


def test_it_makes_a_relative_fhir_user_absolute() -> None:
    assert parse_fhir_user("Practitioner/1", fhir_base="https://ehr/r4/").url == (
        "https://ehr/r4/Practitioner/1"
    )


@pytest.mark.parametrize(
    "value",
    [
        "https://ehr/fhir/Observation/1",
        "Practitioner",
        "",
        "ftp://x/Practitioner/1",
        "Practitioner/" + "1" * 65,
    ],
)
def test_it_rejects_what_is_not_a_user_reference(value: str) -> None:
    with pytest.raises(InvalidInput, match="fhirUser"):
        parse_fhir_user(value)
