"""Access policy evaluation (SPEC 3), as pure functions over plain data.

Deny by default. Within a policy `include` rules are ORed, `require` rules ANDed, and any
matching `exclude` rule excludes. Across policies Cloudflare's order applies: every `bypass` and
`non_identity` policy first, top to bottom, then `allow` and `deny` top to bottom; the first
matching policy decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# `as`: callers name the facts, and the address type, through the policy API they feed
from gateway.authz.rules import IPAddress as IPAddress
from gateway.authz.rules import RequestFacts as RequestFacts
from gateway.config import App, Policy
from gateway.identity import Identity

Outcome = Literal["allow", "deny", "bypass", "non_identity"]


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    policy: Policy | None = None  # None: no policy matched (deny by default)

    @property
    def allowed(self) -> bool:
        return self.outcome != "deny"


DENY_BY_DEFAULT = Decision("deny")


def policy_matches(policy: Policy, identity: Identity | None, facts: RequestFacts) -> bool:
    """include: at least one; require: all; exclude: none."""
    # bypass and non_identity are decided before any sign-in: no identity is seen. Only for
    # bypass does `everyone` mean every request; non_identity is for service tokens, so an
    # `everyone` there must not let anonymous callers in.
    if policy.decision in ("bypass", "non_identity"):
        identity = None
    anonymous = policy.decision == "bypass"
    # Loops, not any()/all() over generators: this runs for every request and rule.
    for rule in policy.include:
        if rule.matches(identity, facts, anonymous):
            break
    else:
        return False
    for rule in policy.require:
        if not rule.matches(identity, facts, anonymous):
            return False
    for rule in policy.exclude:
        if rule.matches(identity, facts, anonymous):
            return False
    return True


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
