"""The generic FHIR R4 write-back profile (EHR-SPEC §5)."""
