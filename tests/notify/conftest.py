"""Fixtures of the notification tests: an app context with notification settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from openvisit.config import Settings
from openvisit.context import AppContext
from openvisit.notify import providers
from tests.support.backend import make_settings

PUBLIC_URL = "https://visits.example.test"


@pytest.fixture
async def app(settings: Settings, ctx: AppContext) -> AsyncIterator[AppContext]:
    """The test's context with notification-friendly settings (outbox providers)."""
    ctx.settings = make_settings(settings.database_url, redis_url=settings.redis_url,
                                 public_url=PUBLIC_URL)
    yield ctx
    await providers.close_all(ctx)


@pytest.fixture
def configure(app: AppContext, settings: Settings) -> Callable[..., AppContext]:
    """``configure(**settings)``: change the app's settings before its first send."""

    def apply(**overrides: Any) -> AppContext:
        app.settings = make_settings(settings.database_url, redis_url=settings.redis_url,
                                     public_url=PUBLIC_URL, **overrides)
        return app

    return apply
