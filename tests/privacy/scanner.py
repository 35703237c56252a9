"""The dump scanner (issue 18): is any synthetic identifier anywhere, in any usual form?

Each identifier (a name, a birth date, a phone number, an e-mail, an MRN) is searched for in
every blob (a database file or dump, a log) as it is, lower-cased, URL-encoded (``quote`` and
``quote_plus``) and base64-encoded (standard and URL-safe alphabets, at each of the three
alignments a value can take inside a longer base64 text). A hit is reported with where it
was, which value and which form, never with the surrounding bytes.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus


@dataclass(frozen=True)
class Hit:
    where: str
    value: str
    form: str


def _b64_inner(raw: bytes, encode: Callable[[bytes], bytes]) -> Iterable[bytes]:
    """The characters of ``raw``'s base64 that are the same whatever precedes or follows it,
    for each of the three alignments (bytes before it, modulo 3)."""
    for shift in range(3):
        text = encode(b"\0" * shift + raw)
        start = (8 * shift + 5) // 6  # the first character holding no bit of what precedes
        end = (8 * (shift + len(raw))) // 6  # past the last one holding none of what follows
        if end - start >= 6:
            yield text[start:end]


def forms(value: str) -> dict[str, bytes]:
    """Every form of ``value`` the scanner looks for."""
    raw = value.encode()
    found = {"plain": raw, "lower": value.lower().encode(), "url": quote(value).encode(),
             "url+": quote_plus(value).encode(), "url-lower": quote(value.lower()).encode()}
    for name, encode in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
        for n, inner in enumerate(_b64_inner(raw, encode)):
            found[f"{name}{n}"] = inner
    return found


def phone_forms(e164: str, national: str) -> list[str]:
    """``+420601123456`` and ``601 123 456``: the forms a number is written in."""
    digits = national.replace(" ", "")
    return [e164, e164.lstrip("+"), national, digits]


def _lower(blob: bytes) -> bytes:
    """Lower-cased as text (non-ASCII letters too), bytes that are not UTF-8 kept as they are."""
    return blob.decode("utf-8", "surrogateescape").lower().encode("utf-8", "surrogateescape")


def scan(blobs: Mapping[str, bytes], values: Iterable[str]) -> list[Hit]:
    """Every (blob, value, form) found; case-insensitive for the text forms."""
    lowered = {where: _lower(blob) for where, blob in blobs.items()}
    hits: list[Hit] = []
    for value in values:
        for form, needle in forms(value).items():
            text_form = not form.startswith("b64")
            for where, blob in blobs.items():
                haystack = lowered[where] if text_form else blob
                if (_lower(needle) if text_form else needle) in haystack:
                    hits.append(Hit(where, value, form))
    return hits


def sqlite_files(url: str) -> dict[str, bytes]:
    """The SQLite database file and its WAL/SHM companions, as bytes."""
    path = Path(url.split("///", 1)[1])
    return {str(p.name): p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
            if p.exists()}


def pg_dump(url: str) -> dict[str, bytes]:
    """``pg_dump`` of a PostgreSQL database (schema and data, plain SQL)."""
    plain = url.replace("postgresql+asyncpg://", "postgresql://")
    done = subprocess.run(["pg_dump", "--no-owner", plain], capture_output=True, timeout=120,
                          check=True)
    return {f"pg_dump {plain.rsplit('/', 1)[1]}": done.stdout}


def database_blobs(url: str) -> dict[str, bytes]:
    return pg_dump(url) if url.startswith("postgresql") else sqlite_files(url)
