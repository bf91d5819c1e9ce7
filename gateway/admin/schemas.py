"""The JSON Schemas of the admin API's objects, for its OpenAPI document (`openapi.py`).

Response schemas are exact: they describe what `serialize.py` writes. Request schemas are exact
about structure (required keys, types, enums, no unknown keys) and conservative about string
formats (URLs, durations, CIDRs, domains): every body they admit passes the config file's
validator, which accepts a little more than they say.
"""

from __future__ import annotations

from typing import Any

from gateway.admin.serialize import MAX_DURATION
from gateway.authz.rules import RULE_TYPES, Field
from gateway.risk.behaviors import BEHAVIORS
from gateway.risk.changes import RISK_LEVELS
from gateway.state.audit_log import ACTIONS, OBJECT_TYPES

Schema = dict[str, Any]

# The validator reads every string as a possible "${ENV_VAR}" reference, and an API body may not
# read the environment: such a value is refused. (`\n?`: Python's `$` allows a final newline.)
_ENV_REF = r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}\n?$"
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST = rf"{_LABEL}(\.{_LABEL})*"
# A port is 0-65535, as the config's URL check (urlsplit) has it: "h:78602" is refused there.
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
_URL = rf"^https?://{_HOST}(:0*{_PORT})?(/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?$"
# What `url(..., secure=True)` takes (it also takes http to a loopback host, for tests).
_HTTPS_URL = _URL.replace("^https?://", "^https://", 1)
# An Okta org's base URL (the validator also takes http to a loopback host, for tests).
_TENANT_URL = rf"^https://{_HOST}(:0*{_PORT})?/?$"
_DOMAIN = rf"^(\*\.)?{_HOST}(/[a-z0-9._~-]+)*(/\*)?$"
_DURATION = r"^[1-9][0-9]{0,3}(h|m|s|ms)([0-9]{1,2}(m|s|ms))*$"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CIDR = rf"^{_OCTET}(\.{_OCTET}){{3}}(/([0-9]|[12][0-9]|3[0-2]))?$"


def ref(name: str) -> Schema:
    """A reference to one of `schemas()`."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    """An object with exactly these properties."""
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def _text(min_length: int = 0, **extra: Any) -> Schema:
    """A string the validator takes as it is (never an environment reference)."""
    schema: Schema = {"type": "string", "not": {"pattern": _ENV_REF}, **extra}
    if min_length:
        schema["minLength"] = min_length
    return schema


def _strings() -> Schema:
    return {"type": "array", "items": _text()}


_OUT_STRING: Schema = {"type": "string"}
RISK_LEVEL: Schema = {"enum": list(RISK_LEVELS)}
RISK_LEVELS_LIST: Schema = {
    "type": "array",
    "items": RISK_LEVEL,
    "minItems": 1,
    "uniqueItems": True,
}
_OUT_BOOL: Schema = {"type": "boolean"}
_URL_IN: Schema = _text(1, pattern=_URL)
# An identity provider's URLs: `url(..., secure=True)` (see _HTTPS_URL).
_HTTPS_URL_IN: Schema = _text(1, pattern=_HTTPS_URL)
_OPTIONAL_HTTPS_URL_IN: Schema = {"anyOf": [{"const": ""}, _HTTPS_URL_IN]}
_DURATION_IN: Schema = {
    "anyOf": [
        {"type": "string", "pattern": _DURATION},
        {"type": "number", "minimum": 1, "maximum": MAX_DURATION},
    ],
    "description": "A Go-style duration such as '24h' or '1h30m', or a number of seconds.",
}


def _rules(text: Schema, optional_text: Schema, cidr: Schema) -> Schema:
    """One policy rule: an object with exactly one rule name, for each rule type
    `gateway.authz.rules` declares, whose value has exactly that type's fields."""

    def field(f: Field) -> Schema:
        if f.format == "levels":
            return RISK_LEVELS_LIST
        return cidr if f.format == "cidr" else optional_text if f.optional else text

    return {
        "oneOf": [
            obj(
                {
                    kind: obj(
                        {f.key: field(f) for f in rule_type.fields},
                        tuple(f.key for f in rule_type.fields if not f.optional),
                    )
                },
                (kind,),
            )
            for kind, rule_type in RULE_TYPES.items()
        ]
    }


def _policy(rule: Schema, duration: Schema, *, response: bool) -> Schema:
    rules = {"type": "array", "items": rule}
    include = rules if response else {**rules, "minItems": 1}
    decision = {"enum": ["allow", "deny", "bypass", "non_identity"]}
    name = _OUT_STRING if response else _text(1)
    properties = {
        "name": name,
        "decision": decision,
        "include": include,
        "require": rules,
        "exclude": rules,
        "session_duration": duration,
    }
    required = ("name", "decision", "include", "require", "exclude") if response else ()
    return obj(properties, required or ("name", "decision", "include"))


_APP_FIELDS_IN: dict[str, Schema] = {
    "name": _text(),
    "domain": _text(1, pattern=_DOMAIN, description="host[/path], Cloudflare wildcard rules"),
    "upstream": _URL_IN,
    "session_duration": _DURATION_IN,
    "allowed_idps": _strings(),
    "auto_redirect_to_identity": {"type": "boolean"},
    "same_site_cookie_attribute": {"enum": ["none", "lax", "strict"]},
    "http_only_cookie_attribute": {"type": "boolean"},
    "custom_deny_message": _text(),
    "policies": {"type": "array", "items": ref("PolicyInput")},
}


def _app_out() -> Schema:
    properties: dict[str, Schema] = {
        "id": _OUT_STRING,
        "name": _OUT_STRING,
        "domain": _OUT_STRING,
        "upstream": _OUT_STRING,
        "aud": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "session_duration": _OUT_STRING,
        "allowed_idps": {"type": "array", "items": _OUT_STRING},
        "auto_redirect_to_identity": _OUT_BOOL,
        "same_site_cookie_attribute": {"enum": ["none", "lax", "strict"]},
        "http_only_cookie_attribute": _OUT_BOOL,
        "custom_deny_message": _OUT_STRING,
        "policies": {"type": "array", "items": ref("Policy")},
        "read_only": _OUT_BOOL,
    }
    return obj(properties, tuple(properties))


_IDP_CONFIG_IN: dict[str, Schema] = {
    "client_id": _text(1),
    "client_secret": _text(1, description="Write-only: never returned."),
    "okta_account": _HTTPS_URL_IN,
    "authorization_server_id": _text(),
    "api_token": _text(description="Write-only: never returned. Okta API token (Groups API)."),
    "claims": _strings(),
    "email_claim_name": _text(),
    "pkce_enabled": {"type": "boolean"},
    "backchannel_logout": {
        "type": "boolean",
        "description": "Accept OpenID Connect Back-Channel Logout from this IdP.",
    },
    "universal_logout": {
        "type": "boolean",
        "description": "Okta only: accept Okta Universal Logout (Global Token Revocation).",
    },
    "issuer": _OPTIONAL_HTTPS_URL_IN,
    "auth_url": _OPTIONAL_HTTPS_URL_IN,
    "token_url": _OPTIONAL_HTTPS_URL_IN,
    "certs_url": _OPTIONAL_HTTPS_URL_IN,
    "userinfo_url": _OPTIONAL_HTTPS_URL_IN,
    "scopes": _strings(),
}
_SCIM_CONFIG_IN: Schema = {
    **obj(
        {
            "enabled": {"type": "boolean"},
            "user_deprovision": {"type": "boolean"},
            "seat_deprovision": {"type": "boolean"},
            "identity_update_behavior": {"enum": ["automatic", "reauth", "no_action"]},
        }
    ),
    # seat_deprovision needs user_deprovision
    "anyOf": [
        {"properties": {"seat_deprovision": {"const": False}}},
        {"properties": {"user_deprovision": {"const": True}}, "required": ["user_deprovision"]},
    ],
}


_PEM_CERT = r"^\s*-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----\s*$"
_HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^`|~-]{1,64}$"


def _any_case(text: str) -> str:
    """A regex for `text` in any letter case (JSON Schema patterns have no flags)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in text)


# The names the config refuses for a header attribute: the gateway sets or strips these itself.
_RESERVED_HEADER = (
    "^("
    + "|".join(
        _any_case(p) for p in ("cf-access-", "x-forwarded-", "host", "cookie", "x-request-id")
    )
    + ")"
)
_SAML_CONFIG_IN: dict[str, Schema] = {
    "issuer_url": _text(1),
    "sso_target_url": _HTTPS_URL_IN,
    "idp_public_certs": {
        "type": "array",
        "minItems": 1,
        "items": _text(1, pattern=_PEM_CERT, description="An X.509 certificate, PEM."),
    },
    "metadata_url": _HTTPS_URL_IN,
    "email_attribute_name": _text(),
    "attributes": _strings(),
    "sign_request": {"type": "boolean"},
    "header_attributes": {
        "type": "array",
        "items": obj(
            {
                "attribute_name": _text(1),
                "header_name": {
                    "type": "string",
                    "pattern": _HEADER_NAME,
                    "not": {"pattern": _RESERVED_HEADER},
                    "description": "Not one the gateway sets (Cf-Access-*, X-Forwarded-*...).",
                },
            },
            ("attribute_name", "header_name"),
        ),
    },
}


def _saml_config_in() -> Schema:
    """The IdP by `issuer_url`, `sso_target_url` and `idp_public_certs`, or by `metadata_url`."""
    by_hand = ("issuer_url", "sso_target_url", "idp_public_certs")
    common = {k: v for k, v in _SAML_CONFIG_IN.items() if k not in (*by_hand, "metadata_url")}
    return {
        "oneOf": [
            obj({**common, **{k: _SAML_CONFIG_IN[k] for k in by_hand}}, by_hand),
            obj({**common, "metadata_url": _SAML_CONFIG_IN["metadata_url"]}, ("metadata_url",)),
        ]
    }


def _idp_in(*, put: bool) -> Schema:
    """Okta (the default type) needs `okta_account`; generic OIDC its four endpoints; SAML its
    issuer, SSO URL and certificates, or a metadata URL."""
    secrets = () if put else ("client_secret",)  # a PUT that leaves a secret out keeps it
    okta_config = obj(_IDP_CONFIG_IN, ("client_id", *secrets, "okta_account"))
    oidc_config = obj(
        {
            **_IDP_CONFIG_IN,
            "okta_account": _OPTIONAL_HTTPS_URL_IN,
            "issuer": _HTTPS_URL_IN,
            "universal_logout": {"const": False},  # only Okta sends it
        }
        | {k: _HTTPS_URL_IN for k in ("auth_url", "token_url", "certs_url")},
        ("client_id", *secrets, "issuer", "auth_url", "token_url", "certs_url"),
    )
    common = {"name": _text(1), "scim_config": _SCIM_CONFIG_IN}
    return {
        "oneOf": [
            obj({**common, "type": {"const": "okta"}, "config": okta_config}, ("name", "config")),
            obj(
                {**common, "type": {"const": "oidc"}, "config": oidc_config},
                ("name", "type", "config"),
            ),
            obj(
                {**common, "type": {"const": "saml"}, "config": _saml_config_in()},
                ("name", "type", "config"),
            ),
        ]
    }


_IDP_CONFIG_OUT: dict[str, Schema] = {
    **{k: _OUT_STRING for k in _IDP_CONFIG_IN if k not in ("client_secret", "api_token")},
    "claims": {"type": "array", "items": _OUT_STRING},
    "scopes": {"type": "array", "items": _OUT_STRING},
    "pkce_enabled": _OUT_BOOL,
    "backchannel_logout": _OUT_BOOL,
    "universal_logout": _OUT_BOOL,
    "redirect_url": {
        "type": "string",
        "description": "The sign-in redirect URI to register in Okta.",
    },
}


_SAML_CONFIG_OUT: dict[str, Schema] = {
    "issuer_url": _OUT_STRING,
    "sso_target_url": _OUT_STRING,
    "idp_public_certs": {"type": "array", "items": _OUT_STRING},
    "metadata_url": _OUT_STRING,
    "email_attribute_name": _OUT_STRING,
    "attributes": {"type": "array", "items": _OUT_STRING},
    "sign_request": _OUT_BOOL,
    "header_attributes": {
        "type": "array",
        "items": obj(
            {"attribute_name": _OUT_STRING, "header_name": _OUT_STRING},
            ("attribute_name", "header_name"),
        ),
    },
    "redirect_url": {
        "type": "string",
        "description": "The Single sign-on URL and Audience URI to enter in the SAML app.",
    },
}


def _idp_out(*, secret: bool | None) -> Schema:
    """An IdP as answered; `secret`: None no SCIM secret, False maybe one, True always one."""
    scim: dict[str, Schema] = {
        "enabled": _OUT_BOOL,
        "user_deprovision": _OUT_BOOL,
        "seat_deprovision": _OUT_BOOL,
        "identity_update_behavior": {"enum": ["automatic", "reauth", "no_action"]},
    }
    scim_required = tuple(scim)
    if secret is not None:
        scim["secret"] = {"type": "string", "description": "The SCIM secret: shown this once."}
        scim_required += ("secret",) if secret else ()
    properties: dict[str, Schema] = {
        "id": _OUT_STRING,
        "name": _OUT_STRING,
        "type": {"enum": ["okta", "oidc", "saml"]},
        "config": {
            "oneOf": [
                obj(
                    _IDP_CONFIG_OUT,
                    (
                        "client_id",
                        "claims",
                        "email_claim_name",
                        "pkce_enabled",
                        "backchannel_logout",
                        "redirect_url",
                    ),
                ),
                obj(_SAML_CONFIG_OUT, tuple(_SAML_CONFIG_OUT)),
            ]
        },
        "scim_config": obj(scim, scim_required),
        "read_only": _OUT_BOOL,
        "scim_base_url": {"type": "string", "description": "The SCIM 2.0 base URL for Okta."},
    }
    return obj(properties, tuple(properties))


_TIMESTAMP: Schema = {"type": "string", "format": "date-time"}
_SERVICE_TOKEN: dict[str, Schema] = {
    "id": _OUT_STRING,
    "name": _OUT_STRING,
    "client_id": _OUT_STRING,
    "created_at": _TIMESTAMP,
    "expires_at": {"anyOf": [_TIMESTAMP, {"type": "null"}]},
    "duration": {"type": "string", "description": "Go-style duration, or 'forever'."},
}
_JWK_FIELDS = ("kty", "n", "e", "kid", "alg", "use")
# A character no whitespace definition (ECMA's or Python's `str.strip`) counts as space.
NON_BLANK: Schema = {"type": "string", "pattern": r"[^\s\x1c-\x1f\x85]"}
_NULLABLE_TIMESTAMP: Schema = {"anyOf": [_TIMESTAMP, {"type": "null"}]}
_USER: dict[str, Schema] = {
    "id": _OUT_STRING,
    "uid": _OUT_STRING,
    "email": _OUT_STRING,
    "name": _OUT_STRING,
    "access_seat": _OUT_BOOL,
    "gateway_seat": _OUT_BOOL,
    "created_at": _TIMESTAMP,
    "updated_at": _TIMESTAMP,
    "last_successful_login": _NULLABLE_TIMESTAMP,
    "identity_provider_id": _OUT_STRING,
    "scim": {
        "anyOf": [
            obj(
                {
                    "id": _OUT_STRING,
                    "userName": _OUT_STRING,
                    "externalId": _OUT_STRING,
                    "active": _OUT_BOOL,
                },
                ("id", "userName", "externalId", "active"),
            ),
            {"type": "null"},
        ]
    },
}
_IDENTITY: dict[str, Schema] = {
    "id": _OUT_STRING,
    "user_uuid": _OUT_STRING,
    "name": _OUT_STRING,
    "email": _OUT_STRING,
    "groups": {"type": "array", "items": _OUT_STRING},
    "idp": obj({"id": _OUT_STRING, "type": _OUT_STRING}, ("id", "type")),
    "oidc_fields": {"type": "object"},
    # a SAML user's kept attributes (SPEC 10); absent for other IdPs
    "saml_attributes": {
        "type": "object",
        "additionalProperties": {"type": "array", "items": _OUT_STRING},
    },
    "amr": {"type": "array", "items": _OUT_STRING},
    "iat": {"type": "integer"},
    "ip": _OUT_STRING,
    "service_token_id": _OUT_STRING,
    "service_token_status": _OUT_BOOL,
    "version": {"type": "integer"},
}
_POLICY_CHECK: dict[str, Schema] = {
    "name": _OUT_STRING,
    "decision": {"enum": ["allow", "deny", "bypass", "non_identity"]},
    "matched": _OUT_BOOL,
    "rule": _OUT_STRING,
}
_EXPLANATION: dict[str, Schema] = {
    "app": _OUT_STRING,
    "email": _OUT_STRING,
    "user_uuid": _OUT_STRING,
    "identity_provider_id": _OUT_STRING,
    "allowed": _OUT_BOOL,
    "decision": {"enum": ["allow", "deny", "bypass", "non_identity"]},
    "policy": {"type": "string", "description": "The deciding policy, or '(no policy matched)'"},
    "rule": {"type": "string", "description": "For a deny, the rule that settled it"},
    "policies": {
        "type": "array",
        "items": obj(_POLICY_CHECK, tuple(_POLICY_CHECK)),
        "description": "Every policy, in the order they are judged",
    },
}
_ACCESS_ENTRY: dict[str, Schema] = {
    "time": _TIMESTAMP,
    "kind": {"enum": ["access", "sign_in"]},
    "decision": {"enum": ["allow", "deny", "failure"]},
    **{
        key: _OUT_STRING
        for key in (
            "app",
            "email",
            "user_uuid",
            "identity_provider_id",
            "policy",
            "rule",
            "ip",
            "error",
            "reference",
        )
    },
}
_AUDIT_ENTRY: dict[str, Schema] = {
    "time": _TIMESTAMP,
    "actor": {
        "type": "string",
        "description": '"admin-api", the console user\'s email, or "console-link"',
    },
    "action": {"enum": list(ACTIONS)},
    "object_type": {"enum": list(OBJECT_TYPES)},
    "object_id": _OUT_STRING,
    "object_name": _OUT_STRING,
}
_LOG_ENTRY: dict[str, Schema] = {
    "time": _TIMESTAMP,
    "identity_provider_id": _OUT_STRING,
    "method": _OUT_STRING,
    "resource_type": _OUT_STRING,
    "resource_id": _OUT_STRING,
    "resource_name": _OUT_STRING,
    "status": {"type": "integer"},
    "outcome": {"enum": ["success", "failure"]},
    "error": _OUT_STRING,
}


def _active_session() -> Schema:
    app = {"hostname": _OUT_STRING, "name": _OUT_STRING, "type": _OUT_STRING, "uid": _OUT_STRING}
    integer: Schema = {"type": "integer"}
    metadata = {
        "apps": {"type": "object", "additionalProperties": obj(app, tuple(app))},
        "expires": integer,
        "iat": integer,
        "nonce": _OUT_STRING,
        "ttl": integer,
    }
    return obj(
        {
            "name": _OUT_STRING,
            "kind": {"enum": ["global", "app"]},
            "expiration": integer,
            "metadata": obj(metadata, tuple(metadata)),
        },
        ("name", "kind", "expiration", "metadata"),
    )


def _risk_integration() -> Schema:
    last_error = obj(
        {
            "at": _TIMESTAMP,
            "status": {
                "anyOf": [{"type": "integer"}, {"type": "null"}],
                "description": "Okta's HTTP status; null when no answer came",
            },
            "err": {
                "type": "string",
                "description": "Okta's `err`, or network_error, server_error, rate_limited, "
                "expired (dropped after 24 hours)",
            },
            "description": _OUT_STRING,
        },
        ("at", "status", "err", "description"),
    )
    delivery = obj(
        {
            "pending": {"type": "integer", "minimum": 0},
            "last_success_at": {"anyOf": [_TIMESTAMP, {"type": "null"}]},
            "last_error": {"anyOf": [last_error, {"type": "null"}]},
        },
        ("pending", "last_success_at", "last_error"),
    )
    fields: dict[str, Schema] = {
        "id": _OUT_STRING,
        "integration_type": {"const": "Okta"},
        "tenant_url": _OUT_STRING,
        "reference_id": _OUT_STRING,
        "active": _OUT_BOOL,
        "created_at": _TIMESTAMP,
        "well_known_url": {
            "type": "string",
            "description": "The Security Events Provider's well-known URL, for Okta",
        },
        "delivery": delivery,
    }
    return obj(fields, tuple(fields))


def _risk() -> dict[str, Schema]:
    """`/api/zt_risk_scoring`: behaviours (every one named, each both keys) and users' risk."""
    setting = {"enabled": _OUT_BOOL, "risk_level": RISK_LEVEL}
    names = tuple(BEHAVIORS)
    described = {"name": _OUT_STRING, "description": _OUT_STRING, **setting}
    event = obj(
        {
            "id": _OUT_STRING,
            "name": {"enum": list(names)},
            "risk_level": RISK_LEVEL,
            "timestamp": _TIMESTAMP,
            "event_details": {"type": "object", "additionalProperties": _OUT_STRING},
        },
        ("id", "name", "risk_level", "timestamp", "event_details"),
    )
    summary_user = {
        "user_id": _OUT_STRING,
        "email": _OUT_STRING,
        "name": _OUT_STRING,
        "event_count": {"type": "integer", "minimum": 1},
        "last_event": _TIMESTAMP,
        "max_risk_level": RISK_LEVEL,
    }
    user_risk = {
        "email": _OUT_STRING,
        "name": _OUT_STRING,
        "risk_level": RISK_LEVEL,
        "last_reset_time": {"anyOf": [_TIMESTAMP, {"type": "null"}]},
        "events": {"type": "array", "items": event},
    }
    return {
        "RiskBehaviorsInput": obj(
            {
                "behaviors": obj(
                    {
                        name: obj(
                            {"enabled": {"type": "boolean"}, "risk_level": RISK_LEVEL},
                            ("enabled", "risk_level"),
                        )
                        for name in names
                    }
                )
            },
            ("behaviors",),
        ),
        "RiskBehaviors": obj(
            {"behaviors": obj({n: obj(described, tuple(described)) for n in names}, names)},
            ("behaviors",),
        ),
        "RiskBehaviorsUpdated": obj(
            {"behaviors": obj({n: obj(setting, tuple(setting)) for n in names}, names)},
            ("behaviors",),
        ),
        "RiskSummary": obj(
            {"users": {"type": "array", "items": obj(summary_user, tuple(summary_user))}},
            ("users",),
        ),
        "UserRisk": obj(user_risk, tuple(user_risk)),
    }


def schemas() -> dict[str, Schema]:
    rule_in = _rules(_text(1), _text(), _text(1, pattern=_CIDR))
    rule_out = _rules(_OUT_STRING, _OUT_STRING, _OUT_STRING)
    return {
        "Error": obj(
            {
                "code": {"type": "integer", "description": "See the codes in info.description."},
                "message": _OUT_STRING,
            },
            ("code", "message"),
        ),
        "Failure": obj(
            {
                "success": {"const": False},
                "errors": {"type": "array", "items": ref("Error"), "minItems": 1},
                "messages": {"type": "array", "maxItems": 0},
                "result": {"type": "null"},
            },
            ("success", "errors", "messages", "result"),
        ),
        "RuleInput": rule_in,
        "Rule": rule_out,
        "PolicyInput": _policy(ref("RuleInput"), _DURATION_IN, response=False),
        "Policy": _policy(ref("Rule"), _OUT_STRING, response=True),
        "AppInput": obj(_APP_FIELDS_IN, ("domain", "upstream")),
        "App": _app_out(),
        "IdentityProviderInput": _idp_in(put=False),
        "IdentityProviderReplacement": _idp_in(put=True),
        "IdentityProvider": _idp_out(secret=None),
        "IdentityProviderCreated": _idp_out(secret=False),
        "IdentityProviderWithSecret": _idp_out(secret=True),
        "Deleted": obj({"id": _OUT_STRING}, ("id",)),
        "RevokedTokens": obj(
            {"id": _OUT_STRING, "revoked_sessions": {"type": "integer", "minimum": 0}},
            ("id", "revoked_sessions"),
        ),
        "ServiceTokenInput": obj(
            {
                "name": {**NON_BLANK, "maxLength": 200},
                "duration": {
                    "anyOf": [{"const": "forever"}, {"type": "string", "pattern": _DURATION}],
                    "description": "Default '8760h' (one year).",
                },
            },
            ("name",),
        ),
        "ServiceToken": obj(_SERVICE_TOKEN, tuple(_SERVICE_TOKEN)),
        "ServiceTokenWithSecret": obj(
            {
                **_SERVICE_TOKEN,
                "client_secret": {"type": "string", "description": "Shown this once."},
            },
            (*_SERVICE_TOKEN, "client_secret"),
        ),
        **_risk(),
        "RevokeUserInput": obj({"email": NON_BLANK}, ("email",)),
        "RevokedUser": obj(
            {
                "email": _OUT_STRING,
                "user_ids": {"type": "array", "items": _OUT_STRING},
                "revoked_sessions": {"type": "integer", "minimum": 0},
            },
            ("email", "user_ids", "revoked_sessions"),
        ),
        "User": obj(_USER, tuple(_USER)),
        "Identity": obj(_IDENTITY, tuple(k for k in _IDENTITY if k != "saml_attributes")),
        "ActiveSession": _active_session(),
        "ScimResource": {
            "type": "object",
            "description": "A SCIM 2.0 User or Group as the SCIM API renders it (RFC 7643).",
            "properties": {
                "schemas": {"type": "array", "items": _OUT_STRING, "minItems": 1},
                "id": _OUT_STRING,
                "meta": {
                    "type": "object",
                    "properties": {
                        k: _OUT_STRING
                        for k in ("resourceType", "created", "lastModified", "location", "version")
                    },
                    "required": ["resourceType", "created", "lastModified", "location", "version"],
                },
            },
            "required": ["schemas", "id", "meta"],
        },
        "ProvisioningLogEntry": obj(
            {
                **_LOG_ENTRY,
                # only in the record of refused requests (`auth_failures=true`)
                "client_ip": _OUT_STRING,
                "reason": {"enum": ["missing_secret", "wrong_secret", "unknown_idp", "scim_off"]},
            },
            tuple(_LOG_ENTRY),
        ),
        "Explanation": obj(_EXPLANATION, tuple(_EXPLANATION)),
        "AccessLogEntry": obj(_ACCESS_ENTRY, tuple(_ACCESS_ENTRY)),
        "AuditLogEntry": obj(_AUDIT_ENTRY, tuple(_AUDIT_ENTRY)),
        "RiskIntegrationInput": obj(
            {
                "integration_type": {"const": "Okta"},
                "tenant_url": {
                    "type": "string",
                    "pattern": _TENANT_URL,
                    "description": "The Okta org's base URL, e.g. https://example.okta.com",
                },
                "reference_id": {
                    **_text(1),
                    "description": "The identity provider whose users' risk changes are sent",
                },
                "active": {"type": "boolean", "description": "Default true"},
            },
            ("tenant_url", "reference_id"),
        ),
        "RiskIntegration": _risk_integration(),
        "SigningKey": obj(
            {
                "kid": _OUT_STRING,
                "current": _OUT_BOOL,
                "created_at": _TIMESTAMP,
                "retired_at": {"anyOf": [_TIMESTAMP, {"type": "null"}]},
                "jwk": obj({k: _OUT_STRING for k in _JWK_FIELDS}, _JWK_FIELDS),
                "cert": {"type": "string", "description": "PEM, self-signed"},
            },
            ("kid", "current", "created_at", "retired_at", "jwk", "cert"),
        ),
    }
