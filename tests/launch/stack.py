"""A running stack for launch tests: the sandbox EHR and OpenVisit as real processes.

Both run as subprocesses through the real CLI (`openvisit sandbox`, `openvisit web`), so the
EHR fetches OpenVisit's JWKS over HTTP and OpenVisit calls the EHR's token and FHIR endpoints
over HTTP, exactly as in a deployment.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from tests.peers.fixtures import free_port
from tests.support.procs import Proc, wait_for


@dataclass
class Stack:
    openvisit: str
    sandbox: str
    env: dict[str, str]
    procs: list[Proc]

    @property
    def fhir(self) -> str:
        return f"{self.sandbox}/fhir"

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "openvisit", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def start_stack(
    env: dict[str, str], tmp: Path, *, approved: bool = True, ov_port: int | None = None
) -> Stack:
    ov_port, sb_port = ov_port or free_port(), free_port()
    openvisit, sandbox = f"http://127.0.0.1:{ov_port}", f"http://127.0.0.1:{sb_port}"
    env = {**env, "OPENVISIT_PUBLIC_URL": openvisit}
    stack = Stack(openvisit=openvisit, sandbox=sandbox, env=env, procs=[])
    add = [
        "endpoint",
        "add",
        "--fhir-base",
        f"{sandbox}/fhir",
        "--client-id",
        "openvisit",
        "--environment",
        "test",
        "--timezone",
        "UTC",
    ]
    stack.cli(*add, *(["--approved"] if approved else []))
    web = Proc(["web", "--port", str(ov_port)], env=env, log=tmp / "openvisit.log")
    stack.procs.append(web)
    ehr = Proc(
        ["sandbox", "--port", str(sb_port), "--openvisit-url", openvisit],
        env=env,
        log=tmp / "sandbox.log",
    )
    stack.procs.append(ehr)
    wait_for(lambda: _up(f"{openvisit}/healthz"), timeout=30, what="OpenVisit", proc=web)
    wait_for(
        lambda: _up(f"{sandbox}/fhir/.well-known/smart-configuration"),
        timeout=30,
        what="the sandbox EHR",
        proc=ehr,
    )
    return stack


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def pick_user(
    http: httpx.Client, page: httpx.Response, *, user: str | None = None
) -> httpx.Response:
    """Submit the sandbox's pick-a-user form (the default choice unless ``user`` is given)."""
    assert page.status_code == 200, page.text[:500]
    from tests.sandbox.helpers import decision

    data = decision(page.text, user=user)
    return http.post(urljoin(str(page.url), "/auth/authorize/decision"), data=data)


def follow(
    http: httpx.Client, response: httpx.Response, *, stop_at: str, max_steps: int = 10
) -> httpx.Response:
    """Follow redirects until the URL path starts with ``stop_at`` or a page is reached."""
    for _ in range(max_steps):
        if not response.is_redirect:
            return response
        target = urljoin(str(response.url), response.headers["location"])
        if urlsplit(target).path.startswith(stop_at):
            return http.get(target) if not stop_at.startswith("http") else response
        response = http.get(target)
    raise AssertionError("too many redirects")


def launch_links(html: str) -> list[str]:
    return re.findall(r'href="([^"]*launch[^"]*)"', html)
