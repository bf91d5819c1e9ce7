"""Access policies (SPEC 3): every rule, include/require/exclude, and Cloudflare's order."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from gateway.authz.policy import (
    Decision,
    RequestFacts,
    evaluate,
    evaluate_before_sign_in,
    policy_matches,
)
from gateway.authz.rules import (
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
    Rule,
    ServiceTokenRule,
)
from gateway.config import App, Policy, app_aud, parse_settings
from gateway.identity import Identity

OKTA_ID = "0b5f1c2e-okta"
OTHER_OKTA_ID = "7d3a9e41-okta-eu"
OIDC_ID = "corp-oidc"

ALICE = Identity(
    id="nonce-1",
    user_uuid="8a4f2c4e-0000-4000-8000-000000000001",
    sub="00u1alice",
    name="Alice Example",
    email="alice@example.com",
    groups=("Engineering", "Everyone"),
    idp_id=OKTA_ID,
    idp_type="okta",
    iat=1_764_460_800,
    amr=("pwd", "mfa"),
    oidc_fields={"department": "R&D", "roles": ["admin", "dev"], "is_manager": True, "level": 3},
)
# The same person and groups, signed in through a generic OIDC provider.
ALICE_OIDC = dataclasses.replace(ALICE, idp_id=OIDC_ID, idp_type="oidc")
BOB = dataclasses.replace(
    ALICE, email="bob@example.com", groups=("Everyone",), amr=("pwd",), oidc_fields={}
)
CAROL = dataclasses.replace(BOB, email="carol@partner.org")
CONTRACTOR = dataclasses.replace(BOB, email="dave@example.com", groups=("Contractors",))

NO_FACTS = RequestFacts()


def alice_as(email: str) -> Identity:
    return dataclasses.replace(ALICE, email=email)


def ip(text: str) -> RequestFacts:
    return RequestFacts(client_ip=ipaddress.ip_address(text))


def net(text: str) -> IpRule:
    return IpRule(ipaddress.ip_network(text))


def policy(
    name: str,
    decision: str,
    include: list[Rule],
    require: list[Rule] | None = None,
    exclude: list[Rule] | None = None,
) -> Policy:
    return Policy(name, decision, tuple(include), tuple(require or ()), tuple(exclude or ()))


def app(*policies: Policy) -> App:
    return App(
        id="wiki",
        name="Wiki",
        domain="wiki.example.com",
        upstream="http://127.0.0.1:9000",
        aud=app_aud("wiki"),
        session_duration=86400,
        policies=policies,
    )


# --- single rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "identity", "facts", "matches"),
    [
        # everyone: any signed-in identity
        (EveryoneRule(), ALICE, NO_FACTS, True),
        (EveryoneRule(), CAROL, NO_FACTS, True),
        (EveryoneRule(), None, NO_FACTS, False),
        # email, case-insensitively
        (EmailRule("alice@example.com"), ALICE, NO_FACTS, True),
        (EmailRule("alice@example.com"), alice_as("Alice@Example.COM"), NO_FACTS, True),
        (EmailRule("alice@example.com"), BOB, NO_FACTS, False),
        (EmailRule("alice@example.com"), alice_as("alice@example.co"), NO_FACTS, False),
        # email_domain: the part after "@", whole
        (EmailDomainRule("example.com"), ALICE, NO_FACTS, True),
        (EmailDomainRule("example.com"), alice_as("A@EXAMPLE.COM"), NO_FACTS, True),
        (EmailDomainRule("example.com"), alice_as("a@notexample.com"), NO_FACTS, False),
        (EmailDomainRule("example.com"), alice_as("a@example.com.evil"), NO_FACTS, False),
        (EmailDomainRule("example.com"), alice_as("a@sub.example.com"), NO_FACTS, False),
        (EmailDomainRule("example.com"), CAROL, NO_FACTS, False),
        # okta group, optionally from one IdP; never for another IdP type
        (OktaGroupRule("Engineering"), ALICE, NO_FACTS, True),
        (OktaGroupRule("Engineering"), BOB, NO_FACTS, False),
        (OktaGroupRule("Engineering", OKTA_ID), ALICE, NO_FACTS, True),
        (OktaGroupRule("Engineering", OTHER_OKTA_ID), ALICE, NO_FACTS, False),
        (OktaGroupRule("Engineering"), ALICE_OIDC, NO_FACTS, False),
        (OktaGroupRule("Engineering", OIDC_ID), ALICE_OIDC, NO_FACTS, False),
        # group_name: any IdP's groups
        (GroupNameRule("Engineering"), ALICE, NO_FACTS, True),
        (GroupNameRule("Engineering"), ALICE_OIDC, NO_FACTS, True),
        (GroupNameRule("Engineering"), BOB, NO_FACTS, False),
        # oidc: a kept custom claim; a multi-valued claim matches any element
        (OidcClaimRule("department", "R&D"), ALICE, NO_FACTS, True),
        (OidcClaimRule("department", "Sales"), ALICE, NO_FACTS, False),
        (OidcClaimRule("roles", "dev"), ALICE, NO_FACTS, True),
        (OidcClaimRule("roles", "admin"), ALICE, NO_FACTS, True),
        (OidcClaimRule("roles", "ops"), ALICE, NO_FACTS, False),
        (OidcClaimRule("roles", "['admin', 'dev']"), ALICE, NO_FACTS, False),
        (OidcClaimRule("is_manager", "true"), ALICE, NO_FACTS, True),
        (OidcClaimRule("is_manager", "false"), ALICE, NO_FACTS, False),
        (OidcClaimRule("level", "3"), ALICE, NO_FACTS, True),
        (OidcClaimRule("department", "R&D"), BOB, NO_FACTS, False),
        # login_method: signed in through that IdP
        (LoginMethodRule(OKTA_ID), ALICE, NO_FACTS, True),
        (LoginMethodRule(OKTA_ID), ALICE_OIDC, NO_FACTS, False),
        (LoginMethodRule(OIDC_ID), ALICE_OIDC, NO_FACTS, True),
        # auth_method: amr contains it
        (AuthMethodRule("mfa"), ALICE, NO_FACTS, True),
        (AuthMethodRule("pwd"), ALICE, NO_FACTS, True),
        (AuthMethodRule("mfa"), BOB, NO_FACTS, False),
        (AuthMethodRule("hwk"), ALICE, NO_FACTS, False),
        # ip: client address in the CIDR, IPv4 and IPv6; with or without an identity
        (net("192.0.2.0/24"), ALICE, ip("192.0.2.200"), True),
        (net("192.0.2.0/24"), None, ip("192.0.2.1"), True),
        (net("192.0.2.0/24"), ALICE, ip("192.0.3.1"), False),
        (net("192.0.2.0/24"), ALICE, NO_FACTS, False),
        (net("192.0.2.7/32"), ALICE, ip("192.0.2.7"), True),
        (net("192.0.2.7/32"), ALICE, ip("192.0.2.8"), False),
        (net("2001:db8::/32"), ALICE, ip("2001:db8:1::42"), True),
        (net("2001:db8::/32"), ALICE, ip("2001:db9::1"), False),
        (net("2001:db8::/32"), ALICE, ip("192.0.2.1"), False),
        # service tokens, from the request
        (ServiceTokenRule("tok-1"), None, RequestFacts(service_token_id="tok-1"), True),
        (ServiceTokenRule("tok-1"), None, RequestFacts(service_token_id="tok-2"), False),
        (ServiceTokenRule("tok-1"), ALICE, NO_FACTS, False),
        (AnyValidServiceTokenRule(), None, RequestFacts(service_token_id="tok-2"), True),
        (AnyValidServiceTokenRule(), ALICE, NO_FACTS, False),
    ],
)
def test_rule_matches(
    rule: Rule, identity: Identity | None, facts: RequestFacts, matches: bool
) -> None:
    assert rule.matches(identity, facts, anonymous=False) is matches


@pytest.mark.parametrize(
    "rule",
    [
        EveryoneRule(),
        EmailRule("alice@example.com"),
        EmailDomainRule("example.com"),
        OktaGroupRule("Engineering"),
        GroupNameRule("Engineering"),
        OidcClaimRule("department", "R&D"),
        LoginMethodRule(OKTA_ID),
        AuthMethodRule("mfa"),
    ],
)
def test_identity_rules_never_match_without_an_identity(rule: Rule) -> None:
    facts = RequestFacts(client_ip=ipaddress.ip_address("192.0.2.1"), service_token_id="tok-1")
    assert rule.matches(None, facts, anonymous=False) is False


def test_email_rule_from_the_config_file_is_case_insensitive() -> None:
    settings = parse_settings(
        {
            "gateway": {"public_url": "https://access.example.com", "cookie_secret": "k" * 32},
            "apps": [
                {
                    "id": "wiki",
                    "domain": "wiki.example.com",
                    "upstream": "http://127.0.0.1:9000",
                    "policies": [
                        {
                            "name": "Alice",
                            "decision": "allow",
                            "include": [
                                {"email": {"email": "Alice@Example.COM"}},
                                {"email_domain": {"domain": "Partner.ORG"}},
                            ],
                        }
                    ],
                }
            ],
        },
        {},
    )
    wiki = settings.apps[0]
    assert evaluate(wiki, ALICE, NO_FACTS).outcome == "allow"
    assert evaluate(wiki, CAROL, NO_FACTS).outcome == "allow"
    assert evaluate(wiki, BOB, NO_FACTS).outcome == "deny"


# --- include / require / exclude -------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "matches"), [(ALICE, True), (CAROL, True), (BOB, False), (None, False)]
)
def test_include_rules_are_ored(identity: Identity | None, matches: bool) -> None:
    either = policy(
        "Either",
        "allow",
        include=[GroupNameRule("Engineering"), EmailDomainRule("partner.org")],
    )
    assert policy_matches(either, identity, NO_FACTS) is matches


@pytest.mark.parametrize(
    ("identity", "facts", "matches"),
    [
        (ALICE, ip("192.0.2.9"), True),
        (ALICE, ip("203.0.113.9"), False),  # not from the office
        (dataclasses.replace(ALICE, amr=("pwd",)), ip("192.0.2.9"), False),  # no MFA
        (dataclasses.replace(ALICE, groups=()), ip("192.0.2.9"), False),  # not an engineer
        (BOB, ip("192.0.2.9"), False),
    ],
)
def test_require_rules_are_anded(
    identity: Identity | None, facts: RequestFacts, matches: bool
) -> None:
    strict = policy(
        "Engineers with MFA at the office",
        "allow",
        include=[EveryoneRule()],
        require=[GroupNameRule("Engineering"), AuthMethodRule("mfa"), net("192.0.2.0/24")],
    )
    assert policy_matches(strict, identity, facts) is matches


@pytest.mark.parametrize(
    ("identity", "facts", "matches"),
    [
        (ALICE, NO_FACTS, True),
        (BOB, NO_FACTS, False),  # excluded by email
        (CONTRACTOR, NO_FACTS, False),  # excluded by group
        (ALICE, ip("198.51.100.7"), False),  # excluded by address
    ],
)
def test_any_matching_exclude_rule_excludes(
    identity: Identity | None, facts: RequestFacts, matches: bool
) -> None:
    guarded = policy(
        "Everyone but",
        "allow",
        include=[EmailDomainRule("example.com")],
        exclude=[
            EmailRule("bob@example.com"),
            GroupNameRule("Contractors"),
            net("198.51.100.0/24"),
        ],
    )
    assert policy_matches(guarded, identity, facts) is matches


def test_a_policy_with_no_include_matches_nobody() -> None:
    assert policy_matches(policy("Empty", "allow", include=[]), ALICE, NO_FACTS) is False


# --- decisions across policies ---------------------------------------------------------------


def test_no_policies_denies() -> None:
    decision = evaluate(app(), ALICE, ip("192.0.2.1"))
    assert decision == Decision("deny", None)
    assert decision.allowed is False


def test_no_matching_policy_denies_by_default() -> None:
    wiki = app(
        policy("Engineering", "allow", include=[GroupNameRule("Engineering")]),
        policy("Partners", "allow", include=[EmailDomainRule("partner.org")]),
    )
    assert evaluate(wiki, ALICE, NO_FACTS).outcome == "allow"
    decision = evaluate(wiki, BOB, NO_FACTS)
    assert decision == Decision("deny", None)
    assert decision.allowed is False


def test_a_deny_policy_before_an_allow_wins() -> None:
    no_contractors = policy("No contractors", "deny", include=[GroupNameRule("Contractors")])
    everyone = policy("Everyone", "allow", include=[EveryoneRule()])
    wiki = app(no_contractors, everyone)

    denied = evaluate(wiki, CONTRACTOR, NO_FACTS)
    assert (denied.outcome, denied.policy, denied.allowed) == ("deny", no_contractors, False)
    allowed = evaluate(wiki, BOB, NO_FACTS)
    assert (allowed.outcome, allowed.policy, allowed.allowed) == ("allow", everyone, True)


def test_allow_and_deny_are_decided_top_to_bottom() -> None:
    everyone = policy("Everyone", "allow", include=[EveryoneRule()])
    no_contractors = policy("No contractors", "deny", include=[GroupNameRule("Contractors")])
    # The allow comes first, so the deny below it is never reached.
    assert evaluate(app(everyone, no_contractors), CONTRACTOR, NO_FACTS).policy is everyone


# Cloudflare's example: policies listed as Allow A, Block B, Service Auth C, Bypass D, Allow E
# are evaluated C, D, A, B, E.
POLICY_A = policy("A", "allow", include=[GroupNameRule("Engineering")])
POLICY_B = policy("B", "deny", include=[EmailDomainRule("example.com")])
POLICY_C = policy("C", "non_identity", include=[ServiceTokenRule("tok-1")])
POLICY_D = policy("D", "bypass", include=[net("192.0.2.0/24")])
POLICY_E = policy("E", "allow", include=[EveryoneRule()])
CLOUDFLARE_EXAMPLE = app(POLICY_A, POLICY_B, POLICY_C, POLICY_D, POLICY_E)


@pytest.mark.parametrize(
    ("identity", "facts", "deciding", "outcome"),
    [
        # C, D, A, B and E all match: the service-auth policy is first.
        (ALICE, RequestFacts(ipaddress.ip_address("192.0.2.5"), "tok-1"), "C", "non_identity"),
        (None, RequestFacts(ipaddress.ip_address("192.0.2.5"), "tok-1"), "C", "non_identity"),
        # D, A, B and E match: bypass comes before every allow and deny.
        (ALICE, ip("192.0.2.5"), "D", "bypass"),
        (CONTRACTOR, ip("192.0.2.5"), "D", "bypass"),
        (None, ip("192.0.2.5"), "D", "bypass"),
        # A, B and E match: A is the first allow/deny in the list.
        (ALICE, ip("203.0.113.1"), "A", "allow"),
        # B and E match: B is listed before E.
        (BOB, NO_FACTS, "B", "deny"),
        # Only E matches.
        (CAROL, NO_FACTS, "E", "allow"),
        # Another service token is not C's.
        (CAROL, RequestFacts(service_token_id="tok-2"), "E", "allow"),
    ],
)
def test_cloudflare_policy_order(
    identity: Identity | None, facts: RequestFacts, deciding: str, outcome: str
) -> None:
    decision = evaluate(CLOUDFLARE_EXAMPLE, identity, facts)
    assert decision.policy is not None
    assert (decision.policy.name, decision.outcome) == (deciding, outcome)


def test_cloudflare_order_without_identity_or_token_denies() -> None:
    assert evaluate(CLOUDFLARE_EXAMPLE, None, ip("203.0.113.1")) == Decision("deny", None)


def test_before_sign_in_only_bypass_and_non_identity_decide() -> None:
    assert evaluate_before_sign_in(CLOUDFLARE_EXAMPLE, ip("192.0.2.5")) == Decision(
        "bypass", POLICY_D
    )
    assert evaluate_before_sign_in(
        CLOUDFLARE_EXAMPLE, RequestFacts(service_token_id="tok-1")
    ) == Decision("non_identity", POLICY_C)
    # Allow E matches everyone, but it needs a signed-in identity: sign-in decides.
    assert evaluate_before_sign_in(CLOUDFLARE_EXAMPLE, ip("203.0.113.1")) is None


@pytest.mark.parametrize(
    ("outcome", "rule"),
    [("bypass", EveryoneRule()), ("non_identity", ServiceTokenRule("tok-1"))],
)
def test_bypass_and_non_identity_are_let_through(outcome: str, rule: Rule) -> None:
    facts = RequestFacts(service_token_id="tok-1")
    decision = evaluate(app(policy("Open", outcome, include=[rule])), None, facts)
    assert (decision.outcome, decision.allowed) == (outcome, True)


@pytest.mark.parametrize("decision", ["bypass", "non_identity"])
@pytest.mark.parametrize(
    "rule",
    [
        EmailRule("alice@example.com"),
        EmailDomainRule("example.com"),
        OktaGroupRule("Engineering"),
        GroupNameRule("Engineering"),
        OidcClaimRule("department", "R&D"),
        LoginMethodRule(OKTA_ID),
        AuthMethodRule("mfa"),
    ],
)
def test_bypass_and_non_identity_do_not_see_identity_rules(decision: str, rule: Rule) -> None:
    anonymous = policy("Anonymous", decision, include=[rule])
    # Alice matches the rule, but these policies are decided before sign-in.
    assert rule.matches(ALICE, NO_FACTS, anonymous=False) is True
    assert policy_matches(anonymous, ALICE, NO_FACTS) is False
    assert evaluate(app(anonymous), ALICE, NO_FACTS) == Decision("deny", None)
    # As a require rule it can never be met either.
    gated = policy("Gated", decision, include=[EveryoneRule()], require=[rule])
    assert evaluate(app(gated), ALICE, NO_FACTS) == Decision("deny", None)


def test_everyone_in_bypass_means_every_request() -> None:
    open_policy = policy("Public", "bypass", include=[EveryoneRule()])
    expected = Decision("bypass", open_policy)
    assert evaluate(app(open_policy), None, NO_FACTS) == expected
    assert evaluate_before_sign_in(app(open_policy), ip("203.0.113.1")) == expected


def test_everyone_in_non_identity_lets_no_anonymous_caller_in() -> None:
    # non_identity is for service tokens: "everyone" (any signed-in identity) never matches
    # there, so such a policy must not turn into "anyone on the internet".
    careless = policy("Oops", "non_identity", include=[EveryoneRule()])
    assert evaluate_before_sign_in(app(careless), ip("203.0.113.1")) is None
    assert evaluate(app(careless), None, NO_FACTS).outcome == "deny"


def test_bypass_with_everyone_still_honours_non_identity_excludes() -> None:
    public_but_not_there = policy(
        "Public", "bypass", include=[EveryoneRule()], exclude=[net("198.51.100.0/24")]
    )
    wiki = app(public_but_not_there)
    assert evaluate(wiki, None, ip("203.0.113.1")).outcome == "bypass"
    assert evaluate(wiki, None, ip("198.51.100.1")) == Decision("deny", None)


def test_an_ip_only_allow_policy_still_needs_an_identity() -> None:
    office = policy("Office", "allow", include=[net("192.0.2.0/24")])
    wiki = app(office)
    inside = ip("192.0.2.10")

    assert evaluate_before_sign_in(wiki, inside) is None
    assert evaluate(wiki, None, inside) == Decision("deny", None)
    assert evaluate(wiki, ALICE, inside) == Decision("allow", office)
    assert evaluate(wiki, ALICE, ip("203.0.113.1")) == Decision("deny", None)


def test_identity_rules_are_evaluated_on_the_identity_given() -> None:
    # The same app decides differently for the identity re-evaluated after a group change.
    wiki = app(policy("Engineering", "allow", include=[OktaGroupRule("Engineering", OKTA_ID)]))
    assert evaluate(wiki, ALICE, NO_FACTS).allowed is True
    moved = dataclasses.replace(ALICE, groups=("Sales",))
    assert evaluate(wiki, moved, NO_FACTS).allowed is False
