"""The audit log: every change, who made it, before and after."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.models import AuditLog

#: Columns never copied into the audit log (secrets, encrypted blobs).
_HIDDEN = {
    "password_hash",
    "client_secret_enc",
    "patient_ref_hash",
    "patient_ref_enc",
    "value_enc",
    "der",
    "join_token_hash",
    "token_hash",
}


def _without_secrets(value: Any) -> Any:
    """JSON columns (endpoint options) keep their shape; encrypted members are left out."""
    if isinstance(value, dict):
        return {
            k: "[hidden]" if k.endswith(("_enc", "_hash")) else _without_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value


def snapshot(obj: Any) -> dict[str, Any]:
    """The model's columns as JSON-able values, secrets left out."""
    table = getattr(obj, "__table__", None)
    if table is None:
        return {}
    out: dict[str, Any] = {}
    for column in table.columns:
        if column.key in _HIDDEN:
            continue
        value = getattr(obj, column.key, None)
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, bytes):
            continue
        out[column.key] = _without_secrets(value)
    return out


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    obj: Any = None,
    object_type: str | None = None,
    object_id: str | None = None,
    organisation_id: uuid.UUID | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditLog:
    """Append an audit entry in the caller's transaction."""
    if obj is not None:
        object_type = object_type or obj.__tablename__
        object_id = object_id or str(getattr(obj, "id", "")) or None
        if after is None:
            after = snapshot(obj)
    entry = AuditLog(
        organisation_id=organisation_id,
        actor=actor,
        action=action,
        object_type=object_type or "unknown",
        object_id=object_id,
        before=before,
        after=after,
    )
    session.add(entry)
    await session.flush()
    return entry
