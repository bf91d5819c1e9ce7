"""The admin API's objects as JSON, both ways.

Out: settings dataclasses (from the file or the catalog alike) back into the JSON the config uses
(SPEC 2): rules as `{"okta": {"name": ...}}` (each rule writes itself: `Rule.to_json` in
`gateway/authz/rules.py`), durations as Go-style strings ("24h", "1h30m"), plus what the gateway
adds (`id`, `read_only`, `aud`, `config.redirect_url`, `scim_base_url`). Secrets (client
secrets, API tokens, SCIM secrets, service-token secrets and hashes, private keys) are never part
of an object; a route that must show one once adds it itself.

In: a request body into the catalog document it becomes, validated by the config file's own
rules (same messages, same key paths). Fields the gateway sets are refused with a clear message
rather than silently ignored, and on a replace (PUT) an IdP's secrets that the body leaves out
are kept, since no GET ever shows them.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from gateway.authz.app_tokens import SigningKey
from gateway.authz.service_tokens import ServiceToken
from gateway.config import (
    App,
    HeaderAttribute,
    IdentityProvider,
    Policy,
    parse_app,
    parse_duration,
    parse_identity_provider,
)
from gateway.errors import ConfigError, GatewayError
from gateway.runtime import CALLBACK_PATH
from gateway.state.sessions import Session

_UNITS = (("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1))

IDP_SECRETS = ("client_secret", "api_token")

# Keys of a response that a request body must leave out: the gateway sets them.
_SET_BY_GATEWAY = "is set by the gateway; leave it out"
MAX_DURATION = 87600 * 3600.0  # 87600h (ten years): beyond it a TTL or a timestamp overflows
_MAX_DURATION_TEXT = "87600h"
_BAD_URL = "must be an absolute https or http URL"  # the validator's own message
_BAD_CERTIFICATE = "is not a PEM X.509 certificate"  # the validator's own message


def format_duration(seconds: float) -> str:
    """Go-style, as Cloudflare writes durations: 86400 -> "24h", 5400 -> "1h30m"."""
    remaining = round(seconds * 1000)
    parts = []
    for unit, size in _UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def timestamp(epoch: float) -> str:
    """RFC 3339 in UTC, as Cloudflare's `created_at` fields are written."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- out ------------------------------------------------------------------------------------


def policy_json(policy: Policy) -> dict[str, Any]:
    result: dict[str, Any] = {
        "name": policy.name,
        "decision": policy.decision,
        "include": [r.to_json() for r in policy.include],
        "require": [r.to_json() for r in policy.require],
        "exclude": [r.to_json() for r in policy.exclude],
    }
    if policy.session_duration is not None:
        result["session_duration"] = format_duration(policy.session_duration)
    return result


def app_json(app: App, *, read_only: bool) -> dict[str, Any]:
    return {
        "id": app.id,
        "name": app.name,
        "domain": app.domain,
        "upstream": app.upstream,
        "aud": app.aud,
        "session_duration": format_duration(app.session_duration),
        "allowed_idps": list(app.allowed_idps),
        "auto_redirect_to_identity": app.auto_redirect_to_identity,
        "same_site_cookie_attribute": app.same_site_cookie_attribute,
        "http_only_cookie_attribute": app.http_only_cookie_attribute,
        "custom_deny_message": app.custom_deny_message,
        "policies": [policy_json(p) for p in app.policies],
        "read_only": read_only,
    }


def scim_base_url(public_url: str, idp_id: str) -> str:
    return f"{public_url}/populations/{idp_id}/scim/v2"


def idp_json(idp: IdentityProvider, *, read_only: bool, public_url: str) -> dict[str, Any]:
    """The IdP without its secrets, plus the two URLs an operator pastes into Okta."""
    config: dict[str, Any] = {}
    for field in dataclasses.fields(idp.config):  # the fields of its type, each shown
        if field.name not in IDP_SECRETS:
            value = getattr(idp.config, field.name)
            if isinstance(value, tuple):  # a list; of strings, or of tables (header_attributes)
                value = [
                    dataclasses.asdict(v) if isinstance(v, HeaderAttribute) else v for v in value
                ]
            config[field.name] = value
    config["redirect_url"] = public_url + CALLBACK_PATH
    scim = idp.scim_config
    return {
        "id": idp.id,
        "name": idp.name,
        "type": idp.type,
        "config": config,
        "scim_config": {
            "enabled": scim.enabled,
            "user_deprovision": scim.user_deprovision,
            "seat_deprovision": scim.seat_deprovision,
            "identity_update_behavior": scim.identity_update_behavior,
        },
        "read_only": read_only,
        "scim_base_url": scim_base_url(public_url, idp.id),
    }


def service_token_json(token: ServiceToken) -> dict[str, Any]:
    """A service token as Cloudflare shows it, without its secret."""
    expires = token.expires_at
    return {
        "id": token.id,
        "name": token.name,
        "client_id": token.client_id,
        "created_at": timestamp(token.created),
        "expires_at": None if expires is None else timestamp(expires),
        "duration": "forever" if expires is None else format_duration(expires - token.created),
    }


def signing_key_json(key: SigningKey, *, current: bool) -> dict[str, Any]:
    """A signing key's public half only: the JWK and certificate origins verify with."""
    return {
        "kid": key.kid,
        "current": current,
        "created_at": timestamp(key.created),
        "retired_at": None if key.retired is None else timestamp(key.retired),
        "jwk": key.public_jwk(),
        "cert": key.cert,
    }


def session_json(session: Session, app: App | None) -> dict[str, Any]:
    """One active session in Cloudflare's `active_sessions` shape, plus its `kind`."""
    apps = {}
    if app is not None:
        apps[app.aud] = {
            "hostname": app.domain,
            "name": app.name,
            "type": "self_hosted",
            "uid": app.id,
        }
    return {
        "name": app.name if app is not None else "Team domain",
        "kind": session.kind,
        "expiration": int(session.expires),
        "metadata": {
            "apps": apps,
            "expires": int(session.expires),
            "iat": int(session.created),
            "nonce": session.identity.id,
            "ttl": int(session.expires - session.created),
        },
    }


# --- in -------------------------------------------------------------------------------------


def _without(data: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}


_IDP_ENDPOINT_KEYS = (
    "okta_account",
    "authorization_server_id",
    "issuer",
    "auth_url",
    "token_url",
    "certs_url",
    "userinfo_url",
)


def idp_document(
    body: Mapping[str, Any], object_id: str, stored: Mapping[str, Any] | None
) -> tuple[dict[str, Any], IdentityProvider]:
    """The catalog document for an IdP body and the IdP it describes; ConfigError lists every
    problem. `stored` is the document being replaced (PUT): secrets the body omits are kept."""
    problems = [
        f"{k}: {_SET_BY_GATEWAY}" for k in ("id", "read_only", "scim_base_url") if k in body
    ]
    document = _without(body, ("id", "read_only", "scim_base_url"))
    config = document.get("config")
    if isinstance(config, Mapping):
        if "redirect_url" in config:
            problems.append(f"config.redirect_url: {_SET_BY_GATEWAY}")
        config = _without(config, ("redirect_url",))
        if stored is not None:
            kept = stored.get("config", {})
            omitted = [k for k in IDP_SECRETS if k not in config and k in kept]
            # A kept secret goes where it went before, or nowhere: pointing the IdP at new
            # endpoints while keeping its secrets would send them to whoever runs those.
            moved = stored.get("type", "okta") != document.get("type", "okta") or any(
                config.get(k) != kept.get(k) for k in _IDP_ENDPOINT_KEYS
            )
            if omitted and moved:
                # Valid on its own, but not against what is stored: 422, like a reference to
                # an object that does not exist.
                raise GatewayError(
                    "; ".join(
                        f"config.{k}: must be sent again when the IdP's type or endpoints change"
                        for k in omitted
                    ),
                    error="unprocessable",
                    status=422,
                )
            config.update({k: kept[k] for k in omitted})
        document["config"] = config
    scim = document.get("scim_config")
    if isinstance(scim, Mapping) and "secret" in scim:
        problems.append(
            "scim_config.secret: is generated by the gateway (POST .../refresh_scim_secret); "
            "leave it out"
        )
        document["scim_config"] = _without(scim, ("secret",))
    document["id"] = object_id
    problems += _unsplittable_urls(document, _IDP_URLS)
    try:
        idp = parse_identity_provider(document)
    except ConfigError as exc:
        every = exc.problems + problems
        if all(_BAD_CERTIFICATE in p for p in every):
            # Well-formed, valid per the schema, and yet no certificate: 422, as no schema can
            # say which base64 is an X.509 certificate.
            raise GatewayError("; ".join(every), error="unprocessable", status=422) from exc
        raise ConfigError(every) from exc
    if problems:
        raise ConfigError(problems)
    return document, idp


def app_document(
    body: Mapping[str, Any], object_id: str, default_duration: float
) -> tuple[dict[str, Any], App]:
    """The catalog document for an app body (with its policies) and the app it describes."""
    problems = [f"{k}: {_SET_BY_GATEWAY}" for k in ("id", "read_only", "aud") if k in body]
    document = {**_without(body, ("id", "read_only", "aud")), "id": object_id}
    problems += _unsplittable_urls(document, ("upstream",)) + _too_long(document)
    try:
        app = parse_app(document, default_duration)
    except ConfigError as exc:
        raise ConfigError(exc.problems + problems) from exc
    if problems:
        raise ConfigError(problems)
    return document, app


def _too_long(document: dict[str, Any]) -> list[str]:
    """Problems for durations past MAX_DURATION (the validator bounds them below only). Each is
    replaced by a placeholder, so the validator still reports everything else and never meets
    an integer too large for a float. The document is refused either way."""
    tables = [("", document)]
    policies = document.get("policies")
    if isinstance(policies, list):
        tables += [(f"policies[{i}].", p) for i, p in enumerate(policies) if isinstance(p, dict)]
    problems = []
    for prefix, table in tables:
        if not _seconds(table.get("session_duration")) <= MAX_DURATION:
            problems.append(f"{prefix}session_duration: must be at most {_MAX_DURATION_TEXT}")
            table["session_duration"] = "1h"
    return problems


def _seconds(value: Any) -> float:
    """A duration as the validator reads it; 0 for anything it refuses on its own."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            return 0.0
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer of hundreds of digits
            return math.inf
    return 0.0


_IDP_URLS = tuple(
    f"config.{k}"
    for k in (
        "okta_account",
        "issuer",
        "auth_url",
        "token_url",
        "certs_url",
        "userinfo_url",
        "sso_target_url",
        "metadata_url",
    )
)


def _unsplittable_urls(document: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    """Problems for URL values that `urlsplit` cannot even split ("http://[::1"), which the
    validator would let escape as a ValueError; each is replaced by a placeholder so the
    validator still reports everything else. The document is refused either way."""
    problems = []
    for key in keys:
        *parents, name = key.split(".")
        table: Any = document
        for parent in parents:
            table = table.get(parent) if isinstance(table, dict) else None
        value = table.get(name) if isinstance(table, dict) else None
        if not isinstance(value, str):
            continue
        try:
            urlsplit(value)
        except ValueError:
            problems.append(f"{key}: {_BAD_URL}")
            table[name] = "https://invalid.invalid"  # refused already: nothing more to say
    return problems
