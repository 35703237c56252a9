"""Where the organisation is in the seeds' set-up flow: set-up → SMS → certificate →
approval → review. Shown as the portal's step list and the dashboard's checklist."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.models import EhrEndpoint, utcnow
from openvisit.notify import departments
from openvisit.portal import repository
from openvisit.portal.signin.sessions import Principal
from openvisit.portal.sms.service import consents_given, organisation_of


@dataclass
class Step:
    number: int
    key: str
    title: str
    href: str
    status: str  # done | todo | optional | blocked
    summary: str


@dataclass
class Overview:
    organisation_name: str
    steps: list[Step]
    endpoints: list[EhrEndpoint] = field(default_factory=list)

    @property
    def next_step(self) -> Step | None:
        return next((s for s in self.steps if s.status == "todo"), None)


async def overview(session: AsyncSession, *, principal: Principal) -> Overview:
    """The five steps with their status and a one-line summary each."""
    org = await organisation_of(session, principal)
    endpoints = await repository.endpoints_of(session, org.id)
    # The approval page goes by each endpoint's state; so does this overview (a CLI- or
    # demo-registered endpoint is approved with no live check or approver on record).
    drafts = [e for e in endpoints if e.state == "draft"]
    awaiting = [e for e in endpoints if e.state == "awaiting_approval"]
    envs = sorted({e.environment for e in endpoints})
    numbers = [n for n in await repository.numbers_of(session, org.id) if n.state == "active"]
    links = await repository.links_of(session, org.id)
    sms_rows = await repository.sms_settings_of(session, [e.id for e in endpoints])
    sms_on = [e for e in endpoints if sms_rows.get(e.id) and sms_rows[e.id].enabled]
    now = utcnow()
    certs = [c for c in await repository.certificates_of(session, org.id)
             if c.is_active and c.not_before <= now < c.not_after]
    cert_envs = {c.environment for c in certs}
    approved = [e for e in endpoints if e.state == "approved"]

    setup = Step(1, "setup", "Set-up", "/portal/endpoints",
                 "done" if endpoints and not drafts else "todo",
                 f"{len(endpoints)} FHIR base URL(s); {len(endpoints) - len(drafts)} checked "
                 "with an approver or approved"
                 if endpoints else "Add your EHR's FHIR base URL and name the approver")
    if not consents_given(org):
        sms = Step(2, "sms", "SMS notifications", "/portal/sms", "optional",
                   "Optional: consents not given")
    else:
        sms = Step(2, "sms", "SMS notifications", "/portal/sms",
                   "done" if numbers and links and sms_on else "todo",
                   f"{len(numbers)} number(s), SMS on for {len(sms_on)} endpoint(s)")
    missing = [e for e in envs if e not in cert_envs]
    cert = Step(3, "certificates", "Certificate", "/portal/certificates",
                "done" if envs and not missing else ("todo" if envs else "blocked"),
                ("Missing for: " + ", ".join(missing)) if missing
                else (f"Uploaded for {', '.join(envs)}" if envs else "Add an endpoint first"))
    approval = Step(4, "approval", "Approval", "/portal/approval",
                    "done" if endpoints and len(approved) == len(endpoints)
                    else ("todo" if awaiting else "blocked"),
                    f"{len(approved)} of {len(endpoints)} endpoint(s) approved"
                    if endpoints else "Nothing to approve yet")
    review = Step(5, "review", "Review & records", "/portal/records",
                  "done" if approved else "blocked",
                  f"Records ready for {len(approved)} endpoint(s)" if approved
                  else "Available once an endpoint is approved")
    return Overview(org.display_name, [setup, sms, cert, approval, review], endpoints)


# --- department names (the codes of the scheduling feed, named for patients) ---------------


async def department_names(session: AsyncSession, *,
                           principal: Principal) -> list[departments.DepartmentEntry]:
    return sorted(await departments.entries(session, organisation_id=principal.organisation_id),
                  key=lambda e: e.code)


async def name_department(session: AsyncSession, *, principal: Principal, code: str,
                          name: str, language: str | None) -> None:
    """Org admins name a code; raises :class:`InvalidInput` naming the field."""
    principal.require("org_admin", doing="name departments")
    await departments.set_name(session, organisation_id=principal.organisation_id, code=code,
                               name=name, language=language, actor=principal.actor)


async def forget_department(session: AsyncSession, *, principal: Principal, code: str,
                            language: str) -> int:
    """Remove one language's name of a code ("" = the name for every language)."""
    principal.require("org_admin", doing="remove department names")
    return await departments.remove_names(session, organisation_id=principal.organisation_id,
                                          code=code, language=language,
                                          actor=principal.actor)
