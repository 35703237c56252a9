"""Outbound HTTP for addresses a portal user chose: the guard against server-side request forgery.

A portal admin types a FHIR base; OpenVisit then fetches it, and fetches what its discovery
documents name (authorization and token endpoints, JWKS). Without a guard that makes the
server a proxy into its own network: cloud metadata (169.254.169.254), databases on loopback,
the hospital's intranet. :func:`portal_http` is the client for every such request. It

- connects only to public unicast addresses (``ipaddress.is_global``, minus multicast and the
  IPv6 forms that embed an IPv4 address), unless the operator allows private ones
  (``OPENVISIT_OUTBOUND_ALLOW_PRIVATE``, the default outside production) or lists the host or
  its network in ``OPENVISIT_OUTBOUND_ALLOW_HOSTS``;
- checks the address **it connects to**, resolved once inside the connection (an httpcore
  network backend), so DNS rebinding (public at check time, loopback at connect time) gains
  nothing; a name with any refused address is refused whole;
- follows no redirect to another host (same-host redirects, e.g. http → https, stay usable);
- reads at most ``outbound_max_bytes`` (gzip/deflate counted after decoding, so no bomb) and
  gives the whole request ``outbound_timeout_seconds``, connect and body included;
- ignores proxy environment variables (a proxy would hide the real destination from the check).

Refusals raise :class:`OutboundRefused` with a message naming the address and the setting, so
the live check can show the admin why. Only OpenVisit's own addresses from the settings
(SMS providers, the organisation IdP) use the unguarded ``AppContext.http``.
"""

from __future__ import annotations

import ipaddress
import socket
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import httpcore
import httpx

from openvisit.errors import OutboundError
from openvisit.logs import get_logger

if TYPE_CHECKING:
    from openvisit.config import Settings
    from openvisit.context import AppContext

log = get_logger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``resolver(host, port)`` → the addresses ``host`` stands for (injectable for tests).
Resolver = Callable[[str, int], Awaitable[list[str]]]
#: Transitional (issue 12): where tests of the launch still plant their client.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_REDIRECTS = {301, 302, 303, 307, 308}
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class OutboundRefused(OutboundError):
    """OpenVisit will not send this request (internal address, other-host redirect…)."""

    status_code = 422
    code = "outbound_refused"


class ResponseTooLarge(OutboundError):
    """The answer was bigger than ``outbound_max_bytes``; it was cut off unread."""

    status_code = 502
    code = "outbound_response_too_large"


@dataclass(frozen=True)
class OutboundPolicy:
    """Where portal-driven requests may go, and how much they may cost."""

    allow_private: bool = False
    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()
    max_bytes: int = 5 * 1024 * 1024
    timeout_seconds: float = 15.0

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        hosts = {h for h in settings.outbound_allow_hosts if "/" not in h}
        networks = tuple(ipaddress.ip_network(h, strict=False)
                         for h in settings.outbound_allow_hosts if "/" in h)
        return cls(allow_private=settings.outbound_private_allowed, allow_hosts=frozenset(hosts),
                   allow_networks=networks, max_bytes=settings.outbound_max_bytes,
                   timeout_seconds=settings.outbound_timeout_seconds)

    def host_listed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.allow_hosts

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why ``address`` (what ``host`` resolved to) may not be reached, or None."""
        if self.host_listed(host) or any(address in n for n in self.allow_networks
                                         if n.version == address.version):
            return None
        kind = address_kind(address)
        if kind is None:
            return None
        if self.allow_private and kind not in ("unspecified", "multicast", "reserved"):
            return None
        shown = host if host == str(address) else f"{host} ({address})"
        return (f"OpenVisit does not connect to {shown}: it is a {kind} address, and requests "
                "made for portal users go only to public addresses. If this server really is "
                "on your own network, the OpenVisit operator can allow it with "
                "OPENVISIT_OUTBOUND_ALLOW_HOSTS (its host name or CIDR block).")


def address_kind(address: IPAddress) -> str | None:
    """What kind of non-public address this is ("loopback", "private"…), None if public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and any(address in n for n in _NAT64):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_kind(embedded)
        if address.teredo is not None:
            return "tunnelled (Teredo)"
    checks = (
        ("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
        ("link-local", address.is_link_local), ("multicast", address.is_multicast),
        ("carrier-grade NAT", address in ipaddress.ip_network("100.64.0.0/10")
         if address.version == 4 else False),
        ("private", address.is_private), ("reserved", address.is_reserved),
        ("non-public", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves each host once, refuses internal addresses, connects to the checked one."""

    def __init__(self, policy: OutboundPolicy, *, resolver: Resolver | None = None,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self._resolve = resolver or _system_resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                found = await self._resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took too long") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        addresses = [a for a in (_literal(f) for f in found) if a is not None]
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            reason = self.policy.refusal(host, address)
            if reason:
                log.warning("outbound_refused", reason="address", kind=address_kind(address))
                raise OutboundRefused(reason)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused("OpenVisit does not connect to local sockets for portal users.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PooledTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a connection pool that connects through the guarded backend."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        super().__init__(trust_env=False)
        # httpx offers no network-backend argument; its pool is replaced by an equal one that
        # has it (tests/portal/test_outbound_guard.py fails if an httpx upgrade breaks this).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), max_connections=20,
            max_keepalive_connections=10, keepalive_expiry=5.0, network_backend=backend)


class GuardedTransport(httpx.AsyncBaseTransport):
    """Caps, redirect rule and address guard around ``inner`` (default: a real pool)."""

    def __init__(self, policy: OutboundPolicy, *, inner: httpx.AsyncBaseTransport | None = None,
                 resolver: Resolver | None = None,
                 network_backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self._inner = inner or _PooledTransport(
            GuardedNetworkBackend(policy, resolver=resolver, inner=network_backend))

    def _precheck(self, url: httpx.URL) -> None:
        # The backend checks what it connects to; this answers obvious cases early (and for
        # in-process transports that never connect), with the same message.
        if url.scheme not in ("http", "https"):
            raise OutboundRefused(f"OpenVisit only fetches http:// and https:// addresses, not "
                                  f"{url.scheme}://.")
        host = url.host
        address = _literal(host)
        if address is None and host.lower().rstrip(".") in _LOCAL_NAMES:
            address = ipaddress.ip_address("127.0.0.1")
        if address is not None:
            reason = self.policy.refusal(host, address)
            if reason:
                log.warning("outbound_refused", reason="address", kind=address_kind(address))
                raise OutboundRefused(reason)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._precheck(request.url)
        try:
            with anyio.fail_after(self.policy.timeout_seconds):
                response = await self._inner.handle_async_request(request)
                try:
                    body, decoded = await self._read(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise httpx.ReadTimeout(
                f"no complete answer within {self.policy.timeout_seconds:g} s",
                request=request) from None
        if response.status_code in _REDIRECTS and "location" in response.headers:
            self._check_redirect(request.url, response.headers["location"])
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if not (decoded and k.lower() in ("content-encoding", "content-length"))]
        return httpx.Response(response.status_code, headers=headers, content=body,
                              request=request, extensions=response.extensions)

    async def _read(self, response: httpx.Response) -> tuple[bytes, bool]:
        """The body, decoded if gzip/deflate, refused past ``max_bytes`` either way."""
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip", "deflate", "x-gzip", ""):
            raise OutboundRefused(f"The server answered in the {encoding!r} encoding, which "
                                  "OpenVisit did not ask for.")
        inflate = zlib.decompressobj(wbits=47) if encoding not in ("identity", "") else None
        limit, parts, size = self.policy.max_bytes, [], 0
        async for chunk in response.aiter_raw():
            if inflate is not None:
                try:
                    chunk = inflate.decompress(chunk, limit + 1 - size)
                except zlib.error:
                    raise OutboundRefused("The server's compressed answer is corrupt.") from None
                if inflate.unconsumed_tail:
                    size = limit + 1  # more output than room left: too large
            size += len(chunk)
            if size > limit:
                log.warning("outbound_response_too_large", limit=limit)
                raise ResponseTooLarge(
                    f"The server's answer is larger than {limit // 1024} KiB, so OpenVisit "
                    "stopped reading it; an EHR's metadata and SMART configuration are far "
                    "smaller. Check the address.", permanent=True)
            parts.append(chunk)
        if inflate is not None:
            rest = inflate.flush()
            if size + len(rest) > limit:
                raise ResponseTooLarge(f"The server's answer is larger than {limit // 1024} "
                                       "KiB, so OpenVisit stopped reading it.", permanent=True)
            parts.append(rest)
        return b"".join(parts), inflate is not None

    def _check_redirect(self, url: httpx.URL, location: str) -> None:
        target = url.join(location)
        if target.host.lower() != url.host.lower() or (
                url.scheme == "https" and target.scheme != "https"):
            log.warning("outbound_refused", reason="redirect")
            raise OutboundRefused(
                f"{url.scheme}://{url.host}{url.path} redirects to {target.scheme}://"
                f"{target.host}{target.path}. OpenVisit does not follow redirects to another "
                "host (or from https to http); enter the final address instead.")

    async def aclose(self) -> None:
        await self._inner.aclose()


def guarded_client(
    policy: OutboundPolicy, *, mounts: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    resolver: Resolver | None = None,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every request goes through :class:`GuardedTransport`.

    ``mounts`` (tests) puts in-process servers behind the same caps and redirect rule.
    """
    guarded = {pattern: GuardedTransport(policy, inner=inner)
               for pattern, inner in (mounts or {}).items()}
    return httpx.AsyncClient(
        transport=GuardedTransport(policy, resolver=resolver, network_backend=network_backend),
        mounts=guarded, trust_env=False, follow_redirects=False, max_redirects=3,
        timeout=httpx.Timeout(policy.timeout_seconds, connect=min(5.0, policy.timeout_seconds)),
        headers={"User-Agent": "OpenVisit", "Accept-Encoding": "gzip, deflate"},
    )


def portal_http(app: AppContext) -> httpx.AsyncClient:
    """The process's guarded client for portal-driven requests (made on first use)."""
    client = app.services.portal_http
    if client is None:
        client = guarded_client(OutboundPolicy.from_settings(app.settings))
        app.services.portal_http = client
    return client
