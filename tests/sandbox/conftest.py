"""Fixtures for the sandbox EHR tests: registered clients with real keys, the app in-process,
and the app behind a real uvicorn server for clients that need a URL (fhirclient)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, RSAKey

from openvisit.sandbox import SandboxClient, create_sandbox_app

from .helpers import BASE, PATIENT_LAUNCH, PROVIDER_LAUNCH, REDIRECT, serve

SECRET = "provider-secret-1"


@dataclass
class Keys:
    rsa: RSAKey
    ec: ECKey

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                {**self.rsa.as_dict(private=False), "kid": "rsa-1", "alg": "RS384"},
                {**self.ec.as_dict(private=False), "kid": "ec-1", "alg": "ES384"},
            ]
        }


class Clock:
    """Real local time plus an offset the test can move forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now().astimezone() + self.offset


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(
        rsa=RSAKey.generate_key(2048, private=True), ec=ECKey.generate_key("P-384", private=True)
    )


def make_clients(keys: Keys, *, redirect: str = REDIRECT) -> list[SandboxClient]:
    return [
        SandboxClient(
            client_id="ov-secret",
            client_secret=SECRET,
            redirect_uris=[redirect],
            name="OpenVisit (secret)",
        ),
        SandboxClient(
            client_id="ov-jwt",
            jwks=keys.jwks(),
            redirect_uris=[redirect],
            name="OpenVisit (private_key_jwt)",
        ),
        SandboxClient(client_id="ov-public", confidential=False, redirect_uris=[redirect]),
        SandboxClient(
            client_id="ov-backend",
            jwks=keys.jwks(),
            scopes=["system/AuditEvent.cruds", "system/Appointment.rs", "system/Encounter.rus"],
        ),
        SandboxClient(
            client_id="ov-narrow",
            client_secret=SECRET,
            redirect_uris=[redirect],
            scopes=["openid", "fhirUser", "launch", "patient/Appointment.rs"],
        ),
    ]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(keys: Keys, clock: Clock) -> Any:
    return create_sandbox_app(
        base_url=BASE,
        clients=make_clients(keys),
        provider_launch_url=PROVIDER_LAUNCH,
        patient_launch_url=PATIENT_LAUNCH,
        now=clock,
    )


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client:
        yield client


@pytest.fixture
def live(keys: Keys) -> Iterator[str]:
    """The sandbox behind uvicorn; yields its base URL."""

    def make(base: str) -> Any:
        return create_sandbox_app(
            base_url=base,
            clients=make_clients(keys),
            provider_launch_url=PROVIDER_LAUNCH,
            patient_launch_url=PATIENT_LAUNCH,
        )

    with serve(make) as (base, _app):
        yield base
