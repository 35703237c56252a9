"""Structural validation of resources written to the sandbox, with ``fhir.resources``.

``fhir.resources`` 8 models FHIR R5 at its top level; its ``R4B`` subpackage models R4B
(4.3.0), whose Patient, Practitioner, Appointment, Encounter, AuditEvent, Communication,
Observation, HealthcareService, Organization and Location are the R4 (4.0.1) definitions, so it
is what validates R4 here. ``fhir.resources`` is a dependency of OpenVisit, so it is a plain
import.
"""

from __future__ import annotations

from typing import Any

from fhir.resources import R4B

from openvisit.sandbox.errors import FhirError


def validate(resource: Any, *, resource_type: str) -> None:
    """Raise 400/422 :class:`FhirError` (with one issue per problem) unless ``resource`` is a
    valid ``resource_type``. Error texts name the element, never echo values (PHI habit)."""
    if not isinstance(resource, dict):
        raise FhirError("body must be a JSON object", status_code=400, issue_code="structure")
    if resource.get("resourceType") != resource_type:
        raise FhirError(
            f"resourceType must be {resource_type}", status_code=400, issue_code="invalid"
        )
    model = R4B.get_fhir_model_class(resource_type)
    try:
        model.model_validate(resource)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        errors: list[dict[str, Any]] = getattr(exc, "errors", lambda: [])()
        issues = [
            {
                "severity": "error",
                "code": "structure" if err.get("type") == "extra_forbidden" else "value",
                "diagnostics": str(err.get("msg", "invalid")),
                "expression": [".".join([resource_type, *(str(p) for p in err.get("loc", ()))])],
            }
            for err in errors[:20]
        ] or [{"severity": "error", "code": "invalid", "diagnostics": "invalid resource"}]
        raise FhirError(
            f"invalid {resource_type}", status_code=422, issue_code="invalid", issues=issues
        ) from None
