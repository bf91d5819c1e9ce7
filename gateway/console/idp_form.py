"""The login-method form: which fields each IdP type shows, and the form <-> the API object.

The fields are the Okta guide's for `okta` (Name, App ID, Client secret, Okta account URL,
optional API token, authorization server id, claims, PKCE), the generic OIDC provider's for
`oidc`, and SPEC 10's for `saml`. A form field is named by its key path in the API object
(`config.client_id`), so a validation problem (`config.client_id: is required`) is shown next
to its field. `body_from_form` builds the object the admin API takes: on an edit it starts from
the stored object, so keys the form does not show (an `email_claim_name` set through the API)
are kept, and a secret left blank keeps the stored one (`services.identity_providers.replace`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

FieldKind = Literal["text", "url", "secret", "list", "bool", "pem"]

TYPES = (("okta", "Okta"), ("oidc", "OpenID Connect"), ("saml", "SAML 2.0"))
# Read-only fields of the API object, never sent back.
_SET_BY_GATEWAY = ("id", "read_only", "scim_base_url")
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True, slots=True)
class FormField:
    key: str  # the key in `config`
    label: str
    kind: FieldKind = "text"
    required: bool = False
    hint: str = ""

    @property
    def name(self) -> str:
        """The form field's name: its key path in the API object."""
        return f"config.{self.key}"


_CLAIMS = FormField(
    "claims", "Claims", "list", hint="Custom OIDC claims to keep for policies, comma-separated."
)
_PKCE = FormField("pkce_enabled", "Use PKCE", "bool")

FIELDS: dict[str, tuple[FormField, ...]] = {
    "okta": (
        FormField("client_id", "App ID", required=True, hint="The Okta app's Client ID."),
        FormField("client_secret", "Client secret", "secret", required=True),
        FormField(
            "okta_account",
            "Okta account URL",
            "url",
            required=True,
            hint="e.g. https://dev-123456.okta.com (not the -admin URL).",
        ),
        FormField(
            "api_token",
            "API token",
            "secret",
            hint="A read-only Okta API token: needed for users in more than 100 groups.",
        ),
        FormField(
            "authorization_server_id",
            "Authorization server ID",
            hint="A custom authorization server (e.g. default); empty: the org server.",
        ),
        _CLAIMS,
        _PKCE,
    ),
    "oidc": (
        FormField("client_id", "Client ID", required=True),
        FormField("client_secret", "Client secret", "secret", required=True),
        FormField("issuer", "Issuer", "url", required=True),
        FormField("auth_url", "Authorization URL", "url", required=True),
        FormField("token_url", "Token URL", "url", required=True),
        FormField("certs_url", "JWKS (certificates) URL", "url", required=True),
        FormField("userinfo_url", "Userinfo URL", "url"),
        FormField("scopes", "Scopes", "list", hint="Comma-separated; openid is always asked."),
        _CLAIMS,
        FormField("email_claim_name", "Email claim", hint="Default: email."),
        _PKCE,
    ),
    "saml": (
        FormField("issuer_url", "IdP entity ID (issuer)", "url"),
        FormField("sso_target_url", "Single sign-on URL", "url"),
        FormField(
            "idp_public_certs",
            "Signing certificates (PEM)",
            "pem",
            hint="One or more -----BEGIN CERTIFICATE----- blocks.",
        ),
        FormField(
            "metadata_url",
            "Metadata URL",
            "url",
            hint="Instead of the three above: read at start and refreshed daily.",
        ),
        FormField("email_attribute_name", "Email attribute", hint="Default: email."),
        FormField("attributes", "Attributes to keep", "list", hint="e.g. groups, department"),
        FormField("sign_request", "Sign the AuthnRequest", "bool"),
    ),
}

SCIM_BEHAVIORS = (
    ("automatic", "Automatic: update the identity; sessions pick it up at the next sign-in"),
    ("reauth", "Re-authenticate: a group change ends the member's sessions"),
    ("no_action", "No action: nothing changes until the next sign-in"),
)


def editable(current: Mapping[str, Any]) -> dict[str, Any]:
    """The stored object (the catalog's document) as a body: without what the gateway sets."""
    body = {k: v for k, v in current.items() if k not in _SET_BY_GATEWAY}
    config = {k: v for k, v in body.get("config", {}).items() if k != "redirect_url"}
    return {**body, "config": config, "scim_config": dict(body.get("scim_config", {}))}


def body_from_form(
    form: Mapping[str, str], idp_type: str, current: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The API object a submitted login-method form describes (`current`: the stored document,
    on an edit; its secrets stay unless the form gives new ones)."""
    body = editable(current) if current is not None else {"config": {}, "scim_config": {}}
    body["name"] = form.get("name", "").strip()
    body["type"] = idp_type
    config: dict[str, Any] = body["config"]
    for f in FIELDS.get(idp_type, ()):
        raw = form.get(f.name, "")
        if f.kind == "bool":
            config[f.key] = raw == "true"
        elif f.kind == "secret":
            if raw:
                config[f.key] = raw
        elif f.kind == "list":
            items = [item.strip() for item in re.split(r"[,\n]", raw) if item.strip()]
            _set(config, f.key, items)
        elif f.kind == "pem":
            _set(config, f.key, [m.group(0) for m in _PEM.finditer(raw)] or raw.strip())
        else:
            _set(config, f.key, raw.strip())
    return body


def _set(config: dict[str, Any], key: str, value: Any) -> None:
    """An empty value leaves the key out (the default applies)."""
    if value:
        config[key] = value
    else:
        config.pop(key, None)


def form_values(body: Mapping[str, Any]) -> dict[str, str]:
    """What the form's fields show for an object (secrets never)."""
    values = {"name": str(body.get("name", ""))}
    config = body.get("config", {})
    for f in FIELDS.get(str(body.get("type", "okta")), ()):
        value = config.get(f.key)
        if f.kind == "secret" or value is None:
            values[f.name] = ""
        elif f.kind == "bool":
            values[f.name] = "true" if value else ""
        elif f.kind == "list":
            values[f.name] = ", ".join(value) if isinstance(value, list) else str(value)
        elif f.kind == "pem":
            values[f.name] = "\n".join(value) if isinstance(value, list) else str(value)
        else:
            values[f.name] = str(value)
    return values


def scim_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    return {
        "enabled": form.get("scim_config.enabled") == "true",
        "user_deprovision": form.get("scim_config.user_deprovision") == "true",
        "seat_deprovision": form.get("scim_config.seat_deprovision") == "true",
        "identity_update_behavior": form.get("scim_config.identity_update_behavior", "automatic"),
    }
