"""Samples and helpers shared by the HL7 v2 core tests.

Public samples come from Microsoft FHIR-Converter (``peers/hl7``); the Epic- and Patients Know
Best-style samples in ``samples/`` are synthetic (TEST^PATIENT, fictional phone ranges).
"""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from openvisit.hl7v2 import SiuMessage, parse_siu

HERE = Path(__file__).parent
SYNTHETIC = HERE / "samples"
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")


def _peer_samples_dir() -> Path | None:
    candidates: list[str | Path] = [
        os.environ.get("OPENVISIT_HL7_SAMPLES", ""),
        HERE.parents[1] / "peers" / "hl7",
        HERE.parents[2] / "shared" / "peers" / "hl7",
    ]
    return next((Path(c) for c in candidates if c and Path(c).is_dir()), None)


PEER_SAMPLES = _peer_samples_dir()


def peer_sample(name: str) -> bytes:
    """Return the bytes of a public sample, skipping when the samples are not checked out."""
    if PEER_SAMPLES is None:
        pytest.skip("peers/hl7 samples not found (set OPENVISIT_HL7_SAMPLES)")
    return (PEER_SAMPLES / name).read_bytes()


def synthetic(name: str, *, newline: bytes = b"\r") -> bytes:
    """Return a synthetic sample with its segments ended by ``newline`` (CR like real MLLP)."""
    return (SYNTHETIC / name).read_bytes().replace(b"\n", newline)


def epic(newline: bytes = b"\r") -> bytes:
    return synthetic("epic_v23_siu_s12.hl7", newline=newline)


def pkb(newline: bytes = b"\r") -> bytes:
    return synthetic("pkb_v24_siu_s12.hl7", newline=newline)


def parse_us(message: bytes | str) -> SiuMessage:
    return parse_siu(message, default_tz=NEW_YORK, default_region="US")


def replace_field(message: bytes, segment: str, field: int, value: str) -> bytes:
    """Return ``message`` (standard delimiters, CR segment ends) with one field replaced."""
    lines = message.split(b"\r")
    for i, line in enumerate(lines):
        if line.startswith(segment.encode()):
            parts = line.split(b"|")
            index = field - 1 if segment == "MSH" else field
            parts += [b""] * (index + 1 - len(parts))
            parts[index] = value.encode("iso8859-1")
            lines[i] = b"|".join(parts)
            break
    else:
        raise AssertionError(f"no {segment} in message")
    return b"\r".join(lines)


def drop_segments(message: bytes, *names: str) -> bytes:
    lines = message.split(b"\r")
    return b"\r".join(ln for ln in lines if ln[:3].decode() not in names)
