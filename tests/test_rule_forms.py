"""The console's rule builder (`gateway/console/rule_forms.py`): every declared rule through an
HTML form and back, problems next to their fields, the builder's buttons, the group picker."""

from __future__ import annotations

import time
from typing import Any

import pytest
from test_rules import EXAMPLES

from gateway.admin.serialize import app_document, policy_json
from gateway.authz.rules import RULE_TYPES
from gateway.console.context import field_errors
from gateway.console.rule_forms import (
    MAX_ROWS,
    PolicyForm,
    RuleRow,
    apply_action,
    group_choices,
    policy_documents,
    policy_forms,
    rule_kind,
    rule_kinds,
)
from gateway.errors import ConfigError
from gateway.identity import Identity, user_uuid_for
from gateway.scim.repository import ScimRepository
from gateway.scim.schema import GROUPS, USERS
from gateway.state.registry import Registry
from gateway.state.store import Store

DAY = 86400.0


def posted(policies: list[PolicyForm]) -> dict[str, Any]:
    """The fields a browser posts for these policies, named as the console's template names
    them: each input by the key path the validator reports it under (a checkbox field by the
    list of its checked values)."""
    form: dict[str, Any] = {}
    for i, policy in enumerate(policies):
        prefix = f"policies[{i}]"
        form[f"{prefix}.name"] = policy.name
        form[f"{prefix}.decision"] = policy.decision
        form[f"{prefix}.session_duration"] = policy.session_duration
        for rule_list in ("include", "require", "exclude"):
            for j, row in enumerate(policy.rows(rule_list)):
                form[f"{prefix}.{rule_list}[{j}].kind"] = row.kind
                for key, value in row.values.items():
                    name = f"{prefix}.{rule_list}[{j}].{row.kind}.{key}"
                    form[name] = value if isinstance(value, str) else list(value)
    return form


def app_body(policies: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "Wiki",
        "domain": "wiki.example.com",
        "upstream": "http://127.0.0.1:9000",
        "policies": policies,
    }


def saved(form: dict[str, Any]) -> list[dict[str, Any]]:
    """The app's policies as the admin API would store and show them after this form."""
    _, app = app_document(app_body(policy_documents(policy_forms(form))), "wiki", DAY)
    return [policy_json(p) for p in app.policies]


def problems(form: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        app_document(app_body(policy_documents(policy_forms(form))), "wiki", DAY)
    return field_errors(caught.value)


# --- every rule type, derived from the model ------------------------------------------------


def test_the_builder_offers_every_declared_rule_in_order() -> None:
    assert [k.kind for k in rule_kinds()] == list(RULE_TYPES)


@pytest.mark.parametrize("kind", list(RULE_TYPES))
def test_a_rule_type_has_an_input_per_field_with_a_label_and_help(kind: str) -> None:
    described = rule_kind(kind)
    assert described is not None
    assert [i.key for i in described.inputs] == [f.key for f in RULE_TYPES[kind].fields]
    assert all(i.label for i in described.inputs)
    assert described.label and described.help


@pytest.mark.parametrize("kind", list(RULE_TYPES))
def test_every_rule_goes_through_the_form_and_back_unchanged(kind: str) -> None:
    """A stored policy drawn as a form and posted back as it is stores the same policy, in each
    of the three lists."""
    rule = EXAMPLES[kind].rule
    policy = {
        "name": "P",
        "decision": EXAMPLES[kind].decision,
        "include": [rule],
        "require": [rule],
        "exclude": [rule],
        "session_duration": "8h",
    }
    drawn = PolicyForm.from_json(saved(posted([PolicyForm.from_json(policy)]))[0])
    assert saved(posted([drawn])) == [policy]


def test_an_empty_optional_field_is_left_out_and_a_row_without_a_type_dropped() -> None:
    form = posted(
        [
            PolicyForm(
                name="Eng",
                include=(RuleRow("okta", {"name": " Engineering ", "identity_provider_id": ""}),),
            )
        ]
    )
    form["policies[0].include[1].kind"] = ""  # an unused row
    form["policies[0].include[5].kind"] = "email"
    form["policies[0].include[5].email.email"] = "Bob@Example.com"
    assert saved(form)[0]["include"] == [
        {"okta": {"name": "Engineering"}},
        {"email": {"email": "bob@example.com"}},
    ]


def test_policies_are_numbered_afresh_in_their_order() -> None:
    form = posted([PolicyForm(name="A", include=(RuleRow("everyone"),))])
    form |= {
        "policies[7].name": "B",
        "policies[7].decision": "deny",
        "policies[7].include[0].kind": "everyone",
    }
    assert [(p["name"], p["decision"]) for p in saved(form)] == [("A", "allow"), ("B", "deny")]


# --- problems next to their fields ----------------------------------------------------------


def test_each_problem_is_filed_under_the_input_it_is_about() -> None:
    form = posted(
        [
            PolicyForm(
                name="",
                decision="maybe",
                session_duration="soon",
                include=(RuleRow("okta", {"name": ""}), RuleRow("ip", {"ip": "10.0.0.300/8"})),
                exclude=(RuleRow("grop", {}),),
            ),
            PolicyForm(name="Nothing", include=()),
        ]
    )
    errors = problems(form)
    assert set(errors) == {
        "policies[0].name",
        "policies[0].decision",
        "policies[0].session_duration",
        "policies[0].include[0].okta.name",
        "policies[0].include[1].ip.ip",
        "policies[0].exclude[0]",
        "policies[1].include",
    }
    assert errors["policies[0].include[0].okta.name"] == "is required"
    assert errors["policies[0].exclude[0]"] == "unknown rule 'grop'"
    assert errors["policies[1].include"] == "needs at least one rule"


def test_a_list_field_is_its_checked_choices() -> None:
    kind = rule_kind("user_risk_score")
    assert kind is not None and kind.inputs[0].choices == ("low", "medium", "high")
    form = posted(
        [PolicyForm(name="Risky", decision="deny", include=(RuleRow("user_risk_score"),))]
    )
    name = "policies[0].include[0].user_risk_score.user_risk_score"
    form[name] = ["high", "bogus", "medium", "high"]  # a value no checkbox has is not read
    assert saved(form)[0]["include"] == [
        {"user_risk_score": {"user_risk_score": ["high", "medium"]}}
    ]
    form[name] = []
    assert problems(form) == {name: "is required"}


def test_a_field_of_another_rule_type_is_not_read() -> None:
    form = posted([PolicyForm(name="P", include=(RuleRow("email", {"email": "a@x.com"}),))])
    form["policies[0].include[0].okta.name"] = "Smuggled"
    assert saved(form)[0]["include"] == [{"email": {"email": "a@x.com"}}]


# --- the builder's buttons ------------------------------------------------------------------


def two_policies() -> tuple[PolicyForm, ...]:
    return (
        PolicyForm(name="A", include=(RuleRow("everyone"), RuleRow("email", {"email": "a@x.com"}))),
        PolicyForm(name="B", decision="deny", include=(RuleRow("everyone"),)),
    )


def test_add_a_rule_of_the_chosen_type_keeps_what_was_typed() -> None:
    policies = two_policies()
    edit = apply_action(policies, "add:policies[1].exclude", {"policies[1].exclude.new": "ip"})
    assert edit is not None and not edit.problem
    assert edit.policies[1].exclude == (RuleRow("ip", {}),)
    assert edit.policies[0] == policies[0]


def test_add_without_a_rule_type_says_so_next_to_the_chooser() -> None:
    policies = two_policies()
    edit = apply_action(policies, "add:policies[0].require", {"policies[0].require.new": ""})
    assert edit is not None
    assert (edit.policies, edit.field) == (policies, "policies[0].require.new")
    assert edit.problem == "choose a rule type to add"


def test_a_list_holds_at_most_max_rows() -> None:
    full = (PolicyForm(name="A", include=(RuleRow("everyone"),) * MAX_ROWS),)
    edit = apply_action(full, "add:policies[0].include", {"policies[0].include.new": "everyone"})
    assert edit is not None and edit.policies == full and edit.problem


def test_remove_a_rule_and_a_policy() -> None:
    policies = two_policies()
    edit = apply_action(policies, "remove:policies[0].include[0]", {})
    assert edit is not None
    assert edit.policies[0].include == (RuleRow("email", {"email": "a@x.com"}),)
    edit = apply_action(policies, "remove:policies[0]", {})
    assert edit is not None and [p.name for p in edit.policies] == ["B"]


def test_move_a_policy_up_and_down_within_bounds() -> None:
    policies = two_policies()
    for action, names in [
        ("up:policies[1]", ["B", "A"]),
        ("down:policies[0]", ["B", "A"]),
        ("up:policies[0]", ["A", "B"]),
        ("down:policies[1]", ["A", "B"]),
        ("remove:policies[9]", ["A", "B"]),
    ]:
        edit = apply_action(policies, action, {})
        assert edit is not None and [p.name for p in edit.policies] == names, action


def test_add_a_policy_starts_it_with_no_rule() -> None:
    edit = apply_action((), "add:policies", {})
    assert edit is not None
    assert edit.policies == (PolicyForm(decision="allow", include=()),)


@pytest.mark.parametrize("action", ["save", "", "add:apps", "drop:policies[0]", "up:policies[x]"])
def test_anything_else_is_not_a_builder_action(action: str) -> None:
    assert apply_action(two_policies(), action, {}) is None


# --- the group picker -----------------------------------------------------------------------


def signed_in(email: str, sub: str, groups: tuple[str, ...]) -> Identity:
    return Identity(
        id="n-" + sub,
        user_uuid=user_uuid_for("okta-1", sub),
        sub=sub,
        name=email,
        email=email,
        groups=groups,
        idp_id="okta-1",
        idp_type="okta",
        iat=int(time.time()),
    )


async def test_the_group_choices_are_pushed_and_seen_groups_once_sorted(store: Store) -> None:
    okta = ScimRepository(store, "okta-1", time.time)
    other = ScimRepository(store, "okta-2", time.time)
    await okta.create(GROUPS, {"displayName": "Engineering"})
    await other.create(GROUPS, {"displayName": "sales"})
    await okta.create(USERS, {"userName": "pushed@example.com", "active": True})
    registry = Registry(store)
    await registry.record_sign_in(signed_in("a@example.com", "00ua", ("Everyone", "Engineering")))
    await registry.record_sign_in(signed_in("b@example.com", "00ub", ("Admins",)))
    assert await group_choices(store, ["okta-1", "okta-2"]) == [
        "Admins",
        "Engineering",
        "Everyone",
        "sales",
    ]
    # Only the IdPs asked about: another's pushed groups are not offered.
    assert await group_choices(store, ["okta-1"]) == ["Admins", "Engineering", "Everyone"]


async def test_no_groups_yet_is_an_empty_picker(store: Store) -> None:
    assert await group_choices(store, ["okta-1"]) == []
