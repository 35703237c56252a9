"""Each outside test peer really runs on this machine (fixtures in tests/peers/fixtures.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import time
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.peers.fixtures import (
    OIDC_DEFAULT_REDIRECT_URI,
    Coturn,
    Hl7Peer,
    OidcIdp,
    PrismTwilio,
    Smsc,
    SmtpServer,
    netns_available,
    run_in_netns,
)

pytestmark = pytest.mark.peers


def _b64url_json(part: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _verify_rs256(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    header_b64, payload_b64, sig_b64 = token.split(".")
    header = _b64url_json(header_b64)
    assert header["alg"] == "RS256"
    (jwk,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]

    def as_int(v: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(v + "=" * (-len(v) % 4)), "big")

    key = rsa.RSAPublicNumbers(as_int(jwk["e"]), as_int(jwk["n"])).public_key()
    signature = base64.urlsafe_b64decode(sig_b64 + "=" * (-len(sig_b64) % 4))
    key.verify(
        signature, f"{header_b64}.{payload_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return _b64url_json(payload_b64)


# ------------------------------------------------------------------------- OIDC IdP


def test_it_serves_the_oidc_discovery_document(oidc_idp: OidcIdp) -> None:
    doc = httpx.get(oidc_idp.discovery_url, timeout=10).raise_for_status().json()
    assert doc["issuer"] == oidc_idp.issuer
    assert doc["authorization_endpoint"] == oidc_idp.authorization_endpoint
    assert doc["token_endpoint"] == oidc_idp.token_endpoint
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert {"openid", "profile", "email"} <= set(doc["scopes_supported"])


def test_it_runs_an_authorization_code_flow_with_pkce(oidc_idp: OidcIdp) -> None:
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    params = {
        "client_id": oidc_idp.client_id,
        "response_type": "code",
        "redirect_uri": OIDC_DEFAULT_REDIRECT_URI,
        "scope": "openid profile email",
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    back = oidc_idp.dev_login(f"{oidc_idp.authorization_endpoint}?{urlencode(params)}", "dr.alice")
    assert back.startswith(OIDC_DEFAULT_REDIRECT_URI + "?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
    assert query["state"] == state
    assert query["iss"] == oidc_idp.issuer

    token = httpx.post(
        oidc_idp.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": OIDC_DEFAULT_REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=(oidc_idp.client_id, oidc_idp.client_secret),
        timeout=10,
    )
    assert token.status_code == 200, token.text
    jwks = httpx.get(oidc_idp.jwks_uri, timeout=10).raise_for_status().json()
    claims = _verify_rs256(token.json()["id_token"], jwks)
    assert claims["iss"] == oidc_idp.issuer
    assert claims["aud"] == oidc_idp.client_id
    assert claims["nonce"] == nonce
    assert claims["sub"] == "dr.alice"
    assert claims["email"] == "dr.alice@example.test"
    assert claims["name"] == "dr.alice"


def test_it_requires_pkce_at_the_idp(oidc_idp: OidcIdp) -> None:
    params = {
        "client_id": oidc_idp.client_id,
        "response_type": "code",
        "redirect_uri": OIDC_DEFAULT_REDIRECT_URI,
        "scope": "openid",
        "state": "s",
    }
    resp = httpx.get(f"{oidc_idp.authorization_endpoint}?{urlencode(params)}", timeout=10)
    assert resp.is_redirect
    assert "error=invalid_request" in resp.headers["location"]


# ------------------------------------------------------------------- Twilio (Prism)


def test_it_accepts_a_valid_twilio_message_at_prism(prism_twilio: PrismTwilio) -> None:
    resp = httpx.post(
        prism_twilio.messages_url(),
        data={"To": "+15005550006", "From": "+15005550001", "Body": "Your visit starts soon"},
        auth=(prism_twilio.account_sid, prism_twilio.auth_token),
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["sid"].startswith("SM")


def test_it_rejects_an_invalid_twilio_message_at_prism(prism_twilio: PrismTwilio) -> None:
    resp = httpx.post(
        prism_twilio.messages_url(),
        data={"From": "+15005550001", "Body": "no recipient"},
        auth=(prism_twilio.account_sid, prism_twilio.auth_token),
        timeout=10,
    )
    assert 400 <= resp.status_code < 500
    assert "To" in resp.text


# ------------------------------------------------------------------------------ SMSC


def test_it_submits_over_smpp_and_gets_a_delivery_receipt(smsc: Smsc) -> None:
    import smpplib.client
    import smpplib.consts

    before = len(smsc.submitted())
    received: list[Any] = []
    sent: list[Any] = []
    client = smpplib.client.Client(smsc.host, smsc.port, timeout=5, allow_unknown_opt_params=True)
    client.set_message_received_handler(lambda pdu: received.append(pdu))
    client.set_message_sent_handler(lambda pdu: sent.append(pdu))
    client.connect()
    try:
        client.bind_transceiver(system_id=smsc.system_id, password=smsc.password)
        client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
            source_addr="OpenVisit",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
            dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            destination_addr="447700900123",
            short_message=b"Your video visit starts at 10:30",
            registered_delivery=1,
            user_message_reference=42,
        )
        deadline = time.monotonic() + 10
        while not (sent and received) and time.monotonic() < deadline:
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    assert sent, "no submit_sm_resp"
    message_id = sent[0].message_id.decode()
    assert received, "no deliver_sm receipt"
    receipt = received[0]
    assert receipt.esm_class & 0x04
    text = receipt.short_message.decode()
    assert text.startswith(f"id:{message_id} sub:001 dlvr:001 submit date:")
    assert "stat:DELIVRD err:000" in text

    subs = smsc.submitted()[before:]
    assert len(subs) == 1
    assert subs[0]["message_id"] == message_id
    assert subs[0]["destination_addr"] == "447700900123"
    assert subs[0]["text"] == "Your video visit starts at 10:30"
    assert subs[0]["user_message_reference"] == 42


def test_it_refuses_a_bind_with_a_wrong_password(smsc: Smsc) -> None:
    import smpplib.client
    import smpplib.consts
    import smpplib.exceptions

    client = smpplib.client.Client(smsc.host, smsc.port, timeout=5, allow_unknown_opt_params=True)
    client.connect()
    try:
        with pytest.raises(smpplib.exceptions.PDUError) as err:
            client.bind_transceiver(system_id=smsc.system_id, password="wrong")
        assert err.value.args[1] == smpplib.consts.SMPP_ESME_RBINDFAIL
    finally:
        client.disconnect()


# ------------------------------------------------------------------------------ SMTP


async def test_it_delivers_mail_to_aiosmtpd(smtp_server: SmtpServer) -> None:
    import aiosmtplib

    before = len(smtp_server.messages())
    msg = EmailMessage()
    msg["From"] = "visits@clinic.test"
    msg["To"] = "patient@example.test"
    msg["Subject"] = "Your video visit"
    msg.set_content("Join here: https://visit.test/j/abc")
    await aiosmtplib.send(msg, hostname=smtp_server.host, port=smtp_server.port, timeout=10)
    got = smtp_server.wait_for_messages(before + 1)[before:]
    assert len(got) == 1
    assert got[0]["Subject"] == "Your video visit"
    assert "https://visit.test/j/abc" in got[0].get_content()


# ------------------------------------------------------------------------------ TURN

MAGIC = 0x2112A442


def _stun(msg_type: int, txid: bytes, attrs: bytes = b"") -> bytes:
    return struct.pack("!HHI", msg_type, len(attrs), MAGIC) + txid + attrs


def _attr(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def _parse(data: bytes) -> tuple[int, dict[int, bytes]]:
    msg_type, length, magic = struct.unpack("!HHI", data[:8])
    assert magic == MAGIC
    attrs: dict[int, bytes] = {}
    pos = 20
    while pos < 20 + length:
        kind, alen = struct.unpack("!HH", data[pos : pos + 4])
        attrs[kind] = data[pos + 4 : pos + 4 + alen]
        pos += 4 + alen + (-alen % 4)
    return msg_type, attrs


def _xor_address(value: bytes) -> tuple[str, int]:
    family, xport = struct.unpack("!xBH", value[:4])
    assert family == 1  # IPv4
    port = xport ^ (MAGIC >> 16)
    addr = struct.unpack("!I", value[4:8])[0] ^ MAGIC
    return socket.inet_ntoa(struct.pack("!I", addr)), port


def _exchange(sock: socket.socket, request: bytes, server: tuple[str, int]) -> bytes:
    for _ in range(10):  # UDP: retry until the server answers
        sock.sendto(request, server)
        try:
            return sock.recv(2048)
        except TimeoutError:
            continue
    raise AssertionError("no STUN answer")


def test_it_answers_stun_and_allocates_a_turn_relay(coturn: Coturn) -> None:
    server = (coturn.host, coturn.port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.5)
        # STUN Binding: our own address comes back XOR-mapped
        txid = os.urandom(12)
        msg_type, attrs = _parse(_exchange(sock, _stun(0x0001, txid), server))
        assert msg_type == 0x0101
        assert _xor_address(attrs[0x0020]) == sock.getsockname()

        # TURN Allocate with the REST credentials: 401 + nonce, then success + relay
        requested_transport = _attr(0x0019, bytes([17, 0, 0, 0]))
        msg_type, attrs = _parse(
            _exchange(sock, _stun(0x0003, os.urandom(12), requested_transport), server)
        )
        assert msg_type == 0x0113  # error response: 401 Unauthorized
        nonce, realm = attrs[0x0015], attrs[0x0014]
        assert realm.decode() == coturn.realm
        user, password = coturn.credentials("smoke")
        key = hashlib.md5(f"{user}:{coturn.realm}:{password}".encode()).digest()
        body = (
            requested_transport
            + _attr(0x0006, user.encode())
            + _attr(0x0014, realm)
            + _attr(0x0015, nonce)
        )
        txid = os.urandom(12)
        # MESSAGE-INTEGRITY covers the header with a length that includes itself (24 bytes)
        header = struct.pack("!HHI", 0x0003, len(body) + 24, MAGIC) + txid
        mac = hmac.new(key, header + body, hashlib.sha1).digest()
        request = header + body + _attr(0x0008, mac)
        msg_type, attrs = _parse(_exchange(sock, request, server))
        assert msg_type == 0x0103, attrs.get(0x0009)  # Allocate success
        relay_host, relay_port = _xor_address(attrs[0x0016])  # XOR-RELAYED-ADDRESS
        assert relay_host == "127.0.0.1"
        assert relay_port > 0


# ------------------------------------------------------------------------------- HL7


def test_it_acks_hl7_at_the_node_peer(hl7_noop_server: Hl7Peer) -> None:
    message = "MSH|^~\\&|EHR|CLINIC|OV|OV|20240101120000||SIU^S12|MSG0001|P|2.5\rSCH|1\r"
    with socket.create_connection((hl7_noop_server.host, hl7_noop_server.port), timeout=10) as s:
        s.sendall(b"\x0b" + message.encode() + b"\x1c\r")
        data = b""
        while not data.endswith(b"\x1c\r"):
            chunk = s.recv(4096)
            assert chunk, f"connection closed after {data!r}"
            data += chunk
    ack = data.strip(b"\x0b\x1c\r").decode()
    segments = ack.split("\r")
    assert segments[0].startswith("MSH|")
    assert segments[1].startswith("MSA|AA|MSG0001")


# --------------------------------------------------------------------------- netns

NETNS_PROBE = """
import socket, subprocess
links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
assert [l.split(":")[1].strip() for l in links.splitlines()] == ["lo"], links
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
cli = socket.create_connection(srv.getsockname(), timeout=2)
conn, _ = srv.accept(); cli.sendall(b"ping"); assert conn.recv(4) == b"ping"
print("ok", srv.getsockname()[1])
"""


NO_LOOPBACK_PROBE = "import socket; socket.create_connection(('127.0.0.1', 9), 1)"


def test_it_runs_a_command_in_a_private_network_namespace() -> None:
    assert netns_available(), "`unshare -n` should work here as root"
    result = run_in_netns([sys.executable, "-c", NETNS_PROBE], timeout=30)
    assert result.stdout.startswith("ok "), result.stderr
    # without `ip link set lo up` there is no loopback at all
    bare = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", NO_LOOPBACK_PROBE],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bare.returncode != 0
    assert "Network is unreachable" in bare.stderr or "Errno" in bare.stderr
