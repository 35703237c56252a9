"""The closed vocabularies of OpenVisit's columns: one ``Literal`` each, and its values.

A column holding one of these is declared with :func:`choice`, which stores it as a string
(the same on SQLite and PostgreSQL, so the schema is one migration for both) with a CHECK
constraint naming the allowed values: a value outside the vocabulary can never be stored,
whatever writes it. ``Literal`` rather than ``StrEnum`` because the values are the wire
vocabulary too (FHIR, SMART, the JSON API and the portal's forms): a ``Literal`` is the
string itself, so the protocol cores' own Literals (``openvisit.smart.discovery.AuthMethod``)
are the same type and nothing converts at the boundary.

Vocabularies that stay open on purpose are plain strings: a job's ``kind`` (plug-in modules
add kinds), a visit event's ``kind`` (write-back and reports add events), an appointment's
``status`` (the launch stores the EHR's FHIR status as given) and what a provider reports
(a receipt's status, a number's ``verification_status``).
"""

from __future__ import annotations

from typing import Literal, TypeGuard, TypeVar, get_args

from sqlalchemy import Enum

# --------------------------------------------------------------------------- endpoints

Vendor = Literal["generic", "epic", "oracle"]
Environment = Literal["test", "production"]
#: How a participant's media travelled: direct (host), through TURN (relay) or an SFU.
MediaPath = Literal["host", "relay", "sfu"]
#: OAuth client authentication at the EHR's token endpoint (SMART App Launch §2.0.9).
AuthMethod = Literal["private_key_jwt", "client_secret_basic", "client_secret_post", "none"]
EndpointState = Literal["draft", "awaiting_approval", "approved"]
#: requested → provisioning → active | failed; released.
NumberState = Literal["requested", "provisioning", "active", "failed", "released"]

# ------------------------------------------------------------------------ organisations

#: How patients and guests see a clinician: "role" ("Your clinician") or "display" (the
#: label the EHR launch gave the clinician's seat).
ProviderLabelMode = Literal["role", "display"]
#: Portal roles (a staff account holds a list of them).
StaffRole = Literal["org_admin", "approver", "reporter", "operator", "front_desk"]
#: How a portal user proved who they are.
SigninMethod = Literal["local", "idp"]

# ------------------------------------------------------------------------------- visits

#: scheduled → active → ended.
VisitStatus = Literal["scheduled", "active", "ended"]
VisitKind = Literal["visit", "devicetest"]
ParticipantRole = Literal["provider", "patient", "interpreter", "guest"]
LobbyState = Literal["invited", "waiting", "admitted", "removed", "left"]
ContactKind = Literal["sms", "email"]
#: Who invited a seat other than the clinician: "patient" for a family member or caregiver
#: the patient invited (``Participant.invited_by``; None: the clinician).
InvitedBy = Literal["patient"]
#: The media backends by name (``openvisit.media.backends.BACKENDS``,
#: ``OPENVISIT_MEDIA_BACKEND``); a visit keeps the one it was opened with.
MediaBackend = Literal["mesh", "janus", "livekit"]

# ------------------------------------------------------------------ appointments (feed)

#: FHIR R4 Appointment.status (the feed maps SCH-25 onto these; EHR-SPEC §5).
AppointmentStatus = Literal[
    "proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
    "entered-in-error", "checked-in", "waitlist",
]
#: Where OpenVisit learnt of an appointment: a SMART launch ("fhir"), the SIU feed ("hl7"),
#: an Epic link ("epic-link"); "adhoc" is kept for an appointment made on the spot (nothing
#: writes it yet: an ad-hoc visit today has no appointment at all).
AppointmentSource = Literal["fhir", "hl7", "epic-link", "adhoc"]
#: What a change of an appointment means for the patient: handed by the scheduling feed to
#: notifications (one meaning per SIU event, HL7 v2.5.1 §10.3).
Change = Literal[
    "booked", "rescheduled", "modified", "cancelled", "discontinued", "deleted", "noshow"
]
#: Appointment statuses after which the appointment is over: nothing but a cancellation
#: notice is sent, contacts are kept only for the grace period.
ENDED_STATUSES: frozenset[AppointmentStatus] = frozenset(
    {"cancelled", "noshow", "entered-in-error", "fulfilled"})
#: Ended statuses of an appointment that did not take place (called off, missed, or never
#: real): all of :data:`ENDED_STATUSES` but "fulfilled". Where the question is "is there a
#: visit to go to today?" a fulfilled appointment still counts: it did take place, and a
#: patient who launches again after the EHR marked it fulfilled (a dropped call, check-out
#: done early) lands in that visit, whose page says whether it has ended.
NOT_HELD_STATUSES: frozenset[AppointmentStatus] = ENDED_STATUSES - {"fulfilled"}
#: Changes that end the appointment (S15, S16, S17, S26).
ENDING_CHANGES: frozenset[Change] = frozenset({"cancelled", "discontinued", "deleted", "noshow"})

# --------------------------------------------------------------------- jobs, messages

JobState = Literal["pending", "running", "done", "dead", "cancelled"]
MessageChannel = Literal["sms", "email", "none"]
#: SMS providers by name (``openvisit.notify.providers.SMS_PROVIDERS``,
#: ``OPENVISIT_SMS_PROVIDER``); a sending number names the one it was bought through.
SmsProvider = Literal["outbox", "twilio", "smpp", "azure"]
#: E-mail providers by name (``notify.providers.EMAIL_PROVIDERS``, ``OPENVISIT_EMAIL_PROVIDER``).
EmailProvider = Literal["outbox", "smtp"]
#: Whom a message went through: an SMS or e-mail provider, or "none" for a message
#: suppressed before a channel was chosen.
MessageProvider = Literal[SmsProvider, EmailProvider, "none"]
#: Why a message is sent (``Notification.purpose``): "other" for a send job that has no
#: notification row of its own.
NotificationPurpose = Literal["confirmation", "cancellation", "reminder", "invite", "other"]
#: The messages (templates) a patient or invitee can get (``openvisit.notify.render``).
NotificationMessage = Literal[
    "booked", "rescheduled", "modified", "cancelled", "reminder", "invite"]
#: A message log's progress (it only moves forward, ``notify.repository.STATUS_RANK``).
MessageStatus = Literal[
    "queued", "sending", "sent", "delivered", "undelivered", "failed", "suppressed"
]

# --------------------------------------------------------------------------- write-back

#: pending → sent; retrying (a passing fault, tried again); failed (the EHR refused for
#: good: a person must act, then re-run); blocked (waits behind a failed earlier write of the
#: same visit, so order holds); skipped (switched off, or nothing to write).
WritebackState = Literal["pending", "retrying", "sent", "failed", "blocked", "skipped"]
#: The vendor profile of an endpoint's write-back (``openvisit.writeback.adapters``).
WritebackProfile = Literal["generic", "epic", "oracle"]
#: What a write-back row writes (``Writeback.what``; the constants of
#: ``openvisit.writeback.adapter``, whose payloads ``writeback.service`` builds).
WritebackWhat = Literal[
    "audit", "encounter", "appointment_status", "devicetest", "message", "arrived",
    "connection_status", "video_link", "arrived_webhook",
]

VENDORS: tuple[Vendor, ...] = get_args(Vendor)
ENVIRONMENTS: tuple[Environment, ...] = get_args(Environment)
MEDIA_PATHS: tuple[MediaPath, ...] = get_args(MediaPath)
AUTH_METHODS: tuple[AuthMethod, ...] = get_args(AuthMethod)
ENDPOINT_STATES: tuple[EndpointState, ...] = get_args(EndpointState)
NUMBER_STATES: tuple[NumberState, ...] = get_args(NumberState)
PROVIDER_LABEL_MODES: tuple[ProviderLabelMode, ...] = get_args(ProviderLabelMode)
STAFF_ROLES: tuple[StaffRole, ...] = get_args(StaffRole)
SIGNIN_METHODS: tuple[SigninMethod, ...] = get_args(SigninMethod)
VISIT_STATUSES: tuple[VisitStatus, ...] = get_args(VisitStatus)
VISIT_KINDS: tuple[VisitKind, ...] = get_args(VisitKind)
PARTICIPANT_ROLES: tuple[ParticipantRole, ...] = get_args(ParticipantRole)
LOBBY_STATES: tuple[LobbyState, ...] = get_args(LobbyState)
CONTACT_KINDS: tuple[ContactKind, ...] = get_args(ContactKind)
INVITED_BY: tuple[InvitedBy, ...] = get_args(InvitedBy)
MEDIA_BACKENDS: tuple[MediaBackend, ...] = get_args(MediaBackend)
APPOINTMENT_SOURCES: tuple[AppointmentSource, ...] = get_args(AppointmentSource)
APPOINTMENT_STATUSES: tuple[AppointmentStatus, ...] = get_args(AppointmentStatus)
CHANGES: tuple[Change, ...] = get_args(Change)
JOB_STATES: tuple[JobState, ...] = get_args(JobState)
MESSAGE_CHANNELS: tuple[MessageChannel, ...] = get_args(MessageChannel)
MESSAGE_STATUSES: tuple[MessageStatus, ...] = get_args(MessageStatus)
SMS_PROVIDERS: tuple[SmsProvider, ...] = get_args(SmsProvider)
EMAIL_PROVIDERS: tuple[EmailProvider, ...] = get_args(EmailProvider)
MESSAGE_PROVIDERS: tuple[MessageProvider, ...] = get_args(MessageProvider)
NOTIFICATION_PURPOSES: tuple[NotificationPurpose, ...] = get_args(NotificationPurpose)
NOTIFICATION_MESSAGES: tuple[NotificationMessage, ...] = get_args(NotificationMessage)
WRITEBACK_STATES: tuple[WritebackState, ...] = get_args(WritebackState)
WRITEBACK_PROFILES: tuple[WritebackProfile, ...] = get_args(WritebackProfile)
WRITEBACK_WHATS: tuple[WritebackWhat, ...] = get_args(WritebackWhat)


Value = TypeVar("Value", bound=str)


def is_one_of(value: str, allowed: tuple[Value, ...]) -> TypeGuard[Value]:
    """Whether ``value`` is in the vocabulary ``allowed`` (narrows its type for mypy)."""
    return value in allowed


def choice(values: tuple[str, ...], *, name: str, length: int) -> Enum:
    """A ``VARCHAR(length)`` column type whose CHECK constraint allows only ``values``.

    ``name`` names the constraint (``ck_<table>_<name>`` through the naming convention);
    ``length`` keeps the column as wide as before, so values can be added later without
    widening it.
    """
    return Enum(*values, name=name, native_enum=False, create_constraint=True, length=length)
