"""Errors of the sandbox EHR and how they look on the wire.

Two protocols, two shapes: OAuth 2.0 errors are ``{"error", "error_description"}`` objects
(RFC 6749 §5.2) or redirect parameters (§4.1.2.1); FHIR errors are OperationOutcome resources
(FHIR R4 http.html §3.1.0.4). Both subclass :class:`openvisit.errors.OpenVisitError` so the
sandbox follows the project's one error hierarchy.
"""

from __future__ import annotations

from typing import Any

from openvisit.errors import OpenVisitError


class OAuthError(OpenVisitError):
    """An OAuth 2.0 error: ``error`` is the RFC 6749 code, ``description`` is for people.

    ``status_code`` is 400 except ``invalid_client`` (401, RFC 6749 §5.2).
    """

    def __init__(self, error: str, description: str, *, status_code: int | None = None) -> None:
        if status_code is None:
            status_code = 401 if error == "invalid_client" else 400
        super().__init__(description, code=error, status_code=status_code)
        self.error = error
        self.description = description

    def as_json(self) -> dict[str, str]:
        """The RFC 6749 §5.2 error body."""
        return {"error": self.error, "error_description": self.description}


class FhirError(OpenVisitError):
    """A FHIR REST error: HTTP status, an OperationOutcome issue code and extra headers.

    ``issue_code`` is from the R4 ``issue-type`` value set (``not-found``, ``processing``,
    ``forbidden``, ``conflict``, ``invalid``, ``security``, ``not-supported``, ...).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        issue_code: str = "processing",
        headers: dict[str, str] | None = None,
        issues: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, code=issue_code, status_code=status_code)
        self.issue_code = issue_code
        self.headers = headers or {}
        self.issues = issues

    def outcome(self) -> dict[str, Any]:
        """The OperationOutcome resource that describes this error."""
        issues = self.issues or [
            {"severity": "error", "code": self.issue_code, "diagnostics": self.message}
        ]
        return operation_outcome(issues)


def operation_outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    """Wrap issues into an R4 OperationOutcome resource."""
    return {"resourceType": "OperationOutcome", "issue": issues}
