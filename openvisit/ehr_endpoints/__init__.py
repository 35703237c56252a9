"""EHR endpoints: FHIR bases per environment, their client registration and approval."""
