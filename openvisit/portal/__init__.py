"""Configuration portal: organisations, staff, EHR endpoints, SMS, certificates, records."""
