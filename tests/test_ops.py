"""Operations endpoints and error rendering on a full app."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from openvisit.app import create_app
from openvisit.context import AppContext
from tests.peers.fixtures import free_port
from tests.support.backend import make_settings


async def test_it_is_alive_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "bus": "ok", "media": "ok"}
    assert ready.json()["media_backend"] == "mesh"


async def test_it_exposes_prometheus_metrics_by_route_not_by_path(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/healthz")
    body = (await client.get("/metrics")).text
    assert 'openvisit_http_requests_total{method="GET",route="/healthz",status="200"}' in body
    assert 'openvisit_job_queue{state="dead"} 0.0' in body


async def test_it_renders_errors_as_a_page_for_browsers_and_json_for_apis(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/no-such-page", headers={"Accept": "text/html"})
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]
    assert "There is nothing at this address" in page.text
    api = await client.get("/api/no-such-thing")
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "http_error"


async def test_it_sets_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "camera=(self)" in response.headers["permissions-policy"]


@pytest.fixture
def redis_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A private redis-server the test can stop, to see readiness fall."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing: run `make test`, which installs it"
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (
            subprocess.run(
                ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True
            ).stdout.strip()
            == "PONG"
        ):
            break
        time.sleep(0.05)
    yield proc, port
    if proc.poll() is None:
        proc.kill()
        proc.wait()


async def test_it_is_not_ready_while_redis_is_down(db_url: str, redis_server) -> None:  # type: ignore[no-untyped-def]
    proc, port = redis_server
    ctx = AppContext.create(make_settings(db_url, redis_url=f"redis://127.0.0.1:{port}/0"))
    await ctx.start()
    try:
        app = create_app(ctx=ctx)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as http:
            assert (await http.get("/readyz")).status_code == 200
            proc.kill()
            proc.wait()
            down = await http.get("/readyz")
            assert down.status_code == 503
            assert down.json()["checks"]["bus"].startswith("unavailable")
            assert down.json()["checks"]["database"] == "ok"
    finally:
        await ctx.close()
