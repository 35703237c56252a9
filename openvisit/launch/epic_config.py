"""An endpoint's Epic context-link configuration: one key per link kind, GCM by default.

Stored in ``EhrEndpoint.options["epic_link"]``::

    {"param": "data", "allow_legacy_modes": false,
     "provider": {"key_enc": …, "key_format": "base64", "mode": "gcm", "set_at": …, "set_by": …},
     "patient":  {…}}

Why two keys: the link's role cannot come from the URL path, because a patient can edit a URL.
Epic's payload carries no role field (EHR-SPEC §2), so the only thing that tells a clinician's
link from a patient's is which key encrypted it. A link decrypts only with the key of its
route's kind; the same key for both kinds is refused at save time.

Why GCM only by default: CBC and ECB have no integrity check, so a link can be altered (CBC
bit-flipping changes fields of the next block; ECB blocks can be cut and pasted between
links) and the padding check is a decryption oracle. An admin may opt in per endpoint for an
Epic build that cannot do GCM; the portal then shows what that risks. A legacy mode without
the opt-in is refused when saved and when a link arrives.

``key_enc`` is encrypted with the field cipher (:class:`openvisit.crypto.FieldCipher`).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.context import AppContext
from openvisit.errors import ConfigurationError, InvalidInput
from openvisit.models import EhrEndpoint
from openvisit.smart.epic_context import (
    EpicCipherMode,
    epic_key_from_base64,
    epic_key_from_secret,
)

LinkKind = Literal["provider", "patient"]
LINK_KINDS: tuple[LinkKind, ...] = ("provider", "patient")
KEY_FORMATS = ("base64", "secret")
#: Modes with an integrity check (AEAD). Everything else needs the per-endpoint opt-in.
AUTHENTICATED_MODES = frozenset({EpicCipherMode.GCM})
LEGACY_MODES = frozenset(set(EpicCipherMode) - AUTHENTICATED_MODES)
#: What the portal says an unauthenticated mode risks (shown next to every legacy key).
LEGACY_RISK = (
    "CBC and ECB links carry no integrity check: anyone holding a link can alter parts of it "
    "without the key (CBC bit-flipping, ECB block swapping), and the padding check can be used "
    "to decrypt it. Use GCM as soon as your Epic build supports it."
)
_PARAM = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


@dataclass(frozen=True)
class LinkKey:
    """The key of one link kind (still encrypted) and how its links are laid out."""

    key_enc: str
    key_format: str
    mode: EpicCipherMode
    set_at: str | None = None
    set_by: str | None = None

    @property
    def legacy(self) -> bool:
        return self.mode in LEGACY_MODES

    def to_dict(self) -> dict[str, Any]:
        return {"key_enc": self.key_enc, "key_format": self.key_format, "mode": self.mode.value,
                "set_at": self.set_at, "set_by": self.set_by}


@dataclass(frozen=True)
class EpicLinkConfig:
    """The parsed ``options["epic_link"]``; ``old_layout`` marks the refused single-key form."""

    param: str = "data"
    allow_legacy_modes: bool = False
    keys: dict[str, LinkKey] = field(default_factory=dict)
    old_layout: bool = False

    @classmethod
    def of(cls, options: dict[str, Any] | None) -> EpicLinkConfig:
        """Read the configuration from an endpoint's options (empty when there is none)."""
        raw = (options or {}).get("epic_link")
        if not isinstance(raw, dict):
            return cls()
        param = raw.get("param") if isinstance(raw.get("param"), str) else "data"
        keys: dict[str, LinkKey] = {}
        for kind in LINK_KINDS:
            entry = raw.get(kind)
            if not isinstance(entry, dict) or not entry.get("key_enc"):
                continue
            try:
                mode = EpicCipherMode(entry.get("mode", EpicCipherMode.GCM.value))
            except ValueError:
                continue  # an unknown mode is treated as "not configured", never guessed
            keys[kind] = LinkKey(
                key_enc=str(entry["key_enc"]), key_format=str(entry.get("key_format", "base64")),
                mode=mode, set_at=entry.get("set_at"), set_by=entry.get("set_by"),
            )
        return cls(param=param or "data", allow_legacy_modes=bool(raw.get("allow_legacy_modes")),
                   keys=keys, old_layout="key_enc" in raw)

    def to_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {"param": self.param, "allow_legacy_modes": self.allow_legacy_modes}
        out.update({kind: key.to_dict() for kind, key in self.keys.items()})
        return out

    @property
    def legacy_kinds(self) -> list[str]:
        """Link kinds whose key uses an unauthenticated mode."""
        return [kind for kind in LINK_KINDS if kind in self.keys and self.keys[kind].legacy]

    def summary(self) -> dict[str, Any]:
        """What the portal shows (never the key): per kind, mode, format, who set it, when."""
        return {
            "param": self.param, "allow_legacy_modes": self.allow_legacy_modes,
            "old_layout": self.old_layout, "legacy_kinds": self.legacy_kinds,
            "risk": LEGACY_RISK,
            "kinds": {kind: ({"configured": True, "mode": key.mode.value,
                              "key_format": key.key_format, "legacy": key.legacy,
                              "set_at": key.set_at, "set_by": key.set_by}
                             if (key := self.keys.get(kind)) else {"configured": False})
                      for kind in LINK_KINDS},
        }


def derive_key(secret: str, key_format: str) -> bytes:
    """The AES key from what the admin entered; raises :class:`InvalidInput` if malformed."""
    if key_format not in KEY_FORMATS:
        raise InvalidInput("The key format is base64 (a 32-byte AES-256 key) or secret (a "
                           "plain-text secret for AES-128).", details={"field": "key_format"})
    try:
        if key_format == "secret":
            return epic_key_from_secret(secret)
        return epic_key_from_base64(secret)
    except ConfigurationError as exc:
        raise InvalidInput(exc.message, details={"field": "key"}) from None


def parse_mode(value: str) -> EpicCipherMode:
    try:
        return EpicCipherMode(value)
    except ValueError:
        raise InvalidInput(
            f"{value!r} is not a cipher mode; use gcm (or, for a legacy Epic build, "
            "cbc-zero-iv, cbc-iv-prefix or ecb with the legacy opt-in).",
            details={"field": "mode"},
        ) from None


def with_key(
    config: EpicLinkConfig,
    *,
    app: AppContext,
    kind: str,
    secret: str,
    key_format: str,
    mode: str,
    param: str | None,
    allow_legacy_modes: bool | None,
    actor: str,
    now: datetime | None = None,
) -> EpicLinkConfig:
    """``config`` with the ``kind`` key replaced; the checks every save path shares.

    ``allow_legacy_modes`` ``None`` keeps the stored opt-in. Raises :class:`InvalidInput`
    (with ``details["field"]``) for an unknown kind, a malformed key, an unknown mode, a
    legacy mode without the opt-in, withdrawing the opt-in while a legacy key remains, a
    malformed parameter name, or the key the other kind already uses.
    """
    if kind not in LINK_KINDS:
        raise InvalidInput("The link kind is provider or patient.", details={"field": "kind"})
    parsed_mode = parse_mode(mode)
    key = derive_key(secret.strip(), key_format)
    allow = config.allow_legacy_modes if allow_legacy_modes is None else allow_legacy_modes
    other = "patient" if kind == "provider" else "provider"
    if parsed_mode in LEGACY_MODES and not allow:
        raise InvalidInput(
            f"{parsed_mode.value} is an unauthenticated mode: links in it can be altered without "
            "the key. Use gcm, or, only if this Epic build cannot do GCM, tick the legacy opt-in "
            "for this endpoint (CLI: --allow-legacy-mode).", details={"field": "mode"},
        )
    if not allow and other in config.keys and config.keys[other].legacy:
        raise InvalidInput(
            f"The {other} link still uses {config.keys[other].mode.value}; change it to gcm "
            "before withdrawing the legacy opt-in.", details={"field": "allow_legacy_modes"},
        )
    if other in config.keys:
        stored = config.keys[other]
        other_key = derive_key(app.cipher.decrypt(stored.key_enc), stored.key_format)
        if hmac.compare_digest(other_key, key):
            raise InvalidInput(
                f"This is the key of the {other} link. Provider and patient links need different "
                "keys, or a patient's link would open a clinician's seat: ask the Epic analyst "
                f"for a separate {kind} key.", details={"field": "key"},
            )
    new_param = config.param if param is None or not param.strip() else param.strip()
    if not _PARAM.match(new_param):
        raise InvalidInput("The query parameter is a name such as data (letters, digits, _).",
                           details={"field": "param"})
    stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    keys = {**config.keys, kind: LinkKey(key_enc=app.cipher.encrypt(secret.strip()),
                                         key_format=key_format, mode=parsed_mode,
                                         set_at=stamp, set_by=actor)}
    legacy_left = any(k.legacy for k in keys.values())
    return EpicLinkConfig(param=new_param, allow_legacy_modes=allow and legacy_left, keys=keys)


async def save_link_key(
    session: AsyncSession,
    *,
    app: AppContext,
    endpoint: EhrEndpoint,
    kind: str,
    secret: str,
    key_format: str,
    mode: str,
    param: str | None = None,
    allow_legacy_modes: bool | None = None,
    actor: str,
) -> EpicLinkConfig:
    """Store the ``kind`` key of an Epic endpoint (portal and CLI); audit it without the key.

    Raises :class:`InvalidInput` for a non-Epic endpoint and everything :func:`with_key` does.
    """
    if endpoint.vendor != "epic":
        raise InvalidInput("Encrypted context links are an Epic feature; set the endpoint's EHR "
                           "to Epic first.", details={"field": "kind"})
    config = with_key(EpicLinkConfig.of(endpoint.options), app=app, kind=kind, secret=secret,
                      key_format=key_format, mode=mode, param=param,
                      allow_legacy_modes=allow_legacy_modes, actor=actor)
    endpoint.options = {**(endpoint.options or {}), "epic_link": config.to_options()}
    endpoint.version += 1  # the integration records (link parameter) carry the version
    await session.flush()
    await record(
        session, actor=actor, action="endpoint.epic_link", object_type="ehr_endpoint",
        object_id=str(endpoint.id), organisation_id=endpoint.organisation_id,
        after={"kind": kind, "mode": config.keys[kind].mode.value, "key_format": key_format,
               "param": config.param, "allow_legacy_modes": config.allow_legacy_modes},
    )
    return config
