"""Shared helpers for the sandbox tests: PKCE pairs, an HTML form reader, a uvicorn thread."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import uvicorn

BASE = "http://sandbox.test"
FHIR = f"{BASE}/fhir"
TOKEN_URL = f"{BASE}/auth/token"
AUTHORIZE_URL = f"{BASE}/auth/authorize"
REDIRECT = "https://openvisit.test/launch/callback"
PROVIDER_LAUNCH = "https://openvisit.test/launch/provider"
PATIENT_LAUNCH = "https://openvisit.test/launch/patient?source=portal"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    radios: dict[str, list[str]] = field(default_factory=dict)
    options: dict[str, list[str]] = field(default_factory=dict)
    buttons: list[tuple[str, str, str]] = field(default_factory=list)  # name, value, text


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._select: str | None = None
        self._button: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif not self.forms:
            return
        form = self.forms[-1]
        if tag == "input":
            kind = a.get("type", "text")
            if kind == "radio":
                form.radios.setdefault(a["name"], []).append(a["value"])
                if "checked" in a:
                    form.fields[a["name"]] = a["value"]
            elif "name" in a:
                form.fields[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select:
            form.options.setdefault(self._select, []).append(a["value"])
            form.fields.setdefault(self._select, a["value"])
        elif tag == "button":
            self._button = [a.get("name", ""), a.get("value", ""), ""]

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button[2] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "button" and self._button is not None and self.forms:
            name, value, text = self._button
            self.forms[-1].buttons.append((name, value, text.strip()))
            self._button = None


def forms(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def decision(
    html: str, *, user: str | None = None, patient: str | None = None, action: str = "approve"
) -> dict[str, str]:
    """The fields the pick-a-user form would post."""
    (form,) = [f for f in forms(html) if f.action.endswith("/auth/authorize/decision")]
    data = dict(form.fields)
    if user is not None:
        assert user in form.radios["user"], form.radios
        data["user"] = user
    if patient is not None:
        data["patient"] = patient
    data["action"] = action
    return data


@contextlib.contextmanager
def serve(make_app: Callable[[str], Any]) -> Iterator[tuple[str, Any]]:
    """Run ``make_app(base_url)`` under uvicorn on a free 127.0.0.1 port in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = make_app(base)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield base, app
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
