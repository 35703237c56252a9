"""Tests of the HL7 v2 protocol core (openvisit.hl7v2)."""
