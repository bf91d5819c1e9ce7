"""SCIM filters and PATCH paths: the RFC 7644 3.4.2.2 grammar, parsed and compiled (pure).

`parse_filter` turns `userName eq "bjensen" and not (emails[type eq "work"] pr)` into a small
tree; `compile_filter` checks it against a resource type's schema (unknown attributes, an
operator the attribute's type does not have, `gt` on a boolean...) and returns a predicate
over stored resources. Every problem is a `ScimError` 400 `invalidFilter` (`invalidPath` for
PATCH paths), never another exception: the grammar is parsed by hand, iteratively where it
repeats and with a depth limit where it nests.

Semantics (RFC 7644 3.4.2.2): attribute names and operators are case-insensitive; string
comparisons follow the attribute's `caseExact` (so `userName` compares case-insensitively); a
multi-valued attribute matches when any of its values does, and a multi-valued complex
attribute named without a sub-attribute stands for its `value` sub-attribute. `ne` is the
negation of `eq` (true when the attribute is absent), and `eq null` matches an absent
attribute. Across several resource types (a search at the server root, `compile_filters`), an
attribute a type does not define has no value in that type's resources (RFC 7644 3.4.2.1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.scim import ScimError
from gateway.scim.schema import Attribute, ResourceType

CompValue = str | int | float | bool | None
Predicate = Callable[[Mapping[str, Any]], bool]

_OPERATORS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
_ORDERING = frozenset({"gt", "ge", "lt", "le"})
_SUBSTRING = frozenset({"co", "sw", "ew"})
_MAX_DEPTH = 32  # nested parentheses / not: deep enough for any real filter, bounded for safety
_MAX_LENGTH = 4096

# attrPath = [URI ":"] ATTRNAME *1subAttr (RFC 7644 3.4.2.2); `$ref` is an attribute name too.
_ATTR_PATH = re.compile(
    r"(?:(?P<uri>urn:[a-z0-9:._-]+):)?(?P<name>\$?[a-z][a-z0-9_-]*)(?:\.(?P<sub>\$?[a-z][a-z0-9_-]*))?",
    re.IGNORECASE | re.ASCII,
)
_SUB_ATTR = re.compile(r"\.(\$?[a-z][a-z0-9_-]*)", re.IGNORECASE | re.ASCII)
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)
_TOKEN = re.compile(r"\s*(?:(?P<punct>[()\[\]])|(?P<quote>\")|(?P<word>[^\s()\[\]\"]+))")
_SCAN_STRING = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class AttrPath:
    uri: str  # "" or the schema URN the name is qualified with
    name: str
    sub: str = ""

    def __str__(self) -> str:
        prefix = f"{self.uri}:" if self.uri else ""
        return prefix + self.name + (f".{self.sub}" if self.sub else "")


@dataclass(frozen=True, slots=True)
class Compare:
    path: AttrPath
    op: str
    value: CompValue


@dataclass(frozen=True, slots=True)
class Present:
    path: AttrPath


@dataclass(frozen=True, slots=True)
class And:
    left: Filter
    right: Filter


@dataclass(frozen=True, slots=True)
class Or:
    left: Filter
    right: Filter


@dataclass(frozen=True, slots=True)
class Not:
    inner: Filter


@dataclass(frozen=True, slots=True)
class ValuePath:
    """`emails[type eq "work"]`: the elements of a complex attribute that match `filter`."""

    path: AttrPath
    filter: Filter


Filter = Compare | Present | And | Or | Not | ValuePath


@dataclass(frozen=True, slots=True)
class PatchPath:
    """A PATCH `path` (RFC 7644 3.5.2): `attribute[filter].sub`, each part but the first
    optional."""

    attribute: AttrPath  # never has `sub`: that is `sub` below
    filter: Filter | None
    sub: str


# --- tokens ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "(", ")", "[", "]", "string", "word", "end"
    text: str
    position: int
    value: str = ""  # the decoded string of a "string" token

    def __str__(self) -> str:
        return repr(self.text) if self.kind != "end" else "the end"


def _tokens(text: str, error: Callable[[str], ScimError]) -> list[_Token]:
    if len(text) > _MAX_LENGTH:
        raise error(f"is longer than {_MAX_LENGTH} characters")
    tokens: list[_Token] = []
    position = 0
    while True:
        match = _TOKEN.match(text, position)
        if match is None:
            if text[position:].strip():
                raise error(f"unexpected character at position {position}")
            tokens.append(_Token("end", "", len(text)))
            return tokens
        start = match.start(match.lastgroup or 0)
        if match.group("punct"):
            tokens.append(_Token(match.group("punct"), match.group("punct"), start))
            position = match.end()
        elif match.group("quote"):
            # compValue strings are JSON strings (RFC 7644 3.4.2.2 defers to RFC 7159).
            try:
                value, position = _SCAN_STRING.raw_decode(text, start)
            except json.JSONDecodeError as exc:
                raise error(f"invalid string at position {start}") from exc
            tokens.append(_Token("string", text[start:position], start, value))
        else:
            tokens.append(_Token("word", match.group("word"), start))
            position = match.end()


# --- parser ---------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, error: Callable[[str], ScimError]):
        self._error = error
        self._tokens = _tokens(text, error)
        self._index = 0
        self._depth = 0

    def fail(self, message: str) -> ScimError:
        return self._error(message)

    def peek(self) -> _Token:
        return self._tokens[self._index]

    def next(self) -> _Token:
        token = self._tokens[self._index]
        if token.kind != "end":
            self._index += 1
        return token

    def keyword(self, *words: str) -> str | None:
        """Consume the next token if it is one of these case-insensitive keywords."""
        token = self.peek()
        if token.kind == "word" and token.text.lower() in words:
            self._index += 1
            return token.text.lower()
        return None

    def expect(self, kind: str) -> _Token:
        token = self.next()
        if token.kind != kind:
            raise self.fail(f"expected {kind!r} at position {token.position}, found {token}")
        return token

    def expect_end(self) -> None:
        token = self.peek()
        if token.kind != "end":
            raise self.fail(f"unexpected {token.text!r} at position {token.position}")

    def filter(self, in_value: bool = False) -> Filter:
        """FILTER: `or` binds loosest, then `and`, then `not` (RFC 7644 3.4.2.2)."""
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            raise self.fail("is nested too deeply")
        node = self.conjunction(in_value)
        while self.keyword("or"):
            node = Or(node, self.conjunction(in_value))
        self._depth -= 1
        return node

    def conjunction(self, in_value: bool) -> Filter:
        node = self.unary(in_value)
        while self.keyword("and"):
            node = And(node, self.unary(in_value))
        return node

    def unary(self, in_value: bool) -> Filter:
        if self.keyword("not"):
            self.expect("(")
            inner = self.filter(in_value)
            self.expect(")")
            return Not(inner)
        if self.peek().kind == "(":
            self.next()
            inner = self.filter(in_value)
            self.expect(")")
            return inner
        return self.attribute_expression(in_value)

    def attribute_path(self) -> AttrPath:
        token = self.next()
        match = _ATTR_PATH.fullmatch(token.text) if token.kind == "word" else None
        if match is None:
            raise self.fail(f"expected an attribute at position {token.position}, found {token}")
        return AttrPath(match.group("uri") or "", match.group("name"), match.group("sub") or "")

    def attribute_expression(self, in_value: bool) -> Filter:
        path = self.attribute_path()
        if self.peek().kind == "[":
            # errata 4690: a value filter holds sub-attribute expressions, never another one.
            if in_value or path.sub:
                raise self.fail(f"a value filter cannot follow {path}")
            self.next()
            inner = self.filter(in_value=True)
            self.expect("]")
            return ValuePath(path, inner)
        if in_value and (path.uri or path.sub):
            raise self.fail(f"{path}: inside [...] name a sub-attribute only")
        if self.keyword("pr"):
            return Present(path)
        operator = self.next()
        op = operator.text.lower()
        if operator.kind != "word" or op not in _OPERATORS:
            raise self.fail(f"expected an operator after {path}, found {operator}")
        return Compare(path, op, self.comparison_value())

    def comparison_value(self) -> CompValue:
        token = self.next()
        if token.kind == "string":
            return token.value
        if token.kind == "word":
            word = token.text.lower()
            if word in ("true", "false"):
                return word == "true"
            if word == "null":
                return None
            if _NUMBER.fullmatch(token.text):
                number = float(token.text)
                is_integer = not any(c in token.text for c in ".eE")
                return int(token.text) if is_integer else number
        raise self.fail(f"expected a value (string, number, true, false, null), found {token}")


def _invalid_filter(message: str) -> ScimError:
    return ScimError(400, f"Invalid filter: {message}.", "invalidFilter")


def _invalid_path(message: str) -> ScimError:
    return ScimError(400, f"Invalid path: {message}.", "invalidPath")


def parse_filter(text: str) -> Filter:
    """The filter tree of a `filter` parameter; ScimError 400 invalidFilter if it is not one."""
    parser = _Parser(text, _invalid_filter)
    node = parser.filter()
    parser.expect_end()
    return node


def parse_attribute(text: str) -> AttrPath | None:
    """An attribute named as in `attributes=` (RFC 7644 3.4.2.5), or None if it is not a name."""
    match = _ATTR_PATH.fullmatch(text)
    if match is None:
        return None
    return AttrPath(match.group("uri") or "", match.group("name"), match.group("sub") or "")


def parse_path(text: str) -> PatchPath:
    """A PATCH operation's `path` (RFC 7644 3.5.2: `attrPath / valuePath [subAttr]`)."""
    parser = _Parser(text, _invalid_path)
    attribute = parser.attribute_path()
    value_filter: Filter | None = None
    sub = attribute.sub
    if parser.peek().kind == "[":
        if attribute.sub:
            raise parser.fail(f"a value filter cannot follow {attribute}")
        parser.next()
        value_filter = parser.filter(in_value=True)
        parser.expect("]")
        tail = parser.peek()
        if tail.kind == "word":
            match = _SUB_ATTR.fullmatch(tail.text)
            if match is None:
                raise parser.fail(f"unexpected {tail.text!r} after the value filter")
            parser.next()
            sub = match.group(1)
    parser.expect_end()
    return PatchPath(AttrPath(attribute.uri, attribute.name), value_filter, sub)


# --- compiling against a schema -------------------------------------------------------------

Getter = Callable[[Mapping[str, Any]], list[Any]]


@dataclass(frozen=True, slots=True)
class _Resolved:
    """What an attribute path names: the values to compare and their definition, and the
    attribute itself with its own values (the elements a value path looks into)."""

    values: Getter
    target: Attribute
    attribute: Attribute
    elements: Getter


# What an attribute path names in a scope; None: an attribute this resource type does not define
# (only in a search across several types, where that is no error).
_Scope = Callable[[AttrPath], _Resolved | None]


def parse_datetime(text: str) -> datetime | None:
    """An RFC 7643 2.3.5 dateTime (xsd:dateTime, ISO 8601); naive times are taken as UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _resource_scope(resource_type: ResourceType, *, lacking_is_absent: bool = False) -> _Scope:
    def resolve(path: AttrPath) -> _Resolved | None:
        found = resource_type.resolve(path.uri, path.name)
        if found is None:
            if lacking_is_absent:
                return None
            raise _invalid_filter(f"unknown attribute {path}")
        extension, attribute = found

        def elements(resource: Mapping[str, Any]) -> list[Any]:
            container = resource.get(extension.id) if extension is not None else resource
            return _as_list(container.get(attribute.name)) if isinstance(container, Mapping) else []

        return _descend(path, attribute, elements)

    return resolve


def _element_scope(parent: Attribute) -> _Scope:
    def resolve(path: AttrPath) -> _Resolved:
        attribute = parent.sub(path.name)
        if attribute is None:
            raise _invalid_filter(f"{parent.name} has no sub-attribute {path.name}")

        def values(element: Mapping[str, Any]) -> list[Any]:
            return _as_list(element.get(attribute.name))

        return _Resolved(values, attribute, attribute, values)

    return resolve


def _descend(path: AttrPath, attribute: Attribute, elements: Getter) -> _Resolved:
    """Narrow a complex attribute's values to `path.sub`, or to `value` for a multi-valued
    complex attribute named alone (RFC 7644 3.4.2.2)."""
    if attribute.type != "complex":
        if path.sub:
            raise _invalid_filter(f"{attribute.name} has no sub-attributes")
        return _Resolved(elements, attribute, attribute, elements)
    sub = attribute.sub(path.sub) if path.sub else None
    if path.sub and sub is None:
        raise _invalid_filter(f"{attribute.name} has no sub-attribute {path.sub}")
    if sub is None and attribute.multi_valued:
        sub = attribute.sub("value")
    if sub is None:
        return _Resolved(elements, attribute, attribute, elements)
    name = sub.name

    def narrowed(resource: Mapping[str, Any]) -> list[Any]:
        out: list[Any] = []
        for element in elements(resource):
            if isinstance(element, Mapping):
                out.extend(_as_list(element.get(name)))
        return out

    return _Resolved(narrowed, sub, attribute, elements)


def compile_filter(node: Filter, resource_type: ResourceType) -> Predicate:
    """A predicate over stored resources of this type; ScimError 400 invalidFilter if the
    filter names unknown attributes or compares in a way their types do not allow."""
    return _compile(node, _resource_scope(resource_type))


def compile_filters(node: Filter, resource_types: Sequence[ResourceType]) -> list[Predicate]:
    """One predicate per resource type, for a search across them all (RFC 7644 3.4.2.1, at the
    server root). An attribute a type does not define has no value in that type's resources:
    `pr`, `eq "x"`, `co`, `gt`... are false there, while `ne "x"`, `eq null` and `not` read
    absence as usual. An attribute no type defines is a 400 invalidFilter, as it is at a
    resource type's endpoint; so is a comparison a defining type's schema does not allow."""
    unknown = [
        path
        for path in _attribute_paths(node)
        if all(t.resolve(path.uri, path.name) is None for t in resource_types)
    ]
    if unknown:
        raise _invalid_filter(f"unknown attribute {unknown[0]}")
    return [_compile(node, _resource_scope(t, lacking_is_absent=True)) for t in resource_types]


def _attribute_paths(node: Filter) -> list[AttrPath]:
    """The attribute paths a filter names at the top level (not those inside `[...]`)."""
    if isinstance(node, And | Or):
        return _attribute_paths(node.left) + _attribute_paths(node.right)
    if isinstance(node, Not):
        return _attribute_paths(node.inner)
    return [node.path]


def compile_value_filter(node: Filter, parent: Attribute) -> Predicate:
    """A predicate over the elements of the complex attribute `parent` (PATCH value paths)."""
    return _compile(node, _element_scope(parent))


def _compile(node: Filter, scope: _Scope) -> Predicate:
    if isinstance(node, And):
        left, right = _compile(node.left, scope), _compile(node.right, scope)
        return lambda r: left(r) and right(r)
    if isinstance(node, Or):
        left, right = _compile(node.left, scope), _compile(node.right, scope)
        return lambda r: left(r) or right(r)
    if isinstance(node, Not):
        inner = _compile(node.inner, scope)
        return lambda r: not inner(r)
    if isinstance(node, ValuePath):
        resolved = scope(AttrPath(node.path.uri, node.path.name))
        if resolved is None:
            return _never
        if resolved.attribute.type != "complex":
            raise _invalid_filter(f"{node.path}: [...] needs a complex attribute")
        matches = compile_value_filter(node.filter, resolved.attribute)
        elements = resolved.elements
        return lambda r: any(isinstance(e, Mapping) and matches(e) for e in elements(r))
    resolved = scope(node.path)
    if resolved is None:
        return _never if isinstance(node, Present) else _on_absent(node)
    if resolved.attribute.returned == "never":
        raise _invalid_filter(f"{node.path} cannot be filtered on")
    values = resolved.values
    if isinstance(node, Present):
        return lambda r: any(_present(v) for v in values(r))
    test = _comparison(node, resolved.target)
    if node.op == "ne":
        return lambda r: not test(values(r))
    return lambda r: test(values(r))


def _never(resource: Mapping[str, Any]) -> bool:
    return False


def _on_absent(node: Compare) -> Predicate:
    """A comparison on an attribute the resource type does not define: as on an absent one
    (`eq null` and `ne <value>` hold, nothing else does)."""
    holds = node.op == "eq" if node.value is None else node.op == "ne"
    return lambda r: holds


def _present(value: Any) -> bool:
    # RFC 7644 3.4.2.2 "pr": a non-empty, non-null value, or a complex one with such a part.
    if isinstance(value, Mapping):
        return any(_present(v) for v in value.values())
    if isinstance(value, list):
        return any(_present(v) for v in value)
    return value is not None and value != ""


def _comparison(node: Compare, attribute: Attribute) -> Callable[[list[Any]], bool]:
    """A test over an attribute's values; `ne` gets the `eq` test (its caller negates it)."""
    op, value, kind = node.op, node.value, attribute.type
    if value is None:
        if op not in ("eq", "ne"):
            raise _invalid_filter(f"{op} null is not a comparison")
        return lambda values: not values
    if kind == "complex":
        raise _invalid_filter(f"{node.path} is complex: name one of its sub-attributes")
    if kind == "boolean":
        if op not in ("eq", "ne") or not isinstance(value, bool):
            raise _invalid_filter(f"{node.path} is a boolean: only eq/ne true/false apply")
        return lambda values: value in values
    if kind in ("integer", "decimal"):
        if op in _SUBSTRING or isinstance(value, bool) or not isinstance(value, int | float):
            raise _invalid_filter(f"{node.path} is a number: compare it with a number")
        return _ordered(op, value, lambda v: v if isinstance(v, int | float) else None)
    if not isinstance(value, str):
        raise _invalid_filter(f"{node.path} is a {kind}: compare it with a string")
    if kind == "binary" and op in _ORDERING:
        raise _invalid_filter(f"{node.path} is binary: {op} does not apply")  # RFC 7644 3.4.2.2
    if kind == "dateTime" and op not in _SUBSTRING:
        moment = parse_datetime(value)
        if moment is None:
            raise _invalid_filter(f"{value!r} is not a dateTime")
        return _ordered(op, moment, lambda v: parse_datetime(v) if isinstance(v, str) else None)

    def fold(text: str) -> str:
        return text if attribute.case_exact else text.casefold()

    wanted = fold(value)
    if op in _SUBSTRING:
        method = {"co": str.__contains__, "sw": str.startswith, "ew": str.endswith}[op]
        return lambda values: any(isinstance(v, str) and method(fold(v), wanted) for v in values)
    return _ordered(op, wanted, lambda v: fold(v) if isinstance(v, str) else None)


def _ordered(op: str, wanted: Any, convert: Callable[[Any], Any]) -> Callable[[list[Any]], bool]:
    """eq (and so ne) and the orderings, on values made comparable by `convert` (None: skip)."""
    check: Callable[[Any], bool] = {
        "eq": lambda v: v == wanted,
        "ne": lambda v: v == wanted,
        "gt": lambda v: v > wanted,
        "ge": lambda v: v >= wanted,
        "lt": lambda v: v < wanted,
        "le": lambda v: v <= wanted,
    }[op]

    def test(values: list[Any]) -> bool:
        for raw in values:
            converted = convert(raw)
            if converted is not None and check(converted):
                return True
        return False

    return test


# --- questions the store asks of a filter ---------------------------------------------------


def required_equality(node: Filter, resource_type: ResourceType, attribute: str) -> str | None:
    """A string that `attribute` must equal for `node` to match (from an `eq` on it, alone or
    ANDed), so a store can look the candidates up in an index instead of scanning."""
    if isinstance(node, And):
        return required_equality(node.left, resource_type, attribute) or required_equality(
            node.right, resource_type, attribute
        )
    if isinstance(node, Compare) and node.op == "eq" and isinstance(node.value, str):
        found = resource_type.resolve(node.path.uri, node.path.name)
        if found is not None and found[0] is None and not node.path.sub:
            if found[1].name == attribute:
                return node.value
    return None


def attribute_names(node: Filter) -> set[str]:
    """The top-level attribute names a filter mentions, case-folded."""
    if isinstance(node, And | Or):
        return attribute_names(node.left) | attribute_names(node.right)
    if isinstance(node, Not):
        return attribute_names(node.inner)
    return {node.path.name.casefold()}
