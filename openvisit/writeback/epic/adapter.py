"""Epic's profile: the connection-status call, plus the generic FHIR writes the endpoint
allows (EHR-SPEC §2).

``GET {interconnect}/api/epic/2018/Telehealth/ContextLinking/SetExternalConnectionStatus``
with ``ConferenceID``, ``ExternalID``, ``ExternalIDType``, ``VendorName`` and
``ConnectionStatus``, and an ``Epic-Client-ID`` header (required on third-party calls since
2019). Epic does not publish the status codes, so they are configuration:
``endpoint.options["epic"]["connection_status_codes"]`` maps a visit event kind
(``connected``, ``disconnected``, ``admitted``, ``returned_to_lobby``, ``removed``,
``ended``…) to Epic's code; an event with no code in the table sends no call. Setting a
status twice leaves the same status, so a retried call is harmless.

Other options under ``options["epic"]``: ``interconnect_url`` (required for the call),
``vendor_name`` (default ``OpenVisit``), ``external_id_type`` (default ``OpenVisit``),
``epic_client_id`` (default the endpoint's client id), ``fhir_writes`` (default true: also
write the generic FHIR resources).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from openvisit.models.choices import WritebackWhat
from openvisit.smart._http import describe_url
from openvisit.writeback import adapter as a
from openvisit.writeback.fhir import FhirWriteError, classify, retry_after_seconds
from openvisit.writeback.generic.adapter import GenericAdapter
from openvisit.writeback.settings import WritebackSettings

PATH = "/api/epic/2018/Telehealth/ContextLinking/SetExternalConnectionStatus"


def epic_options(options: Mapping[str, Any]) -> Mapping[str, Any]:
    found = options.get("epic")
    return found if isinstance(found, Mapping) else {}


def status_codes(options: Mapping[str, Any]) -> dict[str, str]:
    table = epic_options(options).get("connection_status_codes")
    if not isinstance(table, Mapping):
        return {}
    return {str(k): str(v) for k, v in table.items() if str(v)}


def connection_status_request(*, interconnect_url: str, conference_id: str, external_id: str,
                              external_id_type: str, vendor_name: str, status_code: str,
                              epic_client_id: str, access_token: str | None
                              ) -> tuple[str, dict[str, str], dict[str, str]]:
    """``(url, params, headers)`` of one SetExternalConnectionStatus call (pure)."""
    params = {"ConferenceID": conference_id, "ExternalID": external_id,
              "ExternalIDType": external_id_type, "VendorName": vendor_name,
              "ConnectionStatus": status_code}
    headers = {"Epic-Client-ID": epic_client_id, "Accept": "application/json"}
    if access_token:
        headers["Authorization"] = f"Bearer {access_token}"
    return interconnect_url.rstrip("/") + PATH, params, headers


class EpicAdapter(GenericAdapter):
    """Connection status for the events in the code table; FHIR for the rest."""

    name = "epic"

    def plan(self, event_kind: str, *, role: str | None, has_encounter: bool,
             settings: WritebackSettings, options: Mapping[str, Any]) -> list[WritebackWhat]:
        whats: list[WritebackWhat] = []
        if event_kind in status_codes(options):
            whats.append(a.CONNECTION_STATUS)
        if epic_options(options).get("fhir_writes", True):
            whats += super().plan(event_kind, role=role, has_encounter=has_encounter,
                                  settings=settings, options=options)
        return whats

    async def write(self, write: a.Write, target: a.WriteTarget) -> str | None:
        if write.what != a.CONNECTION_STATUS:
            return await super().write(write, target)
        opts = epic_options(target.options)
        code = status_codes(target.options).get(write.event_kind)
        interconnect = opts.get("interconnect_url")
        if not code:
            return None  # the table changed since the event: nothing to say to Epic
        if not isinstance(interconnect, str) or not interconnect:
            raise FhirWriteError(
                "Epic connection status needs the Interconnect URL of this environment "
                "(endpoint option epic.interconnect_url).", outcome="permanent",
                http_status=None)
        p = write.payload
        url, params, headers = connection_status_request(
            interconnect_url=interconnect, conference_id=str(p.get("conference_id") or ""),
            external_id=str(p.get("external_id") or ""),
            external_id_type=str(opts.get("external_id_type") or "OpenVisit"),
            vendor_name=str(opts.get("vendor_name") or "OpenVisit"), status_code=code,
            epic_client_id=str(opts.get("epic_client_id") or target.client_id),
            access_token=target.access_token)
        try:
            response = await target.http.get(url, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise FhirWriteError(
                f"OpenVisit could not reach Epic at {describe_url(url)} "
                f"({type(exc).__name__}); it will try again.", outcome="retry",
                http_status=None) from None
        outcome = classify(response.status_code)
        if outcome == "ok":
            return None
        raise FhirWriteError(
            f"Epic answered SetExternalConnectionStatus with HTTP {response.status_code}"
            + ("; OpenVisit will try again." if outcome != "permanent" else
               ". Check the Epic-Client-ID, the Interconnect URL and the status code table "
               "for this environment."),
            outcome="retry" if outcome == "conflict" else outcome,
            http_status=response.status_code,
            retry_after=retry_after_seconds(response.headers.get("retry-after")))
