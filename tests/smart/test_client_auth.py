"""OpenVisit's signing keys and client authentication, verified by the fake EHR with Authlib."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from openvisit.errors import ConfigurationError
from openvisit.smart.client_auth import (
    CLIENT_ASSERTION_TYPE,
    ClientSecretBasic,
    ClientSecretPost,
    KeySet,
    PrivateKeyJwt,
    PublicClient,
    SigningKey,
    changed_by_form_encoding,
    client_auth_for,
    make_client_assertion,
)
from openvisit.smart.discovery import SmartConfiguration
from openvisit.smart.errors import ClientKeyError, SmartTokenError
from openvisit.smart.token import client_credentials, exchange_code

from .fake_ehr import CLIENT_ID, REDIRECT_URI, TOKEN_URL, FakeEhr, s256


def _segment(token: str, index: int) -> dict[str, object]:
    part = token.split(".")[index]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def test_it_builds_an_assertion_with_the_claims_smart_requires(client_keys: KeySet) -> None:
    token = make_client_assertion(
        client_keys,
        client_id=CLIENT_ID,
        token_url=TOKEN_URL,
        now=1_700_000_000,
        jku="https://openvisit.test/jwks.json",
    )
    header, claims = _segment(token, 0), _segment(token, 1)
    assert header == {
        "typ": "JWT",
        "alg": "RS384",
        "kid": client_keys.current.kid,
        "jku": "https://openvisit.test/jwks.json",
    }
    assert claims["iss"] == claims["sub"] == CLIENT_ID and claims["aud"] == TOKEN_URL
    assert claims["iat"] == 1_700_000_000 and claims["exp"] == 1_700_000_240
    assert len(str(claims["jti"])) >= 43


def test_it_refuses_assertions_living_longer_than_five_minutes(client_keys: KeySet) -> None:
    with pytest.raises(ConfigurationError, match="300 seconds"):
        make_client_assertion(client_keys, client_id="c", token_url=TOKEN_URL, lifetime_seconds=301)


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
async def test_it_authenticates_with_private_key_jwt_verified_by_authlib(
    http: httpx.AsyncClient, ehr: FakeEhr, config: SmartConfiguration, alg: str
) -> None:
    keys = KeySet.generate(alg=alg)  # type: ignore[arg-type]
    ehr.client_jwks = keys.public_jwks
    auth = PrivateKeyJwt(CLIENT_ID, keys=keys)
    for _ in range(2):
        token = await client_credentials(
            http, config=config, scope="system/Appointment.rs", auth=auth
        )
        assert token.expires_in == 300
    assert [v["header"]["alg"] for v in ehr.verified] == [alg, alg]
    jtis = {v["claims"]["jti"] for v in ehr.verified}
    assert len(jtis) == 2, "every request needs a fresh jti"
    assert ehr.last_form["client_assertion_type"] == CLIENT_ASSERTION_TYPE


async def test_it_keeps_old_kids_verifiable_during_rotation_overlap(
    http: httpx.AsyncClient, ehr: FakeEhr, config: SmartConfiguration, client_keys: KeySet
) -> None:
    old = client_keys
    old_assertion_auth = PrivateKeyJwt(CLIENT_ID, keys=old)
    rotated = old.with_new_key(alg="ES384")
    ehr.client_jwks = rotated.public_jwks  # OpenVisit now publishes both keys
    assert rotated.current.kid != old.current.kid
    assert {k["kid"] for k in rotated.public_jwks()["keys"]} == {
        old.current.kid,
        rotated.current.kid,
    }
    # A replica still holding the old set signs with the old kid: still accepted.
    await client_credentials(http, config=config, scope="system/x.rs", auth=old_assertion_auth)
    await client_credentials(
        http, config=config, scope="system/x.rs", auth=PrivateKeyJwt(CLIENT_ID, keys=rotated)
    )
    assert [v["header"]["kid"] for v in ehr.verified] == [old.current.kid, rotated.current.kid]
    # Once retired, the old key is no longer published and its assertions fail.
    retired = rotated.without_key(old.current.kid)
    ehr.client_jwks = retired.public_jwks
    with pytest.raises(SmartTokenError, match="invalid_client") as caught:
        await client_credentials(http, config=config, scope="system/x.rs", auth=old_assertion_auth)
    assert caught.value.permanent and caught.value.ehr_error == "invalid_client"


def test_it_publishes_only_public_key_material(client_keys: KeySet) -> None:
    jwks = client_keys.with_new_key(alg="ES384").public_jwks()
    for key in jwks["keys"]:
        assert key["use"] == "sig" and key["alg"] in ("RS384", "ES384") and key["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
    assert "PRIVATE" not in repr(client_keys)


def test_it_round_trips_the_key_set_through_a_json_dict(client_keys: KeySet) -> None:
    keys = client_keys.with_new_key(alg="ES384", now=1_800_000_000)
    stored = json.loads(json.dumps(keys.to_dict()))
    assert stored["current"] == keys.current.kid
    assert all(k["pem"].startswith("-----BEGIN PRIVATE KEY-----") for k in stored["keys"])
    again = KeySet.from_dict(stored)
    assert again.kids == keys.kids and again.current.kid == keys.current.kid
    assert again.public_jwks() == keys.public_jwks()
    assert again.current.created_at == 1_800_000_000


def test_it_prunes_previous_keys_by_age_but_never_the_current_one(client_keys: KeySet) -> None:
    keys = KeySet([SigningKey.from_pem(client_keys.current.private_pem(), now=100)])
    keys = keys.with_new_key(alg="ES384", now=200)
    assert len(keys.without_keys_older_than(cutoff=150)) == 1
    assert len(keys.without_keys_older_than(cutoff=10_000)) == 1
    with pytest.raises(ClientKeyError, match="rotate to a new key first"):
        keys.without_key(keys.current.kid)


def test_it_can_publish_a_key_before_signing_with_it(client_keys: KeySet) -> None:
    staged = client_keys.with_key(SigningKey.generate(alg="ES384"), make_current=False)
    assert staged.current.kid == client_keys.current.kid and len(staged) == 2
    assert staged.with_current(staged.kids[-1]).current.alg == "ES384"


def test_it_refuses_weak_or_wrong_keys() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    with pytest.raises(ClientKeyError, match="at least 2048"):
        SigningKey.from_pem(pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)))
    with pytest.raises(ClientKeyError, match="P-384"):
        SigningKey.from_pem(pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(ClientKeyError, match="not a readable"):
        SigningKey.from_pem("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ClientKeyError, match="format"):
        KeySet.from_dict({"version": 99, "keys": []})


def test_it_builds_secret_based_client_authentication() -> None:
    basic = ClientSecretBasic("my client", secret="p@ss:word")
    header = basic.parts(token_url=TOKEN_URL).headers["Authorization"]
    assert base64.b64decode(header[6:]) == b"my+client:p%40ss%3Aword"
    assert "p@ss" not in repr(basic)
    post = ClientSecretPost("c", secret="s").parts(token_url=TOKEN_URL)
    assert post.form == {"client_id": "c", "client_secret": "s"} and not post.headers
    assert PublicClient("c").parts(token_url=TOKEN_URL).form == {"client_id": "c"}


def test_it_picks_the_client_auth_for_a_configured_method(client_keys: KeySet) -> None:
    assert client_auth_for("private_key_jwt", client_id="c", keys=client_keys).method == (
        "private_key_jwt"
    )
    assert isinstance(
        client_auth_for("client_secret_post", client_id="c", secret="s"), ClientSecretPost
    )
    assert isinstance(client_auth_for("none", client_id="c"), PublicClient)
    with pytest.raises(ConfigurationError, match="client secret"):
        client_auth_for("client_secret_basic", client_id="c")
    with pytest.raises(ConfigurationError, match="signing key set"):
        client_auth_for("private_key_jwt", client_id="c")


def test_it_sends_basic_credentials_raw_when_told_to() -> None:
    raw = ClientSecretBasic("my-client", secret="a+b/c=d", form_encode=False)
    header = raw.parts(token_url=TOKEN_URL).headers["Authorization"]
    assert base64.b64decode(header[6:]) == b"my-client:a+b/c=d"
    encoded = ClientSecretBasic("my-client", secret="a+b/c=d")
    header = encoded.parts(token_url=TOKEN_URL).headers["Authorization"]
    assert base64.b64decode(header[6:]) == b"my-client:a%2Bb%2Fc%3Dd"
    # A ":" in the id would split the pair: the id alone stays encoded.
    odd = ClientSecretBasic("my:client", secret="s+1", form_encode=False)
    header = odd.parts(token_url=TOKEN_URL).headers["Authorization"]
    assert base64.b64decode(header[6:]) == b"my%3Aclient:s+1"
    chosen = client_auth_for("client_secret_basic", client_id="c", secret="s",
                             basic_form_encoded=False)
    assert isinstance(chosen, ClientSecretBasic) and chosen.form_encode is False


def test_it_knows_which_secrets_form_encoding_changes() -> None:
    assert [changed_by_form_encoding(v) for v in ("a+b", "a/b", "a=b", "a:b", "a b", "ab-_.~9")] \
        == [True, True, True, True, True, False]


@pytest.mark.parametrize("server", ["form", "raw"])
@pytest.mark.parametrize("form_encode", [True, False], ids=["form-encoded", "raw"])
@pytest.mark.parametrize("secret", ["a+b/c=d", "plain-Secret_1.2~3"], ids=["odd", "plain"])
async def test_it_authenticates_with_each_basic_encoding_against_each_kind_of_server(
    http: httpx.AsyncClient, ehr: FakeEhr, server: str, form_encode: bool, secret: str,
    config: SmartConfiguration,
) -> None:
    ehr.basic_decoding = server  # type: ignore[assignment]
    ehr.client_secret = secret
    code = ehr.issue_code(challenge=s256("v" * 43), scope="launch user/Appointment.rs")
    auth = ClientSecretBasic(CLIENT_ID, secret=secret, form_encode=form_encode)
    matches = secret.startswith("plain") or form_encode == (server == "form")
    if matches:
        token = await exchange_code(http, config=config, code=code, redirect_uri=REDIRECT_URI,
                                    code_verifier="v" * 43, auth=auth)
        assert token.access_token
    else:
        with pytest.raises(SmartTokenError, match="invalid_client"):
            await exchange_code(http, config=config, code=code, redirect_uri=REDIRECT_URI,
                                code_verifier="v" * 43, auth=auth)
