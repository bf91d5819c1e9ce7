"""The console's rule builder: an app's policies as HTML form fields, both ways.

Every form field is named by the key path the config validator reports its problems under
(`policies[0].include[2].okta.name`), so a problem found when the app is saved lands next to
the input it is about (`context.field_errors`), and nothing here repeats a validation rule. The
rule types offered, their fields and their labels are derived from `RULE_TYPES`
(`gateway/authz/rules.py`): a rule added there is in the builder without a line here.

The builder works without JavaScript: a row is added by choosing a rule type and pressing "Add"
(the form is posted with `action=add:policies[0].include` and drawn again with the new row and
everything typed so far), removed and moved the same way (`apply_action`). Only "Save" stores,
through the same validation and storage as the admin API (the policies become the `policies`
list of the app's JSON body: `policy_document`).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from gateway.authz.rules import RULE_TYPES, Field, FieldFormat, FieldNames, Rule
from gateway.checks import known_groups
from gateway.config import Decision
from gateway.risk.changes import RISK_LEVELS
from gateway.state.store import Store

RuleList = Literal["include", "require", "exclude"]
RULE_LISTS: tuple[RuleList, ...] = typing.get_args(RuleList)
DECISIONS: tuple[str, ...] = typing.get_args(Decision)
# A form names at most this many policies, and rows per list: a bound on what a post can make
# the gateway build, far above any real policy.
MAX_POLICIES = 50
MAX_ROWS = 50

_POLICY = re.compile(r"policies\[(\d{1,4})\]\.")
_ROW = re.compile(r"policies\[(\d{1,4})\]\.(include|require|exclude)\[(\d{1,4})\]\.kind")
_ACTION = re.compile(
    r"(?P<verb>add|remove|up|down):policies"
    r"(?:\[(?P<policy>\d{1,4})\](?:\.(?P<list>include|require|exclude)(?:\[(?P<row>\d{1,4})\])?)?)?"
)


# --- the rule types, as the builder offers them ------------------------------------------------


# A value format whose field is a set of choices, not text: the choices (checkboxes).
_CHOICES: dict[FieldFormat, tuple[str, ...]] = {"levels": RISK_LEVELS}

Value = str | tuple[str, ...]  # a text field's text; a choice field's checked choices


@dataclass(frozen=True, slots=True)
class FieldInput:
    """One input of a rule row: `okta`'s `name`, labelled "Name"."""

    key: str
    label: str
    optional: bool
    names: FieldNames  # "group": the group picker's choices are offered
    choices: tuple[str, ...] = ()  # a list field (`user_risk_score`): check any of these

    @classmethod
    def of(cls, f: Field) -> FieldInput:
        return cls(f.key, _label(f.key), f.optional, f.names, _CHOICES.get(f.format, ()))

    def read(self, form: Mapping[str, Any], name: str) -> Value:
        """Its value from the posted form: the text, or the choices checked (known ones, each
        once, as posted)."""
        if self.choices:
            return tuple(dict.fromkeys(t for t in _texts(form, name) if t in self.choices))
        return _text(form, name)


@dataclass(frozen=True, slots=True)
class RuleKind:
    """A rule type as the builder offers it: `email_domain`, "Email domain", what it matches."""

    kind: str
    label: str
    help: str
    inputs: tuple[FieldInput, ...]


_ACRONYMS = {"id": "ID", "ip": "IP", "oidc": "OIDC", "saml": "SAML", "scim": "SCIM"}


def _label(key: str) -> str:
    """`identity_provider_id` -> "Identity provider ID"."""
    words = [_ACRONYMS.get(word, word) for word in key.split("_")]
    return " ".join(words)[:1].upper() + " ".join(words)[1:]


def _rule_kind(rule_type: type[Rule]) -> RuleKind:
    doc = (rule_type.__doc__ or "").strip()
    return RuleKind(
        kind=rule_type.kind,
        label=_label(rule_type.kind),
        help=doc.split("\n\n")[0].replace("\n", " "),
        inputs=tuple(FieldInput.of(f) for f in rule_type.fields),
    )


def rule_kinds() -> tuple[RuleKind, ...]:
    """Every declared rule type, in SPEC 3's order."""
    return tuple(_rule_kind(t) for t in RULE_TYPES.values())


def rule_kind(kind: str) -> RuleKind | None:
    rule_type = RULE_TYPES.get(kind)
    return _rule_kind(rule_type) if rule_type is not None else None


# --- the form's state ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleRow:
    """One rule of a list: its type and the text of each of its fields."""

    kind: str
    values: Mapping[str, Value] = field(default_factory=dict)

    def to_json(self) -> dict[str, dict[str, str | list[str]]]:
        """The rule as the config writes it; an empty optional field is left out. A type that
        is not declared is passed on as it is, for the validator to name."""
        described = rule_kind(self.kind)
        inputs = described.inputs if described is not None else ()
        value: dict[str, str | list[str]] = {}
        for entry in inputs:
            held = self.values.get(entry.key, ())
            if entry.choices:
                value[entry.key] = list(held)
                continue
            text = held.strip() if isinstance(held, str) else ""
            if text or not entry.optional:
                value[entry.key] = text
        return {self.kind: value}


@dataclass(frozen=True, slots=True)
class PolicyForm:
    """One policy as the form holds it: every value as typed, so it can be drawn again."""

    name: str = ""
    decision: str = "allow"
    session_duration: str = ""
    include: tuple[RuleRow, ...] = ()
    require: tuple[RuleRow, ...] = ()
    exclude: tuple[RuleRow, ...] = ()

    def rows(self, rule_list: RuleList) -> tuple[RuleRow, ...]:
        rows: tuple[RuleRow, ...] = getattr(self, rule_list)
        return rows

    def with_rows(self, rule_list: RuleList, rows: tuple[RuleRow, ...]) -> PolicyForm:
        changes: dict[str, Any] = {rule_list: rows}
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The policy's JSON, as the admin API takes it."""
        document: dict[str, Any] = {"name": self.name.strip(), "decision": self.decision}
        for rule_list in RULE_LISTS:
            document[rule_list] = [row.to_json() for row in self.rows(rule_list)]
        if self.session_duration.strip():
            document["session_duration"] = self.session_duration.strip()
        return document

    @classmethod
    def from_json(cls, policy: Mapping[str, Any]) -> PolicyForm:
        """From the admin API's JSON of a policy (`gateway.admin.serialize.policy_json`)."""
        lists = {
            rule_list: tuple(_row_from_json(rule) for rule in policy.get(rule_list, ()))
            for rule_list in RULE_LISTS
        }
        return cls(
            name=str(policy.get("name", "")),
            decision=str(policy.get("decision", "allow")),
            session_duration=str(policy.get("session_duration", "")),
            **lists,
        )


def _row_from_json(rule: Mapping[str, Mapping[str, Any]]) -> RuleRow:
    ((kind, value),) = rule.items()
    values: dict[str, Value] = {
        key: tuple(str(v) for v in held) if isinstance(held, list) else str(held)
        for key, held in value.items()
    }
    return RuleRow(kind, values)


def _texts(form: Mapping[str, Any], name: str) -> list[str]:
    """Every value posted under `name`: a form maps a name to its text, or to the list of
    texts of a repeated field (checkboxes)."""
    value = form.get(name)
    values = value if isinstance(value, list | tuple) else [value]
    return [v for v in values if isinstance(v, str)]  # an uploaded file is not text


def _text(form: Mapping[str, Any], name: str) -> str:
    texts = _texts(form, name)
    return texts[0] if texts else ""


def _indexes(pattern: re.Pattern[str], form: Iterable[str], limit: int) -> list[int]:
    found = {int(m.group(1)) for key in form if (m := pattern.match(key))}
    return sorted(found)[:limit]


def policy_forms(form: Mapping[str, Any]) -> tuple[PolicyForm, ...]:
    """The policies a posted form holds (each name mapped to its text, or to the list of texts
    of a repeated field), numbered afresh in their order. A row without a rule type is dropped,
    so the key paths the validator reports are those of the rows drawn."""
    policies = []
    for i in _indexes(_POLICY, form, MAX_POLICIES):
        prefix = f"policies[{i}]"
        lists: dict[str, tuple[RuleRow, ...]] = {}
        for rule_list in RULE_LISTS:
            rows = []
            found = {
                int(m.group(3))
                for key in form
                if (m := _ROW.fullmatch(key)) and int(m.group(1)) == i and m.group(2) == rule_list
            }
            for j in sorted(found)[:MAX_ROWS]:
                row_prefix = f"{prefix}.{rule_list}[{j}]"
                kind = _text(form, f"{row_prefix}.kind").strip()
                if not kind:
                    continue
                described = rule_kind(kind)
                inputs = described.inputs if described is not None else ()
                values = {i.key: i.read(form, f"{row_prefix}.{kind}.{i.key}") for i in inputs}
                rows.append(RuleRow(kind, values))
            lists[rule_list] = tuple(rows)
        policies.append(
            PolicyForm(
                name=_text(form, f"{prefix}.name"),
                decision=_text(form, f"{prefix}.decision"),
                session_duration=_text(form, f"{prefix}.session_duration"),
                **lists,
            )
        )
    return tuple(policies)


def policy_documents(policies: Iterable[PolicyForm]) -> list[dict[str, Any]]:
    """The `policies` list of an app's JSON body."""
    return [policy.to_json() for policy in policies]


# --- adding, removing and moving rows and policies -------------------------------------------


@dataclass(frozen=True, slots=True)
class Edit:
    """What an action made of the policies, and a problem to show next to a field, if any."""

    policies: tuple[PolicyForm, ...]
    field: str = ""
    problem: str = ""


def _moved(items: tuple[Any, ...], index: int, step: int) -> tuple[Any, ...]:
    other = index + step
    if not (0 <= index < len(items) and 0 <= other < len(items)):
        return items
    swapped = list(items)
    swapped[index], swapped[other] = swapped[other], swapped[index]
    return tuple(swapped)


def _without(items: tuple[Any, ...], index: int) -> tuple[Any, ...]:
    return items[:index] + items[index + 1 :]


def apply_action(
    policies: tuple[PolicyForm, ...], action: str, form: Mapping[str, Any]
) -> Edit | None:
    """The policies after a builder button (`add:policies[0].include` with the rule type in
    `policies[0].include.new`, `remove:policies[0].include[1]`, `up:policies[1]`, ...); None if
    `action` is not one (then it is a save)."""
    match = _ACTION.fullmatch(action)
    if match is None:
        return None
    verb, policy_index, rule_list, row_index = match.group("verb", "policy", "list", "row")
    if policy_index is None:  # the policies list itself
        if verb != "add" or len(policies) >= MAX_POLICIES:
            return Edit(policies)
        return Edit((*policies, PolicyForm()))  # an allow policy whose rules are to be chosen
    i = int(policy_index)
    if i >= len(policies):
        return Edit(policies)
    if rule_list is None:  # one policy
        step = {"up": -1, "down": 1}.get(verb)
        if step is not None:
            return Edit(_moved(policies, i, step))
        return Edit(_without(policies, i) if verb == "remove" else policies)
    policy = policies[i]
    listed = typing.cast(RuleList, rule_list)  # the pattern admits only those three
    rows = policy.rows(listed)
    if row_index is not None:  # one row
        if verb != "remove":
            return Edit(policies)
        rows = _without(rows, int(row_index))
    elif verb == "add":
        new_field = f"policies[{i}].{rule_list}.new"
        kind = _text(form, new_field)
        if rule_kind(kind) is None:
            return Edit(policies, new_field, "choose a rule type to add")
        if len(rows) >= MAX_ROWS:
            return Edit(policies, new_field, f"at most {MAX_ROWS} rules")
        rows = (*rows, RuleRow(kind, {}))
    return Edit((*policies[:i], policy.with_rows(listed, rows), *policies[i + 1 :]))


# --- the group picker ---------------------------------------------------------------------


async def group_choices(store: Store, idp_ids: Iterable[str]) -> list[str]:
    """The group picker's choices: the groups any IdP pushed over SCIM and the groups of
    last-seen identities, each once, in alphabetical order."""
    return sorted(await known_groups(store, idp_ids), key=lambda name: (name.casefold(), name))
