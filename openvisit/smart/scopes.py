"""SMART scope spelling: v2 permission letters or the v1 ``read``/``write`` words.

Spec: SMART App Launch IG STU 2.2 §3 "Scopes and Launch Context" — v2 resource scopes are
``<context>/<resource>.<cruds>`` (``patient/Appointment.rs``); SMART v1 wrote
``patient/Appointment.read`` (``read`` = v2 ``rs``, ``write`` = ``cud``, ``*`` = ``cruds``),
and §2.0.6 lets a server advertise which it takes with the capabilities ``permission-v1`` and
``permission-v2``. A v1-only server does not know ``.rs`` and grants nothing for it.

Contract: :func:`server_takes_v1` decides from the discovery document (the capabilities
first; without either, ``scopes_supported`` listing only v1 resource scopes); :func:`spell`
rewrites a scope list for such a server and leaves every other scope as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from openvisit.smart.discovery import SmartConfiguration

_RESOURCE = re.compile(
    r"(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perm>[cruds]+|read|write|\*)"
)
_V1_WORDS = ("read", "write", "*")


def server_takes_v1(config: SmartConfiguration) -> bool:
    """Whether the EHR wants SMART v1 scope spellings (``.read``) rather than v2 (``.rs``).

    ``permission-v2`` advertised → v2 (even next to ``permission-v1``); only ``permission-v1``
    → v1; neither → v1 when every resource scope in ``scopes_supported`` is a v1 one, else v2
    (the SMART 2 default).
    """
    capabilities = set(config.capabilities)
    if "permission-v2" in capabilities:
        return False
    if "permission-v1" in capabilities:
        return True
    resource = [m for m in map(_RESOURCE.fullmatch, config.scopes_supported) if m is not None]
    return bool(resource) and all(m["perm"] in _V1_WORDS for m in resource)


def _to_v1(permissions: str) -> str:
    """v2 letters → the v1 word that covers them (``rs`` → ``read``; any write → ``*``)."""
    if set(permissions) <= {"r", "s"}:
        return "read"
    if set(permissions) <= {"c", "u", "d"}:
        return "write"
    return "*"


def spell(scopes: Iterable[str], *, v1: bool) -> str:
    """``scopes`` as one space-separated string, resource scopes in v1 words when ``v1``."""
    out: list[str] = []
    for scope in scopes:
        match = _RESOURCE.fullmatch(scope)
        if v1 and match is not None and match["perm"] not in _V1_WORDS:
            scope = f"{match['context']}/{match['type']}.{_to_v1(match['perm'])}"
        if scope not in out:
            out.append(scope)
    return " ".join(out)
