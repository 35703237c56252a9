"""Portal family of an endpoint's EHR write-back (views, api, service)."""
