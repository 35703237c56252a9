"""client_secret_basic without form-encoding, per endpoint (issue 11, item 14): the portal's
endpoint form, the JSON API and the CLI set it; the portal warns when the secret has
characters that form-encoding changes and the option is off."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable

from openvisit.context import AppContext
from openvisit.models import EhrEndpoint
from tests.portal.conftest import Browser, endpoint_body
from tests.support.backend import subprocess_env

BrowserFactory = Callable[[str], Awaitable[Browser]]
ODD_SECRET = "Zm9v+YmFy/YmF6=="  # what a base64-ish secret looks like


async def test_it_warns_about_a_secret_form_encoding_changes_until_raw_credentials_are_on(
    browser: BrowserFactory, ctx: AppContext,
) -> None:
    admin = await browser("admin")
    made = await admin.api("POST", "/api/portal/endpoints",
                           json=endpoint_body(client_secret=ODD_SECRET))
    assert made.status_code == 201, made.text
    body = made.json()
    endpoint_id = body["id"]
    assert body["raw_basic_credentials"] is False
    assert any("invalid_client" in w for w in body["warnings"])
    page = await admin.get(f"/portal/endpoints/{endpoint_id}")
    assert "form-encodes (RFC 6749" in page.text

    patched = await admin.api("PATCH", f"/api/portal/endpoints/{endpoint_id}",
                              json={"raw_basic_credentials": True})
    assert patched.status_code == 200, patched.text
    assert patched.json()["raw_basic_credentials"] is True and patched.json()["warnings"] == []
    # How the same secret is sent is not a launch-relevant change: no re-approval.
    assert (patched.json()["state"], patched.json()["version"]) == (body["state"],
                                                                    body["version"])
    page = await admin.get(f"/portal/endpoints/{endpoint_id}")
    assert "form-encodes (RFC 6749" not in page.text
    assert "unencoded" in page.text
    async with ctx.db.read() as session:
        saved = await session.get(EhrEndpoint, uuid.UUID(endpoint_id))
        assert saved is not None and saved.options["basic_credentials"] == "raw"


async def test_it_does_not_warn_about_a_plain_secret(browser: BrowserFactory) -> None:
    admin = await browser("admin")
    made = await admin.api("POST", "/api/portal/endpoints", json=endpoint_body())
    assert made.status_code == 201 and made.json()["warnings"] == []
    page = await admin.get(f"/portal/endpoints/{made.json()['id']}")
    assert "form-encodes (RFC 6749" not in page.text


async def test_it_sets_raw_credentials_in_the_endpoint_form(
    browser: BrowserFactory, ctx: AppContext,
) -> None:
    admin = await browser("admin")
    made = await admin.api("POST", "/api/portal/endpoints",
                           json=endpoint_body(client_secret=ODD_SECRET))
    endpoint_id = made.json()["id"]
    form = await admin.get(f"/portal/endpoints/{endpoint_id}/edit")
    assert re.search(r'name="raw_basic_credentials"[^>]*>', form.text)
    assert not re.search(r'name="raw_basic_credentials"[^>]* checked>', form.text)
    fields = {k: v for k, v in endpoint_body().items() if k != "client_secret"}
    saved = await admin.post(f"/portal/endpoints/{endpoint_id}",
                             {**fields, "raw_basic_credentials": "on"})
    assert saved.status_code == 303, saved.text[:400]
    form = await admin.get(f"/portal/endpoints/{endpoint_id}/edit")
    assert re.search(r'name="raw_basic_credentials"[^>]* checked>', form.text)
    # Unticked on the next save: back to RFC 6749 form-encoding.
    assert (await admin.post(f"/portal/endpoints/{endpoint_id}", fields)).status_code == 303
    async with ctx.db.read() as session:
        endpoint = await session.get(EhrEndpoint, uuid.UUID(endpoint_id))
        assert endpoint is not None and "basic_credentials" not in endpoint.options


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "openvisit", *args], env=subprocess_env(db_url),
                          capture_output=True, text=True, timeout=60)


async def test_it_sets_raw_credentials_from_the_cli(ctx: AppContext, db_url: str) -> None:
    added = _cli(db_url, "endpoint", "add", "--fhir-base", "https://ehr.example.org/fhir",
                 "--client-id", "openvisit", "--client-secret", ODD_SECRET,
                 "--auth-method", "client_secret_basic", "--raw-basic-credentials")
    assert added.returncode == 0, added.stderr
    endpoint_id = added.stdout.split()[1]
    async with ctx.db.read() as session:
        endpoint = await session.get(EhrEndpoint, uuid.UUID(endpoint_id))
        assert endpoint is not None and endpoint.options["basic_credentials"] == "raw"
    back = _cli(db_url, "endpoint", "basic-credentials", endpoint_id, "--form-encoded")
    assert back.returncode == 0, back.stderr
    assert "form-encoded" in back.stdout
    async with ctx.db.read() as session:
        endpoint = await session.get(EhrEndpoint, uuid.UUID(endpoint_id))
        assert endpoint is not None and "basic_credentials" not in endpoint.options
    warned = _cli(db_url, "endpoint", "basic-credentials", endpoint_id, "--form-encoded")
    assert "warning:" in warned.stderr and "invalid_client" in warned.stderr
    listed = _cli(db_url, "endpoint", "list", "--json")
    assert '"basic_credentials": "form-encoded"' in listed.stdout
