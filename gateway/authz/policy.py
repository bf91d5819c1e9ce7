"""Access policy evaluation (SPEC 3), as pure functions over plain data.

Deny by default. Within a policy `include` rules are ORed, `require` rules ANDed, and any
matching `exclude` rule excludes. Across policies Cloudflare's order applies: every `bypass` and
`non_identity` policy first, top to bottom, then `allow` and `deny` top to bottom; the first
matching policy decides.

A decision says which policy made it and, for a deny, which rule settled it: the rule that
failed in the first allow policy (nothing matched), or the rule that made a deny policy match.
`evaluate` finds that rule only for a deny, so an allowed request pays nothing for it. `explain`
answers "would this user get in, and why" for `gateway explain` and the admin API: the decision
and, for every policy in the order they are judged, whether it matched and the rule that
settled it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# `as`: callers name the facts, and the address type, through the policy API they feed
from gateway.authz.rules import IPAddress as IPAddress
from gateway.authz.rules import RequestFacts as RequestFacts
from gateway.authz.rules import Rule
from gateway.config import App, Policy
from gateway.identity import Identity

Outcome = Literal["allow", "deny", "bypass", "non_identity"]

NO_POLICY = "(no policy matched)"  # the policy named in logs when none decided
NOT_SIGNED_IN = "not signed in"


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    policy: Policy | None = None  # None: no policy matched (deny by default)
    # For a deny, why: the rule that settled it, in words. An explanation, not part of what
    # was decided, so two decisions compare equal whatever it says.
    rule: str = field(default="", compare=False)

    @property
    def allowed(self) -> bool:
        return self.outcome != "deny"

    @property
    def policy_name(self) -> str:
        return self.policy.name if self.policy is not None else NO_POLICY


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
        return Decision("deny", rule=NOT_SIGNED_IN)
    for policy in app.policies:
        if policy.decision in ("allow", "deny") and policy_matches(policy, identity, facts):
            if policy.decision == "deny":
                return Decision("deny", policy, settling_rule(policy, identity, facts))
            return Decision(policy.decision, policy)
    return Decision("deny", rule=_why_no_allow(app, identity, facts))


# --- explanations: off the hot path (a deny, `gateway explain`) --------------------------------


def settling_rule(policy: Policy, identity: Identity | None, facts: RequestFacts) -> str:
    """The rule that settles whether `policy` matches, in words: the exclude rule that
    matched, else the require rule that failed, else the include rule that matched, else that
    no include rule did. `policy_matches` is what decides; this only says why."""
    if policy.decision in ("bypass", "non_identity"):
        identity = None  # as policy_matches judges them
    anonymous = policy.decision == "bypass"
    for rule in policy.exclude:
        if rule.matches(identity, facts, anonymous):
            return f"exclude: {rule.describe()} matched"
    for rule in policy.require:
        if not rule.matches(identity, facts, anonymous):
            return f"require: {rule.describe()} did not match"
    for rule in policy.include:
        if rule.matches(identity, facts, anonymous):
            return f"include: {rule.describe()} matched"
    return "include: none matched (" + _listed(policy.include) + ")"


def _listed(rules: tuple[Rule, ...]) -> str:
    return "; ".join(rule.describe() for rule in rules) or "the list is empty"


def _why_no_allow(app: App, identity: Identity, facts: RequestFacts) -> str:
    """Why nothing let `identity` in: the first allow policy and the rule that kept it out."""
    for policy in app.policies:
        if policy.decision == "allow":
            return f"{policy.name}: {settling_rule(policy, identity, facts)}"
    return "the app has no allow policy"


@dataclass(frozen=True, slots=True)
class PolicyCheck:
    """One policy as `explain` judged it."""

    policy: Policy
    matched: bool
    rule: str  # the rule that settled it (`settling_rule`)


@dataclass(frozen=True, slots=True)
class Explanation:
    """Would `identity` get into `app`, and why: the decision and every policy's check, in
    the order they are judged."""

    app: App
    identity: Identity
    decision: Decision
    checks: tuple[PolicyCheck, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app.id,
            "email": self.identity.email,
            "user_uuid": self.identity.user_uuid,
            "identity_provider_id": self.identity.idp_id,
            "allowed": self.decision.allowed,
            "decision": self.decision.outcome,
            "policy": self.decision.policy_name,
            "rule": self.decision.rule,
            "policies": [
                {
                    "name": check.policy.name,
                    "decision": check.policy.decision,
                    "matched": check.matched,
                    "rule": check.rule,
                }
                for check in self.checks
            ],
        }


def explain(app: App, identity: Identity, facts: RequestFacts) -> Explanation:
    """The decision for `identity` (a last-seen identity) at `app`, with every policy's check.

    An identity from an IdP the app's `allowed_idps` leaves out is refused before any policy,
    as the sign-in refuses it."""
    ordered = [p for p in app.policies if p.decision in ("bypass", "non_identity")]
    ordered += [p for p in app.policies if p.decision in ("allow", "deny")]
    checks = tuple(
        PolicyCheck(
            p,
            policy_matches(p, identity, facts),
            settling_rule(p, identity, facts),
        )
        for p in ordered
    )
    if app.allowed_idps and identity.idp_id not in app.allowed_idps:
        refused = f"identity provider {identity.idp_id!r} is not in the app's allowed_idps"
        return Explanation(app, identity, Decision("deny", rule=refused), checks)
    decision = evaluate(app, identity, facts)
    return Explanation(app, identity, decision, checks)


def app_session_duration(app: App, identity: Identity, facts: RequestFacts) -> float:
    """How long a session for `app` lasts: the deciding policy's `session_duration`, else the
    app's (SPEC 3)."""
    decision = evaluate(app, identity, facts)
    if decision.policy is not None and decision.policy.session_duration:
        return decision.policy.session_duration
    return app.session_duration
