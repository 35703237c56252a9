"""OpenVisit's built-in sandbox EHR: a SMART App Launch 2.2 authorisation server, a small FHIR
R4 store with synthetic patients and today's appointments, and EHR-like schedule and portal
pages that launch a SMART app (``openvisit sandbox``)."""

from openvisit.sandbox.app import create_sandbox_app, run
from openvisit.sandbox.clients import SandboxClient, load_clients_file

__all__ = ["SandboxClient", "create_sandbox_app", "load_clients_file", "run"]
