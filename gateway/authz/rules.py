"""The policy-rule vocabulary (SPEC 3): every rule type declared once, as one class here.

A rule type says, in one place, its Cloudflare JSON name (`kind`), the shape of its value
(`fields`: each key, whether it may be left out, whether it is text or an IP address/CIDR), what
it matches (`matches`, against the signed-in identity and the request's facts) and how an
explanation names it (`summary`, filled in from its fields by `describe`). Everything
else is derived from `RULE_TYPES`: the config loader's parsing and its key-path problems
(`parse_rule`), the JSON the admin API writes (`Rule.to_json`), the admin API's JSON Schema
(`gateway/admin/schemas.py` walks the fields) and policy evaluation (`gateway/authz/policy.py`
calls `matches`). A new rule is one class here, listed in `RULE_TYPES`; what cannot be derived
(its row in docs/configuration.md, a use in config.example.toml, an example in
tests/test_rules.py) is held to the model by the tests. Pure: no web framework and no I/O, so it
sits below the config loader, which imports it.
"""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

from gateway.identity import Identity, thaw
from gateway.risk.changes import RISK_LEVELS, RiskLevel

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a request contributes to a decision besides the identity."""

    client_ip: IPAddress | None = None
    service_token_id: str = ""  # a service token that authenticated this request, if any
    risk_level: RiskLevel = "low"  # the signed-in user's risk level now (SPEC 8)


# --- the shape of a rule's value -------------------------------------------------------------

FieldFormat = Literal["text", "cidr", "levels"]
# What a field's value names, when it is another object's name or id: the console's rule builder
# offers the known ones as choices (gateway/console/rule_forms.py).
FieldNames = Literal["", "group", "identity_provider", "service_token"]


@dataclass(frozen=True, slots=True)
class Field:
    """One key of a rule's value: `{ okta = { name = "G", identity_provider_id = "..." } }` has
    two. The rule holds it in the attribute of the same name."""

    key: str
    optional: bool = False  # may be left out or empty; an empty one is left out of the JSON
    # "cidr": an IP address or CIDR, held as a network; "levels": a non-empty list of risk
    # levels, held as a tuple
    format: FieldFormat = "text"
    normalise: Callable[[str], str] | None = None  # applied to the text once it is read
    names: FieldNames = ""  # the kind of object the value names, if any


class FieldReader(Protocol):
    """What parsing needs of the config loader's table reader (`gateway.config.reader.Reader`):
    each call records its problems under the table's key path."""

    def string(self, key: str, default: str = "", *, required: bool = False) -> str: ...

    def network(self, key: str, text: str) -> Network | None: ...

    def strings(self, key: str) -> tuple[str, ...]: ...

    def raw(self, key: str) -> object: ...

    def problem(self, key: str, message: str) -> None: ...

    def finish(self) -> None: ...


class Rule(ABC):
    """One rule of a policy's include, require or exclude list."""

    __slots__ = ()

    kind: ClassVar[str]  # the Cloudflare JSON name: `{ <kind> = { ... } }`
    fields: ClassVar[tuple[Field, ...]]
    # How explanations (the access log, `gateway explain`) name the rule: `str.format` over its
    # fields. An optional field the summary leaves out is added after it when set.
    summary: ClassVar[str]

    @abstractmethod
    def matches(self, identity: Identity | None, facts: RequestFacts, anonymous: bool) -> bool:
        """Whether this rule matches. Rules about the identity never match without one.
        `anonymous` is set for bypass policies, which are decided before any sign-in: there
        `everyone` means every request."""

    @classmethod
    def parse(cls, reader: FieldReader) -> Rule | None:
        """The rule from its value's table; None, with the problems on `reader`, if invalid."""
        if any(f.format == "levels" for f in cls.fields):
            return cls._parse_levels(reader)
        texts = [reader.string(f.key, required=not f.optional) for f in cls.fields]
        reader.finish()
        if any(not text for f, text in zip(cls.fields, texts, strict=True) if not f.optional):
            return None  # "is required" (or why not) is reported already
        values: dict[str, object] = {}
        for f, text in zip(cls.fields, texts, strict=True):
            if f.format == "cidr":
                network = reader.network(f.key, text)
                if network is None:
                    return None
                values[f.key] = network
            else:
                values[f.key] = f.normalise(text) if f.normalise else text
        return cls(**values)

    @classmethod
    def _parse_levels(cls, reader: FieldReader) -> Rule | None:
        """A rule whose one field is a list of risk levels: each known, none twice."""
        (f,) = cls.fields
        if reader.raw(f.key) in (None, "", []):
            reader.problem(f.key, "is required")
            reader.finish()
            return None
        levels = reader.strings(f.key)  # a value that is no list of strings is reported
        reader.finish()
        unknown = [level for level in levels if level not in RISK_LEVELS]
        if unknown:
            reader.problem(f.key, f"unknown risk level {unknown[0]!r} (use low, medium, high)")
        elif len(set(levels)) != len(levels):
            reader.problem(f.key, "lists a risk level twice")
        elif levels:
            return cls(**{f.key: levels})
        return None

    def _text(self, key: str) -> str:
        held = getattr(self, key)
        return ", ".join(held) if isinstance(held, tuple) else str(held)

    def describe(self) -> str:
        """The rule in a few words, for an explanation: `in group 'Engineering'`."""
        values = {f.key: self._text(f.key) for f in self.fields}
        text = self.summary.format(**values)
        for f in self.fields:
            if f.optional and values[f.key] and "{" + f.key not in self.summary:
                text += f" ({f.key} {values[f.key]!r})"
        return text

    def to_json(self) -> dict[str, dict[str, str | list[str]]]:
        """The rule in the config's own spelling, as the admin API writes it."""
        value: dict[str, str | list[str]] = {}
        for f in self.fields:
            held = getattr(self, f.key)
            if f.format == "levels":
                value[f.key] = list(held)
            elif held or not f.optional:
                value[f.key] = str(held)
        return {self.kind: value}


# --- the rules, in SPEC 3's order ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EveryoneRule(Rule):
    """Any signed-in identity; in a bypass policy, every request."""

    kind = "everyone"
    fields = ()
    summary = "everyone"

    def matches(self, identity: Identity | None, facts: RequestFacts, anonymous: bool) -> bool:
        return anonymous or identity is not None


@dataclass(frozen=True, slots=True)
class EmailRule(Rule):
    """That email, case-insensitively."""

    email: str  # stored lower-case

    kind = "email"
    fields = (Field("email", normalise=str.lower),)
    summary = "email is {email!r}"

    def matches(self, identity: Identity | None, facts: RequestFacts, anonymous: bool) -> bool:
        return identity is not None and identity.email.lower() == self.email


def _bare_domain(text: str) -> str:
    return text.lower().lstrip("@")


@dataclass(frozen=True, slots=True)
class EmailDomainRule(Rule):
    """Emails ending in `@domain`."""

    domain: str  # stored lower-case, without "@"

    kind = "email_domain"
    fields = (Field("domain", normalise=_bare_domain),)
    summary = "email ends in '@{domain}'"

    def matches(self, identity: Identity | None, facts: RequestFacts, anonymous: bool) -> bool:
        return identity is not None and identity.email.lower().endswith("@" + self.domain)


@dataclass(frozen=True, slots=True)
class OktaGroupRule(Rule):
    """An Okta group by name, from any Okta IdP or only from that one; never another type's."""

    name: str
    identity_provider_id: str = ""

    kind = "okta"
    fields = (
        Field("name", names="group"),
        Field("identity_provider_id", optional=True, names="identity_provider"),
    )
    summary = "in Okta group {name!r}"

    def matches(self, identity: Identity | None, facts: RequestFacts, anonymous: bool) -> bool:
        return (
            identity is not None
            and identity.idp_type == "okta"
            and self.name in identity.groups
            and (not self.identity_provider_id or self.identity_provider_id == identity.idp_id)
        )


@dataclass(frozen=True, slots=True)
class GroupNameRule(Rule):
    """A group by name, from any identity provider."""

    name: str

    kind = "group_name"
    fields = (Field("name", names="group"),)
    summary = "in group {name!r}"

    def matches(self, identity: Identity | None, facts: RequestFacts, anonymous: bool) -> bool:
        return identity is not None and self.name in identity.groups


def _claim_text(value: object) -> str:
    """A claim value as the config writes it: JSON `true` is "true", not Python's "True"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True, slots=True)
class OidcClaimRule(Rule):
    """A kept custom claim; a multi-valued claim matches if any element does."""

    claim_name: str
    claim_value: str

    kind = "oidc"
    fields = (Field("claim_name"), Field("claim_value"))
    summary = "claim {claim_name!r} is {claim_value!r}"

    def matches(self, identity: Identity | None, facts: RequestFacts, anonymous: bool) -> bool:
        if identity is None:
            return False
        value = identity.oidc_fields.get(self.claim_name)
        values = value if isinstance(value, tuple) else (value,)  # an array, frozen (identity.py)
        return any(v is not None and _claim_text(thaw(v)) == self.claim_value for v in values)


@dataclass(frozen=True, slots=True)
class LoginMethodRule(Rule):
    """Signed in through the identity provider with that id."""

    id: str

    kind = "login_method"
    fields = (Field("id", names="identity_provider"),)
    summary = "signed in through identity provider {id!r}"

    def matches(self, identity: Identity | None, facts: RequestFacts, anonymous: bool) -> bool:
        return identity is not None and identity.idp_id == self.id


@dataclass(frozen=True, slots=True)
class AuthMethodRule(Rule):
    """The ID token's `amr` contains it."""

    auth_method: str

    kind = "auth_method"
    fields = (Field("auth_method"),)
    summary = "sign-in method (amr) includes {auth_method!r}"

    def matches(self, identity: Identity | None, facts: RequestFacts, anonymous: bool) -> bool:
        return identity is not None and self.auth_method in identity.amr


@dataclass(frozen=True, slots=True)
class IpRule(Rule):
    """The client address is in the network; read from the request, identity or not."""

    ip: Network

    kind = "ip"
    fields = (Field("ip", format="cidr"),)
    summary = "client address in {ip}"

    def matches(self, identity: Identity | None, facts: RequestFacts, anonymous: bool) -> bool:
        return facts.client_ip is not None and facts.client_ip in self.ip


@dataclass(frozen=True, slots=True)
class ServiceTokenRule(Rule):
    """That service token authenticated the request."""

    token_id: str

    kind = "service_token"
    fields = (Field("token_id", names="service_token"),)
    summary = "service token {token_id!r}"

    def matches(self, identity: Identity | None, facts: RequestFacts, anonymous: bool) -> bool:
        return bool(facts.service_token_id) and facts.service_token_id == self.token_id


@dataclass(frozen=True, slots=True)
class AnyValidServiceTokenRule(Rule):
    """Any valid service token authenticated the request."""

    kind = "any_valid_service_token"
    fields = ()
    summary = "any valid service token"

    def matches(self, identity: Identity | None, facts: RequestFacts, anonymous: bool) -> bool:
        return bool(facts.service_token_id)


@dataclass(frozen=True, slots=True)
class UserRiskScoreRule(Rule):
    """The user's current risk level (SPEC 8) is one of these. Judged on every request: the
    level rides in the session record the proxy reads anyway (gateway/risk/levels.py)."""

    user_risk_score: tuple[RiskLevel, ...]

    kind = "user_risk_score"
    fields = (Field("user_risk_score", format="levels"),)
    summary = "user risk level is one of {user_risk_score}"

    def matches(self, identity: Identity | None, facts: RequestFacts, anonymous: bool) -> bool:
        return identity is not None and facts.risk_level in self.user_risk_score


@dataclass(frozen=True, slots=True)
class SamlAttributeRule(Rule):
    """A SAML attribute the IdP sent and the gateway kept (SPEC 10); a multi-valued attribute
    matches if any value does."""

    attribute_name: str
    attribute_value: str

    kind = "saml"
    fields = (Field("attribute_name"), Field("attribute_value"))
    summary = "SAML attribute {attribute_name!r} is {attribute_value!r}"

    def matches(self, identity: Identity | None, facts: RequestFacts, anonymous: bool) -> bool:
        if identity is None:
            return False
        return self.attribute_value in identity.saml_attributes.get(self.attribute_name, ())


RULE_TYPES: dict[str, type[Rule]] = {
    rule_type.kind: rule_type
    for rule_type in (
        EveryoneRule,
        EmailRule,
        EmailDomainRule,
        OktaGroupRule,
        GroupNameRule,
        OidcClaimRule,
        LoginMethodRule,
        AuthMethodRule,
        IpRule,
        ServiceTokenRule,
        AnyValidServiceTokenRule,
        UserRiskScoreRule,
        SamlAttributeRule,
    )
}


def parse_rule(
    data: object, path: str, problems: list[str], table: Callable[[object, str], FieldReader]
) -> Rule | None:
    """One rule as the config writes it, `{ <kind> = { ... } }`; None if it is not a valid one,
    with every problem in `problems` under its key path
    (`apps[1].policies[0].include[2]: unknown rule 'grop'`). `table(value, path)` reads the
    rule's value (the config loader's reader, which also substitutes `"${VAR}"` in the file)."""
    if not isinstance(data, Mapping) or len(data) != 1:
        problems.append(f"{path}: a rule is a table with exactly one rule name")
        return None
    ((kind, value),) = data.items()
    rule_type = RULE_TYPES.get(kind)
    if rule_type is None:
        problems.append(f"{path}: unknown rule {kind!r}")
        return None
    return rule_type.parse(table(value, f"{path}.{kind}"))
