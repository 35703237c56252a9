"""Saving Epic context-link keys: one per kind, never the same, GCM unless opted in."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.ehr_endpoints.service import add_endpoint
from openvisit.errors import InvalidInput
from openvisit.launch.epic_config import EpicLinkConfig, save_link_key
from openvisit.models import AuditLog, EhrEndpoint
from openvisit.portal.signin.service import get_or_create_organisation
from tests.support.backend import subprocess_env

KEY = base64.b64encode(os.urandom(32)).decode()
OTHER = base64.b64encode(os.urandom(32)).decode()


async def _endpoint(ctx: AppContext, *, vendor: str = "epic") -> uuid.UUID:
    async with ctx.transaction() as session:
        org = await get_or_create_organisation(session, "epic-config")
        endpoint = await add_endpoint(
            session, app=ctx, organisation=org, fhir_base=f"https://{vendor}.example.org/api/FHIR/R4",
            environment="test", vendor=vendor, client_id="c", approved=True, actor="test")
        return endpoint.id


async def _save(ctx: AppContext, endpoint_id: uuid.UUID, **kw: object) -> EpicLinkConfig:
    args: dict[str, object] = {"kind": "provider", "secret": KEY, "key_format": "base64",
                               "mode": "gcm", "actor": "admin:test"} | kw
    async with ctx.transaction() as session:
        endpoint = await session.get(EhrEndpoint, endpoint_id)
        assert endpoint is not None
        return await save_link_key(session, app=ctx, endpoint=endpoint, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("key_format", "first", "second"), [
    ("base64", KEY, KEY),
    ("base64", KEY, KEY.rstrip("=").replace("+", "-").replace("/", "_")),  # same bytes
    ("secret", "shared secret", "shared secret"),
])
async def test_it_refuses_the_same_key_for_both_link_kinds(
    ctx: AppContext, key_format: str, first: str, second: str,
) -> None:
    endpoint_id = await _endpoint(ctx)
    await _save(ctx, endpoint_id, kind="provider", secret=first, key_format=key_format)
    with pytest.raises(InvalidInput, match="key of the provider link") as caught:
        await _save(ctx, endpoint_id, kind="patient", secret=second, key_format=key_format)
    assert caught.value.details["field"] == "key"
    config = await _save(ctx, endpoint_id, kind="patient", secret=OTHER, key_format="base64")
    assert set(config.keys) == {"provider", "patient"}


async def test_it_refuses_a_legacy_mode_unless_the_admin_opts_in_and_drops_an_unused_opt_in(
    ctx: AppContext,
) -> None:
    endpoint_id = await _endpoint(ctx)
    for mode in ("cbc-zero-iv", "cbc-iv-prefix", "ecb"):
        with pytest.raises(InvalidInput, match="unauthenticated") as caught:
            await _save(ctx, endpoint_id, mode=mode)
        assert caught.value.details["field"] == "mode"
    config = await _save(ctx, endpoint_id, mode="cbc-zero-iv", allow_legacy_modes=True)
    assert config.allow_legacy_modes and config.legacy_kinds == ["provider"]
    # The opt-in stays while a legacy key needs it, and cannot be withdrawn under it…
    with pytest.raises(InvalidInput, match="still uses cbc-zero-iv"):
        await _save(ctx, endpoint_id, kind="patient", secret=OTHER, allow_legacy_modes=False)
    config = await _save(ctx, endpoint_id, kind="patient", secret=OTHER)
    assert config.allow_legacy_modes
    # …and lapses by itself once no key uses a legacy mode.
    config = await _save(ctx, endpoint_id, kind="provider", mode="gcm")
    assert not config.allow_legacy_modes and config.legacy_kinds == []


async def test_it_refuses_bad_input_with_the_field_to_fix(ctx: AppContext) -> None:
    endpoint_id = await _endpoint(ctx)
    cases = {
        "key": {"secret": "too-short"},
        "key_format": {"key_format": "hex"},
        "mode": {"mode": "ctr"},
        "kind": {"kind": "admin"},
        "param": {"param": "da ta"},
    }
    for field, change in cases.items():
        with pytest.raises(InvalidInput) as caught:
            await _save(ctx, endpoint_id, **change)
        assert caught.value.details["field"] == field, (field, caught.value.message)
    generic = await _endpoint(ctx, vendor="generic")
    with pytest.raises(InvalidInput, match="Epic feature"):
        await _save(ctx, generic)


async def test_it_audits_a_key_change_without_the_key(ctx: AppContext) -> None:
    endpoint_id = await _endpoint(ctx)
    await _save(ctx, endpoint_id, kind="patient", secret=KEY)
    async with ctx.transaction() as session:
        entry = (await session.scalars(select(AuditLog).where(
            AuditLog.action == "endpoint.epic_link"))).one()
        endpoint = await session.get(EhrEndpoint, endpoint_id)
    assert entry.after == {"kind": "patient", "mode": "gcm", "key_format": "base64",
                           "param": "data", "allow_legacy_modes": False}
    assert entry.actor == "admin:test"
    assert endpoint is not None
    stored = json.dumps(endpoint.options)
    assert KEY not in stored and KEY not in json.dumps(entry.after)
    assert ctx.cipher.decrypt(endpoint.options["epic_link"]["patient"]["key_enc"]) == KEY


def test_it_sets_each_kind_from_the_command_line_and_refuses_a_shared_key(
    db_url: str, tmp_path: Path,
) -> None:
    env = subprocess_env(db_url)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "openvisit", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    added = cli("endpoint", "add", "--fhir-base", "https://epic.example.org/api/FHIR/R4",
                "--client-id", "c", "--vendor", "epic", "--environment", "test", "--approved")
    assert added.returncode == 0, added.stderr
    listed = cli("endpoint", "list", "--json")
    endpoint_id = json.loads(listed.stdout.splitlines()[0])["id"]
    (tmp_path / "provider.key").write_text(KEY)
    (tmp_path / "patient.key").write_text(OTHER)
    ok = cli("endpoint", "epic-link", endpoint_id, "--kind", "provider",
             "--key-file", str(tmp_path / "provider.key"))
    assert ok.returncode == 0, ok.stderr
    assert "provider link configured (gcm" in ok.stdout
    shared = cli("endpoint", "epic-link", endpoint_id, "--kind", "patient",
                 "--key-file", str(tmp_path / "provider.key"))
    assert shared.returncode == 1 and "key of the provider link" in shared.stderr
    legacy = cli("endpoint", "epic-link", endpoint_id, "--kind", "patient",
                 "--key-file", str(tmp_path / "patient.key"), "--mode", "cbc-zero-iv")
    assert legacy.returncode == 1 and "--allow-legacy-mode" in legacy.stderr
    opted = cli("endpoint", "epic-link", endpoint_id, "--kind", "patient",
                "--key-file", str(tmp_path / "patient.key"), "--mode", "cbc-zero-iv",
                "--allow-legacy-mode")
    assert opted.returncode == 0, opted.stderr
    assert "warning: cbc-zero-iv is unauthenticated" in opted.stderr
    assert KEY not in ok.stdout + ok.stderr + opted.stdout + opted.stderr
