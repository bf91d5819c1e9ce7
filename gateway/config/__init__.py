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
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

# `as Network`: modules that read settings' networks (trusted_proxies) import the name from here
from gateway.authz.rules import Network as Network
from gateway.authz.rules import Rule, parse_rule

# The identity provider types and parsers are `idps.py`'s, the table reader `reader.py`'s;
# `as` re-exports them, so every module imports settings from `gateway.config` alone.
from gateway.config.idps import IDP_TYPES as IDP_TYPES
from gateway.config.idps import ClientConfig as ClientConfig
from gateway.config.idps import HeaderAttribute as HeaderAttribute
from gateway.config.idps import IdentityProvider as IdentityProvider
from gateway.config.idps import IdPConfig as IdPConfig
from gateway.config.idps import IdPType as IdPType
from gateway.config.idps import OIDCConfig as OIDCConfig
from gateway.config.idps import OktaConfig as OktaConfig
from gateway.config.idps import SamlConfig as SamlConfig
from gateway.config.idps import ScimConfig as ScimConfig
from gateway.config.idps import parse_identity_provider as parse_identity_provider
from gateway.config.idps import read_identity_provider
from gateway.config.reader import Reader
from gateway.config.reader import parse_duration as parse_duration
from gateway.errors import ConfigError
from gateway.risk.behaviors import BEHAVIORS, DEFAULTS, BehaviorSetting
from gateway.risk.changes import RISK_LEVELS

Decision = Literal["allow", "deny", "bypass", "non_identity"]
SameSite = Literal["none", "lax", "strict"]
# How the store's GETs (the session read on every request) reach Redis (through an exact local
# copy, the fast hand-written GET, or the library's), and which HTTP/1.1 client carries the
# upstream leg: the fast hand-written one, or the library's.
SessionReads = Literal["tracked", "pipelined", "redis-py"]
UpstreamClientKind = Literal["builtin", "httpx"]

# An app domain: a host (wildcards allowed; no port) and an optional path of visible ASCII.
_DOMAIN = re.compile(r"[a-z0-9*._-]+(?:/[\x21-\x7e]*)?")


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
    session_reads: SessionReads = "tracked"
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


# --- loading --------------------------------------------------------------------------------


def _rules(reader: Reader, key: str) -> tuple[Rule, ...]:
    value = reader.raw(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        reader.problem(key, "must be a list of rules")
        return ()
    table = functools.partial(Reader, problems=reader.problems, env=reader.env)
    rules = [
        parse_rule(item, f"{reader.key_path(key)}[{i}]", reader.problems, table)
        for i, item in enumerate(value)
    ]
    return tuple(r for r in rules if r is not None)


def _policy(reader: Reader) -> Policy:
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


def _console(reader: Reader) -> ConsoleSettings:
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


def _app(reader: Reader, default_duration: float) -> App:
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


def _gateway(reader: Reader) -> GatewaySettings:
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
            "session_reads", ("tracked", "pipelined", "redis-py"), "tracked"
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


def _risk(reader: Reader) -> RiskSettings:
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


def _check_branding(reader: Reader, settings: GatewaySettings) -> None:
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


def parse_settings(
    data: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    *,
    plain_http_hosts: frozenset[str] = frozenset(),
) -> Settings:
    """Validate a parsed document; raise ConfigError listing every problem. `plain_http_hosts`
    is for `gateway demo` only (`Reader`): no configuration can name one."""
    problems: list[str] = []
    env = os.environ if env is None else env
    root = Reader(data, "", problems, env, plain_http_hosts=plain_http_hosts)
    gateway = _gateway(root.table("gateway"))
    settings = Settings(
        gateway=gateway,
        identity_providers=tuple(
            read_identity_provider(r) for r in root.tables("identity_providers")
        ),
        apps=tuple(_app(r, gateway.session_duration) for r in root.tables("apps")),
        console=_console(root.table("console")),
        risk=_risk(root.table("risk")),
    )
    root.finish()
    _check_references(settings, problems)
    if problems:
        raise ConfigError(problems)
    return settings


def parse_app(data: Mapping[str, Any], default_duration: float) -> App:
    """One app object with its policies (the admin API's JSON), validated like the file."""
    problems: list[str] = []
    app = _app(Reader(data, "", problems, {}), default_duration)
    if problems:
        raise ConfigError(problems)
    return app


@dataclass(frozen=True, slots=True)
class RiskIntegrationBody:
    """An `/api/zt_risk_scoring/integrations` body, validated (SPEC 7 and 8)."""

    tenant_url: str  # the Okta org's base URL, no trailing "/": the SETs' `aud`
    reference_id: str  # the IdP whose users' risk changes are sent
    active: bool


def parse_risk_integration(data: Mapping[str, Any]) -> RiskIntegrationBody:
    """`{"integration_type": "Okta", "tenant_url", "reference_id", "active"}`; `integration_type`
    may be left out (Okta is the only one) and `active` defaults to true. The tenant URL is an
    org's base URL: https (http only to a loopback host, for a local test receiver), no user,
    path, query or fragment, since risk about users goes there."""
    problems: list[str] = []
    reader = Reader(data, "", problems, {})
    reader.choice("integration_type", ("Okta",), "Okta")
    tenant_url = reader.url("tenant_url", required=True, secure=True)
    if tenant_url and not problems:
        parts = urlsplit(tenant_url)
        if parts.username is not None or parts.path or parts.query or parts.fragment:
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
