"""Who may do what on the FHIR API: bearer tokens (RFC 6750) and SMART scopes.

A request needs a live access token (401 with ``WWW-Authenticate: Bearer`` otherwise, RFC 6750
§3). The interaction maps to a SMART permission letter (read→r, search→s, create→c,
update/patch→u, delete→d). ``system/`` scopes and ``user/`` scopes of a Practitioner allow
every resource; ``patient/`` scopes, and ``user/`` scopes of a Patient user, are limited to
that patient's compartment (FHIR R4 compartmentdefinition-patient). Resource types outside the
Patient compartment (Practitioner, Organization, Location, HealthcareService) stay readable
under a patient restriction, as SMART servers commonly allow, but not writable. Missing scope
or an out-of-compartment resource answers 403 with ``error="insufficient_scope"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from openvisit.sandbox.errors import FhirError
from openvisit.sandbox.fhir_params import SEARCH_PARAMS
from openvisit.sandbox.grants import GrantStore, IssuedToken
from openvisit.sandbox.scopes import contexts_allowing

# R4 Patient compartment: the search parameters that put a resource in a patient's compartment.
COMPARTMENT_PARAMS: dict[str, tuple[str, ...]] = {
    "Patient": (),
    "Appointment": ("actor",),
    "Encounter": ("patient",),
    "AuditEvent": ("patient",),
    "Communication": ("subject", "sender", "recipient"),
    "Observation": ("subject",),
}


@dataclass(frozen=True)
class Access:
    """The outcome of an access check: everything, or one patient's compartment."""

    patient: str | None  # None = unrestricted

    def permits(self, resource: dict[str, Any]) -> bool:
        """True when ``resource`` is inside what this access allows."""
        if self.patient is None:
            return True
        return in_patient_compartment(resource, patient_id=self.patient) is not False


def bearer_token(
    authorization: str | None, *, grants: GrantStore, now: datetime, realm: str
) -> IssuedToken:
    """The live access token of a request; raises 401 :class:`FhirError` otherwise."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise FhirError(
            "a Bearer access token is required",
            status_code=401,
            issue_code="login",
            headers={"WWW-Authenticate": f'Bearer realm="{realm}"'},
        )
    token = grants.get_access(value.strip(), now=now)
    if token is None:
        raise FhirError(
            "the access token is invalid or has expired",
            status_code=401,
            issue_code="expired",
            headers={"WWW-Authenticate": f'Bearer realm="{realm}", error="invalid_token"'},
        )
    return token


def check_access(token: IssuedToken, *, resource_type: str, permission: str) -> Access:
    """Decide whether ``token`` may perform ``permission`` (one of cruds) on ``resource_type``.

    Returns the :class:`Access` to apply to individual resources. Raises 403.
    """
    ctx = token.context
    contexts = contexts_allowing(ctx.scopes, resource_type=resource_type, permission=permission)
    restrictions: list[str] = []
    unrestricted = "system" in contexts
    if "user" in contexts:
        if ctx.user is not None and ctx.user.startswith("Patient/"):
            restrictions.append(ctx.user.split("/", 1)[1])
        else:
            unrestricted = True
    if "patient" in contexts:
        if ctx.patient is None:
            raise _forbidden(
                "patient/ scopes need a patient in context", f"patient/{resource_type}"
            )
        restrictions.append(ctx.patient)
    if unrestricted:
        return Access(patient=None)
    if not restrictions:
        raise _forbidden(
            f"no granted scope allows '{permission}' on {resource_type}",
            f"user/{resource_type}.{permission}",
        )
    if resource_type not in COMPARTMENT_PARAMS and permission not in {"r", "s"}:
        raise _forbidden(
            f"a patient-restricted token cannot write {resource_type}",
            f"user/{resource_type}.{permission}",
        )
    return Access(patient=restrictions[0])


def forbidden_resource(resource_type: str) -> FhirError:
    """403 for a resource outside the token's patient compartment."""
    return _forbidden(f"this {resource_type} is outside the patient in context", None)


def _forbidden(message: str, needed: str | None) -> FhirError:
    challenge = 'Bearer error="insufficient_scope"'
    if needed:
        challenge += f', scope="{needed}"'
    return FhirError(
        message, status_code=403, issue_code="forbidden", headers={"WWW-Authenticate": challenge}
    )


def in_patient_compartment(resource: dict[str, Any], *, patient_id: str) -> bool | None:
    """True/False for compartment types; None for types outside the Patient compartment."""
    rtype = resource.get("resourceType", "")
    if rtype not in COMPARTMENT_PARAMS:
        return None
    if rtype == "Patient":
        return bool(resource.get("id") == patient_id)
    specs = SEARCH_PARAMS[rtype]
    for name in COMPARTMENT_PARAMS[rtype]:
        for path in specs[name].paths:
            for ref in _refs(resource, path):
                parts = [p for p in ref.split("/_history/")[0].split("/") if p]
                if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] == patient_id:
                    return True
    return False


def _refs(resource: dict[str, Any], path: str) -> list[str]:
    nodes: list[Any] = [resource]
    for part in path.split("."):
        nxt: list[Any] = []
        for node in nodes:
            if isinstance(node, dict) and part in node:
                value = node[part]
                nxt.extend(value if isinstance(value, list) else [value])
        nodes = nxt
    return [
        n["reference"] for n in nodes if isinstance(n, dict) and isinstance(n.get("reference"), str)
    ]
