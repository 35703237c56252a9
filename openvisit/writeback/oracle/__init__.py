"""Oracle Health's write-back profile: Appointment PATCH and meeting rooms (EHR-SPEC §3)."""
