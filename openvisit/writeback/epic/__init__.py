"""Epic's write-back profile: SetExternalConnectionStatus plus FHIR (EHR-SPEC §2)."""
