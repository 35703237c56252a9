"""The live check of a FHIR base URL, shown step by step in the portal.

Steps: (1) the URL's shape for the vendor (Epic's R4 suffix, Oracle Health's tenant, https in
production), (2) ``GET {base}/metadata`` is a FHIR R4 CapabilityStatement, (3)
``GET {base}/.well-known/smart-configuration`` exists, (4) it offers what OpenVisit needs (PKCE
S256, EHR and standalone launch, OpenID Connect with fhirUser, the chosen client
authentication). Every failure says what is wrong and how to fix it, and names the
environment, because swapping the test and production URLs is the most common set-up error.
Heuristic warnings (a "prd" URL entered as test…) never block.

Contract: :func:`check_fhir_base` never raises for what the EHR answers; it returns a
:class:`CheckResult` whose ``ok`` is true only when every step passed. ``http`` must be the
guarded client (:func:`openvisit.outbound.portal_http`): the URL is a portal user's input, so
internal addresses, other-host redirects, huge or endless answers are refused, and a refusal
ends the check at the step it happened in.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from openvisit.errors import OpenVisitError
from openvisit.models import utcnow
from openvisit.models.choices import AUTH_METHODS, is_one_of
from openvisit.outbound import OutboundRefused
from openvisit.smart.discovery import fetch_capability_statement, fetch_smart_configuration

Status = Literal["ok", "failed", "skipped"]
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
# "prd" and "tst" are matched inside words too: hospital hosts say "ocurprd", "epictst".
_PROD_HINTS = re.compile(r"prd|(?<![a-z])(prod|production|live)(?![a-z])", re.IGNORECASE)
_TEST_HINTS = re.compile(
    r"tst|(?<![a-z])(test|testing|sandbox|poc|dev|stage|staging|nonprod|non-prod|uat|sup)"
    r"(?![a-z])", re.IGNORECASE,
)


@dataclass
class CheckStep:
    key: str
    title: str
    status: Status = "skipped"
    message: str = ""


@dataclass
class CheckResult:
    """The outcome of one check; ``as_dict()`` is what endpoint.options["check"] keeps."""

    fhir_base: str
    environment: str
    steps: list[CheckStep]
    warnings: list[str] = field(default_factory=list)
    fhir_version: str | None = None
    software: str | None = None
    checked_at: str = field(default_factory=lambda: utcnow().isoformat())

    @property
    def ok(self) -> bool:
        return all(step.status == "ok" for step in self.steps)

    @property
    def first_error(self) -> str | None:
        return next((s.message for s in self.steps if s.status == "failed"), None)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def shape_problem(fhir_base: str, *, vendor: str, environment: str) -> str | None:
    """What is wrong with the URL itself for this vendor and environment, or None."""
    parts = urlsplit(fhir_base)
    path = parts.path.rstrip("/")
    last = path.rsplit("/", 1)[-1]
    if environment == "production" and parts.scheme != "https" \
            and parts.hostname not in _LOOPBACK:
        return ("A production FHIR base must use https://; this one uses "
                f"{parts.scheme}://. Use the EHR's https address.")
    if vendor == "epic":
        if last.upper() in ("DSTU2", "STU3"):
            return (f"This is Epic's {last.upper()} API; OpenVisit needs Epic's R4 API. Replace "
                    f"/{last} at the end with /R4 (…/api/FHIR/R4).")
        if last.upper() != "R4":
            hint = " Add /R4 at the end." if last.upper() == "FHIR" else ""
            return ("Epic FHIR base URLs end with the R4 suffix, e.g. "
                    f"https://fhir.hospital.org/interconnect-fhir-oauth/api/FHIR/R4.{hint}")
    if vendor == "oracle":
        segments = [s for s in path.split("/") if s]
        r4 = [i for i, s in enumerate(segments) if s.lower() == "r4"]
        if not r4:
            return ("Oracle Health FHIR base URLs contain /r4/ followed by your tenant id, e.g. "
                    "https://fhir-ehr.cerner.com/r4/ec2458f2-1e24-41c8-b71b-0e701af7583d.")
        if r4[-1] == len(segments) - 1:
            return ("This Oracle Health URL ends at /r4 without your tenant id; add it: "
                    "…/r4/<tenant id> (Oracle's code console shows it).")
    return None


def environment_warnings(fhir_base: str, *, environment: str) -> list[str]:
    """Heuristic test/production mix-up warnings (never blocking)."""
    text = urlsplit(fhir_base).netloc + urlsplit(fhir_base).path
    if environment == "test" and _PROD_HINTS.search(text):
        word = _PROD_HINTS.search(text)
        return [f"This URL looks like a production server (it contains "
                f"\"{word.group(0) if word else 'prd'}\") but you chose the test environment. "
                "Check that the test and production URLs are not swapped."]
    if environment == "production" and _TEST_HINTS.search(text):
        word = _TEST_HINTS.search(text)
        return [f"This URL looks like a test server (it contains "
                f"\"{word.group(0) if word else 'test'}\") but you chose the production "
                "environment. Check that the test and production URLs are not swapped."]
    return []


async def check_fhir_base(
    http: httpx.AsyncClient, *, fhir_base: str, vendor: str, environment: str,
    auth_method: str,
) -> CheckResult:
    """Run every step against the live EHR (see the module docstring)."""
    env = "Test" if environment == "test" else "Production"
    steps = [
        CheckStep("url", "Address"),
        CheckStep("metadata", "FHIR R4 server (/metadata)"),
        CheckStep("smart", "SMART configuration (.well-known/smart-configuration)"),
        CheckStep("capabilities", "What OpenVisit needs from the EHR"),
    ]
    result = CheckResult(fhir_base=fhir_base, environment=environment, steps=steps,
                         warnings=environment_warnings(fhir_base, environment=environment))
    problem = shape_problem(fhir_base, vendor=vendor, environment=environment)
    if problem:
        steps[0].status, steps[0].message = "failed", f"{env} environment: {problem}"
        return result
    steps[0].status, steps[0].message = "ok", fhir_base
    try:
        summary = await fetch_capability_statement(http, fhir_base=fhir_base)
    except OpenVisitError as exc:
        steps[1].status, steps[1].message = "failed", f"{env} environment: {exc.message}"
        if not exc.permanent or isinstance(exc, OutboundRefused):
            return result  # unreachable, down or refused: the next steps would only repeat it
    else:
        result.fhir_version = summary.fhir_version
        result.software = " ".join(p for p in (summary.software_name, summary.software_version)
                                   if p) or None
        steps[1].status = "ok"
        steps[1].message = f"FHIR {summary.fhir_version}" + (
            f" · {result.software}" if result.software else "")
    try:
        config = await fetch_smart_configuration(http, fhir_base=fhir_base)
    except OpenVisitError as exc:
        steps[2].status = "failed"
        steps[2].message = (f"{env} environment: the server publishes no usable SMART "
                            f"configuration. {exc.message}")
        return result
    steps[2].status, steps[2].message = "ok", "Found"
    if not is_one_of(auth_method, AUTH_METHODS):
        steps[3].status = "failed"
        steps[3].message = (f"{env} environment: {auth_method!r} is not an authentication "
                            f"method OpenVisit knows; choose one of {', '.join(AUTH_METHODS)}.")
        return result
    problems = config.problems(launch_styles=("ehr", "standalone"), auth_method=auth_method,
                               openid=True)
    if environment != "production":
        # Test EHRs on plain http are common (and the launch code accepts them there).
        problems = [p for p in problems if "https" not in p]
    if problems:
        steps[3].status = "failed"
        steps[3].message = (f"{env} environment: " + "; ".join(problems) + ". Ask the EHR "
                            "analyst to enable these for OpenVisit's client, or change the "
                            "authentication method.")
    else:
        steps[3].status = "ok"
        steps[3].message = "PKCE S256, EHR and standalone launch, OpenID Connect, " + auth_method
    return result
