"""Every route of the configuration portal: HTML pages under ``/portal`` and the JSON API
under ``/api/portal`` (one router, so app.py lists the portal once)."""

from __future__ import annotations

from fastapi import APIRouter

from openvisit.portal import (
    api_admin,
    api_setup,
    views_admin,
    views_epic,
    views_review,
    views_setup,
    views_signin,
    views_sms,
)

router = APIRouter()
for module in (views_signin, views_setup, views_sms, views_review, views_admin, views_epic,
               api_setup, api_admin):
    router.include_router(module.router)
