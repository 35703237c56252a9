"""Plain ASGI middleware: request metrics and security headers."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openvisit.db import OPEN_TRANSACTIONS
from openvisit.logs import get_logger
from openvisit.web.security import HeaderPolicy

log = get_logger(__name__)

REQUESTS = Counter("openvisit_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("openvisit_http_request_seconds", "HTTP request time", ["method", "route"])

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # Camera and microphone only for our own pages (the visit room, the device test).
    (b"permissions-policy", b"camera=(self), microphone=(self), display-capture=(self)"),
]


def route_template(scope: Scope) -> str:
    """The matched route's template (``/v/{token}``), never the raw path: paths carry tokens."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class MetricsMiddleware:
    """Counts requests by route template and adds the security headers to every response."""

    def __init__(
        self, app: ASGIApp, *, policy: HeaderPolicy | None = None, strict: bool = False
    ) -> None:
        self.app = app
        self.policy = policy
        #: Outside production a success sent while its transaction is still open is a bug
        #: that fails the request (and so the test that made it); production logs it.
        self.strict = strict

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        open_transactions = [0]
        OPEN_TRANSACTIONS.set(open_transactions)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if open_transactions[0] and status < 400:
                    # STYLE: a request commits *before* its response is sent, so a failed
                    # commit can never be reported to the browser as a success.
                    log.error("response_before_commit", route=route_template(scope))
                    if self.strict:
                        raise RuntimeError(
                            f"{route_template(scope)} answered {status} before its commit"
                        )
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [h for h in SECURITY_HEADERS if h[0] not in present]
                if self.policy is not None:
                    content_type = next(
                        (v for k, v in headers if k.lower() == b"content-type"), b""
                    )
                    headers += self.policy.headers_for(scope, present, content_type)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            name = route_template(scope)
            REQUESTS.labels(scope["method"], name, str(status)).inc()
            LATENCY.labels(scope["method"], name).observe(time.perf_counter() - started)
