"""Launch errors as a patient reads them, in the page's language (en/es/cs/it).

The launch's own messages are written for the people who can fix a set-up (the EHR analyst,
the clinic's IT team): scopes, registrations, environments. A patient can act on none of
that, so a patient-facing launch error is reworded by what the patient *can* do — start
again, allow the app, switch to the right record, call the clinic — through the translation
catalogue, keeping the error code, the HTTP status and the environment. The original text
stays on the page, folded away under "Details for the clinic's IT team", so a screenshot sent
to the helpdesk still says what went wrong.

Only pages are reworded (:meth:`~openvisit.errors.OpenVisitError.for_page`): JSON clients and
logs keep the original message, code and status.

Contract: :func:`for_patient` and :func:`restart` word the error in the active language
(activate it first, :func:`openvisit.i18n.activate`) and return the same error, to re-raise.
"""

from __future__ import annotations

from openvisit.errors import OpenVisitError
from openvisit.i18n import gettext as _

_STATE_CODES = frozenset({"state_missing", "state_mismatch", "state_expired", "state_replayed"})


def _reworded(exc: OpenVisitError, *, title: str, message: str) -> OpenVisitError:
    return exc.for_page(title=title, message=message)


def is_state_error(exc: OpenVisitError) -> bool:
    """A missing, forged, expired or replayed sign-in ``state``."""
    return exc.code in _STATE_CODES


def restart(exc: OpenVisitError) -> OpenVisitError:
    """A spent or unknown sign-in: whoever it was (patient or clinician) starts again."""
    return _reworded(
        exc, title=_("Please start again"),
        message=_("This sign-in has expired or was already used. Go back to your patient "
                  "portal (or, for clinicians, the EHR) and open the video visit again."))


def for_patient(exc: OpenVisitError) -> OpenVisitError:
    """``exc`` (raised by a patient launch) in words for the patient."""
    if is_state_error(exc):
        return restart(exc)
    if exc.code == "patient_mismatch":
        return _reworded(
            exc, title=_("This visit is for another patient"),
            message=_("You are signed in as someone other than the patient of this "
                      "appointment, so the visit cannot be opened. If you look after someone "
                      "else's care, switch to their record in your patient portal first. If "
                      "this seems wrong, please call the clinic."))
    if exc.code == "no_appointment":
        return _reworded(
            exc, title=_("We could not find your appointment"),
            message=_("We could not find a video appointment for you today. Please start the "
                      "visit from the appointment in your patient portal, or call the clinic."))
    if exc.details.get("ehr_error") == "access_denied":
        return _reworded(
            exc, title=_("Permission was not given"),
            message=_("The video visit needs your permission to see your appointment. Go back "
                      "to your patient portal, start the visit again and allow it."))
    if exc.code == "epic_link_expired":
        return _reworded(
            exc, title=_("This link has expired"),
            message=_("This visit link is no longer valid. Please open the visit again from "
                      "your patient portal or from the latest message the clinic sent you."))
    if exc.code == "epic_link_invalid":
        return _reworded(
            exc, title=_("This link does not work"),
            message=_("This visit link could not be read. Please open the visit again from "
                      "your patient portal or from the latest message the clinic sent you."))
    if not exc.permanent:
        return _reworded(
            exc, title=_("The clinic's system is not answering"),
            message=_("We could not reach the clinic's system to open your visit. Please try "
                      "again in a few minutes. If it keeps happening, call the clinic."))
    return _reworded(
        exc, title=_("We could not open your visit"),
        message=_("The connection between your patient portal and the video visit is not set "
                  "up correctly, so your visit could not be opened. Please call the clinic and "
                  "tell them the error code below."))
