"""Discovery documents: SMART configuration, OpenID Provider metadata, CapabilityStatement.

- ``{fhir}/.well-known/smart-configuration``: SMART App Launch 2.2 §"Conformance" (metadata
  fields and capability strings).
- ``{fhir}/.well-known/openid-configuration``: OpenID Connect Discovery 1.0 §3-§4 (the issuer
  is the FHIR base, so the document lives below it); also served at the site root.
- ``{fhir}/metadata``: a FHIR R4 CapabilityStatement with the SMART ``oauth-uris`` security
  extension that older clients (fhirclient among them) read to find the endpoints.

All three are public: clients read them before they have a token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from openvisit.sandbox.fhir_params import SEARCH_PARAMS
from openvisit.sandbox.fhir_store import RESOURCE_TYPES
from openvisit.sandbox.keys import ID_TOKEN_ALG
from openvisit.sandbox.runtime import SandboxUrls

CAPABILITIES = (
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-banner",
    "context-style",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "sso-openid-connect",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
)
AUTH_METHODS = ("private_key_jwt", "client_secret_basic", "client_secret_post")
ASSERTION_SIGNING_ALGS = ("RS384", "ES384")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
SCOPES_SUPPORTED = (
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "online_access",
    "offline_access",
    "patient/*.cruds",
    "user/*.cruds",
    "system/*.cruds",
    "patient/*.read",
    "user/*.read",
    "system/*.read",
    "patient/*.write",
    "user/*.write",
    "system/*.write",
)


def smart_configuration(urls: SandboxUrls) -> dict[str, Any]:
    """The SMART configuration document."""
    return {
        "issuer": urls.issuer,
        "jwks_uri": urls.jwks_uri,
        "authorization_endpoint": urls.authorize_url,
        "token_endpoint": urls.token_url,
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_SIGNING_ALGS),
        "scopes_supported": list(SCOPES_SUPPORTED),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": list(CAPABILITIES),
    }


def openid_configuration(urls: SandboxUrls) -> dict[str, Any]:
    """OpenID Provider metadata (OIDC Discovery §3)."""
    return {
        "issuer": urls.issuer,
        "authorization_endpoint": urls.authorize_url,
        "token_endpoint": urls.token_url,
        "jwks_uri": urls.jwks_uri,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ID_TOKEN_ALG],
        "scopes_supported": list(SCOPES_SUPPORTED),
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser"],
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_SIGNING_ALGS),
        "code_challenge_methods_supported": ["S256"],
        "request_parameter_supported": False,
        "claims_parameter_supported": False,
    }


def capability_statement(urls: SandboxUrls, *, now: datetime) -> dict[str, Any]:
    """The server's R4 CapabilityStatement (FHIR R4 capabilitystatement.html)."""
    interactions = ["read", "search-type", "create", "update", "patch", "delete"]
    resources = []
    for rtype in RESOURCE_TYPES:
        params = [{"name": "_id", "type": "token"}, {"name": "_tag", "type": "token"}] + [
            {"name": name, "type": spec.kind} for name, spec in SEARCH_PARAMS.get(rtype, {}).items()
        ]
        resources.append(
            {
                "type": rtype,
                "interaction": [{"code": code} for code in interactions],
                "versioning": "versioned-update",
                "readHistory": False,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalUpdate": False,
                "conditionalDelete": "not-supported",
                "searchParam": params,
            }
        )
    return {
        "resourceType": "CapabilityStatement",
        "id": "openvisit-sandbox",
        "status": "active",
        "date": now.date().isoformat(),
        "publisher": "OpenVisit sandbox EHR (synthetic data)",
        "kind": "instance",
        "software": {"name": "OpenVisit sandbox EHR"},
        "implementation": {"description": "OpenVisit sandbox EHR", "url": urls.fhir_base},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": True,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "extension": [
                        {
                            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                            "extension": [
                                {"url": "authorize", "valueUri": urls.authorize_url},
                                {"url": "token", "valueUri": urls.token_url},
                            ],
                        }
                    ],
                },
                "resource": resources,
            }
        ],
    }
