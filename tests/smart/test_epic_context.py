"""Epic's encrypted context link, with vectors made independently by the openssl command line."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess

import pytest

from openvisit.errors import ConfigurationError
from openvisit.smart.epic_context import (
    EpicCipherMode,
    decrypt_epic_link,
    encrypt_epic_link,
    epic_key_from_base64,
    epic_key_from_secret,
)
from openvisit.smart.errors import EpicLinkExpired, EpicLinkInvalid

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

NOW = 1_750_000_000
PLAIN = (
    "SessionID=CSN123456&ConferenceID=CONF-77&ExternalID=E0042&ExternalIDType=EPIC"
    f"&FirstName=Jane&LastName=Roe&Timestamp={NOW - 60}&LinkValidityPeriod=15"
    "&CustomData1=Cardiology%20North&CustomData2=room%3D4&PatientDOB=1970-01-01"
)
SECRET = "Epic shared secret — test"
KEY_256 = bytes(range(32))


def openssl(
    cipher: str, key: bytes, plain: str, *, iv: bytes | None = None, raw: bool = False
) -> bytes:
    """Encrypt with the openssl CLI: an implementation independent of `cryptography`'s API."""
    args = ["openssl", "enc", f"-{cipher}", "-K", key.hex(), "-nosalt"]
    if iv is not None:
        args += ["-iv", iv.hex()]
    if not raw:
        args += ["-base64", "-A"]
    result = subprocess.run(args, input=plain.encode(), capture_output=True, check=True)
    return result.stdout


def test_it_decrypts_openssl_aes128_cbc_with_a_sha1_derived_key() -> None:
    key = epic_key_from_secret(SECRET)
    assert key == hashlib.sha1(SECRET.encode()).digest()[:16] and len(key) == 16
    token = openssl("aes-128-cbc", key, PLAIN, iv=bytes(16)).decode()
    context = decrypt_epic_link(token, key=key, mode=EpicCipherMode.CBC_ZERO_IV, now=NOW)
    assert context.session_id == "CSN123456" and context.conference_id == "CONF-77"
    assert (context.external_id, context.external_id_type) == ("E0042", "EPIC")
    assert context.timestamp == NOW - 60 and context.link_validity_minutes == 15
    assert context.department == "Cardiology North"
    assert dict(context.custom_data) == {"CustomData1": "Cardiology North", "CustomData2": "room=4"}


def test_it_never_returns_names_or_unknown_fields() -> None:
    key = epic_key_from_secret(SECRET)
    token = openssl("aes-128-cbc", key, PLAIN, iv=bytes(16)).decode()
    context = decrypt_epic_link(token, key=key, mode=EpicCipherMode.CBC_ZERO_IV, now=NOW)
    text = repr(context) + repr(vars(context))
    for phi in ("Jane", "Roe", "1970-01-01"):
        assert phi not in text


@pytest.mark.parametrize("url_safe", [True, False])
def test_it_decrypts_openssl_aes256_cbc_in_either_base64_alphabet(url_safe: bool) -> None:
    key = epic_key_from_base64(base64.b64encode(KEY_256).decode())
    raw = base64.b64decode(openssl("aes-256-cbc", key, PLAIN, iv=bytes(16)))
    token = (
        base64.urlsafe_b64encode(raw).decode().rstrip("=")
        if url_safe
        else base64.b64encode(raw).decode()
    )
    cbc = EpicCipherMode.CBC_ZERO_IV
    context = decrypt_epic_link(token, key=key, mode=cbc, now=NOW)
    assert context.session_id == "CSN123456"
    if not url_safe:
        # A framework that decoded an unescaped query turns '+' into ' '.
        assert decrypt_epic_link(token.replace("+", " "), key=key, mode=cbc, now=NOW) == context


def test_it_decrypts_openssl_aes256_ecb() -> None:
    token = openssl("aes-256-ecb", KEY_256, PLAIN).decode()
    context = decrypt_epic_link(token, key=KEY_256, mode=EpicCipherMode.ECB, now=NOW)
    assert context.external_id == "E0042"


def test_it_decrypts_openssl_aes128_ecb() -> None:
    key = epic_key_from_secret(SECRET)
    token = openssl("aes-128-ecb", key, PLAIN).decode()
    assert decrypt_epic_link(token, key=key, mode=EpicCipherMode.ECB, now=NOW).session_id


def test_it_decrypts_openssl_cbc_with_the_iv_prepended() -> None:
    iv = os.urandom(16)
    body = openssl("aes-256-cbc", KEY_256, PLAIN, iv=iv, raw=True)
    token = base64.urlsafe_b64encode(iv + body).decode()
    context = decrypt_epic_link(token, key=KEY_256, mode=EpicCipherMode.CBC_IV_PREFIX, now=NOW)
    assert context.conference_id == "CONF-77"


def test_it_round_trips_gcm_which_openssl_enc_cannot_make() -> None:
    # `openssl enc` refuses AEAD ciphers, so GCM is checked by round trip only.
    token = encrypt_epic_link(
        {"SessionID": "S1", "Timestamp": str(NOW), "LinkValidityPeriod": "5"},
        key=KEY_256,
        mode=EpicCipherMode.GCM,
    )
    assert decrypt_epic_link(token, key=KEY_256, mode=EpicCipherMode.GCM, now=NOW).session_id == (
        "S1"
    )
    tampered = base64.urlsafe_b64decode(token)
    tampered = tampered[:-1] + bytes([tampered[-1] ^ 1])
    with pytest.raises(EpicLinkInvalid):
        decrypt_epic_link(
            base64.urlsafe_b64encode(tampered).decode(),
            key=KEY_256,
            mode=EpicCipherMode.GCM,
            now=NOW,
        )


def test_it_matches_openssl_when_encrypting_for_the_sandbox() -> None:
    fields = {"SessionID": "S 1", "Timestamp": str(NOW), "LinkValidityPeriod": "5"}
    ours = encrypt_epic_link(fields, key=KEY_256, mode=EpicCipherMode.CBC_ZERO_IV, url_safe=False)
    theirs = openssl(
        "aes-256-cbc",
        KEY_256,
        f"SessionID=S%201&Timestamp={NOW}&LinkValidityPeriod=5",
        iv=bytes(16),
    ).decode()
    assert ours == theirs


def test_it_refuses_an_expired_link_with_a_message_a_person_can_act_on() -> None:
    key = epic_key_from_secret(SECRET)
    token = openssl("aes-128-cbc", key, PLAIN, iv=bytes(16)).decode()
    expires = NOW - 60 + 15 * 60
    cbc = EpicCipherMode.CBC_ZERO_IV
    assert decrypt_epic_link(token, key=key, mode=cbc, now=expires).session_id == "CSN123456"
    with pytest.raises(EpicLinkExpired) as caught:
        decrypt_epic_link(token, key=key, mode=cbc, now=expires + 1)
    assert caught.value.status_code == 410
    assert "valid for 15 minutes" in caught.value.message
    assert "open the visit again" in caught.value.message


def test_it_refuses_links_from_the_future() -> None:
    token = encrypt_epic_link(
        {"Timestamp": str(NOW + 3600), "LinkValidityPeriod": "5"}, key=KEY_256
    )
    with pytest.raises(EpicLinkInvalid, match="clocks"):
        decrypt_epic_link(token, key=KEY_256, now=NOW)


@pytest.mark.parametrize(
    ("token", "key", "mode"),
    [
        ("not base64 !!!", KEY_256, EpicCipherMode.CBC_ZERO_IV),
        (base64.b64encode(b"short").decode(), KEY_256, EpicCipherMode.CBC_ZERO_IV),
        (base64.b64encode(bytes(range(64))).decode(), KEY_256, EpicCipherMode.CBC_ZERO_IV),
        ("", KEY_256, EpicCipherMode.ECB),
    ],
)
def test_it_refuses_garbage(token: str, key: bytes, mode: EpicCipherMode) -> None:
    with pytest.raises(EpicLinkInvalid, match="could not be read") as caught:
        decrypt_epic_link(token, key=key, mode=mode, now=NOW)
    assert caught.value.status_code == 422


def test_it_refuses_a_link_made_with_another_key_or_mode() -> None:
    token = openssl("aes-256-cbc", KEY_256, PLAIN, iv=bytes(16)).decode()
    other = bytes(reversed(KEY_256))
    with pytest.raises(EpicLinkInvalid, match="key or cipher mode"):
        decrypt_epic_link(token, key=other, mode=EpicCipherMode.CBC_ZERO_IV, now=NOW)
    with pytest.raises(EpicLinkInvalid):
        decrypt_epic_link(token, key=KEY_256, mode=EpicCipherMode.GCM, now=NOW)


@pytest.mark.parametrize(
    "fields",
    [
        {"SessionID": "S1", "LinkValidityPeriod": "5"},
        {"SessionID": "S1", "Timestamp": "yesterday", "LinkValidityPeriod": "5"},
        {"SessionID": "S1", "Timestamp": str(NOW)},
    ],
)
def test_it_needs_a_readable_timestamp_and_validity(fields: dict[str, str]) -> None:
    token = encrypt_epic_link(fields, key=KEY_256)
    with pytest.raises(EpicLinkInvalid):
        decrypt_epic_link(token, key=KEY_256, now=NOW)


def test_it_defaults_to_gcm_the_only_authenticated_mode() -> None:
    token = encrypt_epic_link({"SessionID": "S1", "Timestamp": str(NOW),
                               "LinkValidityPeriod": "5"}, key=KEY_256)
    assert len(base64.urlsafe_b64decode(token)) > 12 + 16  # nonce + tag + body
    assert decrypt_epic_link(token, key=KEY_256, mode=EpicCipherMode.GCM, now=NOW).session_id
    with pytest.raises(EpicLinkInvalid):  # not a CBC link
        decrypt_epic_link(token, key=KEY_256, mode=EpicCipherMode.CBC_ZERO_IV, now=NOW)


def test_it_can_default_the_validity_period() -> None:
    token = encrypt_epic_link({"SessionID": "S1", "Timestamp": str(NOW)}, key=KEY_256)
    context = decrypt_epic_link(token, key=KEY_256, now=NOW, default_validity_minutes=10)
    assert context.expires_at == NOW + 600


@pytest.mark.parametrize("bad", ["", "c2hvcnQ=", "not base64"])
def test_it_refuses_unusable_keys(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        epic_key_from_base64(bad) if bad else epic_key_from_secret(bad)
