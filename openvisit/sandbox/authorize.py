"""The authorization endpoint (RFC 6749 §4.1.1, SMART App Launch 2.2 §"Obtain authorization
code") and its "pick a user" page.

Order of checks follows RFC 6749 §4.1.2.1: an unknown ``client_id`` or a ``redirect_uri`` that
is missing or not registered (exact string match, §3.1.2.3) is shown on a page and never
redirected; every other problem goes back to the client as ``error``/``error_description``/
``state`` on its redirect URI. SMART requires ``state``, ``aud`` equal to the FHIR base, and
PKCE with S256 (``plain`` refused). The ``launch`` parameter must name a live launch minted by
the EHR pages. GET and POST (``authorize-post``) take the same parameters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from openvisit.sandbox import pkce, scopes
from openvisit.sandbox.errors import OAuthError
from openvisit.sandbox.grants import PendingAuthorization, TokenContext, new_secret
from openvisit.sandbox.pages import display_name
from openvisit.sandbox.runtime import Sandbox, get_sandbox, with_query

log = logging.getLogger(__name__)

SCOPE_TEXT = {
    "openid": "Confirm who you are (OpenID Connect)",
    "fhirUser": "Know which user record is yours",
    "profile": "Know which user record is yours",
    "launch": "Receive the patient and visit you launched from",
    "launch/patient": "Ask which patient to work with",
    "online_access": "Stay signed in while you are online",
    "offline_access": "Stay signed in after you leave",
}
_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "code_challenge",
    "code_challenge_method",
    "launch",
    "nonce",
)


class _ShowError(Exception):
    """A problem that must not be redirected (unknown client or redirect URI)."""


class _RedirectError(Exception):
    def __init__(self, error: OAuthError, *, redirect_uri: str, state: str | None) -> None:
        super().__init__(error.description)
        self.error, self.redirect_uri, self.state = error, redirect_uri, state


@dataclass(frozen=True)
class Choice:
    reference: str
    label: str

    @property
    def kind(self) -> str:
        return "Clinicians" if self.reference.startswith("Practitioner/") else "Patients"


async def authorize(request: Request) -> Response:
    """Validate the request; show the pick-a-user page or send an error back."""
    sandbox = get_sandbox(request)
    items = list(request.query_params.multi_items())
    if request.method == "POST":
        items += [(k, v) for k, v in (await request.form()).multi_items() if isinstance(v, str)]
    try:
        pending = _validate(items, sandbox)
    except _ShowError as exc:
        return _error_page(request, str(exc))
    except _RedirectError as exc:
        log.info("sandbox.authorize_refused error=%s", exc.error.error)
        return _redirect_error(exc)
    sandbox.grants.put_pending(pending)
    log.info(
        "sandbox.authorize_pending client_id=%s launch=%s",
        pending.client_id,
        pending.launch is not None,
    )
    return _pick_page(request, sandbox, pending)


async def decide(request: Request) -> Response:
    """The user's answer on the pick-a-user page: redirect with a code, or access_denied."""
    sandbox = get_sandbox(request)
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    pending = sandbox.grants.take_pending(fields.get("request_id", ""), now=sandbox.now())
    if pending is None:
        return _error_page(
            request,
            "This sign-in request has expired or was already used. "
            "Start the app again from the EHR.",
        )
    if fields.get("action") != "approve":
        return _redirect_error(
            _RedirectError(
                OAuthError("access_denied", "the user declined"),
                redirect_uri=pending.redirect_uri,
                state=pending.state,
            ),
            status_code=303,
        )
    users, patients = _choices(sandbox, pending)
    user = fields.get("user", "")
    if user not in {c.reference for c in users}:
        return _error_page(request, "Pick one of the listed users.")
    patient = _context_patient(
        pending, user=user, picked=fields.get("patient", ""), patients=patients
    )
    if patient == "":
        return _error_page(request, "Pick a patient.")
    launch = pending.launch if "launch" in pending.scopes else None
    context = TokenContext(
        client_id=pending.client_id,
        scopes=pending.scopes,
        user=user,
        patient=patient,
        # A launch carries the encounter it was minted with (the portal's patient launches
        # are minted without one; an EHR may send one, and OpenVisit must cope).
        encounter=launch.encounter if launch is not None else None,
        appointment=launch.appointment if launch is not None else None,
        nonce=pending.nonce,
        need_patient_banner=not (launch is not None and launch.kind == "patient"),
        auth_time=int(sandbox.now().timestamp()),
    )
    code = sandbox.grants.issue_code(
        context=context,
        redirect_uri=pending.redirect_uri,
        code_challenge=pending.code_challenge,
        expires_at=sandbox.now() + sandbox.lifetimes.code,
    )
    log.info("sandbox.code_issued client_id=%s user=%s", pending.client_id, user)
    target = with_query(pending.redirect_uri, params={"code": code.code, "state": pending.state})
    return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})


def _validate(items: list[tuple[str, str]], sandbox: Sandbox) -> PendingAuthorization:
    params: dict[str, str] = {}
    repeated = set()
    for key, value in items:
        if key in params and key in _PARAMS:
            repeated.add(key)
        params[key] = value
    client = sandbox.clients.get(params.get("client_id", ""))
    if client is None:
        raise _ShowError("Unknown client_id: this app is not registered with the sandbox EHR.")
    redirect_uri = params.get("redirect_uri", "")
    if "redirect_uri" in repeated or redirect_uri not in client.redirect_uris:
        raise _ShowError("The redirect_uri is missing or is not registered for this app.")
    state = params.get("state")

    def fail(error: str, description: str) -> _RedirectError:
        return _RedirectError(
            OAuthError(error, description), redirect_uri=redirect_uri, state=state
        )

    if repeated:
        raise fail(
            "invalid_request", f"parameters given more than once: {', '.join(sorted(repeated))}"
        )
    if params.get("response_type") != "code":
        raise fail("unsupported_response_type", "response_type must be code")
    if not state:
        raise fail("invalid_request", "state is required")
    if params.get("aud", "").rstrip("/") != sandbox.urls.fhir_base:
        raise fail("invalid_request", f"aud must be the FHIR base URL {sandbox.urls.fhir_base}")
    challenge = params.get("code_challenge", "")
    if not challenge:
        raise fail("invalid_request", "PKCE is required: send code_challenge")
    if params.get("code_challenge_method") != "S256":
        raise fail("invalid_request", "code_challenge_method must be S256 (plain is not allowed)")
    if not pkce.is_valid_s256_challenge(challenge):
        raise fail("invalid_request", "code_challenge is not a valid S256 challenge")
    now = sandbox.now()
    launch = None
    if params.get("launch"):
        launch = sandbox.grants.get_launch(params["launch"], now=now)
        if launch is None:
            raise fail(
                "invalid_request", "launch is unknown or has expired: start again from the EHR"
            )
    granted = scopes.grant(params.get("scope", "").split(), allowed=client.scopes)
    if launch is None and "launch" in granted:
        granted.remove("launch")  # the launch scope only means something with a launch id
    if not granted:
        raise fail("invalid_scope", "none of the requested scopes can be granted to this app")
    return PendingAuthorization(
        request_id=new_secret(),
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        state=state,
        scopes=tuple(granted),
        code_challenge=challenge,
        nonce=params.get("nonce"),
        launch=launch,
        expires_at=now + sandbox.lifetimes.pending,
    )


def _patient_facing(pending: PendingAuthorization) -> bool:
    return scopes.has_context(pending.scopes, context="patient") and not scopes.has_context(
        pending.scopes, context="user"
    )


def _choices(sandbox: Sandbox, pending: PendingAuthorization) -> tuple[list[Choice], list[Choice]]:
    """Who may sign in, and (for a practitioner's standalone launch/patient) which patients."""

    def choices(rtype: str) -> list[Choice]:
        return [Choice(f"{rtype}/{r['id']}", display_name(r)) for r in sandbox.store.all(rtype)]

    launch = pending.launch
    if launch is not None and launch.kind == "patient":
        return [c for c in choices("Patient") if c.reference == launch.user], []
    if launch is not None:
        return choices("Practitioner"), []
    if _patient_facing(pending):
        return choices("Patient"), []
    patients = choices("Patient") if "launch/patient" in pending.scopes else []
    return choices("Practitioner") + choices("Patient"), patients


def _context_patient(
    pending: PendingAuthorization, *, user: str, picked: str, patients: list[Choice]
) -> str | None:
    """The patient in context: from the launch, the patient user, or the picker ("" = missing)."""
    if pending.launch is not None:
        return pending.launch.patient if "launch" in pending.scopes else None
    wants_patient = "launch/patient" in pending.scopes or scopes.has_context(
        pending.scopes, context="patient"
    )
    if not wants_patient:
        return None
    if user.startswith("Patient/"):
        return user.split("/", 1)[1]
    if picked in {c.reference for c in patients}:
        return picked.split("/", 1)[1]
    return ""


def _pick_page(request: Request, sandbox: Sandbox, pending: PendingAuthorization) -> Response:
    users, patients = _choices(sandbox, pending)
    client = sandbox.clients.get(pending.client_id)
    default_user = pending.launch.user if pending.launch is not None else users[0].reference
    return sandbox.templates.TemplateResponse(
        request,
        "authorize.html",
        {
            "client_name": (
                client.name if client is not None and client.name else pending.client_id
            ),
            "pending": pending,
            "users": users,
            "patients": patients,
            "default_user": default_user,
            "scope_lines": [(s, SCOPE_TEXT.get(s, "")) for s in pending.scopes],
            "launch_kind": pending.launch.kind if pending.launch is not None else "standalone",
        },
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _error_page(request: Request, message: str) -> Response:
    return get_sandbox(request).templates.TemplateResponse(
        request, "error.html", {"title": "Cannot sign in", "message": message}, status_code=400
    )


def _redirect_error(exc: _RedirectError, *, status_code: int = 302) -> Response:
    params = {"error": exc.error.error, "error_description": exc.error.description}
    if exc.state:
        params["state"] = exc.state
    return RedirectResponse(with_query(exc.redirect_uri, params=params), status_code=status_code)


def routes() -> list[BaseRoute]:
    return [
        Route("/auth/authorize", authorize, methods=["GET", "POST"]),
        Route("/auth/authorize/decision", decide, methods=["POST"]),
    ]
