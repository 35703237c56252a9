"""The sandbox's FHIR resource store: an in-memory dict, versioned, optionally persisted.

Each write bumps ``meta.versionId`` and sets ``meta.lastUpdated`` (FHIR R4 resource.html
§"Metadata"); ``If-Match`` preconditions follow FHIR R4 http.html §"Managing Resource
Contention" (412 on a stale version). One lock guards reads and writes; persistence is a JSON
file rewritten atomically after each change (good for a sandbox, not for production).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openvisit.sandbox.errors import FhirError

log = logging.getLogger(__name__)

Resource = dict[str, Any]

RESOURCE_TYPES: tuple[str, ...] = (
    "Patient",
    "Practitioner",
    "Organization",
    "Location",
    "Appointment",
    "Encounter",
    "AuditEvent",
    "Communication",
    "Observation",
    "HealthcareService",
)
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ETAG = re.compile(r'^(?:W/)?"?([^"]+)"?$')


def instant(moment: datetime) -> str:
    """A FHIR ``instant`` in UTC with milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def version_of(resource: Resource) -> str:
    return str(resource.get("meta", {}).get("versionId", "1"))


def etag(resource: Resource) -> str:
    """The weak ETag FHIR uses for a version: ``W/"<versionId>"``."""
    return f'W/"{version_of(resource)}"'


def parse_if_match(value: str) -> str:
    """The version id inside an ``If-Match`` header; raises 400 when malformed."""
    match = _ETAG.fullmatch(value.strip())
    if match is None:
        raise FhirError(
            'If-Match must look like W/"<version>"', status_code=400, issue_code="invalid"
        )
    return match.group(1)


def is_valid_id(resource_id: str) -> bool:
    """FHIR R4 ``id`` datatype: 1-64 of ``[A-Za-z0-9\\-.]``."""
    return bool(_ID.fullmatch(resource_id))


class ResourceStore:
    """Versioned resources keyed by type and id. Every method returns deep copies.

    ``path`` (optional) is the JSON file to persist to; ``now`` gives ``lastUpdated``.
    """

    def __init__(self, *, path: Path | None, now: Callable[[], datetime]) -> None:
        self._lock = threading.RLock()
        self._path = path
        self._now = now
        self._data: dict[str, dict[str, Resource]] = {t: {} for t in RESOURCE_TYPES}
        self.seeded_day: str | None = None
        if path is not None and path.exists():
            saved = json.loads(path.read_text(encoding="utf-8"))
            for rtype, resources in saved.get("resources", {}).items():
                if rtype in self._data:
                    self._data[rtype].update(resources)
            self.seeded_day = saved.get("seeded_day")

    # -- reads ------------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> Resource | None:
        """The current version, or None."""
        with self._lock:
            found = self._data[resource_type].get(resource_id)
            return copy.deepcopy(found) if found is not None else None

    def all(self, resource_type: str) -> list[Resource]:
        """Every resource of a type, in insertion order."""
        with self._lock:
            return copy.deepcopy(list(self._data[resource_type].values()))

    # -- writes -----------------------------------------------------------------------------

    def create(self, resource: Resource) -> Resource:
        """Store a new resource under a server-assigned id (FHIR http.html §"create")."""
        resource = copy.deepcopy(resource)
        resource["id"] = str(uuid.uuid4())
        with self._lock:
            self._stamp(resource, version=1)
            self._data[resource["resourceType"]][resource["id"]] = resource
            self._save()
        log.info("sandbox.fhir_created type=%s id=%s", resource["resourceType"], resource["id"])
        return copy.deepcopy(resource)

    def create_unless_found(
        self, resource: Resource, *, find: Callable[[list[Resource]], list[Resource]]
    ) -> tuple[Resource, bool]:
        """Conditional create (FHIR R4 http.html §3.1.0.8.1 "Conditional create"), atomically.

        ``find`` gets every stored resource of the type and returns those the
        ``If-None-Exist`` search matches. Returns ``(the new resource, True)`` when it matched
        none, ``(the one it matched, False)`` when it matched one; raises 412 when it matched
        more than one (the client's criteria are not selective enough).
        """
        with self._lock:
            found = find(copy.deepcopy(list(self._data[resource["resourceType"]].values())))
            if len(found) > 1:
                raise FhirError(
                    "If-None-Exist matched more than one resource",
                    status_code=412,
                    issue_code="duplicate",
                )
            if found:
                log.info(
                    "sandbox.fhir_create_matched type=%s id=%s",
                    resource["resourceType"],
                    found[0]["id"],
                )
                return copy.deepcopy(found[0]), False
            return self.create(resource), True

    def update(
        self,
        resource_type: str,
        resource_id: str,
        change: Callable[[Resource | None], Resource],
        *,
        if_match: str | None,
        allow_create: bool,
    ) -> tuple[Resource, bool]:
        """Read-modify-write one resource atomically.

        ``change`` gets a copy of the current version (None if absent) and returns the new
        content. Returns ``(stored, created)``. Raises 404 when absent and ``allow_create`` is
        False, 412 when ``if_match`` names another version.
        """
        with self._lock:
            current = self._data[resource_type].get(resource_id)
            if if_match is not None:
                wanted = parse_if_match(if_match)
                if current is None or version_of(current) != wanted:
                    raise FhirError(
                        f"version conflict: If-Match {wanted!r} is not the current version",
                        status_code=412,
                        issue_code="conflict",
                    )
            if current is None and not allow_create:
                raise FhirError(
                    f"{resource_type}/{resource_id} not found",
                    status_code=404,
                    issue_code="not-found",
                )
            new = copy.deepcopy(change(copy.deepcopy(current)))
            new["resourceType"] = resource_type
            new["id"] = resource_id
            version = 1 if current is None else int(version_of(current)) + 1
            self._stamp(new, version=version)
            self._data[resource_type][resource_id] = new
            self._save()
        log.info(
            "sandbox.fhir_updated type=%s id=%s version=%s", resource_type, resource_id, version
        )
        return copy.deepcopy(new), current is None

    def delete(self, resource_type: str, resource_id: str) -> bool:
        """Remove a resource; False when it was not there."""
        with self._lock:
            removed = self._data[resource_type].pop(resource_id, None) is not None
            if removed:
                self._save()
        return removed

    def replace_seed(self, resources: list[Resource], *, day: str,
                     drop: tuple[str, ...] = ()) -> None:
        """Write the day's synthetic seed, bumping versions of ids that already exist;
        resources of the types in ``drop`` that the seed does not hold are removed first
        (a demo round replaces every appointment)."""
        with self._lock:
            keep = {(r["resourceType"], r["id"]) for r in resources}
            for rtype in drop:
                for rid in [i for i in self._data[rtype] if (rtype, i) not in keep]:
                    del self._data[rtype][rid]
            for resource in resources:
                current = self._data[resource["resourceType"]].get(resource["id"])
                version = 1 if current is None else int(version_of(current)) + 1
                stored = copy.deepcopy(resource)
                self._stamp(stored, version=version)
                self._data[resource["resourceType"]][resource["id"]] = stored
            self.seeded_day = day
            self._save()
        log.info("sandbox.seeded day=%s resources=%d", day, len(resources))

    def _stamp(self, resource: Resource, *, version: int) -> None:
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = instant(self._now())
        resource["meta"] = meta

    def _save(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(self._path.suffix + ".tmp")
        payload = {"seeded_day": self.seeded_day, "resources": self._data}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh)
        os.replace(tmp, self._path)
