"""SMART on FHIR scopes: parse, grant and check (SMART App Launch 2.2, "Scopes and Launch Context").

Resource scopes are ``<context>/<resource>.<permissions>`` with context ``patient``, ``user`` or
``system``. SMART v2 permissions are an ordered subset of ``cruds`` (create, read, update,
delete, search); SMART v1 ``read`` means ``rs``, ``write`` means ``cud`` and ``*`` means
``cruds`` (§"Scopes for requesting FHIR resources", v1 compatibility). Granular v2 scopes with
a query (``patient/Observation.rs?category=...``) are not supported here: they are never
granted, so a client gets less access, never more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_RESOURCE_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perm>read|write|\*|[cruds]+)$"
)
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
CONTEXTS = ("patient", "user", "system")
_RESOURCE_PREFIXES = ("patient/", "user/", "system/")


@dataclass(frozen=True)
class ResourceScope:
    """One parsed resource scope; ``permissions`` is a set of ``c r u d s`` letters."""

    context: str
    resource_type: str
    permissions: frozenset[str]

    def covers(self, other: ResourceScope) -> bool:
        """True when this scope allows everything ``other`` asks for."""
        return (
            self.context == other.context
            and self.resource_type in {"*", other.resource_type}
            and other.permissions <= self.permissions
        )

    def allows(self, *, resource_type: str, permission: str) -> bool:
        """True when this scope allows ``permission`` (one of cruds) on ``resource_type``."""
        return self.resource_type in {"*", resource_type} and permission in self.permissions


def parse_resource_scope(scope: str) -> ResourceScope | None:
    """Parse a SMART resource scope; None for other scopes and for unsupported forms.

    v2 permission letters must appear in ``cruds`` order without repeats (``.rs`` yes,
    ``.sr`` no), as SMART 2.2 requires.
    """
    match = _RESOURCE_SCOPE.fullmatch(scope)
    if match is None:
        return None
    perm = match["perm"]
    if perm in _V1:
        perm = _V1[perm]
    elif not _in_cruds_order(perm):
        return None
    return ResourceScope(match["context"], match["type"], frozenset(perm))


def _in_cruds_order(perm: str) -> bool:
    positions = ["cruds".index(ch) for ch in perm]
    return positions == sorted(set(positions))


def grant(requested: Sequence[str], *, allowed: Iterable[str]) -> list[str]:
    """The requested scopes this registration may have, in request order, without repeats.

    RFC 6749 §3.3 lets the server grant less than asked and report it in ``scope``.
    Non-resource scopes (``openid``, ``launch``...) must be listed verbatim in ``allowed``.
    """
    allowed_list = list(allowed)
    allowed_plain = set(allowed_list)
    allowed_resource = [s for s in map(parse_resource_scope, allowed_list) if s is not None]
    out: list[str] = []
    for scope in requested:
        if scope in out:
            continue
        parsed = parse_resource_scope(scope)
        if parsed is None:
            # An unparsable patient/, user/ or system/ scope is never granted, even if listed.
            if scope in allowed_plain and not scope.startswith(_RESOURCE_PREFIXES):
                out.append(scope)
        elif any(a.covers(parsed) for a in allowed_resource):
            out.append(scope)
    return out


def is_subset(narrower: Iterable[str], *, wider: Iterable[str]) -> bool:
    """True when every scope in ``narrower`` is in, or covered by, ``wider`` (RFC 6749 §6)."""
    wider_list = list(wider)
    return all(s in grant([s], allowed=wider_list) for s in narrower)


def contexts_allowing(
    scopes: Iterable[str], *, resource_type: str, permission: str
) -> frozenset[str]:
    """The scope contexts (patient, user, system) under which the interaction is allowed."""
    found: set[str] = set()
    for scope in scopes:
        parsed = parse_resource_scope(scope)
        if parsed is not None and parsed.allows(resource_type=resource_type, permission=permission):
            found.add(parsed.context)
    return frozenset(found)


def has_context(scopes: Iterable[str], *, context: str) -> bool:
    """True when any resource scope in ``scopes`` is of ``context``."""
    return any(p is not None and p.context == context for p in map(parse_resource_scope, scopes))
