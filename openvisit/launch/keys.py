"""OpenVisit's own SMART client signing keys (``private_key_jwt``), stored encrypted.

One key set per deployment, published at ``/.well-known/jwks.json``. Rotation adds a new
current key and keeps the old ones published for an overlap period, because EHRs cache our
JWKS: an assertion signed with the new key must not fail while an EHR still holds the old set.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.context import AppContext
from openvisit.models import KeyMaterial
from openvisit.smart.keys import KeySet

KEY_NAME = "smart_client_keys"
#: How long replaced keys stay published after a rotation.
DEFAULT_OVERLAP_DAYS = 7


async def load_keyset(session: AsyncSession, *, app: AppContext) -> KeySet:
    """The deployment's key set, generated (RS384, 2048 bits) on first use.

    The first key is created and committed in a transaction of its own, before it signs
    anything: the EHR fetches our JWKS during the token request, so the public key must be
    visible to every replica before the assertion that needs it is sent.
    """
    row = await session.get(KeyMaterial, KEY_NAME)
    if row is None:
        await _create_first(app)
        row = await session.get(KeyMaterial, KEY_NAME)
        assert row is not None
    return _parse(app, row.value_enc)


async def stored_keyset(session: AsyncSession, *, app: AppContext) -> KeySet | None:
    """The deployment's key set as stored, read in the caller's session; ``None`` before
    the first key exists (then :func:`signing_keyset` creates it, outside that session)."""
    row = await session.get(KeyMaterial, KEY_NAME)
    return _parse(app, row.value_enc) if row is not None else None


async def signing_keyset(app: AppContext) -> KeySet:
    """The deployment's key set, read in a read-only session of its own (created on first use).

    For requests that must hold no transaction while they call the EHR: the assertion is
    signed, and the token request sent, after this session is closed.
    """
    blob = await _read_blob(app)
    if blob is None:
        await _create_first(app)
        blob = await _read_blob(app)
    assert blob is not None
    return _parse(app, blob)


def _parse(app: AppContext, blob: str) -> KeySet:
    """Decrypt and load the key set, once per stored version (loading RSA keys is slow)."""
    cached = app.services.launch_keyset
    if cached is not None and cached[0] == blob:
        return cached[1]
    keys = KeySet.from_dict(json.loads(app.cipher.decrypt(blob)))
    app.services.launch_keyset = (blob, keys)
    return keys


async def _create_first(app: AppContext) -> None:
    try:
        async with app.transaction() as session:
            if await session.get(KeyMaterial, KEY_NAME) is not None:
                return
            keys = KeySet.generate(alg="RS384")
            await _store(session, app=app, keys=keys, row=None)
            await record(
                session,
                actor="system",
                action="signing_key.create",
                object_type="key_material",
                object_id=keys.current.kid,
            )
    except IntegrityError:
        return  # another replica created it first; theirs is the one


async def _store(
    session: AsyncSession, *, app: AppContext, keys: KeySet, row: KeyMaterial | None
) -> None:
    blob = app.cipher.encrypt(json.dumps(keys.to_dict()))
    if row is None:
        session.add(KeyMaterial(name=KEY_NAME, value_enc=blob))
    else:
        row.value_enc = blob
    await session.flush()


async def rotate(
    session: AsyncSession,
    *,
    app: AppContext,
    overlap_days: float = DEFAULT_OVERLAP_DAYS,
    actor: str = "cli",
) -> KeySet:
    """Make a fresh key current; drop replaced keys older than the overlap period."""
    row = await session.get(KeyMaterial, KEY_NAME)
    keys = await load_keyset(session, app=app)
    row = row or await session.get(KeyMaterial, KEY_NAME)
    rotated = keys.with_new_key().without_keys_older_than(cutoff=time.time() - overlap_days * 86400)
    await _store(session, app=app, keys=rotated, row=row)
    await record(
        session,
        actor=actor,
        action="signing_key.rotate",
        object_type="key_material",
        object_id=rotated.current.kid,
        before={"kids": keys.kids},
        after={"kids": rotated.kids},
    )
    return rotated


async def ensure_keys(app: AppContext) -> None:
    """Start-up hook: make sure the key set exists before the first launch needs it."""
    if await _read_blob(app) is None:
        await _create_first(app)


async def public_jwks(app: AppContext) -> dict[str, Any]:
    """The published JWKS, read without taking the write lock (the EHR fetches it while a
    launch's transaction is open)."""
    jwks: dict[str, Any] = (await signing_keyset(app)).public_jwks()
    return jwks


async def _read_blob(app: AppContext) -> str | None:
    async with app.db.read() as session:
        row = await session.get(KeyMaterial, KEY_NAME)
        return row.value_enc if row is not None else None
