"""Configuration: TOML (or the same objects as JSON) into frozen, typed settings.

`load_config(path)` reads the file, substitutes `"${VAR}"` secrets from the environment and
validates everything at once: unknown keys, wrong types, bad values and missing or empty
variables are all collected with their key path
(`apps[1].policies[0].include[2]: unknown rule 'grop'`) and raised together as one `ConfigError`.
A typo never silently switches a check off. What loads but would bite (a rule on an unknown IdP,
secure cookies over http...) is `checks.py`'s.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

# `as Network`: modules that read settings' networks (trusted_proxies) import the name from here
from gateway.authz.rules import Network as Network
from gateway.authz.rules import Rule, parse_rule
from gateway.errors import ConfigError
from gateway.risk.behaviors import BEHAVIORS, DEFAULTS, BehaviorSetting
from gateway.risk.changes import RISK_LEVELS

Decision = Literal["allow", "deny", "bypass", "non_identity"]
SameSite = Literal["none", "lax", "strict"]
UpdateBehavior = Literal["automatic", "reauth", "no_action"]
# How the store's GETs (the session read on every request) reach Redis (through an exact local
# copy, the fast hand-written GET, or the library's), and which HTTP/1.1 client carries the
# upstream leg: the fast hand-written one, or the library's.
SessionReads = Literal["tracked", "pipelined", "redis-py"]
UpstreamClientKind = Literal["builtin", "httpx"]

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_IDENTIFIER = re.compile(r"[A-Za-z0-9._-]{1,64}")
# An app domain: a host (wildcards allowed; no port) and an optional path of visible ASCII.
_DOMAIN = re.compile(r"[a-z0-9*._-]+(?:/[\x21-\x7e]*)?")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_MAX_DURATION = 87600 * 3600.0
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


# --- apps and their policies (SPEC 2-3; the rules are in gateway/authz/rules.py) ------------


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    decision: Decision
    include: tuple[Rule, ...]
    require: tuple[Rule, ...] = ()
    exclude: tuple[Rule, ...] = ()
    session_duration: float | None = None


@dataclass(frozen=True, slots=True)
class App:
    id: str
    name: str
    domain: str
    upstream: str
    aud: str
    session_duration: float
    policies: tuple[Policy, ...] = ()
    allowed_idps: tuple[str, ...] = ()
    auto_redirect_to_identity: bool = True
    same_site_cookie_attribute: SameSite = "lax"
    http_only_cookie_attribute: bool = True
    custom_deny_message: str = ""

    @property
    def host(self) -> str:
        """The host part of `domain`. Path-based apps on one host share its app-session cookie."""
        return self.domain.partition("/")[0]


# --- identity providers ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    """What every OpenID Connect type of IdP has: the client and which claims to take."""

    client_id: str
    client_secret: str
    claims: tuple[str, ...] = ()
    email_claim_name: str = "email"
    pkce_enabled: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class OktaConfig(ClientConfig):
    """`type = "okta"`: endpoints come from discovery on the org or a custom server."""

    type: ClassVar[Literal["okta"]] = "okta"
    okta_account: str
    authorization_server_id: str = ""
    api_token: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OIDCConfig(ClientConfig):
    """`type = "oidc"`: a generic OpenID Connect provider, its endpoints given explicitly."""

    type: ClassVar[Literal["oidc"]] = "oidc"
    issuer: str
    auth_url: str
    token_url: str
    certs_url: str
    userinfo_url: str = ""
    scopes: tuple[str, ...] = ()


IdPConfig = OktaConfig | OIDCConfig
IDP_TYPES = ("okta", "oidc")


@dataclass(frozen=True, slots=True)
class ScimConfig:
    enabled: bool = False
    user_deprovision: bool = False
    seat_deprovision: bool = False
    identity_update_behavior: UpdateBehavior = "automatic"
    secret: str = ""


@dataclass(frozen=True, slots=True)
class IdentityProvider:
    id: str
    name: str
    config: IdPConfig
    scim_config: ScimConfig = field(default_factory=ScimConfig)

    @property
    def type(self) -> Literal["okta", "oidc"]:
        """The IdP's `type`, which is the kind of its `config`."""
        return self.config.type


# --- the gateway ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    public_url: str
    cookie_secret: tuple[str, ...]
    store: str
    admin_token: str = ""
    session_duration: float = 86400.0
    cookie_secure: bool = True
    trusted_proxies: tuple[Network, ...] = ()
    idp_timeout: float = 10.0
    upstream_timeout: float = 60.0
    session_reads: SessionReads = "pipelined"
    upstream_client: UpstreamClientKind = "builtin"
    # Per worker process: exchanges in flight to one upstream origin and from one client
    # address, and the longest pause inside a request body (proxy/limits.py, forwarding.py).
    upstream_requests_per_origin: int = 128
    upstream_requests_per_client: int = 64
    request_body_timeout: float = 60.0
    # Branding of the pages browsers see (web/pages.py)
    name: str = ""  # shown at the top of every page
    logo: str = ""  # path of an image file shown at the top of every page
    footer: str = ""  # a line of text at the foot of every page
    templates_dir: str = ""  # templates here replace the packaged ones of the same name

    @property
    def team_host(self) -> str:
        return (urlsplit(self.public_url).hostname or "").lower()


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """`[console]`: who may use the operator console (SPEC 9). `policy` is an allow policy
    (include / require / exclude as SPEC 3); None: nobody signs in to it, only a console-link
    holder gets in."""

    policy: Policy | None = None


@dataclass(frozen=True, slots=True)
class RiskSettings:
    """`[risk]`: the behaviours' settings as the file gives them (SPEC 8); the admin API's
    changes, kept in the store, take precedence (gateway/risk/engine.py)."""

    behaviors: Mapping[str, BehaviorSetting] = field(default_factory=lambda: dict(DEFAULTS))


@dataclass(frozen=True, slots=True)
class Settings:
    gateway: GatewaySettings
    identity_providers: tuple[IdentityProvider, ...] = ()
    apps: tuple[App, ...] = ()
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    risk: RiskSettings = field(default_factory=RiskSettings)

    def idp(self, idp_id: str) -> IdentityProvider | None:
        return next((idp for idp in self.identity_providers if idp.id == idp_id), None)


def app_aud(app_id: str) -> str:
    """The app's AUD tag: a stable 64-hex value derived from its id."""
    return hashlib.sha256(f"gateway-app-aud:{app_id}".encode()).hexdigest()


def parse_duration(text: str) -> float:
    """Go-style durations as Cloudflare writes them: "24h", "30m", "1h30m", "90s"."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"invalid duration {text!r} (use e.g. '24h', '30m', '1h30m')")
    return total


# --- loading --------------------------------------------------------------------------------

T = TypeVar("T")


class _Reader:
    """Reads one table, tracking its key path, the keys it used and every problem found."""

    def __init__(self, data: Any, path: str, problems: list[str], env: Mapping[str, str]):
        self.path = path
        self.problems = problems
        self.env = env
        self.data: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        if not isinstance(data, Mapping):
            self.problem("", "must be a table")
        self.known: set[str] = set()

    def key_path(self, key: str) -> str:
        if not key:
            return self.path or "<root>"
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.key_path(key)}: {message}")

    def raw(self, key: str) -> Any:
        self.known.add(key)
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return key in self.data

    def _typed(self, key: str, kinds: type | tuple[type, ...], what: str, default: T) -> Any:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) and bool not in (
            kinds if isinstance(kinds, tuple) else (kinds,)
        ):
            self.problem(key, f"must be {what}")
            return default
        if not isinstance(value, kinds):
            self.problem(key, f"must be {what}")
            return default
        return value

    def string(self, key: str, default: str = "", *, required: bool = False) -> str:
        if required and self.raw(key) in (None, ""):
            self.problem(key, "is required")
            return default
        return self._secret(key, self._typed(key, str, "a string", default))

    def identifier(self, key: str) -> str:
        """A required id. Ids end up in store keys, URLs and user uuids (`<idp>:<sub>`), so only
        letters, digits, ".", "_" and "-": one id can never read as another with a suffix."""
        value = self.string(key, required=True)
        if value and not _IDENTIFIER.fullmatch(value):
            self.problem(key, 'must be 1 to 64 letters, digits, ".", "_" or "-"')
        return value

    def _secret(self, key: str, value: str) -> str:
        match = _ENV_REF.match(value)
        if not match:
            return value
        name = match.group(1)
        if name not in self.env:
            self.problem(key, f"environment variable {name} is not set")
            return ""
        if not self.env[name]:
            # Set but empty is a deployment mistake, never a choice: an empty client secret or
            # admin token would otherwise pass as if given (leave an optional key out instead).
            self.problem(key, f"environment variable {name} is empty")
            return ""
        return self.env[name]

    def count(self, key: str, default: int) -> int:
        """A positive whole number."""
        value = self._typed(key, int, "a whole number", default)
        if value < 1:
            self.problem(key, "must be at least 1")
            return default
        return int(value)

    def boolean(self, key: str, default: bool) -> bool:
        return bool(self._typed(key, bool, "true or false", default))

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(key, "must be a list of strings")
            return ()
        return tuple(self._secret(key, v) for v in value)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.string(key, default)
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            self.problem(key, f"must be one of {allowed}, not {value!r}")
            return default
        return value

    def duration(self, key: str, default: float | None) -> float | None:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(key, "must be a duration such as '24h'")
            return default
        try:
            seconds = parse_duration(value) if isinstance(value, str) else float(value)
        except ValueError as exc:
            self.problem(key, str(exc))
            return default
        if not 0 < seconds <= _MAX_DURATION:
            self.problem(key, "must be positive and at most 87600h (ten years)")
            return default
        return seconds

    def url(self, key: str, *, required: bool = False, exact: bool = False) -> str:
        """An absolute http(s) URL; a trailing "/" is dropped unless `exact` (an issuer is
        compared to the ID token's `iss` character for character)."""
        value = self.string(key, required=required)
        if value:
            try:
                parts = urlsplit(value)
                parts.port  # noqa: B018 - raises for a port out of 0-65535 or not a number
                valid = parts.scheme in ("https", "http") and bool(parts.hostname)
            except ValueError:  # e.g. "http://[::1" or "http://h:99999": urlsplit refuses it
                valid = False
            if not valid:
                self.problem(key, "must be an absolute https or http URL")
        return value if exact else value.rstrip("/")

    def network(self, key: str, text: str) -> Network | None:
        """An IP address or CIDR (host bits allowed: "192.0.2.7/24" is 192.0.2.0/24)."""
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            self.problem(key, f"invalid IP address or CIDR {text!r}")
            return None

    def table(self, key: str) -> _Reader:
        value = self.raw(key)
        return _Reader({} if value is None else value, self.key_path(key), self.problems, self.env)

    def tables(self, key: str) -> list[_Reader]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(key, "must be a list of tables")
            return []
        return [
            _Reader(item, f"{self.key_path(key)}[{i}]", self.problems, self.env)
            for i, item in enumerate(value)
        ]

    def finish(self) -> None:
        """Report every key of this table that nothing read: a typo must not pass silently."""
        for key in self.data:
            if key not in self.known:
                self.problem(key, "unknown key")


def _rules(reader: _Reader, key: str) -> tuple[Rule, ...]:
    value = reader.raw(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        reader.problem(key, "must be a list of rules")
        return ()
    table = functools.partial(_Reader, problems=reader.problems, env=reader.env)
    rules = [
        parse_rule(item, f"{reader.key_path(key)}[{i}]", reader.problems, table)
        for i, item in enumerate(value)
    ]
    return tuple(r for r in rules if r is not None)


def _policy(reader: _Reader) -> Policy:
    policy = Policy(
        name=reader.string("name", required=True),
        decision=reader.choice(  # type: ignore[arg-type]
            "decision", ("allow", "deny", "bypass", "non_identity"), "deny"
        ),
        include=_rules(reader, "include"),
        require=_rules(reader, "require"),
        exclude=_rules(reader, "exclude"),
        session_duration=reader.duration("session_duration", None),
    )
    if not reader.has("decision"):
        # Never a silent default: a forgotten decision must not turn into "allow".
        reader.problem("decision", "is required")
    if reader.data.get("include") == [] or not reader.has("include"):
        reader.problem("include", "needs at least one rule")
    reader.finish()
    return policy


CONSOLE_POLICY_NAME = "console"


def _console(reader: _Reader) -> ConsoleSettings:
    """`[console.policy]`: include / require / exclude; the decision is allow, implied."""
    if not reader.has("policy"):
        reader.finish()
        return ConsoleSettings()
    table = reader.table("policy")
    policy = Policy(
        name=CONSOLE_POLICY_NAME,
        decision="allow",
        include=_rules(table, "include"),
        require=_rules(table, "require"),
        exclude=_rules(table, "exclude"),
    )
    if not table.data.get("include"):
        table.problem("include", "needs at least one rule")
    table.finish()
    reader.finish()
    return ConsoleSettings(policy)


def _app(reader: _Reader, default_duration: float) -> App:
    app_id = reader.identifier("id")
    domain = reader.string("domain", required=True).lower().rstrip("/")
    if domain and not _DOMAIN.fullmatch(domain):
        reader.problem("domain", "must be host[/path] without a scheme")
    app = App(
        id=app_id,
        name=reader.string("name", app_id),
        domain=domain,
        upstream=reader.url("upstream", required=True),
        aud=app_aud(app_id),
        session_duration=reader.duration("session_duration", default_duration) or default_duration,
        policies=tuple(_policy(p) for p in reader.tables("policies")),
        allowed_idps=reader.strings("allowed_idps"),
        auto_redirect_to_identity=reader.boolean("auto_redirect_to_identity", True),
        same_site_cookie_attribute=reader.choice(  # type: ignore[arg-type]
            "same_site_cookie_attribute", ("none", "lax", "strict"), "lax"
        ),
        http_only_cookie_attribute=reader.boolean("http_only_cookie_attribute", True),
        custom_deny_message=reader.string("custom_deny_message"),
    )
    reader.finish()
    return app


def _idp_config(reader: _Reader, idp_type: str) -> IdPConfig:
    # Every key of both types is read and checked whatever the type, in this order: the file
    # and the admin API have always taken them all (a key of the other type is ignored).
    client_id = reader.string("client_id", required=True)
    client_secret = reader.string("client_secret", required=True)
    okta_account = reader.url("okta_account", required=idp_type == "okta")
    authorization_server_id = reader.string("authorization_server_id")
    api_token = reader.string("api_token")
    claims = reader.strings("claims")
    email_claim_name = reader.string("email_claim_name", "email") or "email"
    pkce_enabled = reader.boolean("pkce_enabled", False)
    issuer = reader.url("issuer", required=idp_type == "oidc", exact=True)
    auth_url = reader.url("auth_url", required=idp_type == "oidc")
    token_url = reader.url("token_url", required=idp_type == "oidc")
    certs_url = reader.url("certs_url", required=idp_type == "oidc")
    userinfo_url = reader.url("userinfo_url")
    scopes = reader.strings("scopes")
    reader.finish()
    if idp_type == "okta":
        return OktaConfig(
            client_id=client_id,
            client_secret=client_secret,
            okta_account=okta_account,
            authorization_server_id=authorization_server_id,
            api_token=api_token,
            claims=claims,
            email_claim_name=email_claim_name,
            pkce_enabled=pkce_enabled,
        )
    return OIDCConfig(
        client_id=client_id,
        client_secret=client_secret,
        issuer=issuer,
        auth_url=auth_url,
        token_url=token_url,
        certs_url=certs_url,
        userinfo_url=userinfo_url,
        scopes=scopes,
        claims=claims,
        email_claim_name=email_claim_name,
        pkce_enabled=pkce_enabled,
    )


def _scim_config(reader: _Reader) -> ScimConfig:
    scim = ScimConfig(
        enabled=reader.boolean("enabled", False),
        user_deprovision=reader.boolean("user_deprovision", False),
        seat_deprovision=reader.boolean("seat_deprovision", False),
        identity_update_behavior=reader.choice(  # type: ignore[arg-type]
            "identity_update_behavior", ("automatic", "reauth", "no_action"), "automatic"
        ),
        secret=reader.string("secret"),
    )
    if scim.seat_deprovision and not scim.user_deprovision:
        reader.problem("seat_deprovision", "needs user_deprovision = true")
    reader.finish()
    return scim


def _idp(reader: _Reader) -> IdentityProvider:
    idp_type = reader.choice("type", IDP_TYPES, "okta")
    idp = IdentityProvider(
        id=reader.identifier("id"),
        name=reader.string("name", required=True),
        config=_idp_config(reader.table("config"), idp_type),
        scim_config=_scim_config(reader.table("scim_config")),
    )
    reader.finish()
    return idp


def _gateway(reader: _Reader) -> GatewaySettings:
    public_url = reader.url("public_url", required=True)
    reported = len(reader.problems)
    secrets = reader.raw("cookie_secret")
    cookie_secret = (
        reader.strings("cookie_secret")
        if isinstance(secrets, list)
        else (reader.string("cookie_secret", required=True),)
    )
    for secret in cookie_secret:
        if secret and len(secret) < 32:
            reader.problem("cookie_secret", "each key must be at least 32 characters")
    if not any(cookie_secret):
        cookie_secret = ()
        # Only if reading it found nothing wrong yet: a missing variable or a wrong type is
        # already reported, and "is required" on top would be the same problem twice.
        if secrets is not None and len(reader.problems) == reported:
            reader.problem("cookie_secret", "is required")
    networks = tuple(
        n
        for n in (reader.network("trusted_proxies", t) for t in reader.strings("trusted_proxies"))
        if n is not None
    )
    settings = GatewaySettings(
        public_url=public_url,
        cookie_secret=cookie_secret,
        admin_token=reader.string("admin_token"),
        store=reader.string("store", "memory") or "memory",
        session_duration=reader.duration("session_duration", 86400.0) or 86400.0,
        cookie_secure=reader.boolean("cookie_secure", True),
        trusted_proxies=networks,
        idp_timeout=reader.duration("idp_timeout", 10.0) or 10.0,
        upstream_timeout=reader.duration("upstream_timeout", 60.0) or 60.0,
        session_reads=reader.choice(  # type: ignore[arg-type]
            "session_reads", ("tracked", "pipelined", "redis-py"), "pipelined"
        ),
        upstream_client=reader.choice(  # type: ignore[arg-type]
            "upstream_client", ("builtin", "httpx"), "builtin"
        ),
        upstream_requests_per_origin=reader.count("upstream_requests_per_origin", 128),
        upstream_requests_per_client=reader.count("upstream_requests_per_client", 64),
        request_body_timeout=reader.duration("request_body_timeout", 60.0) or 60.0,
        name=reader.string("name"),
        logo=reader.string("logo"),
        footer=reader.string("footer"),
        templates_dir=reader.string("templates_dir"),
    )
    _check_branding(reader, settings)
    # "memory" exactly: open_store() treats anything else as a Redis URL, so a typo such as
    # "memory_store" must be reported here, not fail at start-up.
    if settings.store != "memory" and not settings.store.startswith(
        ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")
    ):
        reader.problem("store", f"unsupported store {settings.store!r}")
    reader.finish()
    return settings


def _risk(reader: _Reader) -> RiskSettings:
    """`[risk.behaviors.<name>]` tables: `enabled` and `risk_level`, each defaulting to the
    behaviour's own default."""
    tables = reader.table("behaviors")
    behaviors = dict(DEFAULTS)
    for name in tables.data:
        table = tables.table(name)
        if name not in BEHAVIORS:
            tables.problem(name, f"unknown behavior (known: {', '.join(BEHAVIORS)})")
            continue
        default = DEFAULTS[name]
        behaviors[name] = BehaviorSetting(
            table.boolean("enabled", default.enabled),
            table.choice("risk_level", RISK_LEVELS, default.risk_level),  # type: ignore[arg-type]
        )
        table.finish()
    reader.finish()
    return RiskSettings(behaviors)


_LOGO_TYPES = (".png", ".svg", ".jpg", ".jpeg", ".gif", ".webp")
MAX_LOGO_BYTES = 256 * 1024  # inlined into every page


def _check_branding(reader: _Reader, settings: GatewaySettings) -> None:
    """The logo is an image file that pages can inline; templates_dir is a directory."""
    if settings.logo:
        logo = Path(settings.logo)
        if logo.suffix.lower() not in _LOGO_TYPES:
            reader.problem("logo", f"must be an image file ({', '.join(_LOGO_TYPES)})")
        elif not logo.is_file():
            reader.problem("logo", f"no such file: {settings.logo}")
        elif logo.stat().st_size > MAX_LOGO_BYTES:
            reader.problem("logo", f"larger than {MAX_LOGO_BYTES // 1024} KiB")
    if settings.templates_dir and not Path(settings.templates_dir).is_dir():
        reader.problem("templates_dir", f"no such directory: {settings.templates_dir}")


def same_domain(a: str, b: str) -> bool:
    """Whether two app domains are one for uniqueness: `host/path/*` covers everything
    `host/path` does but that one path, so a second app with it would silently take the
    first one's place (an API-made app over a file-defined one, say)."""

    def key(domain: str) -> str:
        return domain.lower().removesuffix("/*")

    return key(a) == key(b)


def _check_references(settings: Settings, problems: list[str]) -> None:
    idp_ids = [idp.id for idp in settings.identity_providers]
    for i, idp_id in enumerate(idp_ids):
        if idp_id and idp_ids.index(idp_id) != i:
            problems.append(f"identity_providers[{i}].id: duplicate id {idp_id!r}")
    app_ids = [app.id for app in settings.apps]
    for i, app in enumerate(settings.apps):
        if app.id and app_ids.index(app.id) != i:
            problems.append(f"apps[{i}].id: duplicate id {app.id!r}")
        if app.domain and any(same_domain(app.domain, a.domain) for a in settings.apps[:i]):
            problems.append(f"apps[{i}].domain: duplicate domain {app.domain!r}")
        for j, allowed in enumerate(app.allowed_idps):
            if allowed not in idp_ids:
                problems.append(f"apps[{i}].allowed_idps[{j}]: no identity provider {allowed!r}")


def parse_settings(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Validate a parsed document; raise ConfigError listing every problem."""
    problems: list[str] = []
    root = _Reader(data, "", problems, os.environ if env is None else env)
    gateway = _gateway(root.table("gateway"))
    settings = Settings(
        gateway=gateway,
        identity_providers=tuple(_idp(r) for r in root.tables("identity_providers")),
        apps=tuple(_app(r, gateway.session_duration) for r in root.tables("apps")),
        console=_console(root.table("console")),
        risk=_risk(root.table("risk")),
    )
    root.finish()
    _check_references(settings, problems)
    if problems:
        raise ConfigError(problems)
    return settings


def parse_identity_provider(data: Mapping[str, Any]) -> IdentityProvider:
    """One identity provider object (the admin API's JSON), with the file's rules and messages.

    No `${VAR}` substitution: an API caller must not be able to read the gateway's environment.
    """
    problems: list[str] = []
    idp = _idp(_Reader(data, "", problems, {}))
    if problems:
        raise ConfigError(problems)
    return idp


def parse_app(data: Mapping[str, Any], default_duration: float) -> App:
    """One app object with its policies (the admin API's JSON), validated like the file."""
    problems: list[str] = []
    app = _app(_Reader(data, "", problems, {}), default_duration)
    if problems:
        raise ConfigError(problems)
    return app


@dataclass(frozen=True, slots=True)
class RiskIntegrationBody:
    """An `/api/zt_risk_scoring/integrations` body, validated (SPEC 7 and 8)."""

    tenant_url: str  # the Okta org's base URL, no trailing "/": the SETs' `aud`
    reference_id: str  # the IdP whose users' risk changes are sent
    active: bool


_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def parse_risk_integration(data: Mapping[str, Any]) -> RiskIntegrationBody:
    """`{"integration_type": "Okta", "tenant_url", "reference_id", "active"}`; `integration_type`
    may be left out (Okta is the only one) and `active` defaults to true. The tenant URL is an
    org's base URL: https (http only to a loopback host, for a local test receiver), no user,
    path, query or fragment, since risk about users goes there."""
    problems: list[str] = []
    reader = _Reader(data, "", problems, {})
    reader.choice("integration_type", ("Okta",), "Okta")
    tenant_url = reader.url("tenant_url", required=True)
    if tenant_url and not problems:
        parts = urlsplit(tenant_url)
        if parts.scheme != "https" and parts.hostname not in _LOOPBACK_HOSTS:
            reader.problem("tenant_url", "must be an https URL")
        elif parts.username is not None or parts.path or parts.query or parts.fragment:
            reader.problem(
                "tenant_url", "must be the org's base URL, like https://example.okta.com"
            )
    reference_id = reader.string("reference_id", required=True)
    active = reader.boolean("active", True)
    reader.finish()
    if problems:
        raise ConfigError(problems)
    return RiskIntegrationBody(tenant_url.lower(), reference_id, active)


def check_references(settings: Settings) -> None:
    """Cross-object rules (unique ids and domains, allowed_idps that exist); ConfigError."""
    problems: list[str] = []
    _check_references(settings, problems)
    if problems:
        raise ConfigError(problems)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a TOML config file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from exc
    return parse_settings(data, env)
