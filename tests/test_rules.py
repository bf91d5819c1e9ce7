"""The rule model (`gateway/authz/rules.py`) against everything that must know each rule.

Every rule of SPEC 3's table is declared, and every declared rule: is read from the config and
written back to the same JSON (config -> admin JSON -> config), refuses bad values with their
key paths, is in the OpenAPI document `/api/openapi.json` serves, decides a policy, and has its
row in docs/configuration.md. A rule added to the model without an example here fails
`test_every_declared_rule_has_an_example`; a rule SPEC names that the model lacks fails
`test_every_rule_of_the_spec_is_declared`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.admin.openapi import build
from gateway.admin.serialize import app_json
from gateway.authz import rules
from gateway.authz.policy import Decision, Outcome, RequestFacts, evaluate
from gateway.authz.rules import RULE_TYPES, Rule
from gateway.config import App, parse_app, parse_settings
from gateway.errors import ConfigError
from gateway.identity import Identity

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "SPEC.md"  # the product contract, next to the repository
REFERENCE = ROOT / "docs" / "configuration.md"

# Rows of SPEC 3 that later work adds; each is skipped only while the model lacks it.
NOT_YET = {
    "saml": "added by issue 15, SAML sign-in (SPEC 10)",
}

OKTA_ID = "0b5f1c2e-okta"
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
    oidc_fields={"department": "R&D"},
)
ALICE_OIDC = dataclasses.replace(ALICE, idp_id=OIDC_ID, idp_type="oidc")
CAROL = dataclasses.replace(
    ALICE, email="carol@partner.org", groups=("Everyone",), amr=("pwd",), oidc_fields={}
)
NO_FACTS = RequestFacts()


def _ip(text: str) -> RequestFacts:
    return RequestFacts(client_ip=ipaddress.ip_address(text))


def _token(token_id: str) -> RequestFacts:
    return RequestFacts(service_token_id=token_id)


@dataclasses.dataclass(frozen=True)
class Example:
    """One rule as the config writes it (every field set), and a request it decides."""

    rule: dict[str, dict[str, Any]]
    decision: Outcome  # the policy it goes in, and the outcome when it matches
    matching: tuple[Identity | None, RequestFacts]
    other: tuple[Identity | None, RequestFacts]  # otherwise alike, denied by default


EXAMPLES = {
    "everyone": Example({"everyone": {}}, "allow", (CAROL, NO_FACTS), (None, NO_FACTS)),
    "email": Example(
        {"email": {"email": "alice@example.com"}}, "allow", (ALICE, NO_FACTS), (CAROL, NO_FACTS)
    ),
    "email_domain": Example(
        {"email_domain": {"domain": "example.com"}}, "allow", (ALICE, NO_FACTS), (CAROL, NO_FACTS)
    ),
    "okta": Example(
        {"okta": {"name": "Engineering", "identity_provider_id": OKTA_ID}},
        "allow",
        (ALICE, NO_FACTS),
        (ALICE_OIDC, NO_FACTS),
    ),
    "group_name": Example(
        {"group_name": {"name": "Engineering"}}, "allow", (ALICE_OIDC, NO_FACTS), (CAROL, NO_FACTS)
    ),
    "oidc": Example(
        {"oidc": {"claim_name": "department", "claim_value": "R&D"}},
        "allow",
        (ALICE, NO_FACTS),
        (CAROL, NO_FACTS),
    ),
    "login_method": Example(
        {"login_method": {"id": OIDC_ID}}, "allow", (ALICE_OIDC, NO_FACTS), (ALICE, NO_FACTS)
    ),
    "auth_method": Example(
        {"auth_method": {"auth_method": "mfa"}}, "allow", (ALICE, NO_FACTS), (CAROL, NO_FACTS)
    ),
    "ip": Example(
        {"ip": {"ip": "192.0.2.0/24"}},
        "bypass",
        (None, _ip("192.0.2.7")),
        (None, _ip("203.0.113.7")),
    ),
    "service_token": Example(
        {"service_token": {"token_id": "tok-1"}},
        "non_identity",
        (None, _token("tok-1")),
        (None, _token("tok-2")),
    ),
    "any_valid_service_token": Example(
        {"any_valid_service_token": {}}, "non_identity", (None, _token("tok-2")), (None, NO_FACTS)
    ),
    "user_risk_score": Example(
        {"user_risk_score": {"user_risk_score": ["high", "medium"]}},
        "deny",
        (ALICE, RequestFacts(risk_level="medium")),
        (ALICE, RequestFacts(risk_level="low")),
    ),
}

RULE_PATH = "apps[0].policies[0].include[0]"


def settings_doc(*include: Any) -> dict[str, Any]:
    return {
        "gateway": {"public_url": "https://access.example.com", "cookie_secret": "k" * 32},
        "apps": [
            {
                "id": "wiki",
                "domain": "wiki.example.com",
                "upstream": "http://127.0.0.1:9000",
                "policies": [{"name": "P", "decision": "allow", "include": list(include)}],
            }
        ],
    }


def problems_of(*include: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(settings_doc(*include), {})
    return caught.value.problems


# --- SPEC 3 and the model ----------------------------------------------------------------------


def spec_rules() -> list[str]:
    """The rule names of SPEC 3's table, in its order (`{ name = ... }` in the first column)."""
    text = SPEC.read_text(encoding="utf-8")
    section = text.split("\n## 3. ", 1)[1].split("\n## ", 1)[0]
    return [
        kind
        for line in section.splitlines()
        if line.startswith("| `{")
        for kind in re.findall(r"`\{ (\w+) = ", line.split("|")[1])
    ]


needs_spec = pytest.mark.skipif(not SPEC.is_file(), reason=f"no product contract at {SPEC}")
SPEC_RULES = spec_rules() if SPEC.is_file() else []


@needs_spec
def test_the_spec_table_is_read() -> None:
    """Guards the two tests below against a parser that silently finds nothing."""
    assert SPEC_RULES[:3] == ["everyone", "email", "email_domain"]
    assert {"ip", "service_token", "any_valid_service_token"} <= set(SPEC_RULES)


@needs_spec
@pytest.mark.parametrize("kind", SPEC_RULES)
def test_every_rule_of_the_spec_is_declared(kind: str) -> None:
    if kind in NOT_YET and kind not in RULE_TYPES:
        pytest.skip(f"{kind}: not implemented yet; {NOT_YET[kind]}")
    assert kind in RULE_TYPES


@needs_spec
def test_every_declared_rule_is_in_the_spec() -> None:
    assert sorted(set(RULE_TYPES) - set(SPEC_RULES)) == []


def test_a_rule_awaited_is_not_declared_yet() -> None:
    """Once the model declares one, its entry in NOT_YET is stale: remove it."""
    assert [kind for kind in NOT_YET if kind in RULE_TYPES] == []


def test_every_rule_class_is_listed() -> None:
    declared = {
        value
        for value in vars(rules).values()
        if isinstance(value, type) and issubclass(value, Rule) and value is not Rule
    }
    assert declared == set(RULE_TYPES.values())
    assert all(kind == rule_type.kind for kind, rule_type in RULE_TYPES.items())


@pytest.mark.parametrize("rule_type", RULE_TYPES.values(), ids=list(RULE_TYPES))
def test_a_rule_holds_each_field_under_its_key(rule_type: type[Rule]) -> None:
    """Parsing passes fields by key and `to_json` reads them back by key."""
    attributes = [f.name for f in dataclasses.fields(rule_type)]
    assert attributes == [f.key for f in rule_type.fields]


def test_every_declared_rule_has_an_example() -> None:
    assert list(EXAMPLES) == list(RULE_TYPES)


# --- config -> admin JSON -> config ------------------------------------------------------------


@pytest.mark.parametrize("kind", RULE_TYPES)
def test_a_rule_round_trips_through_the_admin_json(kind: str) -> None:
    example = EXAMPLES[kind].rule
    app = parse_settings(settings_doc(example), {}).apps[0]
    rule = app.policies[0].include[0]
    assert type(rule) is RULE_TYPES[kind]
    assert rule.to_json() == example

    written = app_json(app, read_only=False)
    assert written["policies"][0]["include"] == [example]
    document = {k: v for k, v in written.items() if k not in ("aud", "read_only")}
    assert parse_app(document, app.session_duration) == app


@pytest.mark.parametrize("kind", RULE_TYPES)
def test_a_rule_value_is_read_from_the_environment_in_the_file(kind: str) -> None:
    example = EXAMPLES[kind].rule
    value = example[kind]
    env: dict[str, str] = {}

    def reference(name: str, text: str) -> str:
        env[name] = text
        return f"${{{name}}}"

    from_env = {
        kind: {
            key: (
                [reference(f"RULE_{i}_{j}", item) for j, item in enumerate(text)]
                if isinstance(text, list)
                else reference(f"RULE_{i}", text)
            )
            for i, (key, text) in enumerate(value.items())
        }
    }
    settings = parse_settings(settings_doc(from_env), env)
    assert settings.apps[0].policies[0].include[0].to_json() == example


@pytest.mark.parametrize("kind", RULE_TYPES)
def test_bad_rule_values_are_problems_with_their_key_paths(kind: str) -> None:
    value = EXAMPLES[kind].rule[kind]
    path = f"{RULE_PATH}.{kind}"
    required = [f.key for f in RULE_TYPES[kind].fields if not f.optional]

    assert problems_of({kind: {**value, "grop": "x"}}) == [f"{path}.grop: unknown key"]
    assert problems_of({kind: "x"}) == [f"{path}: must be a table"] + [
        f"{path}.{key}: is required" for key in required
    ]
    for f in RULE_TYPES[kind].fields:
        wanted = "a list of strings" if f.format == "levels" else "a string"
        assert problems_of({kind: {**value, f.key: 5}}) == [f"{path}.{f.key}: must be {wanted}"]
    for key in (f.key for f in RULE_TYPES[kind].fields if f.format == "cidr"):
        assert problems_of({kind: {**value, key: "192.0.2.0/33"}}) == [
            f"{path}.{key}: invalid IP address or CIDR '192.0.2.0/33'"
        ]
    for key in required:
        rest = {k: v for k, v in value.items() if k != key}
        assert problems_of({kind: rest}) == [f"{path}.{key}: is required"]
        assert problems_of({kind: {**value, key: ""}}) == [f"{path}.{key}: is required"]


def test_an_optional_field_may_be_left_out_or_empty() -> None:
    """Either way the rule is the same, written without it; the request schema admits both."""
    optional = [(kind, f.key) for kind, t in RULE_TYPES.items() for f in t.fields if f.optional]
    assert optional  # okta's identity_provider_id
    for kind, key in optional:
        value = {k: v for k, v in EXAMPLES[kind].rule[kind].items() if k != key}
        for written in (value, {**value, key: ""}):
            rule = parse_settings(settings_doc({kind: written}), {}).apps[0].policies[0].include[0]
            assert rule.to_json() == {kind: value}
        branch = next(b for b in SCHEMAS["RuleInput"]["oneOf"] if b["required"] == [kind])
        assert branch["properties"][kind]["properties"][key].get("minLength", 0) == 0


def test_a_rule_is_one_table_with_one_known_name() -> None:
    assert problems_of({"grop": {}}, {}, {"everyone": {}, "email": {"email": "a@x"}}, []) == [
        f"{RULE_PATH}: unknown rule 'grop'",
        "apps[0].policies[0].include[1]: a rule is a table with exactly one rule name",
        "apps[0].policies[0].include[2]: a rule is a table with exactly one rule name",
        "apps[0].policies[0].include[3]: a rule is a table with exactly one rule name",
    ]


# --- the OpenAPI document ----------------------------------------------------------------------

SCHEMAS = build("https://access.example.com")["components"]["schemas"]


@pytest.mark.parametrize("schema", ["RuleInput", "Rule"])
@pytest.mark.parametrize("kind", RULE_TYPES)
def test_every_rule_is_in_the_openapi_document(kind: str, schema: str) -> None:
    branches = [b for b in SCHEMAS[schema]["oneOf"] if b.get("required") == [kind]]
    assert len(branches) == 1
    assert list(branches[0]["properties"]) == [kind]
    assert branches[0]["additionalProperties"] is False
    value_schema = branches[0]["properties"][kind]
    value = EXAMPLES[kind].rule[kind]
    assert list(value_schema["properties"]) == list(value)  # every field, nothing else
    assert value_schema["additionalProperties"] is False
    required = [f.key for f in RULE_TYPES[kind].fields if not f.optional]
    assert value_schema.get("required", []) == required
    for key, text in value.items():  # the example is what the schema admits
        field_schema = value_schema["properties"][key]
        if isinstance(text, list):  # risk levels
            assert len(text) >= field_schema["minItems"]
            assert set(text) <= set(field_schema["items"]["enum"])
            continue
        assert len(text) >= field_schema.get("minLength", 0)
        assert re.search(field_schema.get("pattern", ""), text)


def test_the_schema_has_a_branch_per_rule_and_no_more() -> None:
    for schema in ("RuleInput", "Rule"):
        assert [b["required"] for b in SCHEMAS[schema]["oneOf"]] == [[k] for k in RULE_TYPES]


# --- evaluation --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", RULE_TYPES)
def test_every_rule_decides_a_policy(kind: str) -> None:
    example = EXAMPLES[kind]
    doc = settings_doc(example.rule)
    doc["apps"][0]["policies"][0]["decision"] = example.decision
    app: App = parse_settings(doc, {}).apps[0]

    decided = evaluate(app, *example.matching)
    assert decided == Decision(example.decision, app.policies[0])
    assert evaluate(app, *example.other) == Decision("deny", None)


# --- the configuration reference -----------------------------------------------------------


def documented_rules() -> dict[str, list[str]]:
    """The reference's Rules table: each rule's fields, "(optional)" marked, in order."""
    text = REFERENCE.read_text(encoding="utf-8")
    section = text.split("\n### Rules\n", 1)[1].split("\n#", 1)[0]
    return {
        row.group(1): re.findall(r"`([a-z_]+)`((?: \(optional\))?)", row.group(2))
        for row in re.finditer(r"^\| `([a-z_]+)` \|([^|]*)\|", section, re.MULTILINE)
    }


@pytest.mark.parametrize("kind", RULE_TYPES)
def test_every_rule_is_documented_with_its_fields(kind: str) -> None:
    documented = documented_rules()
    assert kind in documented, f"no row for `{kind}` in the Rules table of {REFERENCE.name}"
    fields = [(f.key, " (optional)" if f.optional else "") for f in RULE_TYPES[kind].fields]
    assert documented[kind] == fields


def test_the_reference_documents_no_other_rules() -> None:
    assert list(documented_rules()) == list(RULE_TYPES)
