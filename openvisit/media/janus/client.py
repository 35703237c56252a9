"""A small client of Janus's HTTP API (https://janus.conf.meetecho.com/docs/rest.html).

The API is a session (``POST /janus`` ``create``), plugin handles on it (``attach``), and
messages to a handle whose synchronous answers carry ``plugindata``. Sessions time out
without keep-alives, so the backend opens one per batch of requests and destroys it after.
Every request carries the deployment's ``apisecret`` when one is set (never logged).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from openvisit.errors import OutboundError
from openvisit.logs import get_logger

log = get_logger(__name__)
VIDEOROOM = "janus.plugin.videoroom"


class JanusError(OutboundError):
    """Janus answered with an error (``code`` is Janus's or the plugin's error code)."""

    def __init__(self, message: str, *, janus_code: int | None, permanent: bool = False) -> None:
        super().__init__(message, permanent=permanent)
        self.janus_code = janus_code


class JanusClient:
    """Janus's HTTP API at ``url`` (e.g. ``http://127.0.0.1:8088/janus``)."""

    def __init__(self, url: str, *, api_secret: str = "", timeout: float = 10.0,
                 http: httpx.AsyncClient | None = None) -> None:
        self.url = url.rstrip("/")
        self.api_secret = api_secret
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST one Janus request; the answer, or :class:`JanusError`."""
        body = {"transaction": secrets.token_hex(8), **body}
        if self.api_secret:
            body["apisecret"] = self.api_secret
        try:
            response = await self.http.post(self.url + path, json=body)
        except httpx.HTTPError as exc:
            raise JanusError(f"Janus is unreachable ({type(exc).__name__}).",
                             janus_code=None) from exc
        if response.status_code != 200:
            raise JanusError(f"Janus answered HTTP {response.status_code}.", janus_code=None)
        try:
            answer: dict[str, Any] = response.json()
        except ValueError as exc:
            raise JanusError("Janus answered something that is not JSON.",
                             janus_code=None) from exc
        if answer.get("janus") == "error":
            error = answer.get("error") or {}
            raise JanusError(f"Janus refused {body.get('janus')}: {error.get('reason')}",
                             janus_code=error.get("code"))
        return answer

    async def next_event(self, session_id: int) -> dict[str, Any] | None:
        """One event of the session (Janus's long poll: ``GET /janus/<session>``), or None
        when Janus answered with a keep-alive."""
        params = {"maxev": "1"}
        if self.api_secret:
            params["apisecret"] = self.api_secret
        try:
            response = await self.http.get(f"{self.url}/{session_id}", params=params,
                                           timeout=httpx.Timeout(40.0, connect=5.0))
            response.raise_for_status()
            event: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise JanusError(f"Janus is unreachable ({type(exc).__name__}).",
                             janus_code=None) from exc
        return None if event.get("janus") == "keepalive" else event

    async def info(self) -> dict[str, Any]:
        """``GET /janus/info``: the server's version and plugins (for readiness)."""
        try:
            response = await self.http.get(self.url + "/info")
            response.raise_for_status()
            info: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise JanusError(f"Janus is unreachable ({type(exc).__name__}).",
                             janus_code=None) from exc
        return info

    @asynccontextmanager
    async def handle(self, plugin: str = VIDEOROOM) -> AsyncIterator[JanusHandle]:
        """A fresh session with one handle on ``plugin``; the session is destroyed after."""
        created = await self.call("", {"janus": "create"})
        session_id = int(created["data"]["id"])
        try:
            attached = await self.call(f"/{session_id}", {"janus": "attach", "plugin": plugin})
            yield JanusHandle(self, session_id, int(attached["data"]["id"]))
        finally:
            try:
                await self.call(f"/{session_id}", {"janus": "destroy"})
            except JanusError:
                log.warning("janus_session_destroy_failed")


class JanusHandle:
    """One plugin handle: synchronous plugin requests answer with ``plugindata``."""

    def __init__(self, client: JanusClient, session_id: int, handle_id: int) -> None:
        self.client = client
        self.session_id = session_id
        self.handle_id = handle_id

    async def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous plugin request (create, allowed, kick, destroy, listparticipants…);
        the plugin's data, or :class:`JanusError` with the plugin's error code."""
        answer = await self.client.call(f"/{self.session_id}/{self.handle_id}",
                                        {"janus": "message", "body": body})
        if answer.get("janus") == "ack":  # an asynchronous request (join): wait for its event
            answer = await self._event_of(answer.get("transaction"))
        data: dict[str, Any] = (answer.get("plugindata") or {}).get("data") or {}
        if "error_code" in data:
            raise JanusError(f"Janus VideoRoom refused {body.get('request')}: "
                             f"{data.get('error')}", janus_code=int(data["error_code"]))
        return data

    async def _event_of(self, transaction: Any, *, polls: int = 3) -> dict[str, Any]:
        for _poll in range(polls):
            event = await self.client.next_event(self.session_id)
            if event is not None and event.get("transaction") == transaction:
                return event
        raise JanusError("Janus did not answer the request in time.", janus_code=None)
