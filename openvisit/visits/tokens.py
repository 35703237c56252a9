"""Join-link tokens: stateless, unguessable, bound to one seat, one visit and one role.

``token = b64url(participant id, 16 bytes) "." b64url(HMAC-SHA256(k, msg)[:24])`` where
``k = derive_key(secret_key, purpose="join link")`` (HKDF, RFC 5869) and
``msg = "<participant id>|<visit id>|<role>|<token_version>"``.

Nothing is stored: the same seat always yields the same link (an SMS reminder re-sends the
link the confirmation carried), and bumping ``Participant.token_version`` revokes every link
issued for that seat. 192 bits of MAC make guessing pointless; the participant id only says
which row to check the MAC against.

Decoding is canonical: a token has exactly one accepted spelling, the one :meth:`make`
writes (unpadded base64url, RFC 4648 §5, with the unused bits of the last character zero).
Padding, the ``+/`` alphabet, changed case, another last character that decodes to the
same bytes, whitespace or anything appended are all refused, so a token cannot be varied to
slip past a cache, a log filter or a deny list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid

from openvisit.crypto import derive_key

MAC_BYTES = 24
HEAD_CHARS = 22  # 16 bytes in unpadded base64url
MAC_CHARS = 32  # 24 bytes
PURPOSE = "join link"


class JoinLinks:
    """Makes and checks join tokens with a key derived from the deployment secret."""

    def __init__(self, secret_key: str) -> None:
        self._key = derive_key(secret_key, purpose=PURPOSE)

    def _mac(self, participant_id: uuid.UUID, visit_id: uuid.UUID, role: str,
             token_version: int) -> bytes:
        msg = f"{participant_id}|{visit_id}|{role}|{token_version}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).digest()[:MAC_BYTES]

    def make(self, *, participant_id: uuid.UUID, visit_id: uuid.UUID, role: str,
             token_version: int) -> str:
        """The token of one seat at one token version (deterministic)."""
        head = _b64(participant_id.bytes)
        mac = _b64(self._mac(participant_id, visit_id, role, token_version))
        return f"{head}.{mac}"

    def verify(self, token: str, *, participant_id: uuid.UUID, visit_id: uuid.UUID, role: str,
               token_version: int) -> bool:
        """True if ``token`` is, character for character, this seat's current token.

        Compared as whole strings in constant time: any other spelling is refused.
        """
        expected = self.make(participant_id=participant_id, visit_id=visit_id, role=role,
                             token_version=token_version)
        return hmac.compare_digest(token.encode("utf-8", "surrogatepass"), expected.encode())


def participant_id_of(token: str) -> uuid.UUID | None:
    """The participant id a token names, or ``None`` if it is malformed (not yet verified)."""
    head, dot, mac = token.partition(".")
    if not dot or len(head) != HEAD_CHARS or len(mac) != MAC_CHARS:
        return None
    try:
        raw = _unb64(head)
    except ValueError:
        return None
    if len(raw) != 16 or _b64(raw) != head:  # the one canonical spelling of these bytes
        return None
    return uuid.UUID(bytes=raw)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or any(c not in _ALPHABET for c in text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
