"""SMART on FHIR client protocol core: discovery, PKCE, authorize, tokens, id_token, context.

Pure protocol code (no web framework, no database), each module named after and citing its
spec: SMART App Launch IG STU 2.2, RFC 6749, RFC 7636, RFC 7521/7523, OpenID Connect Core 1.0,
plus Epic's legacy encrypted context link (EHR-SPEC §2). Network I/O goes through an
``httpx.AsyncClient`` the caller owns; every failure is an :mod:`openvisit.errors` subclass
(see :mod:`openvisit.smart.errors`).
"""
