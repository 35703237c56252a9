"""EHR write-back: what happened in a visit goes back into the chart (issue 13).

Spec: ``../shared/EHR-SPEC.md`` §2 (Epic's SetExternalConnectionStatus), §3 (Oracle Health's
Appointment PATCH and virtual-meeting rooms), §5 (FHIR R4 AuditEvent, Encounter, Appointment,
Observation, Communication).

- :mod:`.fhir` the FHIR R4 client core (no web framework, no database);
- :mod:`.resources` pure builders of the resources written;
- :mod:`.settings` what an endpoint writes (``endpoint.options["writeback"]``);
- :mod:`.adapters` one interface, with ``generic/``, ``epic/`` and ``oracle/`` behind it;
- :mod:`.tokens` the backend-services token per endpoint, cached until it expires;
- :mod:`.service` the seam visit events call (rows and jobs in the caller's transaction), and
  the portal's functions (recent write-backs, re-run, test write, settings);
- :mod:`.tasks` the ``writeback.send`` job: in order per visit, never twice.
"""
