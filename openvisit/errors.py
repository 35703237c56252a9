"""The one error hierarchy of OpenVisit.

Services, protocol cores and transports raise these, never framework exceptions. The web
layer maps them to responses in one place (:func:`openvisit.web.errors.install`): JSON for API
clients, a readable HTML page for browsers. Workers read ``permanent`` to decide whether a job
is retried.
"""

from __future__ import annotations

from typing import Any


class OpenVisitError(Exception):
    """Base class: a message a person can act on, a stable machine code and an HTTP status.

    ``permanent`` tells a worker whether retrying the same call can succeed: ``False`` for
    timeouts, 5xx answers and other passing faults.
    """

    status_code: int = 400
    code: str = "error"
    #: A title and message for the person reading an HTML page (a patient), when they differ
    #: from ``message``; API clients and logs keep ``message``. See :meth:`for_page`.
    page: tuple[str, str] | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        permanent: bool = True,
        title: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.permanent = permanent
        self.title = title
        self.details = details or {}

    def for_page(self, *, title: str, message: str) -> OpenVisitError:
        """Word this error for an HTML page's reader; the page keeps :attr:`message` folded
        away for the helpdesk. Returns the same error (to re-raise)."""
        self.page = (title, message)
        return self


class InvalidInput(OpenVisitError):
    """The caller sent something malformed; the message says what and how to fix it."""

    status_code = 422
    code = "invalid_input"


class NotFound(OpenVisitError):
    status_code = 404
    code = "not_found"


class PermissionDenied(OpenVisitError):
    status_code = 403
    code = "permission_denied"


class NotAuthenticated(OpenVisitError):
    status_code = 401
    code = "not_authenticated"


class Conflict(OpenVisitError):
    status_code = 409
    code = "conflict"


class Gone(OpenVisitError):
    """Something that existed is no longer usable (an expired link, an ended visit)."""

    status_code = 410
    code = "gone"


class TooManyRequests(OpenVisitError):
    """A limit was reached; the message says when or how to go on."""

    status_code = 429
    code = "too_many_requests"


class OutboundError(OpenVisitError):
    """A call to an outside system (EHR, SMS provider, SMTP, SFU) failed.

    ``permanent=False`` (the default here) means the worker retries with backoff.
    """

    status_code = 502
    code = "outbound_error"

    def __init__(self, message: str, *, permanent: bool = False, **kwargs: Any) -> None:
        super().__init__(message, permanent=permanent, **kwargs)


class ConfigurationError(OpenVisitError):
    """The deployment is misconfigured (bad settings, missing key); an operator must act."""

    status_code = 500
    code = "configuration_error"
