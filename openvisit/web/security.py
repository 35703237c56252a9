"""Response security headers: one Content-Security-Policy builder, HSTS, framing rules.

Every HTML page gets a strict default policy (only our own scripts, styles, forms and
connections; no framing). Pages that EHRs embed — the visit room, the device test and the
launch pages — may be framed by the origins an organisation lists (its EHR's embedded browser:
Epic Hyperspace, Oracle PowerChart) plus the deployment-wide ``OPENVISIT_FRAME_ANCESTORS``.
CSP Level 3 §6.4.2 (``frame-ancestors``); RFC 6797 (HSTS).

Views say what a page needs with :func:`page_needs` (framing origins, a form that posts to
another origin such as SMART ``authorize-post``, camera and signalling); the middleware builds
the header from that, so no view writes a policy string of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import Scope

from openvisit.config import Settings
from openvisit.errors import InvalidInput

#: An origin an organisation may list: scheme://host[:port], the host optionally "*."-prefixed.
_ORIGIN = re.compile(
    r"^(?P<scheme>https?)://(?P<host>(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?"
    r"(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)(:(?P<port>[0-9]{1,5}))?$"
)
_LOCAL_HOSTS = {"localhost", "127.0.0.1"}
MAX_FRAME_ANCESTORS = 20


def normalise_origin(value: str, *, allow_http: bool) -> str:
    """Return ``value`` as a lower-case origin fit for ``frame-ancestors``.

    Raises :class:`InvalidInput` naming the problem: a path, a query, a quote, white space, a
    scheme other than https (http only for localhost, or when ``allow_http``), a bad port.
    """
    text = value.strip().rstrip("/").lower()
    match = _ORIGIN.match(text)
    if match is None:
        raise InvalidInput(
            f"{value.strip()[:80]!r} is not an origin. Write it as https://host or "
            "https://host:port (no path), e.g. https://ehr.hospital.example."
        )
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise InvalidInput(f"{value.strip()[:80]!r} has a port outside 1–65535.")
    if match.group("scheme") == "http" and not (allow_http or match.group("host") in _LOCAL_HOSTS):
        raise InvalidInput(
            f"{value.strip()[:80]!r} uses http: EHR frames must be served over https "
            "(http is accepted only for localhost)."
        )
    return text


def parse_origins(lines: Iterable[str], *, allow_http: bool) -> list[str]:
    """Normalise a list of origins (one per line in the portal); raise on the first bad one."""
    seen: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        origin = normalise_origin(line, allow_http=allow_http)
        if origin not in seen:
            seen.append(origin)
    if len(seen) > MAX_FRAME_ANCESTORS:
        raise InvalidInput(f"At most {MAX_FRAME_ANCESTORS} EHR origins can be listed.")
    return seen


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an absolute URL ('' when it has none)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass(frozen=True)
class PageNeeds:
    """What one page needs beyond the strict default policy."""

    #: ``None``: never framed. A sequence: the organisation's EHR origins that may frame it.
    frame_ancestors: Sequence[str] | None = None
    #: Other origins a form on the page posts to.
    form_targets: Sequence[str] = ()
    #: Camera/microphone streams and the signalling WebSocket (visit room, device test).
    media: bool = False
    inline_styles: bool = False


def page_needs(request: Request, **needs: Any) -> None:
    """Record what this response's page needs (read by the security-header middleware)."""
    request.state.csp_needs = PageNeeds(**needs)


def needs_of(scope: Scope) -> PageNeeds:
    found = scope.get("state", {}).get("csp_needs")
    return found if isinstance(found, PageNeeds) else PageNeeds()


@dataclass(frozen=True)
class HeaderPolicy:
    """What the deployment's settings say about security headers (built once per app)."""

    public_origin: str
    websocket_origin: str
    hsts: str | None
    frame_ancestors: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> HeaderPolicy:
        origin = origin_of(settings.public_url)
        https = origin.startswith("https://")
        ws = ("wss://" if https else "ws://") + origin.split("://", 1)[1] if origin else ""
        hsts = None
        if https and settings.hsts_max_age_seconds > 0:
            hsts = f"max-age={settings.hsts_max_age_seconds}; includeSubDomains"
        allow_http = settings.environment == "development"
        return cls(
            public_origin=origin,
            websocket_origin=ws,
            hsts=hsts,
            frame_ancestors=tuple(parse_origins(settings.frame_ancestors, allow_http=allow_http)),
        )

    def ancestors(self, needs: PageNeeds) -> list[str]:
        """The origins that may frame this page (empty: none may)."""
        if needs.frame_ancestors is None:
            return []
        return list(dict.fromkeys([*self.frame_ancestors, *needs.frame_ancestors]))

    def self_sources(self) -> str:
        """``'self'`` plus the public origin (they differ behind a proxy that rewrites Host)."""
        return " ".join(dict.fromkeys(s for s in ("'self'", self.public_origin) if s))

    def content_security_policy(self, needs: PageNeeds, *, html: bool) -> str:
        """The policy for one response.

        Non-HTML responses may load and frame nothing. For pages, ``needs.frame_ancestors``
        ``None`` = no framing; a sequence = those origins plus the deployment's own list;
        ``needs.media`` adds what a WebRTC page needs (camera streams, the signalling socket at
        the public origin only).
        """
        own = self.self_sources()
        if not html:
            return "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
        ancestors = " ".join(self.ancestors(needs)) or "'none'"
        media = needs.media
        connect = own
        if media and self.websocket_origin:
            connect = f"{own} {self.websocket_origin}"
        forms = " ".join(dict.fromkeys([*own.split(), *(o for o in needs.form_targets if o)]))
        directives = [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'" + (" 'unsafe-inline'" if needs.inline_styles else ""),
            "img-src 'self' data:" + (" blob:" if media else ""),
            f"connect-src {connect}",
            "base-uri 'none'",
            f"form-action {forms}",
            f"frame-ancestors {ancestors}",
            "object-src 'none'",
        ]
        if media:
            directives.insert(4, "media-src 'self' blob: mediastream:")
        return "; ".join(directives)

    def headers_for(self, scope: Scope, present: set[bytes], content_type: bytes) -> list[
        tuple[bytes, bytes]
    ]:
        """Headers to add to one HTTP response (never overriding one the app set)."""
        added: list[tuple[bytes, bytes]] = []
        html = content_type.startswith(b"text/html")
        if b"content-security-policy" not in present:
            needs = needs_of(scope)
            policy = self.content_security_policy(needs, html=html)
            added.append((b"content-security-policy", policy.encode("latin-1")))
            if not (html and self.ancestors(needs)) and b"x-frame-options" not in present:
                added.append((b"x-frame-options", b"DENY"))  # for browsers without CSP 2
        if self.hsts and b"strict-transport-security" not in present:
            added.append((b"strict-transport-security", self.hsts.encode("latin-1")))
        return added
