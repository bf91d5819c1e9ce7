"""Config loading (SPEC 1-2): typed settings, "${VAR}" secrets, every problem with its key path."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.authz.rules import (
    RULE_TYPES,
    AnyValidServiceTokenRule,
    AuthMethodRule,
    EmailDomainRule,
    EmailRule,
    EveryoneRule,
    GroupNameRule,
    IpRule,
    LoginMethodRule,
    OidcClaimRule,
    OktaGroupRule,
    ServiceTokenRule,
)
from gateway.cli import main
from gateway.config import Settings, app_aud, load_config, parse_settings
from gateway.config.reader import Reader
from gateway.errors import ConfigError
from gateway.state.sessions import CookieSigner

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"

OKTA_ID = "0b5f1c2e-okta"
OIDC_ID = "corp-oidc"
COOKIE_SECRET = "cookie-secret-0123456789abcdef-0123456789"
ENV = {
    "GATEWAY_COOKIE_SECRET": COOKIE_SECRET,
    "GATEWAY_ADMIN_TOKEN": "admin-token-value",
    "OKTA_CLIENT_SECRET": "okta-client-secret-value",
    "OKTA_API_TOKEN": "okta-api-token-value",
    "SCIM_SECRET": "scim-secret-value",
}

# Every key of SPEC 2, with non-default values wherever there is a choice.
FULL_TOML = f"""
[gateway]
public_url = "https://access.example.com/"
cookie_secret = "${{GATEWAY_COOKIE_SECRET}}"
admin_token = "${{GATEWAY_ADMIN_TOKEN}}"
store = "redis://127.0.0.1:6379/0"
session_duration = "12h"
cookie_secure = false
trusted_proxies = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"]
idp_timeout = "5s"
upstream_timeout = "1m30s"
session_reads = "redis-py"
upstream_client = "httpx"
upstream_requests_per_origin = 40
upstream_requests_per_client = 8
request_body_timeout = "15s"

[[identity_providers]]
id = "{OKTA_ID}"
name = "Example Okta"
type = "okta"
[identity_providers.config]
client_id = "0oa123"
client_secret = "${{OKTA_CLIENT_SECRET}}"
okta_account = "https://dev-abc123.oktapreview.com/"
authorization_server_id = "aus456"
api_token = "${{OKTA_API_TOKEN}}"
claims = ["department", "cost_center"]
email_claim_name = "login_email"
pkce_enabled = true
[identity_providers.scim_config]
enabled = true
user_deprovision = true
seat_deprovision = true
identity_update_behavior = "reauth"
secret = "${{SCIM_SECRET}}"

[[identity_providers]]
id = "{OIDC_ID}"
name = "Corporate SSO"
type = "oidc"
[identity_providers.config]
client_id = "gateway"
client_secret = "literal-secret"
issuer = "https://sso.example.com"
auth_url = "https://sso.example.com/authorize"
token_url = "https://sso.example.com/token"
certs_url = "https://sso.example.com/jwks"
userinfo_url = "https://sso.example.com/userinfo"
scopes = ["openid", "email", "groups"]

[[apps]]
id = "wiki"
name = "Wiki"
domain = "Wiki.Example.com"
upstream = "http://127.0.0.1:9000"
session_duration = "24h"
allowed_idps = ["{OKTA_ID}"]
auto_redirect_to_identity = false
same_site_cookie_attribute = "strict"
http_only_cookie_attribute = false
custom_deny_message = "Ask #it-help for access."

[[apps.policies]]
name = "Engineering"
decision = "allow"
include = [
  {{ okta = {{ name = "Engineering" }} }},
  {{ email_domain = {{ domain = "example.com" }} }},
]
require = [ {{ auth_method = {{ auth_method = "mfa" }} }} ]
exclude = [ {{ email = {{ email = "Mallory@Example.com" }} }} ]
session_duration = "8h"

[[apps.policies]]
name = "Monitoring"
decision = "bypass"
include = [ {{ ip = {{ ip = "192.0.2.0/24" }} }} ]

[[apps]]
id = "grafana"
domain = "grafana.example.com"
upstream = "https://grafana.internal:3000"

[[apps.policies]]
name = "Everyone"
decision = "allow"
include = [ {{ everyone = {{}} }} ]
"""

_DELETE = object()


def full_document() -> dict[str, Any]:
    return tomllib.loads(FULL_TOML)


def set_key(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set (or, with _DELETE, remove) the value at a key path like "apps[0].policies[0].name"."""
    parts: list[str | int] = [
        int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"\[\d+\]|[^.\[\]]+", path)
    ]
    target: Any = doc
    for part in parts[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value
    return doc


def problems_of(doc: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(doc, ENV if env is None else env)
    return caught.value.problems


# --- a valid file ----------------------------------------------------------------------------


def test_full_config_parses_into_typed_settings() -> None:
    settings = parse_settings(full_document(), ENV)

    gateway = settings.gateway
    assert gateway.public_url == "https://access.example.com"
    assert gateway.team_host == "access.example.com"
    assert gateway.cookie_secret == (COOKIE_SECRET,)
    assert gateway.admin_token == "admin-token-value"
    assert gateway.store == "redis://127.0.0.1:6379/0"
    assert gateway.session_duration == 12 * 3600
    assert gateway.cookie_secure is False
    assert gateway.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("192.0.2.1/32"),
    )
    assert gateway.idp_timeout == 5
    assert gateway.upstream_timeout == 90
    assert (gateway.session_reads, gateway.upstream_client) == ("redis-py", "httpx")
    assert (gateway.upstream_requests_per_origin, gateway.upstream_requests_per_client) == (40, 8)
    assert gateway.request_body_timeout == 15

    okta, oidc = settings.identity_providers
    assert (okta.id, okta.name, okta.type) == (OKTA_ID, "Example Okta", "okta")
    assert okta.config.client_id == "0oa123"
    assert okta.config.client_secret == "okta-client-secret-value"
    assert okta.config.okta_account == "https://dev-abc123.oktapreview.com"
    assert okta.config.authorization_server_id == "aus456"
    assert okta.config.api_token == "okta-api-token-value"
    assert okta.config.claims == ("department", "cost_center")
    assert okta.config.email_claim_name == "login_email"
    assert okta.config.pkce_enabled is True
    scim = okta.scim_config
    assert (scim.enabled, scim.user_deprovision, scim.seat_deprovision) == (True, True, True)
    assert scim.identity_update_behavior == "reauth"
    assert scim.secret == "scim-secret-value"
    assert settings.idp(OKTA_ID) is okta
    assert settings.idp("no-such-idp") is None

    assert (oidc.type, oidc.config.client_secret) == ("oidc", "literal-secret")
    assert oidc.config.issuer == "https://sso.example.com"
    assert oidc.config.auth_url == "https://sso.example.com/authorize"
    assert oidc.config.token_url == "https://sso.example.com/token"
    assert oidc.config.certs_url == "https://sso.example.com/jwks"
    assert oidc.config.userinfo_url == "https://sso.example.com/userinfo"
    assert oidc.config.scopes == ("openid", "email", "groups")

    wiki, grafana = settings.apps
    assert (wiki.id, wiki.name, wiki.domain) == ("wiki", "Wiki", "wiki.example.com")
    assert wiki.upstream == "http://127.0.0.1:9000"
    assert wiki.session_duration == 24 * 3600
    assert wiki.allowed_idps == (OKTA_ID,)
    assert wiki.auto_redirect_to_identity is False
    assert wiki.same_site_cookie_attribute == "strict"
    assert wiki.http_only_cookie_attribute is False
    assert wiki.custom_deny_message == "Ask #it-help for access."

    engineering, monitoring = wiki.policies
    assert (engineering.name, engineering.decision) == ("Engineering", "allow")
    assert engineering.include == (OktaGroupRule("Engineering"), EmailDomainRule("example.com"))
    assert engineering.require == (AuthMethodRule("mfa"),)
    assert engineering.exclude == (EmailRule("mallory@example.com"),)
    assert engineering.session_duration == 8 * 3600
    assert monitoring.decision == "bypass"
    assert monitoring.include == (IpRule(ipaddress.ip_network("192.0.2.0/24")),)
    assert monitoring.session_duration is None

    # Left out: the name is the id, the session is the gateway's, every IdP is allowed.
    assert (grafana.name, grafana.session_duration, grafana.allowed_idps) == ("grafana", 43200, ())
    assert grafana.policies[0].include == (EveryoneRule(),)


def test_defaults_of_optional_keys() -> None:
    settings = parse_settings(
        {
            "gateway": {"public_url": "http://localhost:8000", "cookie_secret": COOKIE_SECRET},
            "identity_providers": [
                {
                    "id": "okta",
                    "name": "Okta",
                    "config": {
                        "client_id": "c",
                        "client_secret": "s",
                        "okta_account": "https://x.okta.com",
                    },
                }
            ],
            "apps": [{"id": "a", "domain": "a.example.com", "upstream": "http://127.0.0.1:1"}],
        },
        {},
    )
    gateway = settings.gateway
    assert (gateway.store, gateway.admin_token, gateway.cookie_secure) == ("memory", "", True)
    assert (gateway.session_duration, gateway.trusted_proxies) == (86400, ())
    assert (gateway.idp_timeout, gateway.upstream_timeout) == (10, 60)
    assert (gateway.session_reads, gateway.upstream_client) == ("tracked", "builtin")
    assert (gateway.upstream_requests_per_origin, gateway.upstream_requests_per_client) == (128, 64)
    assert gateway.request_body_timeout == 60
    idp = settings.identity_providers[0]
    assert idp.type == "okta"
    assert (idp.config.email_claim_name, idp.config.pkce_enabled) == ("email", False)
    assert (idp.config.claims, idp.config.api_token) == ((), "")
    assert idp.scim_config.enabled is False
    assert idp.scim_config.identity_update_behavior == "automatic"
    app = settings.apps[0]
    assert (app.session_duration, app.policies, app.allowed_idps) == (86400, (), ())
    assert (app.auto_redirect_to_identity, app.same_site_cookie_attribute) == (True, "lax")
    assert (app.http_only_cookie_attribute, app.custom_deny_message) == (True, "")


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"everyone": {}}, EveryoneRule()),
        ({"email": {"email": "Alice@Example.COM"}}, EmailRule("alice@example.com")),
        ({"email_domain": {"domain": "Example.com"}}, EmailDomainRule("example.com")),
        ({"email_domain": {"domain": "@example.com"}}, EmailDomainRule("example.com")),
        ({"okta": {"name": "Engineering"}}, OktaGroupRule("Engineering", "")),
        (
            {"okta": {"name": "Engineering", "identity_provider_id": OKTA_ID}},
            OktaGroupRule("Engineering", OKTA_ID),
        ),
        ({"group_name": {"name": "SRE"}}, GroupNameRule("SRE")),
        (
            {"oidc": {"claim_name": "department", "claim_value": "R&D"}},
            OidcClaimRule("department", "R&D"),
        ),
        ({"login_method": {"id": OKTA_ID}}, LoginMethodRule(OKTA_ID)),
        ({"auth_method": {"auth_method": "mfa"}}, AuthMethodRule("mfa")),
        ({"ip": {"ip": "192.0.2.0/24"}}, IpRule(ipaddress.ip_network("192.0.2.0/24"))),
        ({"ip": {"ip": "192.0.2.7"}}, IpRule(ipaddress.ip_network("192.0.2.7/32"))),
        ({"ip": {"ip": "2001:db8::/32"}}, IpRule(ipaddress.ip_network("2001:db8::/32"))),
        ({"service_token": {"token_id": "tok-1"}}, ServiceTokenRule("tok-1")),
        ({"any_valid_service_token": {}}, AnyValidServiceTokenRule()),
    ],
)
def test_each_rule_becomes_its_dataclass(rule: dict[str, Any], expected: object) -> None:
    doc = set_key(full_document(), "apps[0].policies[0].include", [rule])
    assert parse_settings(doc, ENV).apps[0].policies[0].include == (expected,)


def test_app_aud_is_64_hex_stable_per_id_and_distinct_between_ids() -> None:
    first = parse_settings(full_document(), ENV)
    again = parse_settings(full_document(), ENV)
    wiki, grafana = first.apps
    assert re.fullmatch(r"[0-9a-f]{64}", wiki.aud)
    assert wiki.aud == again.apps[0].aud == app_aud("wiki")
    assert grafana.aud != wiki.aud
    # The AUD follows the id, not the domain or the position in the file.
    moved = set_key(full_document(), "apps[0].domain", "docs.example.com")
    assert parse_settings(moved, ENV).apps[0].aud == wiki.aud


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("24h", 86400),
        ("30m", 1800),
        ("90s", 90),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("2d", 172800),
        ("500ms", 0.5),
        (" 8h ", 28800),
        (3600, 3600),
    ],
)
def test_durations_are_seconds(value: str | int, seconds: float) -> None:
    doc = set_key(full_document(), "gateway.session_duration", value)
    assert parse_settings(doc, ENV).gateway.session_duration == seconds


@pytest.mark.parametrize("value", ["24", "h", "24x", "1h 30m", "one day", "", "-5m", "24H"])
def test_bad_duration_is_a_problem(value: str) -> None:
    doc = set_key(full_document(), "apps[0].policies[0].session_duration", value)
    assert problems_of(doc) == [
        f"apps[0].policies[0].session_duration: invalid duration {value.strip()!r} "
        "(use e.g. '24h', '30m', '1h30m')"
    ]


# --- secrets from the environment ------------------------------------------------------------


def test_secret_is_read_from_the_env_mapping() -> None:
    env = {**ENV, "OKTA_CLIENT_SECRET": "from-the-environment"}
    settings = parse_settings(full_document(), env)
    assert settings.identity_providers[0].config.client_secret == "from-the-environment"


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OKTA_API_TOKEN", "from-os-environ")
    settings = parse_settings(full_document())
    assert settings.identity_providers[0].config.api_token == "from-os-environ"


def test_missing_variable_is_a_problem_naming_key_path_and_variable() -> None:
    env = {k: v for k, v in ENV.items() if k != "OKTA_CLIENT_SECRET"}
    assert problems_of(full_document(), env) == [
        "identity_providers[0].config.client_secret: "
        "environment variable OKTA_CLIENT_SECRET is not set"
    ]


def test_every_missing_variable_is_reported() -> None:
    assert problems_of(full_document(), {}) == [
        "gateway.cookie_secret: environment variable GATEWAY_COOKIE_SECRET is not set",
        "gateway.admin_token: environment variable GATEWAY_ADMIN_TOKEN is not set",
        "identity_providers[0].config.client_secret: "
        "environment variable OKTA_CLIENT_SECRET is not set",
        "identity_providers[0].config.api_token: environment variable OKTA_API_TOKEN is not set",
        "identity_providers[0].scim_config.secret: environment variable SCIM_SECRET is not set",
    ]


def test_a_value_that_only_contains_a_reference_is_literal() -> None:
    doc = set_key(full_document(), "identity_providers[1].config.client_secret", "a${B}c")
    assert parse_settings(doc, ENV).identity_providers[1].config.client_secret == "a${B}c"


# --- cookie_secret ---------------------------------------------------------------------------


def test_cookie_secret_list_rotates_first_key_signs_all_verify() -> None:
    new, old = "n" * 32, "o" * 40
    doc = set_key(full_document(), "gateway.cookie_secret", ["${NEW_KEY}", old])
    keys = parse_settings(doc, {**ENV, "NEW_KEY": new}).gateway.cookie_secret
    assert keys == (new, old)

    rotated = CookieSigner(keys, "gateway.session")
    signed = rotated.sign("session-id")
    assert CookieSigner((new,), "gateway.session").unsign(signed) == "session-id"
    assert CookieSigner((old,), "gateway.session").unsign(signed) is None
    # A cookie signed before the rotation still verifies.
    before = CookieSigner((old,), "gateway.session").sign("older-session")
    assert rotated.unsign(before) == "older-session"


@pytest.mark.parametrize(
    ("value", "problems"),
    [
        ("too-short", ["gateway.cookie_secret: each key must be at least 32 characters"]),
        (
            ["k" * 32, "short"],
            ["gateway.cookie_secret: each key must be at least 32 characters"],
        ),
        ([], ["gateway.cookie_secret: is required"]),
        (_DELETE, ["gateway.cookie_secret: is required"]),
        ("", ["gateway.cookie_secret: is required"]),
    ],
)
def test_cookie_secret_problems(value: object, problems: list[str]) -> None:
    doc = set_key(full_document(), "gateway.cookie_secret", value)
    assert problems_of(doc) == problems


# --- problems, each with its key path --------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("", "listen"),
        ("gateway", "cookie_secrets"),
        ("identity_providers[0]", "client_id"),
        ("identity_providers[0].config", "client_secert"),
        ("identity_providers[1].config", "discovery_url"),
        ("identity_providers[0].scim_config", "enable"),
        ("apps[1]", "upsteam"),
        ("apps[0].policies[1]", "requires"),
        ("apps[0].policies[0].include[0].okta", "identity_provider"),
        ("apps[0].policies[0].exclude[0].email", "domain"),
    ],
)
def test_unknown_key_is_a_problem_with_its_key_path(table: str, key: str) -> None:
    doc = set_key(full_document(), f"{table}.{key}" if table else key, "x")
    assert problems_of(doc) == [f"{table}.{key}: unknown key" if table else f"{key}: unknown key"]


def test_unknown_rule_message_is_exactly_the_specs() -> None:
    doc = set_key(
        full_document(),
        "apps[1].policies[0].include",
        [{"everyone": {}}, {"email": {"email": "a@example.com"}}, {"grop": {"name": "x"}}],
    )
    assert problems_of(doc) == ["apps[1].policies[0].include[2]: unknown rule 'grop'"]


def test_several_problems_are_all_reported_at_once() -> None:
    doc = full_document()
    set_key(doc, "gateway.session_duration", "forever")
    set_key(doc, "gateway.trusted_proxies", ["10.0.0.0/33"])
    set_key(doc, "identity_providers[0].config.client_id", _DELETE)
    set_key(doc, "apps[0].policies[0].decision", "block")
    set_key(doc, "apps[1].policies[0].include", [{"grop": {"name": "x"}}])
    set_key(doc, "apps[1].colour", "blue")
    problems = problems_of(doc, {k: v for k, v in ENV.items() if k != "OKTA_API_TOKEN"})
    assert sorted(problems) == sorted(
        [
            "gateway.session_duration: invalid duration 'forever' (use e.g. '24h', '30m', '1h30m')",
            "gateway.trusted_proxies: invalid IP address or CIDR '10.0.0.0/33'",
            "identity_providers[0].config.client_id: is required",
            "identity_providers[0].config.api_token: "
            "environment variable OKTA_API_TOKEN is not set",
            "apps[0].policies[0].decision: must be one of 'allow', 'deny', 'bypass', "
            "'non_identity', not 'block'",
            "apps[1].policies[0].include[0]: unknown rule 'grop'",
            "apps[1].colour: unknown key",
        ]
    )


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        # wrong types
        ("gateway", "https://access.example.com", "gateway: must be a table"),
        ("gateway.cookie_secure", "yes", "gateway.cookie_secure: must be true or false"),
        ("gateway.public_url", 443, "gateway.public_url: must be a string"),
        (
            "gateway.trusted_proxies",
            "10.0.0.0/8",
            "gateway.trusted_proxies: must be a list of strings",
        ),
        (
            "gateway.upstream_timeout",
            True,
            "gateway.upstream_timeout: must be a duration such as '24h'",
        ),
        (
            "gateway.upstream_requests_per_origin",
            "128",
            "gateway.upstream_requests_per_origin: must be a whole number",
        ),
        (
            "gateway.upstream_requests_per_client",
            0,
            "gateway.upstream_requests_per_client: must be at least 1",
        ),
        (
            "gateway.upstream_requests_per_client",
            2.5,
            "gateway.upstream_requests_per_client: must be a whole number",
        ),
        (
            "gateway.request_body_timeout",
            "0s",
            "gateway.request_body_timeout: must be positive and at most 87600h (ten years)",
        ),
        ("identity_providers", {"id": "x"}, "identity_providers: must be a list of tables"),
        ("identity_providers[0].config", "x", "identity_providers[0].config: must be a table"),
        (
            "identity_providers[0].config.pkce_enabled",
            "true",
            "identity_providers[0].config.pkce_enabled: must be true or false",
        ),
        (
            "identity_providers[0].config.claims",
            "department",
            "identity_providers[0].config.claims: must be a list of strings",
        ),
        ("apps[0].allowed_idps", OKTA_ID, "apps[0].allowed_idps: must be a list of strings"),
        ("apps[1].id", 7, "apps[1].id: must be a string"),
        ("apps[0].policies", {"name": "x"}, "apps[0].policies: must be a list of tables"),
        (
            "apps[0].policies[0].include",
            {"everyone": {}},
            "apps[0].policies[0].include: must be a list of rules",
        ),
        # missing required keys
        ("gateway.public_url", _DELETE, "gateway.public_url: is required"),
        ("identity_providers[0].id", _DELETE, "identity_providers[0].id: is required"),
        ("identity_providers[0].name", _DELETE, "identity_providers[0].name: is required"),
        (
            "identity_providers[0].config.okta_account",
            _DELETE,
            "identity_providers[0].config.okta_account: is required",
        ),
        ("apps[0].domain", _DELETE, "apps[0].domain: is required"),
        ("apps[0].upstream", _DELETE, "apps[0].upstream: is required"),
        ("apps[0].policies[0].name", _DELETE, "apps[0].policies[0].name: is required"),
        # bad values
        (
            "gateway.public_url",
            "access.example.com",
            "gateway.public_url: must be an absolute https or http URL",
        ),
        (
            "apps[0].upstream",
            "ftp://files.internal",
            "apps[0].upstream: must be an absolute https or http URL",
        ),
        (
            "identity_providers[0].id",
            "okta:corp",  # "okta:corp" + sub "x" and "okta" + sub "corp:x" would be one user
            'identity_providers[0].id: must be 1 to 64 letters, digits, ".", "_" or "-"',
        ),
        ("apps[0].id", "wiki/x", 'apps[0].id: must be 1 to 64 letters, digits, ".", "_" or "-"'),
        (
            "apps[0].domain",
            "wiki.example.com\nx",
            "apps[0].domain: must be host[/path] without a scheme",
        ),
        (
            "apps[0].domain",
            "wiki.example.com:8443",
            "apps[0].domain: must be host[/path] without a scheme",
        ),
        (
            "apps[0].upstream",
            "http://127.0.0.1:99999",
            "apps[0].upstream: must be an absolute https or http URL",
        ),
        (
            "identity_providers[0].config.okta_account",
            "https://dev-123.okta.com:port",
            "identity_providers[0].config.okta_account: must be an absolute https or http URL",
        ),
        (
            "gateway.idp_timeout",
            "0s",
            "gateway.idp_timeout: must be positive and at most 87600h (ten years)",
        ),
        (
            "gateway.trusted_proxies",
            ["10.0.0.0/8", "proxy.internal"],
            "gateway.trusted_proxies: invalid IP address or CIDR 'proxy.internal'",
        ),
        ("gateway.store", "memory_store", "gateway.store: unsupported store 'memory_store'"),
        (
            "gateway.session_reads",
            "redis",
            "gateway.session_reads: must be one of 'tracked', 'pipelined', 'redis-py', not 'redis'",
        ),
        (
            "gateway.upstream_client",
            "aiohttp",
            "gateway.upstream_client: must be one of 'builtin', 'httpx', not 'aiohttp'",
        ),
        ("gateway.upstream_client", 1, "gateway.upstream_client: must be a string"),
        (
            "gateway.store",
            "postgres://db/gateway",
            "gateway.store: unsupported store 'postgres://db/gateway'",
        ),
        (
            "identity_providers[0].type",
            "ws-fed",
            "identity_providers[0].type: must be one of 'okta', 'oidc', 'saml', not 'ws-fed'",
        ),
        (
            "identity_providers[0].scim_config.identity_update_behavior",
            "sometimes",
            "identity_providers[0].scim_config.identity_update_behavior: "
            "must be one of 'automatic', 'reauth', 'no_action', not 'sometimes'",
        ),
        (
            "identity_providers[0].scim_config.user_deprovision",
            False,
            "identity_providers[0].scim_config.seat_deprovision: needs user_deprovision = true",
        ),
        (
            "apps[0].domain",
            "https://wiki.example.com",
            "apps[0].domain: must be host[/path] without a scheme",
        ),
        (
            "apps[0].same_site_cookie_attribute",
            "relaxed",
            "apps[0].same_site_cookie_attribute: "
            "must be one of 'none', 'lax', 'strict', not 'relaxed'",
        ),
        (
            "apps[0].policies[0].decision",
            "block",
            "apps[0].policies[0].decision: must be one of 'allow', 'deny', 'bypass', "
            "'non_identity', not 'block'",
        ),
        # rules
        ("apps[0].policies[1].include", [], "apps[0].policies[1].include: needs at least one rule"),
        (
            "apps[0].policies[1].include",
            _DELETE,
            "apps[0].policies[1].include: needs at least one rule",
        ),
        (
            "apps[0].policies[0].require",
            [{"ip": {"ip": "192.0.2.0/33"}}],
            "apps[0].policies[0].require[0].ip.ip: invalid IP address or CIDR '192.0.2.0/33'",
        ),
        (
            "apps[0].policies[0].exclude",
            [{"email": {}}],
            "apps[0].policies[0].exclude[0].email.email: is required",
        ),
        (
            "apps[0].policies[0].include",
            [{"email": {"email": "a@example.com"}, "everyone": {}}],
            "apps[0].policies[0].include[0]: a rule is a table with exactly one rule name",
        ),
        (
            "apps[0].policies[0].include",
            ["everyone"],
            "apps[0].policies[0].include[0]: a rule is a table with exactly one rule name",
        ),
        (
            "apps[0].policies[0].include",
            [{"everyone": True}],
            "apps[0].policies[0].include[0].everyone: must be a table",
        ),
        # references between objects
        (
            "identity_providers[1].id",
            OKTA_ID,
            f"identity_providers[1].id: duplicate id {OKTA_ID!r}",
        ),
        ("apps[1].id", "wiki", "apps[1].id: duplicate id 'wiki'"),
        (
            "apps[1].domain",
            "WIKI.example.com",
            "apps[1].domain: duplicate domain 'wiki.example.com'",
        ),
        (
            "apps[1].domain",
            "wiki.example.com/*",
            "apps[1].domain: duplicate domain 'wiki.example.com/*'",
        ),
        (
            "apps[0].allowed_idps",
            [OKTA_ID, "azure"],
            "apps[0].allowed_idps[1]: no identity provider 'azure'",
        ),
    ],
)
def test_bad_value_is_a_problem_with_its_key_path(path: str, value: object, problem: str) -> None:
    doc = set_key(full_document(), path, value)
    assert problem in problems_of(doc)


def test_generic_oidc_needs_its_endpoints_and_no_okta_account() -> None:
    doc = set_key(
        full_document(),
        "identity_providers[1].config",
        {"client_id": "gateway", "client_secret": "s"},
    )
    assert problems_of(doc) == [
        f"identity_providers[1].config.{key}: is required"
        for key in ("issuer", "auth_url", "token_url", "certs_url")
    ]


def test_an_okta_idp_needs_no_generic_endpoints() -> None:
    settings = parse_settings(full_document(), ENV)
    okta = settings.identity_providers[0].config
    assert not any(hasattr(okta, k) for k in ("issuer", "auth_url", "token_url", "certs_url"))


def test_document_that_is_not_a_table() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings([], ENV)
    assert "<root>: must be a table" in caught.value.problems


# --- files and the CLI -----------------------------------------------------------------------


def test_load_config_reads_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(FULL_TOML, encoding="utf-8")
    assert load_config(path, ENV) == parse_settings(full_document(), ENV)


def test_invalid_toml_is_one_problem_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[gateway\npublic_url = "https://access.example.com"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, ENV)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}: invalid TOML: ")


def test_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, ENV)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}: cannot read")


def test_check_config_passes_a_good_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "gateway.toml"
    path.write_text(FULL_TOML, encoding="utf-8")

    assert main(["check-config", str(path)]) == 0

    out, err = capsys.readouterr()
    assert "ok" in out
    assert err == ""


def test_check_config_prints_every_problem_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OKTA_API_TOKEN")
    text = FULL_TOML.replace('decision = "bypass"', 'decision = "block"').replace(
        "{ everyone = {} }", '{ everyone = {} }, { grop = { name = "x" } }'
    )
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")

    assert main(["check-config", str(path)]) == 1

    out, err = capsys.readouterr()
    assert "ok" not in out
    assert err.splitlines() == [
        "identity_providers[0].config.api_token: environment variable OKTA_API_TOKEN is not set",
        "apps[0].policies[1].decision: must be one of 'allow', 'deny', 'bypass', "
        "'non_identity', not 'block'",
        "apps[1].policies[0].include[1]: unknown rule 'grop'",
    ]


def test_check_config_reports_invalid_toml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[gateway]\npublic_url = \n", encoding="utf-8")
    assert main(["check-config", str(path)]) == 1
    assert "invalid TOML" in capsys.readouterr().err


# --- config.example.toml ---------------------------------------------------------------------

# Keys that are easy to forget because SPEC 2's sample leaves them out or comments them out.
DOCUMENTED_KEYS = (
    "public_url",
    "cookie_secret",
    "admin_token",
    "store",
    "session_duration",
    "cookie_secure",
    "trusted_proxies",
    "idp_timeout",
    "upstream_timeout",
    "session_reads",
    "upstream_client",
    "authorization_server_id",
    "api_token",
    "claims",
    "email_claim_name",
    "pkce_enabled",
    "issuer",
    "auth_url",
    "token_url",
    "certs_url",
    "userinfo_url",
    "scopes",
    "secret",
    "seat_deprovision",
    "identity_update_behavior",
    "allowed_idps",
    "auto_redirect_to_identity",
    "same_site_cookie_attribute",
    "http_only_cookie_attribute",
    "custom_deny_message",
    "require",
    "exclude",
)
SPEC_RULES = {
    "everyone",
    "email",
    "email_domain",
    "okta",
    "group_name",
    "oidc",
    "login_method",
    "auth_method",
    "ip",
    "service_token",
    "any_valid_service_token",
    "user_risk_score",
    "saml",
}
SECRET_KEYS = {"cookie_secret", "admin_token", "client_secret", "api_token", "secret"}


def example_env() -> dict[str, str]:
    names = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", EXAMPLE.read_text(encoding="utf-8"))
    return {name: f"{name.lower()}-value-0123456789abcdef0123456789" for name in names}


def example_settings() -> Settings:
    return load_config(EXAMPLE, example_env())


def test_example_config_is_valid() -> None:
    settings = example_settings()
    assert {idp.type for idp in settings.identity_providers} == {"okta", "oidc", "saml"}
    assert settings.apps


def test_example_config_needs_its_env_vars() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(EXAMPLE, {})
    assert "gateway.cookie_secret: environment variable GATEWAY_COOKIE_SECRET is not set" in (
        caught.value.problems
    )


def _generic(path: str) -> str:
    """A key path without list indexes, with include/require/exclude as one "rules" list."""
    path = re.sub(r"\[\d+\]", "", path)
    return re.sub(r"(?:^|(?<=\.))(?:include|require|exclude)(?=\.|$)", "rules", path)


def _present_keys(node: Any, path: str = "") -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            found.add((_generic(path), key))
            found |= _present_keys(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for item in node:
            found |= _present_keys(item, path)
    return found


def test_example_config_sets_every_key_the_loader_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # Record every (table, key) the loader asks for: it asks for each key a table accepts,
    # whether or not the file sets it, so a key added to the loader shows up here at once.
    read: set[tuple[str, str]] = set()
    original = Reader.raw

    def recording_raw(reader: Any, key: str) -> Any:
        read.add((_generic(reader.path), key))
        return original(reader, key)

    monkeypatch.setattr(Reader, "raw", recording_raw)
    example_settings()

    assert ("gateway", "idp_timeout") in read  # the recording works
    assert ("identity_providers.config", "scopes") in read
    document = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert read - _present_keys(document) == set()


def test_example_config_uses_every_rule() -> None:
    document = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    used = {
        kind
        for app in document["apps"]
        for policy in app.get("policies", [])
        for key in ("include", "require", "exclude")
        for rule in policy.get(key, [])
        for kind in rule
    }
    assert used == SPEC_RULES == set(RULE_TYPES)
    assert {p["decision"] for a in document["apps"] for p in a["policies"]} == {
        "allow",
        "deny",
        "bypass",
        "non_identity",
    }


@pytest.mark.parametrize("key", DOCUMENTED_KEYS)
def test_example_config_documents_key(key: str) -> None:
    assert re.search(rf"^{key} = ", EXAMPLE.read_text(encoding="utf-8"), re.MULTILINE)


def test_example_config_documents_the_generic_oidc_type() -> None:
    assert re.search(r'^type = "oidc"', EXAMPLE.read_text(encoding="utf-8"), re.MULTILINE)


def test_example_config_comments_every_key() -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    uncommented = [
        line
        for i, line in enumerate(lines)
        if re.match(r"[a-z_]+ = ", line) and "#" not in line and not lines[i - 1].startswith("#")
    ]
    assert uncommented == []


def test_example_config_writes_secrets_as_env_references() -> None:
    def secrets_in(node: Any) -> list[Any]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k in SECRET_KEYS and not isinstance(v, dict)] + [
                s for v in node.values() for s in secrets_in(v)
            ]
        if isinstance(node, list):
            return [s for item in node for s in secrets_in(item)]
        return []

    found = secrets_in(tomllib.loads(EXAMPLE.read_text(encoding="utf-8")))
    assert len(found) >= 6
    for value in found:
        for item in value if isinstance(value, list) else [value]:
            assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*\}", item), item


def test_a_policy_without_a_decision_is_a_problem_never_a_silent_allow() -> None:
    doc = set_key(full_document(), "apps[0].policies[0].decision", _DELETE)
    assert "apps[0].policies[0].decision: is required" in problems_of(doc)


def test_an_issuer_keeps_its_trailing_slash() -> None:
    # The ID token's iss is compared character for character (Auth0's issuers end in "/").
    doc = full_document()
    oidc = next(i for i in doc["identity_providers"] if i["type"] == "oidc")
    oidc["config"]["issuer"] = "https://tenant.auth0.example/"
    settings = parse_settings(doc, ENV)
    generic = next(i for i in settings.identity_providers if i.type == "oidc")
    assert generic.config.issuer == "https://tenant.auth0.example/"


def test_an_unparsable_url_and_an_endless_duration_are_problems_not_tracebacks() -> None:
    doc = set_key(full_document(), "gateway.public_url", "http://[::1")
    doc = set_key(doc, "gateway.session_duration", "999999999h")
    assert problems_of(doc) == [
        "gateway.public_url: must be an absolute https or http URL",
        "gateway.session_duration: must be positive and at most 87600h (ten years)",
    ]


@pytest.mark.parametrize(
    "url", ["redis+sentinel://h1:26379,h2:26379/mymaster/0", "redis+cluster://h:7000,h2:7001"]
)
def test_sentinel_and_cluster_urls_are_accepted(url: str) -> None:
    doc = set_key(full_document(), "gateway.store", url)
    assert parse_settings(doc, ENV).gateway.store == url
