"""Every route of the configuration portal: HTML pages under ``/portal`` and the JSON API
under ``/api/portal`` (one router, so app.py lists the portal once).

The JSON API is for hospitals that configure by code. Authenticate with
``Authorization: Bearer ovt_…`` (an API token from the portal) or the portal's session cookie
plus ``X-CSRF-Token`` on changes. Errors are
``{"error": {"code", "message", "details": {"field": …}}}``.

Each page family (``signin``, ``setup``, ``endpoints``, ``sms``, ``certificates``,
``approval``, ``records``, ``staff``, ``audit``, ``writeback``) brings its ``views`` and
``api`` router, included below in the order routes are matched in. A literal path must come before a
parameter path that would also take it: today every such pair sits inside one module, in
that order (``/portal/endpoints/new`` and ``/portal/endpoints/check`` before
``/portal/endpoints/{endpoint_id}`` in ``endpoints.views``), and no family's literal path is
taken by another family's parameter path. Check that again when adding a family here.
"""

from __future__ import annotations

from fastapi import APIRouter

from openvisit.portal.approval import api as approval_api
from openvisit.portal.approval import views as approval_views
from openvisit.portal.audit import api as audit_api
from openvisit.portal.audit import views as audit_views
from openvisit.portal.certificates import api as certificates_api
from openvisit.portal.certificates import views as certificates_views
from openvisit.portal.endpoints import api as endpoints_api
from openvisit.portal.endpoints import views as endpoints_views
from openvisit.portal.endpoints import views_epic as endpoints_views_epic
from openvisit.portal.queue import views as queue_views
from openvisit.portal.records import api as records_api
from openvisit.portal.records import views as records_views
from openvisit.portal.setup import api as setup_api
from openvisit.portal.setup import views as setup_views
from openvisit.portal.signin import views as signin_views
from openvisit.portal.sms import api as sms_api
from openvisit.portal.sms import views as sms_views
from openvisit.portal.staff import api as staff_api
from openvisit.portal.staff import views as staff_views
from openvisit.portal.writeback import api as writeback_api
from openvisit.portal.writeback import views as writeback_views

router = APIRouter()
# HTML pages
router.include_router(signin_views.router)
router.include_router(setup_views.router)
router.include_router(endpoints_views.router)
router.include_router(sms_views.router)
router.include_router(certificates_views.router)
router.include_router(approval_views.router)
router.include_router(records_views.router)
router.include_router(staff_views.router)
router.include_router(audit_views.router)
router.include_router(queue_views.router)
router.include_router(endpoints_views_epic.router)
router.include_router(writeback_views.router)
# JSON API
router.include_router(setup_api.router)
router.include_router(endpoints_api.router)
router.include_router(approval_api.router)
router.include_router(records_api.router)
router.include_router(sms_api.router)
router.include_router(certificates_api.router)
router.include_router(staff_api.router)
router.include_router(audit_api.router)
router.include_router(writeback_api.router)
