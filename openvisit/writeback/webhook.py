"""The patient-arrived webhook: a signed POST so staff systems learn the patient is waiting.

Body (JSON, no personal data): ``{"event": "patient.arrived", "id": <write key>,
"visit_id", "appointment": <EHR appointment id>, "at"}``. Headers: ``X-OpenVisit-Timestamp``
(unix seconds), ``X-OpenVisit-Signature: sha256=<hex HMAC-SHA256(secret, "<ts>.<body>")>``
(the timestamp is signed so a receiver can refuse replays older than a few minutes), and
``Idempotency-Key`` (the same on every retry, so the receiver can drop repeats). Retried like
every write: 5xx/429/timeouts later, other 4xx given up and shown.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from openvisit.smart._http import describe_url
from openvisit.writeback import adapter as a
from openvisit.writeback.fhir import FhirWriteError, classify, retry_after_seconds


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` over ``"<timestamp>.<body>"``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


async def post(write: a.Write, target: a.WriteTarget, *, now: float | None = None) -> None:
    url = target.settings.webhook_url
    if not url or not target.webhook_secret:
        raise FhirWriteError("The patient-arrived webhook needs its URL and secret.",
                             outcome="permanent", http_status=None)
    p = write.payload
    body = json.dumps({"event": "patient.arrived", "id": write.key,
                       "visit_id": p.get("visit_id"),
                       "appointment": (p.get("appointment") or {}).get("id"),
                       "at": p.get("at")}, separators=(",", ":")).encode()
    stamp = str(int(time.time() if now is None else now))
    headers = {"Content-Type": "application/json", "X-OpenVisit-Timestamp": stamp,
               "X-OpenVisit-Signature": signature(target.webhook_secret, stamp, body),
               "Idempotency-Key": write.key}
    try:
        response = await target.http.post(url, content=body, headers=headers)
    except httpx.TransportError as exc:
        raise FhirWriteError(f"OpenVisit could not reach the webhook at {describe_url(url)} "
                             f"({type(exc).__name__}); it will try again.", outcome="retry",
                             http_status=None) from None
    outcome = classify(response.status_code)
    if outcome == "ok":
        return
    raise FhirWriteError(
        f"The webhook at {describe_url(url)} answered HTTP {response.status_code}.",
        outcome="retry" if outcome == "conflict" else outcome,
        http_status=response.status_code,
        retry_after=retry_after_seconds(response.headers.get("retry-after")))
