"""The server layer in process: connections, pipelining, limits, timeouts, TLS, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from openvisit.config import Settings
from openvisit.context import AppContext
from openvisit.errors import ConfigurationError
from openvisit.feed.listener import MllpListener, serve_mllp, tls_context
from openvisit.hl7v2 import MllpDecoder, encode_frame
from openvisit.models import InboundMessage
from tests.peers.fixtures import free_port

from .support import appointments, count, make_endpoint, read_ack, siu


@dataclass
class Running:
    ctx: AppContext
    port: int
    stop: asyncio.Event
    task: asyncio.Task[None]
    listener: MllpListener

    async def until(self, condition: Callable[[MllpListener], bool], *, what: str,
                    timeout: float = 10.0) -> None:
        """Return once ``condition(listener)`` holds (the listener has caught up)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition(self.listener):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for the listener: {what}")
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def listening(
    settings: Settings, *, ssl_context: ssl.SSLContext | None = None, **overrides: Any
) -> AsyncIterator[Running]:
    ctx = AppContext.create(settings.model_copy(update=overrides))
    await ctx.start()
    await make_endpoint(ctx, senders=("EPIC^EPICADT",))
    port, stop, started = free_port(), asyncio.Event(), asyncio.Event()
    listener = MllpListener(ctx)
    task = asyncio.create_task(
        serve_mllp(ctx, stop=stop, host="127.0.0.1", port=port, ssl_context=ssl_context,
                   started=started, listener=listener)
    )
    await asyncio.wait_for(started.wait(), timeout=10)  # bound: connections are accepted
    try:
        yield Running(ctx, port, stop, task, listener)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)
        await ctx.close()


async def _acks(reader: asyncio.StreamReader, n: int, *, timeout: float = 20) -> list[bytes]:
    decoder, out = MllpDecoder(), list[bytes]()
    while len(out) < n:
        chunk = await asyncio.wait_for(reader.read(65536), timeout)
        if not chunk:
            break
        out += decoder.feed(chunk)
    return out


async def _one(port: int, message: bytes, **tls: Any) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, **tls)
    try:
        writer.write(encode_frame(message))
        await writer.drain()
        [ack] = await _acks(reader, 1)
        return ack
    finally:
        writer.close()


async def test_it_answers_pipelined_messages_in_order_on_one_connection(
    settings: Settings,
) -> None:
    async with listening(settings) as run:
        reader, writer = await asyncio.open_connection("127.0.0.1", run.port)
        stream = b"".join(encode_frame(siu(control_id=f"P{i}", filler=f"F{i}")) for i in range(20))
        for i in range(0, len(stream), 997):  # any chunking
            writer.write(stream[i : i + 997])
        await writer.drain()
        acks = [read_ack(a) for a in await _acks(reader, 20)]
        writer.close()

        assert [(a.code, a.acked_id) for a in acks] == [("AA", f"P{i}") for i in range(20)]
        assert len(await appointments(run.ctx)) == 20


async def test_it_serves_many_connections_at_once(settings: Settings) -> None:
    async with listening(settings) as run:

        async def client(n: int) -> list[str]:
            reader, writer = await asyncio.open_connection("127.0.0.1", run.port)
            codes = []
            for i in range(5):
                writer.write(encode_frame(siu(control_id=f"C{n}-{i}", filler=f"A{n}-{i % 2}")))
                await writer.drain()
                [ack] = await _acks(reader, 1)
                codes.append(read_ack(ack).code)
            writer.close()
            return codes

        results = await asyncio.gather(*(client(n) for n in range(8)))

        assert all(codes == ["AA"] * 5 for codes in results)
        assert len(await appointments(run.ctx)) == 16
        assert await count(run.ctx, InboundMessage) == 40


async def test_it_settles_two_connections_racing_for_one_new_appointment(
    settings: Settings,
) -> None:
    async with listening(settings) as run:
        acks = await asyncio.gather(*(_one(run.port, siu(control_id=f"R{i}")) for i in range(6)))

        assert {read_ack(a).code for a in acks} == {"AA"}
        assert len(await appointments(run.ctx)) == 1


async def test_it_rejects_an_oversize_frame_and_keeps_the_connection(
    settings: Settings,
) -> None:
    async with listening(settings, mllp_max_frame_bytes=2048) as run:
        reader, writer = await asyncio.open_connection("127.0.0.1", run.port)
        huge = siu(control_id="HUGE").replace(b"RGS|1|A", b"ZXX|" + b"x" * 5000 + b"\rRGS|1|A")
        writer.write(encode_frame(huge) + encode_frame(siu(control_id="AFTER")))
        await writer.drain()
        first, second = (read_ack(a) for a in await _acks(reader, 2))
        writer.close()

        assert (first.code, first.has_err) == ("AR", True)
        assert "2048-byte limit" in first.text
        assert (second.code, second.acked_id) == ("AA", "AFTER")


async def test_it_drops_a_client_stuck_mid_frame_and_an_idle_one(settings: Settings) -> None:
    async with listening(
        settings, mllp_frame_timeout_seconds=0.3, mllp_idle_timeout_seconds=0.6
    ) as run:
        stuck_r, stuck_w = await asyncio.open_connection("127.0.0.1", run.port)
        stuck_w.write(b"\x0b" + siu()[:50])
        idle_r, idle_w = await asyncio.open_connection("127.0.0.1", run.port)

        assert await asyncio.wait_for(stuck_r.read(), timeout=5) == b""
        assert await asyncio.wait_for(idle_r.read(), timeout=5) == b""
        assert read_ack(await _one(run.port, siu(control_id="STILL"))).code == "AA"
        stuck_w.close()
        idle_w.close()


async def test_it_sends_nothing_when_enhanced_mode_asks_for_no_commit_ack(
    settings: Settings,
) -> None:
    async with listening(settings) as run:
        reader, writer = await asyncio.open_connection("127.0.0.1", run.port)
        writer.write(
            encode_frame(siu(control_id="QUIET", accept_ack="NE", application_ack="NE"))
            + encode_frame(siu(control_id="LOUD", filler="L", accept_ack="AL"))
        )
        await writer.drain()
        [only] = await _acks(reader, 1)
        writer.close()

        assert (read_ack(only).code, read_ack(only).acked_id) == ("CA", "LOUD")
        assert len(await appointments(run.ctx)) == 2


async def test_it_stops_promptly_with_idle_connections_open(settings: Settings) -> None:
    ctx = AppContext.create(settings)
    await ctx.start()
    try:
        port, stop = free_port(), asyncio.Event()
        started = asyncio.Event()
        task = asyncio.create_task(serve_mllp(ctx, stop=stop, host="127.0.0.1", port=port,
                                              started=started))
        await asyncio.wait_for(started.wait(), timeout=10)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        writer.close()
    finally:
        await ctx.close()


def _pki(tmp: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    import ipaddress

    now = datetime.now(UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        signer: ec.EllipticCurvePrivateKey,
        *,
        ca: bool = False,
        usage: x509.ObjectIdentifier | None = None,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if subject == "127.0.0.1":
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("Test CA", ca_key, name("Test CA"), ca_key, ca=True)
    files: dict[str, Path] = {"ca": tmp / "ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for role, cn, usage in (
        ("server", "127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", "interface-engine", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        issued = cert(cn, key, ca.subject, ca_key, usage=usage)
        files[f"{role}_cert"] = tmp / f"{role}.pem"
        files[f"{role}_cert"].write_bytes(issued.public_bytes(serialization.Encoding.PEM))
        files[f"{role}_key"] = tmp / f"{role}.key"
        files[f"{role}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return files


async def test_it_speaks_tls_and_requires_a_client_certificate(
    settings: Settings, tmp_path: Path
) -> None:
    pki = _pki(tmp_path)
    server = tls_context(
        cert=str(pki["server_cert"]), key=str(pki["server_key"]), ca=str(pki["ca"])
    )
    client = ssl.create_default_context(cafile=str(pki["ca"]))
    client.load_cert_chain(str(pki["client_cert"]), str(pki["client_key"]))
    anonymous = ssl.create_default_context(cafile=str(pki["ca"]))

    async with listening(settings, ssl_context=server) as run:
        ack = read_ack(await _one(run.port, siu(control_id="TLS-1"), ssl=client))
        with pytest.raises((ssl.SSLError, ConnectionError, AssertionError, ValueError)):
            await _one(run.port, siu(control_id="TLS-2"), ssl=anonymous)
        plain = await asyncio.open_connection("127.0.0.1", run.port)
        plain[1].write(encode_frame(siu(control_id="PLAIN")))
        assert await asyncio.wait_for(plain[0].read(), timeout=10) == b""
        plain[1].close()
        again = read_ack(await _one(run.port, siu(control_id="TLS-3", filler="T3"), ssl=client))

    assert (ack.code, again.code) == ("AA", "AA")


def test_it_names_the_tls_file_it_cannot_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="MLLP_TLS_CERT"):
        tls_context(cert=str(tmp_path / "missing.pem"))
