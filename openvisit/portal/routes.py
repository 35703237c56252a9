"""Every route of the configuration portal: HTML pages under ``/portal`` and the JSON API
under ``/api/portal`` (one router, so app.py lists the portal once)."""

from __future__ import annotations

from fastapi import APIRouter

from openvisit.portal.endpoints import views as views_epic
from openvisit.portal.records import views as views_review
from openvisit.portal.setup import api as api_setup
from openvisit.portal.setup import views as views_setup
from openvisit.portal.signin import views as views_signin
from openvisit.portal.sms import views as views_sms
from openvisit.portal.staff import api as api_admin
from openvisit.portal.staff import views as views_admin
from openvisit.portal.writeback import api as api_writeback
from openvisit.portal.writeback import views as views_writeback

router = APIRouter()
for module in (views_signin, views_setup, views_sms, views_review, views_admin, views_epic,
               views_writeback, api_setup, api_admin, api_writeback):
    router.include_router(module.router)
