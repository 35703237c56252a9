"""Client registrations of the sandbox authorisation server.

A registration is what an EHR analyst types into the EHR's app catalogue: the client id, the
exact redirect URIs (RFC 6749 §3.1.2.2), how the client authenticates at the token endpoint
(RFC 6749 §2.3: a secret; RFC 7523 / SMART "Backend Services" and "asymmetric client
authentication": a JWKS URL or an inline JWKS) and which scopes it may be granted.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openvisit.errors import InvalidInput

log = logging.getLogger(__name__)

DEFAULT_SCOPES: tuple[str, ...] = (
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "online_access",
    "offline_access",
    "user/*.cruds",
    "patient/*.cruds",
    "system/*.cruds",
)


@dataclass(frozen=True, kw_only=True)
class SandboxClient:
    """One registered SMART client.

    ``confidential=True`` needs ``client_secret`` (client_secret_basic / client_secret_post)
    and/or ``jwks_uri`` / ``jwks`` (private_key_jwt). A public client (``confidential=False``)
    has none of them and proves itself with PKCE alone. ``scopes`` lists what may be granted;
    a SMART resource scope here also allows every narrower one (``user/*.cruds`` allows
    ``user/Patient.rs``). Raises :class:`InvalidInput` when the registration is inconsistent.
    """

    client_id: str
    redirect_uris: Sequence[str] = ()
    client_secret: str | None = None
    jwks_uri: str | None = None
    jwks: Mapping[str, Any] | None = None
    scopes: Sequence[str] = DEFAULT_SCOPES
    confidential: bool = True
    name: str = field(default="")

    def __post_init__(self) -> None:
        # Freeze the sequences so a registration cannot change behind the registry's back.
        object.__setattr__(self, "redirect_uris", tuple(self.redirect_uris))
        object.__setattr__(self, "scopes", tuple(self.scopes))
        if not self.client_id or len(self.client_id) > 200 or not self.client_id.isprintable():
            raise InvalidInput("client_id must be 1-200 printable characters")
        has_credentials = bool(self.client_secret or self.jwks_uri or self.jwks)
        if self.confidential and not has_credentials:
            raise InvalidInput(
                f"confidential client {self.client_id!r} needs client_secret, jwks_uri or jwks"
            )
        if not self.confidential and has_credentials:
            raise InvalidInput(f"public client {self.client_id!r} must not have credentials")
        if not self.confidential and not self.redirect_uris:
            # A public client can only use the code grant, which needs a redirect URI.
            raise InvalidInput(f"public client {self.client_id!r} needs redirect_uris")
        for uri in self.redirect_uris:
            parts = urlsplit(uri)
            if parts.scheme not in {"http", "https"} or not parts.netloc or parts.fragment:
                raise InvalidInput(f"redirect URI must be absolute http(s) without #: {uri!r}")
        if self.jwks_uri is not None and urlsplit(self.jwks_uri).scheme not in {"http", "https"}:
            raise InvalidInput("jwks_uri must be an http(s) URL")
        if self.jwks is not None and not isinstance(self.jwks.get("keys"), list):
            raise InvalidInput("jwks must be a JWK Set: {'keys': [...]}")

    @property
    def auth_methods(self) -> frozenset[str]:
        """Token-endpoint auth methods this client may use (RFC 8414 names)."""
        if not self.confidential:
            return frozenset({"none"})
        methods: set[str] = set()
        if self.client_secret:
            methods |= {"client_secret_basic", "client_secret_post"}
        if self.jwks_uri or self.jwks:
            methods.add("private_key_jwt")
        return frozenset(methods)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SandboxClient:
        """Build a registration from its JSON form (the admin API and the clients file).

        Accepts ``scopes`` as a list or ``scope`` as a space-separated string. Raises
        :class:`InvalidInput` for unknown keys or wrong types.
        """
        known = {
            "client_id",
            "redirect_uris",
            "client_secret",
            "jwks_uri",
            "jwks",
            "scopes",
            "scope",
            "confidential",
            "name",
        }
        unknown = set(data) - known
        if unknown:
            raise InvalidInput(f"unknown client fields: {', '.join(sorted(unknown))}")
        scopes: Sequence[str] = DEFAULT_SCOPES
        if "scopes" in data:
            scopes = _str_list(data["scopes"], "scopes")
        elif "scope" in data:
            scopes = _str(data["scope"], "scope").split()
        confidential = data.get("confidential")
        if confidential is None:
            confidential = bool(
                data.get("client_secret") or data.get("jwks_uri") or data.get("jwks")
            )
        if not isinstance(confidential, bool):
            raise InvalidInput("confidential must be true or false")
        jwks = data.get("jwks")
        if jwks is not None and not isinstance(jwks, dict):
            raise InvalidInput("jwks must be an object")
        return cls(
            client_id=_str(data.get("client_id"), "client_id"),
            redirect_uris=_str_list(data.get("redirect_uris", []), "redirect_uris"),
            client_secret=_opt_str(data.get("client_secret"), "client_secret"),
            jwks_uri=_opt_str(data.get("jwks_uri"), "jwks_uri"),
            jwks=jwks,
            scopes=scopes,
            confidential=confidential,
            name=_opt_str(data.get("name"), "name") or "",
        )

    def to_json(self, *, include_secret: bool) -> dict[str, Any]:
        """JSON form; the secret and inline keys only when ``include_secret`` (persistence)."""
        out: dict[str, Any] = {
            "client_id": self.client_id,
            "name": self.name,
            "redirect_uris": list(self.redirect_uris),
            "scopes": list(self.scopes),
            "confidential": self.confidential,
            "jwks_uri": self.jwks_uri,
            "token_endpoint_auth_methods": sorted(self.auth_methods),
        }
        if include_secret:
            out["client_secret"] = self.client_secret
            out["jwks"] = dict(self.jwks) if self.jwks is not None else None
            del out["token_endpoint_auth_methods"]
        return out


def openvisit_registration(*, openvisit_url: str, client_id: str = "openvisit") -> SandboxClient:
    """OpenVisit as ``openvisit sandbox`` registers it: a confidential client proving itself
    with ``private_key_jwt`` against OpenVisit's published JWKS, for the EHR launch, the
    portal's approval sign-in and SMART Backend Services (``client_credentials`` with the
    ``system/`` scopes write-back asks for, e.g. ``system/AuditEvent.c``, which
    ``system/*.cruds`` in :data:`DEFAULT_SCOPES` covers)."""
    base = openvisit_url.rstrip("/")
    return SandboxClient(
        client_id=client_id,
        redirect_uris=[f"{base}/launch/callback", f"{base}/portal/approval/callback"],
        jwks_uri=f"{base}/.well-known/jwks.json",
        scopes=DEFAULT_SCOPES,
        name="OpenVisit",
    )


def load_clients_file(path: Path) -> list[SandboxClient]:
    """Read registrations from a JSON file: a list, or ``{"clients": [...]}``.

    Raises :class:`InvalidInput` naming the file when it is not valid.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read clients file {path}: {exc}") from exc
    if isinstance(data, dict):
        data = data.get("clients")
    if not isinstance(data, list):
        raise InvalidInput(f"clients file {path} must hold a list of clients")
    return [SandboxClient.from_json(item) for item in data if isinstance(item, dict)]


class ClientRegistry:
    """Thread-safe set of registrations; admin registrations persist to ``persist_path``.

    Registrations given in code or a clients file win over persisted ones with the same id.
    """

    def __init__(
        self, clients: Iterable[SandboxClient] = (), *, persist_path: Path | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._persist_path = persist_path
        self._clients: dict[str, SandboxClient] = {}
        self._persisted: dict[str, SandboxClient] = {}
        if persist_path is not None and persist_path.exists():
            for client in load_clients_file(persist_path):
                self._persisted[client.client_id] = client
                self._clients[client.client_id] = client
        for client in clients:
            self._clients[client.client_id] = client

    def get(self, client_id: str) -> SandboxClient | None:
        """The registration for ``client_id``, or None."""
        with self._lock:
            return self._clients.get(client_id)

    def all(self) -> list[SandboxClient]:
        """Every registration, sorted by client id."""
        with self._lock:
            return sorted(self._clients.values(), key=lambda c: c.client_id)

    def register(self, client: SandboxClient, *, persist: bool = False) -> None:
        """Add or replace a registration; with ``persist`` it survives a restart."""
        with self._lock:
            self._clients[client.client_id] = client
            if persist:
                self._persisted[client.client_id] = client
                self._save()
        log.info("sandbox.client_registered client_id=%s", client.client_id)

    def _save(self) -> None:
        if self._persist_path is None:
            return
        payload = {"clients": [c.to_json(include_secret=True) for c in self._persisted.values()]}
        # Drop keys whose value is None so the file round-trips through from_json.
        for item in payload["clients"]:
            for key in [k for k, v in item.items() if v is None]:
                del item[key]
        write_private_json(self._persist_path, payload=payload)


def write_private_json(path: Path, *, payload: Any) -> None:
    """Atomically write JSON readable only by the owner (it may hold secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{name} must be a non-empty string")
    return value


def _opt_str(value: Any, name: str) -> str | None:
    return None if value is None else _str(value, name)


def _str_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{name} must be a list of strings")
    return list(value)
