"""SMART on FHIR launches (EHR, standalone, Epic encrypted link) into a visit."""
