"""Access policy evaluation (SPEC 3), as pure functions over plain data.

Deny by default. Within a policy `include` rules are ORed, `require` rules ANDed, and any
matching `exclude` rule excludes. Across policies Cloudflare's order applies: every `bypass` and
`non_identity` policy first, top to bottom, then `allow` and `deny` top to bottom; the first
matching policy decides.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from gateway.config import (
    AnyValidServiceTokenRule,
    App,
    AuthMethodRule,
    EmailDomainRule,
    EmailRule,
    EveryoneRule,
    GroupNameRule,
    IpRule,
    LoginMethodRule,
    OidcClaimRule,
    OktaGroupRule,
    Policy,
    Rule,
    ServiceTokenRule,
)
from gateway.identity import Identity

Outcome = Literal["allow", "deny", "bypass", "non_identity"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a request contributes to a decision besides the identity."""

    client_ip: IPAddress | None = None
    service_token_id: str = ""  # a service token that authenticated this request, if any


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    policy: Policy | None = None  # None: no policy matched (deny by default)

    @property
    def allowed(self) -> bool:
        return self.outcome != "deny"


DENY_BY_DEFAULT = Decision("deny")


def rule_matches(
    rule: Rule, identity: Identity | None, facts: RequestFacts, *, anonymous: bool = False
) -> bool:
    """Whether one rule matches; identity rules never match without an identity.

    `anonymous` is set for bypass policies, which are decided before any sign-in: there
    `everyone` means every request, and other identity rules never match.
    """
    match rule:
        case EveryoneRule() if anonymous:
            return True
        case IpRule(network=network):
            return facts.client_ip is not None and facts.client_ip in network
        case ServiceTokenRule(token_id=token_id):
            return bool(facts.service_token_id) and facts.service_token_id == token_id
        case AnyValidServiceTokenRule():
            return bool(facts.service_token_id)
    if identity is None:
        return False
    match rule:
        case EveryoneRule():
            return True
        case EmailRule(email=email):
            return identity.email.lower() == email
        case EmailDomainRule(domain=domain):
            return identity.email.lower().endswith("@" + domain)
        case OktaGroupRule(name=name, identity_provider_id=idp_id):
            return (
                identity.idp_type == "okta"
                and name in identity.groups
                and (not idp_id or idp_id == identity.idp_id)
            )
        case GroupNameRule(name=name):
            return name in identity.groups
        case OidcClaimRule(claim_name=claim_name, claim_value=claim_value):
            value = identity.oidc_fields.get(claim_name)
            values = value if isinstance(value, list) else [value]
            return any(v is not None and _claim_text(v) == claim_value for v in values)
        case LoginMethodRule(id=idp_id):
            return identity.idp_id == idp_id
        case AuthMethodRule(auth_method=method):
            return method in identity.amr
    return False


def _claim_text(value: object) -> str:
    """A claim value as the config writes it: JSON `true` is "true", not Python's "True"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def policy_matches(policy: Policy, identity: Identity | None, facts: RequestFacts) -> bool:
    """include: at least one; require: all; exclude: none."""
    # bypass and non_identity are decided before any sign-in: no identity is seen. Only for
    # bypass does `everyone` mean every request; non_identity is for service tokens, so an
    # `everyone` there must not let anonymous callers in.
    if policy.decision in ("bypass", "non_identity"):
        identity = None
    anonymous = policy.decision == "bypass"
    return (
        any(rule_matches(r, identity, facts, anonymous=anonymous) for r in policy.include)
        and all(rule_matches(r, identity, facts, anonymous=anonymous) for r in policy.require)
        and not any(rule_matches(r, identity, facts, anonymous=anonymous) for r in policy.exclude)
    )


def evaluate_before_sign_in(app: App, facts: RequestFacts) -> Decision | None:
    """The first matching bypass or non_identity policy, or None: then a signed-in identity
    is needed and `evaluate` decides."""
    for policy in app.policies:
        if policy.decision in ("bypass", "non_identity") and policy_matches(policy, None, facts):
            return Decision(policy.decision, policy)
    return None


def evaluate(app: App, identity: Identity | None, facts: RequestFacts) -> Decision:
    """The full decision in Cloudflare's order; the first match decides, nothing matching denies.

    allow and deny policies are only reached with an identity: an `ip`-only allow policy still
    requires signing in, as in Cloudflare Access.
    """
    before = evaluate_before_sign_in(app, facts)
    if before is not None:
        return before
    if identity is None:
        return DENY_BY_DEFAULT
    for policy in app.policies:
        if policy.decision in ("allow", "deny") and policy_matches(policy, identity, facts):
            return Decision(policy.decision, policy)
    return DENY_BY_DEFAULT


def app_session_duration(app: App, identity: Identity, facts: RequestFacts) -> float:
    """How long a session for `app` lasts: the deciding policy's `session_duration`, else the
    app's (SPEC 3)."""
    decision = evaluate(app, identity, facts)
    if decision.policy is not None and decision.policy.session_duration:
        return decision.policy.session_duration
    return app.session_duration
