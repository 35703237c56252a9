"""Issue 6 done-criterion: the seeds' whole admin flow in Chromium.

Real processes: `openvisit web`, `openvisit worker` and `openvisit sandbox` (the EHR), plus npm
oidc-provider as the organisation's IdP. The org admin signs in through the IdP (bootstrap
admin), adds the test FHIR base (first a bad one, to see the error), names the approver, adds
the EHR analyst as a portal user; the analyst signs in (own browser context), approves through
a SMART sign-in to the sandbox EHR (first as the wrong EHR user, refused, then as the right
one); the admin turns SMS on with the outbox provider, provisions and links a number, uploads
a good and a bad certificate, reads and downloads the integration records and finds every
change in the audit log. A screenshot per step goes to docs/screenshots/portal-*.png.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.e2e.axe import violations_sync
from tests.e2e.support import screenshot_dir
from tests.peers.fixtures import free_port
from tests.portal.certs import make_certificate
from tests.support.backend import subprocess_env
from tests.support.procs import Proc, wait_for

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = screenshot_dir(Path(tempfile.gettempdir()) / "openvisit-screenshots")

pytestmark = [pytest.mark.browser, pytest.mark.peers, pytest.mark.slow]


@dataclass
class PortalStack:
    openvisit: str
    sandbox: str
    procs: list[Proc]

    @property
    def fhir(self) -> str:
        return f"{self.sandbox}/fhir"


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


@pytest.fixture
def stack(db_url: str, tmp_path: Path, start_oidc_idp) -> Iterator[PortalStack]:  # type: ignore[no-untyped-def]
    ov_port, sb_port = free_port(), free_port()
    openvisit, sandbox = f"http://127.0.0.1:{ov_port}", f"http://127.0.0.1:{sb_port}"
    idp = start_oidc_idp(
        [f"{openvisit}/portal/signin/callback"],
        client_id=f"portal-{ov_port}",
        client_secret="portal-secret-" + "z" * 20,
    )
    env = subprocess_env(
        db_url,
        OPENVISIT_PUBLIC_URL=openvisit,
        OPENVISIT_OIDC_ISSUER=idp.issuer,
        OPENVISIT_OIDC_CLIENT_ID=idp.client_id,
        OPENVISIT_OIDC_CLIENT_SECRET=idp.client_secret,
        OPENVISIT_PORTAL_BOOTSTRAP_ADMIN_SUBJECTS='["alice"]',
        OPENVISIT_SMS_PROVIDER="outbox",
        OPENVISIT_PORTAL_OUTBOX_PROVISION_STEP_SECONDS="1.0",
        OPENVISIT_JOB_POLL_SECONDS="0.2",
    )
    procs = [
        Proc(["web", "--port", str(ov_port)], env=env, log=tmp_path / "web.log"),
        Proc(["worker"], env=env, log=tmp_path / "worker.log"),
        Proc(
            ["sandbox", "--port", str(sb_port), "--openvisit-url", openvisit],
            env=env,
            log=tmp_path / "sandbox.log",
        ),
    ]
    running = PortalStack(openvisit, sandbox, procs)
    try:
        wait_for(lambda: _up(f"{openvisit}/healthz"), timeout=30, what="OpenVisit", proc=procs[0])
        wait_for(
            lambda: _up(f"{sandbox}/fhir/.well-known/smart-configuration"),
            timeout=30,
            what="the sandbox EHR",
            proc=procs[2],
        )
        yield running
    finally:
        for proc in procs:
            proc.stop()


#: Serious or critical axe-core findings per portal page the walk passes (must stay empty).
AXE_FINDINGS: dict[str, list[dict[str, object]]] = {}


def shot(page: Page, name: str, *, full: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"portal-{name}.png"), full_page=full)
    if "/portal" in page.url:  # OpenVisit's pages only: not the IdP's or the EHR's
        found = violations_sync(page)
        if found:
            AXE_FINDINGS[name] = found


def idp_sign_in(page: Page, login: str) -> None:
    """Press the IdP button and get through oidc-provider's dev login and consent pages."""
    page.get_by_role("link", name="Sign in with your organisation account").click()
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    if "/interaction/" in page.url:
        page.click("button[type=submit]")  # consent
    page.wait_for_url(re.compile(r".*/portal(\?.*)?$|.*/portal/.*"))


def ehr_sign_in(page: Page, user: str) -> None:
    """The sandbox EHR's sign-in page: pick the EHR user, allow."""
    page.wait_for_selector("text=Allow and continue")
    page.check(f"input[name=user][value='{user}']")


def test_it_walks_the_seeds_admin_flow_in_chromium(stack: PortalStack, tmp_path: Path) -> None:
    good_cert, private_key = make_certificate()
    (tmp_path / "epic-test.cer").write_bytes(good_cert)
    (tmp_path / "mistake.pem").write_bytes(private_key)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            admin = browser.new_context(
                viewport={"width": 1280, "height": 800}, accept_downloads=True
            )
            admin.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.openvisit)
            page = admin.new_page()
            page.set_default_timeout(15_000)

            # 1. Sign in with the organisation's IdP.
            page.goto(f"{stack.openvisit}/portal")
            expect(page).to_have_url(re.compile(r"/portal/signin\?next="))
            shot(page, "01-signin")
            idp_sign_in(page, "alice")
            expect(
                page.get_by_role("heading", name="Set up OpenVisit for your EHR")
            ).to_be_visible()
            shot(page, "02-overview")

            # The organisation: name, data region, monthly allocation.
            page.get_by_role("link", name="Organisation").click()
            page.get_by_label("Name", exact=True).fill("Example Health")
            page.get_by_label("Data region").select_option("us")
            page.get_by_label("Unlimited").uncheck()
            page.get_by_label("Monthly visit allocation").fill("-5")
            page.get_by_role("button", name="Save", exact=True).click()
            expect(page.locator(".error-summary")).to_contain_text("whole number")
            page.get_by_label("Monthly visit allocation").fill("2000")
            page.get_by_role("button", name="Save", exact=True).click()
            expect(page.get_by_text("Saved.")).to_be_visible()
            shot(page, "03-organisation")
            page.get_by_role("link", name="Overview").click()

            # 2. Add the test endpoint; first a wrong base URL, checked live.
            page.get_by_role("link", name="Continue: Set-up").click()
            page.get_by_role("link", name="Add a FHIR base URL").first.click()
            page.get_by_label("Name (for you)").fill("Sandbox EHR (test)")
            page.get_by_label("FHIR base URL").fill(f"{stack.sandbox}/fhir/R4")
            page.get_by_label("Client id").fill("openvisit")
            page.get_by_role("button", name="Check this URL now").click()
            expect(page.locator("#check-result")).to_contain_text("did not pass")
            page.get_by_role("button", name="Check and save").click()
            summary = page.locator(".error-summary")
            expect(summary).to_contain_text("Test environment")
            expect(summary).to_contain_text("HTTP 404")
            shot(page, "04-bad-base-url")

            page.get_by_label("FHIR base URL").fill(stack.fhir)
            page.get_by_role("button", name="Check and save").click()
            expect(page.get_by_text("Endpoint added.")).to_be_visible()
            expect(page.locator(".state").first).to_have_text("Draft")
            shot(page, "05-endpoint-draft")

            # 3. Name the approver (the EHR analyst's EHR user).
            page.get_by_role("link", name="Change", exact=True).click()
            page.get_by_label("Approver's EHR user").fill("Practitioner/prac-1")
            shot(page, "06-name-approver")
            page.get_by_role("button", name="Check and save").click()
            expect(page.locator(".state").first).to_have_text("Awaiting approval")
            endpoint_url = page.url.split("?")[0]
            shot(page, "07-awaiting-approval")

            # The analyst gets a portal account (IdP user, approver role).
            page.get_by_role("link", name="Staff & API tokens").click()
            page.get_by_label("Subject (sub) at the identity provider").fill("ehr-analyst")
            page.get_by_role("button", name="Add user").click()
            expect(page.locator("table.data").first).to_contain_text("ehr-analyst")
            shot(page, "08-staff")

            # 4. The approver signs in to the portal, then to the EHR through SMART.
            analyst = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            analyst.set_default_timeout(15_000)
            analyst.goto(f"{stack.openvisit}/portal/approval")
            idp_sign_in(analyst, "ehr-analyst")
            expect(analyst.get_by_role("heading", name="Approve the configuration")).to_be_visible()
            shot(analyst, "09-approval")
            analyst.get_by_role("button", name="Sign in to the test EHR and approve").click()
            ehr_sign_in(analyst, "Practitioner/prac-2")
            shot(analyst, "10-ehr-sign-in", full=False)
            analyst.get_by_role("button", name="Allow and continue").click()
            expect(analyst.get_by_role("heading", name="Not the named approver")).to_be_visible()
            expect(analyst.locator("main")).to_contain_text("Practitioner/prac-2")
            shot(analyst, "11-wrong-ehr-user")
            analyst.get_by_role("link", name="Go back").click()
            analyst.get_by_role("button", name="Sign in to the test EHR and approve").click()
            ehr_sign_in(analyst, "Practitioner/prac-1")
            analyst.get_by_role("button", name="Allow and continue").click()
            expect(
                analyst.get_by_text("Approved. These are the integration records")
            ).to_be_visible()
            shot(analyst, "12-approved-records")
            analyst.context.close()

            # 5. SMS: both consents, a number from the outbox provider, linked to the endpoint.
            page.get_by_role("link", name="SMS notifications").click()
            # By keyboard only: Space ticks, Tab moves on, Enter submits.
            page.get_by_label("OpenVisit may send SMS notifications").focus()
            for key in ("Space", "Tab", "Space", "Tab"):
                page.keyboard.press(key)
            expect(page.get_by_role("button", name="Save consents")).to_be_focused()
            page.keyboard.press("Enter")
            expect(page.get_by_text("Both given")).to_be_visible()
            page.keyboard.press("Tab")  # the first Tab on a page reaches the skip link
            expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
            shot(page, "13-sms-consents")
            page.get_by_role("button", name="Get a new phone number").click()
            expect(page.get_by_role("progressbar")).to_be_visible()
            # Caught between two steps: some progress, not finished yet.
            expect(page.get_by_role("status")).to_contain_text(re.compile(r"\((25|60|85)%\)"))
            shot(page, "14-number-provisioning")
            expect(page.locator("#new-number")).to_have_text(
                re.compile(r"\+1 202-555-01\d\d"), timeout=30_000
            )
            number = page.locator("#new-number").inner_text()
            e164 = page.locator("#new-number").get_attribute("data-e164")
            shot(page, "15-number-ready")
            page.get_by_role("link", name="Back to SMS set-up").click()
            page.get_by_role("link", name="SMS configuration Sandbox EHR (test)").click()
            page.get_by_label("Send SMS for this FHIR base URL").check()
            page.get_by_label("Phone number").select_option(label=number)
            page.get_by_label("Reminder SMS, before the appointment").fill("1d, 2h")
            shot(page, "16-endpoint-sms")
            page.get_by_role("button", name="Save", exact=True).click()
            expect(page.get_by_text("SMS settings saved.")).to_be_visible()
            expect(page.locator("table").last).to_contain_text(number)
            shot(page, "17-sms-linked")

            # 6. Certificates: a good .cer, then a private key by mistake.
            page.get_by_role("link", name="Next: Certificate →").click()
            page.set_input_files("#file-test", str(tmp_path / "epic-test.cer"))
            page.get_by_role("button", name="Upload test certificate").click()
            expect(page.get_by_text("Certificate uploaded.")).to_be_visible()
            expect(page.locator("#env-test")).to_contain_text("CN=Epic Interconnect Test")
            shot(page, "18-certificate-good")
            page.set_input_files("#file-test", str(tmp_path / "mistake.pem"))
            page.get_by_role("button", name="Upload test certificate").click()
            expect(page.locator(".error-summary")).to_contain_text(
                "mistake.pem: This file contains a PRIVATE key"
            )
            shot(page, "19-certificate-refused")

            # 7. Review: read and download the integration records.
            page.goto(f"{endpoint_url}/records")
            for title in (
                "Provider launch",
                "Patient launch",
                "Direct SMS link",
                "SMS configuration",
                "Device test",
            ):
                expect(page.get_by_role("heading", name=re.compile(title))).to_be_visible()
            expect(page.locator(".env-banner")).to_contain_text("TEST records")
            expect(page.locator("#v-device_test-device_test_url")).to_contain_text(
                f"{stack.openvisit}/devicetest?ctx="
            )
            expect(page.locator("#v-sms_configuration-sending_number")).to_have_text(str(e164))
            copy = page.get_by_role("button", name="Copy Launch URL").first
            copy.click()
            expect(copy.locator("xpath=following-sibling::span")).to_have_text("Copied")
            assert page.evaluate("navigator.clipboard.readText()") == f"{stack.openvisit}/launch"
            shot(page, "20-records")
            with page.expect_download() as info:
                page.get_by_role("link", name="Download all (JSON)").click()
            download = info.value
            assert download.suggested_filename.startswith("openvisit-test-records-")
            records = json.loads(Path(download.path()).read_text())
            assert records["environment"] == "test" and records["fhir_base"] == stack.fhir
            kinds = [r["record"] for r in records["records"]]
            assert kinds == [
                "provider_launch",
                "patient_launch",
                "direct_sms",
                "sms_configuration",
                "device_test",
            ]
            assert all(r["environment"] == "test" and r["approved"] for r in records["records"])

            # 8. Every change is in the audit log.
            page.get_by_role("link", name="Audit log").click()
            table = page.locator("table.data")
            expect(table).to_contain_text("organisation.update")
            shot(page, "21-audit-log", full=False)
            for action in (
                "endpoint.create",
                "endpoint.update",
                "endpoint.submit",
                "staff.create",
                "endpoint.approval_refused",
                "endpoint.approve",
                "sms.consents",
                "number.request",
                "number.provisioned",
                "sms.configure",
                "certificate.upload",
                "context_token.create",
            ):
                expect(table).to_contain_text(action)
            page.get_by_label("What happened").select_option("endpoint.approve")
            page.get_by_role("button", name="Filter").click()
            expect(table.locator(":scope > tbody > tr")).to_have_count(1)
            expect(table).to_contain_text("ehr-analyst")
            expect(table).to_contain_text("Practitioner/prac-1")
            shot(page, "22-audit-filtered")

            # Back on the overview, every step of the seeds' flow is done.
            page.get_by_role("link", name="Overview").click()
            expect(page.locator(".steps .state-done")).to_have_count(5)
            shot(page, "23-overview-done", full=False)
        finally:
            browser.close()
    # axe-core: no serious or critical WCAG 2.1 A/AA violation on any portal page walked.
    assert AXE_FINDINGS == {}, AXE_FINDINGS
