"""Patient references at rest: a keyed hash to match, a sealed copy to read back (issue 18).

A patient reference is an identifier that points at a person: the MRN of an HL7 feed
(PID-3, ``"<authority>|<id>"``), the FHIR ``Patient/<id>`` of a launch, an Epic external id.
None of them is stored in clear. Each row that holds one keeps two columns:

- ``patient_ref_hash``: ``"<key id>:<HMAC-SHA256 hex>"``, for equality only (which seat is
  this patient's, the one-seat-per-patient constraint, erasure by reference). The HMAC key
  is derived with HKDF from each field-encryption key, so the hash rotates with them: a
  lookup tries the hash under every configured key, and :meth:`PatientRefs.rekey` (run by
  ``openvisit privacy rekey``) rewrites stored hashes and copies under the newest key.
- ``patient_ref_enc``: the reference encrypted with the field cipher (Fernet), for the few
  places that need it back: write-back (the FHIR Patient reference the EHR files under) and
  the usage report's optional patient column.

Nothing here touches the database: callers set and read the two attributes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from openvisit.crypto import FieldCipher, derive_key

#: Longest reference accepted (the columns it once lived in held 255 characters).
MAX_REF = 255
_PURPOSE = "openvisit patient reference hash"
#: A sealed value inside a JSON payload (write-back rows) is a key ending in this suffix.
SEALED_SUFFIX = "_enc"


class HoldsPatientRef(Protocol):
    """A row with the two columns (appointment, participant)."""

    patient_ref_hash: str | None
    patient_ref_enc: str | None


@dataclass(frozen=True)
class SealedRef:
    """One reference as stored: its hash under the newest key, its sealed copy, and every
    hash a stored row of it may carry (one per configured key) for lookups."""

    hash: str
    enc: str
    matches: tuple[str, ...]

    @classmethod
    def of(cls, row: HoldsPatientRef) -> SealedRef | None:
        """The reference a row already holds, without opening it."""
        if not row.patient_ref_hash or not row.patient_ref_enc:
            return None
        return cls(hash=row.patient_ref_hash, enc=row.patient_ref_enc,
                   matches=(row.patient_ref_hash,))


class PatientRefs:
    """Seals, hashes and opens patient references with the deployment's field keys."""

    def __init__(self, cipher: FieldCipher) -> None:
        self._cipher = cipher
        self._keys: list[tuple[str, bytes]] = []
        for secret in cipher.keys:
            key = derive_key(secret, purpose=_PURPOSE)
            self._keys.append((hashlib.sha256(key).hexdigest()[:8], key))

    @staticmethod
    def normalise(ref: str) -> str:
        """The form that is hashed and sealed: surrounding white space removed."""
        return ref.strip()

    def _hash(self, kid: str, key: bytes, ref: str) -> str:
        digest = hmac.new(key, self.normalise(ref).encode(), hashlib.sha256).hexdigest()
        return f"{kid}:{digest}"

    def hash(self, ref: str) -> str:
        """The hash under the newest key (what a new row stores)."""
        kid, key = self._keys[0]
        return self._hash(kid, key, ref)

    def hashes(self, ref: str) -> tuple[str, ...]:
        """The hash under every configured key: what a stored row of ``ref`` may hold."""
        return tuple(self._hash(kid, key, ref) for kid, key in self._keys)

    def seal(self, ref: str) -> SealedRef:
        ref = self.normalise(ref)
        return SealedRef(hash=self.hash(ref), enc=self._cipher.encrypt(ref),
                         matches=self.hashes(ref))

    def columns(self, ref: str | None) -> dict[str, str | None]:
        """The two column values for ``ref`` (both None for no reference)."""
        if not ref or not self.normalise(ref):
            return {"patient_ref_hash": None, "patient_ref_enc": None}
        sealed = self.seal(ref)
        return {"patient_ref_hash": sealed.hash, "patient_ref_enc": sealed.enc}

    def assign(self, row: HoldsPatientRef, ref: str | None) -> None:
        """Store ``ref`` on ``row`` (None or blank leaves what is there); a row that already
        holds the same reference under the newest key is left alone (no new ciphertext)."""
        if not ref or not self.normalise(ref):
            return
        if row.patient_ref_hash == self.hash(ref) and row.patient_ref_enc:
            return
        sealed = self.seal(ref)
        row.patient_ref_hash, row.patient_ref_enc = sealed.hash, sealed.enc

    def place(self, row: HoldsPatientRef, sealed: SealedRef | None) -> None:
        """Copy an already sealed reference onto ``row`` (None leaves what is there)."""
        if sealed is not None:
            row.patient_ref_hash, row.patient_ref_enc = sealed.hash, sealed.enc

    def open(self, enc: str | None) -> str | None:
        return self._cipher.decrypt(enc) if enc else None

    def read(self, row: HoldsPatientRef) -> str | None:
        """The reference ``row`` holds, in clear (for write-back and the opt-in report)."""
        return self.open(row.patient_ref_enc)

    def is_current(self, row: HoldsPatientRef) -> bool:
        return not row.patient_ref_hash or row.patient_ref_hash.startswith(self._keys[0][0] + ":")

    def rekey(self, row: HoldsPatientRef) -> bool:
        """Rewrite ``row``'s hash and copy under the newest key; True if it changed."""
        if not row.patient_ref_enc:
            return False
        ref = self._cipher.decrypt(row.patient_ref_enc)
        new_hash = self.hash(ref)
        new_enc = self._cipher.rotate(row.patient_ref_enc)
        changed = (new_hash, new_enc) != (row.patient_ref_hash, row.patient_ref_enc)
        row.patient_ref_hash, row.patient_ref_enc = new_hash, new_enc
        return changed

    def open_payload(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON payload with every ``<name>_enc`` string opened into ``<name>`` (nested
        dictionaries too): write-back rows keep references sealed until the send."""
        out: dict[str, Any] = {}
        for name, value in payload.items():
            if isinstance(value, Mapping):
                out[name] = self.open_payload(value)
            elif name.endswith(SEALED_SUFFIX) and (isinstance(value, str) or value is None):
                out[name[: -len(SEALED_SUFFIX)]] = self.open(value)
            else:
                out[name] = value
        return out
