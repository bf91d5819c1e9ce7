"""Checks for a configuration that loads but bites: each declared once, as an error or a warning.

The config loader (`config/`) refuses what cannot be read (wrong types, unknown keys, missing
variables). The checks here look at valid settings for what would silently lock people out or
break sign-in, with the same key paths:

- errors (the object would not work as meant, so it is refused): a rule naming an identity
  provider that does not exist, an `okta` rule naming a non-Okta IdP, an Okta Admin Console
  URL as `okta_account`, `cookie_secure = true` with a plain-http `public_url` on a real host;
- warnings (it works, but probably not as meant): a rule naming a group that no SCIM push and
  no sign-in has shown (a typo such as "Enginering" denies everyone it was meant for), an app
  without policies (nobody gets in), secure cookies on `http://localhost` (Safari drops them).

`gateway check-config` runs them over a file (exit 1 on an error), the admin API over each app
or IdP it is given (422 on an error, warnings in the envelope's `messages`). The groups that
count as known are read from the store: SCIM-pushed groups and groups of last-seen identities.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from gateway.authn.providers.saml import xmlsec_binary
from gateway.authz.rules import (
    GroupNameRule,
    LoginMethodRule,
    OktaGroupRule,
    Rule,
    SamlAttributeRule,
)
from gateway.config import (
    App,
    GatewaySettings,
    IdentityProvider,
    OktaConfig,
    SamlConfig,
    Settings,
)
from gateway.config.reader import is_loopback_host
from gateway.scim.repository import ScimRepository
from gateway.scim.schema import GROUPS
from gateway.state.registry import Registry
from gateway.state.store import Store

Severity = Literal["error", "warning"]

_ALL = 1_000_000_000  # "every record" for the SCIM repository's pager


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing found, at a key path (`apps[0].policies[1].include[0].okta.name`)."""

    severity: Severity
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def errors_in(findings: Iterable[Finding]) -> list[str]:
    return [str(f) for f in findings if f.severity == "error"]


def warnings_in(findings: Iterable[Finding]) -> list[str]:
    return [str(f) for f in findings if f.severity == "warning"]


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


# --- the gateway table -----------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    # A browser takes every *.localhost name for this machine, as the gateway does not.
    return host.endswith(".localhost") or is_loopback_host(host)


def check_gateway(gateway: GatewaySettings, path: str = "gateway") -> list[Finding]:
    findings: list[Finding] = []
    public = urlsplit(gateway.public_url)
    if gateway.cookie_secure and public.scheme == "http":
        if _is_loopback(public.hostname or ""):
            findings.append(
                Finding(
                    "warning",
                    _join(path, "cookie_secure"),
                    "is true with a plain-http localhost public_url: Chrome and Firefox keep "
                    "Secure cookies on localhost, Safari does not (set it to false for a "
                    "local test)",
                )
            )
        else:
            findings.append(
                Finding(
                    "error",
                    _join(path, "cookie_secure"),
                    "is true but public_url is http://: browsers never send a Secure cookie "
                    "over plain http, so every sign-in loops; serve https:// (TLS in front, "
                    "docs/production.md) or set cookie_secure = false",
                )
            )
    return findings


# --- identity providers ----------------------------------------------------------------------


def check_idp(idp: IdentityProvider, path: str = "") -> list[Finding]:
    findings: list[Finding] = []
    if isinstance(idp.config, OktaConfig):
        account = urlsplit(idp.config.okta_account)
        first, _, rest = (account.hostname or "").partition(".")
        if first.endswith("-admin") and rest:
            org = f"{account.scheme}://{first.removesuffix('-admin')}.{rest}"
            findings.append(
                Finding(
                    "error",
                    _join(path, "config.okta_account"),
                    f"is the Okta Admin Console's URL; use the org URL {org!r}: sign-in is "
                    "not served on the -admin host",
                )
            )
    if isinstance(idp.config, SamlConfig) and xmlsec_binary() is None:
        findings.append(
            Finding(
                "error",
                _join(path, "type"),
                "a saml identity provider needs the xmlsec1 program, which is not installed "
                "(apt-get install xmlsec1)",
            )
        )
    return findings


# --- apps ------------------------------------------------------------------------------------


RuleList = Literal["include", "require", "exclude"]


def _rules(app: App, path: str) -> Iterator[tuple[str, RuleList, Rule]]:
    """Every rule of the app's policies with its key path and list. Parsing keeps every rule of
    a valid app in place, so the indexes are the document's."""
    lists: tuple[RuleList, ...] = ("include", "require", "exclude")
    for i, policy in enumerate(app.policies):
        for kind in lists:
            for j, rule in enumerate(getattr(policy, kind)):
                yield _join(path, f"policies[{i}].{kind}[{j}].{rule.kind}"), kind, rule


def _idp_references(app: App, path: str) -> Iterator[tuple[str, str, Rule]]:
    """(key path, IdP id, rule) for each rule of the app that names an identity provider."""
    for rule_path, _, rule in _rules(app, path):
        if isinstance(rule, LoginMethodRule):
            yield _join(rule_path, "id"), rule.id, rule
        elif isinstance(rule, OktaGroupRule) and rule.identity_provider_id:
            yield _join(rule_path, "identity_provider_id"), rule.identity_provider_id, rule


def named_idps(app: App) -> set[str]:
    """The identity providers the app's policy rules name (deleting one would break them)."""
    return {idp_id for _, idp_id, _ in _idp_references(app, "")}


def _group_finding(
    name: str, path: str, rule_list: RuleList, known: Collection[str] | None
) -> Finding | None:
    if known is not None and name in known:
        return None
    if known is None:
        why = "is not checked: run `gateway check-config --online` to compare it with the groups"
        why += " SCIM pushed and sign-ins saw"
    else:
        # A typo fails open in an exclude list: it keeps out nobody it was meant to.
        effect = "keeps nobody out" if rule_list == "exclude" else "lets nobody in"
        why = "is not known: no SCIM push and no sign-in has shown it, and a rule on a group"
        why += f" nobody is in {effect}"
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
        if close:
            why += f" (did you mean {close[0]!r}?)"
    return Finding("warning", _join(path, "name"), f"group {name!r} {why}")


def check_app(
    app: App,
    idps: Iterable[IdentityProvider],
    known_groups: Collection[str] | None,
    path: str = "",
) -> list[Finding]:
    """The app's findings. `known_groups` None: the groups were not looked up (offline)."""
    by_id = {idp.id: idp for idp in idps}
    findings: list[Finding] = []
    if not app.policies:
        findings.append(
            Finding(
                "warning",
                _join(path, "policies"),
                "none: nobody can reach this app (deny by default)",
            )
        )
    for key_path, idp_id, rule in _idp_references(app, path):
        idp = by_id.get(idp_id)
        if idp is None:
            findings.append(
                Finding(
                    "error",
                    key_path,
                    f"no identity provider {idp_id!r}: the rule would never match",
                )
            )
        elif isinstance(rule, OktaGroupRule) and idp.type != "okta":
            findings.append(
                Finding(
                    "error",
                    key_path,
                    f"{idp_id!r} is an {idp.type} identity provider; an okta rule matches "
                    "only Okta groups (use group_name)",
                )
            )
    kept = {  # by the SAML IdPs this app takes sign-ins from
        name
        for idp in by_id.values()
        if isinstance(idp.config, SamlConfig)
        and (not app.allowed_idps or idp.id in app.allowed_idps)
        for name in idp.config.kept_attributes
    }
    for rule_path, rule_list, rule in _rules(app, path):
        if isinstance(rule, OktaGroupRule | GroupNameRule):
            finding = _group_finding(rule.name, rule_path, rule_list, known_groups)
            if finding is not None:
                findings.append(finding)
        elif isinstance(rule, SamlAttributeRule) and rule.attribute_name not in kept:
            findings.append(
                Finding(
                    "warning",
                    _join(rule_path, "attribute_name"),
                    f"no saml identity provider of this app keeps attribute "
                    f"{rule.attribute_name!r} (list it in its attributes): the rule matches "
                    "nobody",
                )
            )
    return findings


def check_settings(settings: Settings, known_groups: Collection[str] | None) -> list[Finding]:
    """Every finding of a whole configuration, in file order."""
    findings = check_gateway(settings.gateway)
    for i, idp in enumerate(settings.identity_providers):
        findings += check_idp(idp, f"identity_providers[{i}]")
    for i, app in enumerate(settings.apps):
        findings += check_app(app, settings.identity_providers, known_groups, f"apps[{i}]")
    return findings


async def known_groups(store: Store, idp_ids: Iterable[str]) -> frozenset[str]:
    """The group names the gateway has seen: pushed over SCIM by any IdP, or in the last-seen
    identity of any user who signed in."""
    names: set[str] = set()
    for idp_id in idp_ids:
        _, records = await ScimRepository(store, idp_id, time.time).page(GROUPS, None, 1, _ALL)
        names.update(str(r["displayName"]) for r in records)
    for record in await Registry(store).all():
        names.update(str(g) for g in (record.identity or {}).get("groups", ()))
    return frozenset(names)
