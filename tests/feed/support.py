"""Helpers for the scheduling feed tests: endpoints, messages, the listener, mllp_send."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import hl7
from sqlalchemy import func, select

from openvisit.context import AppContext
from openvisit.ehr_endpoints.service import add_endpoint
from openvisit.feed.commands import configure_feed
from openvisit.hl7v2 import MllpDecoder, encode_frame
from openvisit.models import Appointment, Contact, EhrEndpoint, InboundMessage, Job, SmsSettings
from openvisit.portal.signin.service import get_or_create_organisation
from tests.peers.fixtures import free_port, port_open
from tests.support.backend import SHARED, subprocess_env
from tests.support.procs import Proc, wait_for

SAMPLES = SHARED / "peers" / "hl7"
MLLP_SEND = Path(sys.executable).parent / "mllp_send"
FHIR_CONVERTER_SENDER = "SCHApp^GHHSFacility"


async def make_endpoint(
    ctx: AppContext,
    *,
    senders: tuple[str, ...] = (FHIR_CONVERTER_SENDER,),
    slug: str = "feed-org",
    fhir_base: str = "https://ehr.example.org/fhir/r4",
    environment: str = "test",
    timezone: str = "America/New_York",
    region: str = "US",
    status_map: dict[str, str] | None = None,
    sms: bool = False,
) -> EhrEndpoint:
    """An organisation + endpoint whose feed accepts ``senders`` (optionally with SMS on)."""
    async with ctx.transaction() as session:
        org = await get_or_create_organisation(session, slug)
        org.default_phone_region = region
        endpoint = await add_endpoint(
            session,
            app=ctx,
            organisation=org,
            fhir_base=fhir_base,
            environment=environment,
            vendor="epic",
            client_id="openvisit",
            timezone=timezone,
            approved=True,
            actor="test",
        )
        await configure_feed(
            session, endpoint=endpoint, actor="test", senders=list(senders), status_map=status_map
        )
        if sms:
            session.add(
                SmsSettings(
                    endpoint_id=endpoint.id,
                    enabled=True,
                    confirmations_enabled=True,
                    reminder_offsets_minutes=[1440, 60],
                )
            )
        return endpoint


def siu(
    *,
    event: str = "S12",
    control_id: str = "CTRL-1",
    filler: str | None = "4000123456",
    placer: str | None = None,
    start: str = "20300312093000",
    end: str = "20300312100000",
    sender: str = "EPIC^EPICADT",
    status: str = "Booked",
    phone: str | None = "(202)555-0142",
    email: str | None = "test.patient@example.org",
    accept_ack: str = "",
    application_ack: str = "",
    department: str = "10501",
    csn: str = "4000123456",
    provider: str = "1001",
    patient: str = "E1234567^^^EPI^MR",
    language: str = "English",
) -> bytes:
    """An Epic-style v2.3 SIU message (synthetic: TEST^PATIENT, fictional 555-01xx numbers)."""
    app, _, facility = sender.partition("^")
    telecom = "~".join(
        part
        for part in (
            f"{phone}^PRN^CP" if phone else "",
            f"^NET^Internet^{email}" if email else "",
        )
        if part
    )
    msh = (
        f"MSH|^~\\&|{app}|{facility}|OPENVISIT|TELEHEALTH|20240305101500||SIU^{event}|"
        f"{control_id}|P|2.3|||{accept_ack}|{application_ack}"
    )
    segments = [
        msh.rstrip("|"),
        f"SCH|{placer or ''}|{filler or ''}|||||ROUTINE^Routine|VIDEO^Video Visit|30|MIN|"
        f"^^30^{start}^{end}|||||{provider}^PROVIDER^TEST|||||||||{status}^{status}",
        f"PID|1||{patient}||TEST^PATIENT||19800101|F|||||{telecom}||{language}",
        f"PV1|1|O|TELEHEALTH^^^OPENVISIT CLINIC||||{provider}^PROVIDER^TEST||||||||||||{csn}",
        "RGS|1|A",
        f"AIS|1|A|VIDEO^Video Visit|{start}|0|MIN|30|MIN||{status}",
        f"AIL|1|A|{department}^^^OPENVISIT CLINIC|||{start}|||30|MIN||{status}",
        f"AIP|1|A|{provider}^PROVIDER^TEST|||{start}|||30|MIN||{status}",
    ]
    return ("\r".join(segments) + "\r").encode()


@dataclass(frozen=True)
class Ack:
    """An ACK read with python-hl7 (an independent parser)."""

    raw: bytes
    code: str
    acked_id: str
    text: str
    control_id: str
    has_err: bool
    #: The whole text of the error: ERR-8 from v2.5, ERR-1's CE.5 before (MSA-3 is cut).
    reason: str = ""


def read_ack(raw: bytes) -> Ack:
    message = hl7.parse(raw.decode("utf-8", "replace").replace("\n", "\r"))
    msa = message.segment("MSA")
    reason = ""
    try:
        err = message.segment("ERR")
        has_err = True
    except KeyError:
        has_err = False
    else:
        if len(err) > 8 and str(err(8)):
            reason = str(err(8))
        elif len(err) > 1:
            eld = err(1)(1)
            reason = str(eld(4)(5)) if len(eld) > 3 and len(eld(4)) > 4 else ""
    return Ack(
        raw=raw,
        code=str(msa(1)),
        acked_id=str(msa(2)),
        text=str(msa(3)) if len(msa) > 3 else "",
        control_id=str(message.segment("MSH")(10)),
        has_err=has_err,
        reason=reason,
    )


def acks_in(output: bytes) -> list[bytes]:
    """The MLLP-framed ACKs in ``mllp_send``'s stdout, in order."""
    return MllpDecoder().feed(output)


def mllp_send(port: int, path: Path, *, timeout: float = 30) -> list[Ack]:
    """Send every message in ``path`` with python-hl7's ``mllp_send --loose``; its ACKs."""
    result = subprocess.run(
        [str(MLLP_SEND), "--loose", "-p", str(port), "127.0.0.1", "-f", str(path)],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return [read_ack(raw) for raw in acks_in(result.stdout)]


def write_message(tmp: Path, name: str, message: bytes) -> Path:
    """Write ``message`` the way people keep samples: one segment per line."""
    path = tmp / name
    path.write_bytes(message.replace(b"\r", b"\n"))
    return path


@dataclass
class Listener:
    proc: Proc
    port: int

    def stop(self) -> None:
        self.proc.stop()


def start_listener(db_url: str, tmp: Path, *, name: str = "mllp", **env: str) -> Listener:
    """``python -m openvisit mllp`` on a free port, waited for."""
    port = free_port()
    proc = Proc(
        ["mllp", "--port", str(port)], env=subprocess_env(db_url, **env), log=tmp / f"{name}.log"
    )
    wait_for(lambda: port_open("127.0.0.1", port), timeout=30, what="the MLLP listener", proc=proc)
    return Listener(proc, port)


def start_listener_logging_frames(db_url: str, tmp: Path, **env: str) -> Listener:
    """:func:`start_listener` logging each frame as it arrives (``mllp_frame_received``)."""
    return start_listener(db_url, tmp, OPENVISIT_LOG_LEVEL="DEBUG", **env)


async def frames_received(listener: Listener, count: int, *, timeout: float = 30) -> None:
    """Return once ``listener`` (see :func:`start_listener_logging_frames`) has taken
    ``count`` complete frames off its connections: they are past the socket and inside the
    listener, between arrival and ACK."""
    def arrived() -> bool:
        return listener.proc.log.read_text(errors="replace").count("mllp_frame_received") >= count

    await asyncio.to_thread(wait_for, arrived, timeout=timeout,
                            what=f"{count} frame(s) to reach the listener", proc=listener.proc)


def exchange(port: int, message: bytes, *, timeout: float = 15) -> bytes:
    """Send one framed message on a new connection; return the ACK's message bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(encode_frame(message))
        return receive_ack(sock, timeout=timeout)


def receive_ack(sock: socket.socket, *, timeout: float = 15) -> bytes:
    decoder = MllpDecoder()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("the listener closed the connection without an ACK")
        got = decoder.feed(chunk)
        if got:
            return got[0]
    raise AssertionError("no ACK in time")


async def appointments(ctx: AppContext) -> list[Appointment]:
    async with ctx.transaction() as session:
        return list(await session.scalars(select(Appointment).order_by(Appointment.created_at)))


async def count(ctx: AppContext, model: type[Job] | type[InboundMessage] | type[Contact]) -> int:
    async with ctx.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)
