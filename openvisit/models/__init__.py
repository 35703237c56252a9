"""SQLAlchemy models: the only things OpenVisit stores (DESIGN §4)."""

from openvisit.models.base import Base, utcnow
from openvisit.models.endpoint import (
    Certificate,
    EhrEndpoint,
    PhoneNumber,
    PhoneNumberEndpoint,
    SmsSettings,
)
from openvisit.models.notify import (
    Notification,
    OutboxMessage,
    ProviderReceipt,
    SenderRate,
)
from openvisit.models.ops import (
    AuditLog,
    ContextToken,
    InboundMessage,
    Job,
    KeyMaterial,
    MessageLog,
    OptOut,
    QualitySample,
    SeenNonce,
    SigninFailure,
)
from openvisit.models.organisation import (
    DepartmentName,
    Organisation,
    ProviderLink,
    StaffAccount,
)
from openvisit.models.visit import (
    Appointment,
    ChatMessage,
    Contact,
    Participant,
    Visit,
    VisitEvent,
)
from openvisit.models.writeback import Writeback

__all__ = [
    "Appointment",
    "AuditLog",
    "Base",
    "Certificate",
    "ChatMessage",
    "Contact",
    "ContextToken",
    "DepartmentName",
    "EhrEndpoint",
    "InboundMessage",
    "Job",
    "KeyMaterial",
    "MessageLog",
    "Notification",
    "OptOut",
    "Organisation",
    "OutboxMessage",
    "Participant",
    "PhoneNumber",
    "PhoneNumberEndpoint",
    "ProviderLink",
    "ProviderReceipt",
    "QualitySample",
    "SeenNonce",
    "SenderRate",
    "SigninFailure",
    "SmsSettings",
    "StaffAccount",
    "Visit",
    "VisitEvent",
    "Writeback",
    "utcnow",
]
