"""The mesh behind the interface changes nothing; the media settings refuse what cannot work."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from openvisit.config import Settings
from openvisit.context import AppContext
from openvisit.models import Job
from openvisit.models.visit import Visit
from tests.visits.support import Links, Peer, make_visit, seed_org, serve


async def test_it_calls_nothing_out_for_a_mesh_visit_and_sends_no_grant(ctx: AppContext) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    async with serve(ctx) as host:
        provider = await Peer.connect(host, Links.token(links.provider), name="provider")
        assert (await provider.wait_for(lambda m: m["type"] == "welcome"))["media"] == {
            "backend": "mesh"}
        patient = await Peer.connect(host, Links.token(links.patient), name="patient")
        pid = (await patient.wait_for(lambda m: m["type"] == "welcome"))["you"]["id"]
        await patient.state(lambda m: m["you"]["state"] == "waiting")
        async with httpx.AsyncClient(base_url=f"http://{host}") as http:
            for action in ("admit", "lobby", "admit", "remove"):
                answer = await http.post(
                    f"/api/visits/{links.visit_id}/participants/{pid}/{action}",
                    headers={"Authorization": f"Bearer {Links.token(links.provider)}"})
                assert answer.status_code == 200, (action, answer.text)
        await provider.round_trip()
        await patient.close()
        await provider.close()
    assert provider.of_type("media") == [] and patient.of_type("media") == []
    async with ctx.transaction() as session:
        visit = await session.get(Visit, links.visit_id)
        assert visit is not None and visit.media_backend == "mesh"
        assert (await session.execute(select(Job.kind))).scalars().all() == []


def _settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg,arg-type]


def test_it_refuses_an_sfu_backend_without_its_server(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JANUS_URL", "LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(f"OPENVISIT_{name}", raising=False)
    with pytest.raises(ValidationError, match="OPENVISIT_JANUS_URL"):
        _settings(media_backend="janus")
    with pytest.raises(ValidationError, match="OPENVISIT_LIVEKIT_API_SECRET"):
        _settings(media_backend="livekit", livekit_url="wss://lk.example")
    with pytest.raises(ValidationError, match="PRESENCE_TIMEOUT_SECONDS"):
        _settings(presence_timeout_seconds=10, presence_heartbeat_seconds=15)
    assert _settings(media_backend="janus", janus_url="http://j:8088/janus").janus_url


def test_it_reads_media_secrets_from_files(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("janus_api_secret", "api-s"), ("livekit_api_secret", "lk-s"),
                        ("janus_url", "http://janus.internal:8088/janus")):
        path = tmp_path / name
        path.write_text(value + "\n")
        monkeypatch.setenv(f"OPENVISIT_{name.upper()}_FILE", str(path))
    settings = _settings()
    assert (settings.janus_api_secret, settings.livekit_api_secret, settings.janus_url) == (
        "api-s", "lk-s", "http://janus.internal:8088/janus")
