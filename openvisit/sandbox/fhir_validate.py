"""Structural validation of resources written to the sandbox, with ``fhir.resources``.

``fhir.resources`` 8 models FHIR R5 at its top level; its ``R4B`` subpackage models R4B
(4.3.0), whose Patient, Practitioner, Appointment, Encounter, AuditEvent, Communication,
Observation, HealthcareService, Organization and Location are the R4 (4.0.1) definitions, so it
is what validates R4 here. If the subpackage is missing the sandbox still runs and only the
basic checks (object, ``resourceType``) apply.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

from openvisit.sandbox.errors import FhirError

log = logging.getLogger(__name__)

_r4: ModuleType | None
try:
    _r4 = importlib.import_module("fhir.resources.R4B")
except ImportError:  # pragma: no cover - depends on the installed fhir.resources
    _r4 = None
    log.warning("sandbox.fhir_validation_unavailable")


def validation_available() -> bool:
    return _r4 is not None


def validate(resource: Any, *, resource_type: str) -> None:
    """Raise 400/422 :class:`FhirError` (with one issue per problem) unless ``resource`` is a
    valid ``resource_type``. Error texts name the element, never echo values (PHI habit)."""
    if not isinstance(resource, dict):
        raise FhirError("body must be a JSON object", status_code=400, issue_code="structure")
    if resource.get("resourceType") != resource_type:
        raise FhirError(
            f"resourceType must be {resource_type}", status_code=400, issue_code="invalid"
        )
    if _r4 is None:
        return
    model = _r4.get_fhir_model_class(resource_type)
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
