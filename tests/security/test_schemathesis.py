"""Schemathesis against the JSON API of a real ``openvisit serve`` in production mode.

Bounded (a few examples per operation), on loopback, authenticated as an org admin's API
token. Every answer must be a documented status with a documented content type, and no
input may produce a 5xx. Runs on both backends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

from tests.security.server import Stack, production_stack

pytestmark = [pytest.mark.backend, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def stack(_template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with production_stack(
        _template_db, tmp_path_factory.mktemp("schemathesis"), OPENVISIT_EXPOSE_API_DOCS="true"
    ) as running:
        yield running


def _with_visit(case: schemathesis.Case, visit_id: str) -> schemathesis.Case:
    case.path_parameters = {**(case.path_parameters or {}), "visit_id": visit_id}
    return case


CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
]


def _fuzz(strategy: Any, headers: dict[str, str]) -> None:
    """One bounded Hypothesis run of one operation's cases."""

    @given(case=strategy)
    @settings(
        max_examples=25,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call(headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS)

    run()


def test_it_answers_every_generated_request_as_documented(stack: Stack) -> None:
    # Schemathesis' own pytest plugin does not run on this pytest; its engine is driven
    # directly: one bounded Hypothesis run per operation, every failure collected.
    schema = schemathesis.openapi.from_url(f"{stack.base}/api/openapi.json")
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    # The visit API takes a clinician's join token as its bearer; the visit id is real, so
    # generated requests reach the handlers, not only the 404 of an unknown visit.
    clinician = {"Authorization": f"Bearer {stack.provider_token}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        visits = operation.path.startswith("/api/visits")
        headers = clinician if visits else admin
        strategy = operation.as_strategy()
        if visits and "{visit_id}" in operation.path:
            visit_id = str(stack.visit_id)
            strategy = strategy.map(lambda case, v=visit_id: _with_visit(case, v))

        try:
            _fuzz(strategy, headers)
        except (Exception, BaseExceptionGroup) as exc:  # collect all, then report
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert operations >= 30
    assert not failures, "\n\n".join(failures)


def test_it_logged_no_unhandled_error_and_no_token(stack: Stack) -> None:
    text = stack.log_text()
    assert "unhandled_error" not in text and "Traceback" not in text, text[-4000:]
    for secret in stack.secrets:
        assert secret not in text
