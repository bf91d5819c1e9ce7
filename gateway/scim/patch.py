"""RFC 7644 3.5.2 PATCH on one resource, as a pure function: all operations apply, or none.

`apply_patch` works on a deep copy and raises `ScimError` 400 at the first operation that
fails, so a failed PATCH leaves nothing changed. What it accepts, beyond the RFC's examples:

- Okta's shapes (OKTA.md): a path-less `replace` of `{"active": false}`; `remove` on
  `members[value eq "..."]`; `add` on `members`; a rename `{"op": "replace", "value": {"id",
  "displayName"}}` whose `id` is ignored; `replace` on `members` with the full list.
- Operation names in any letter case (`"Replace"`), and `remove` on a multi-valued attribute
  with a `value` listing the values to take out.
- `add` to `emails[type eq "work"].value` with no work email yet creates it from the filter.

A path-less value is a partial resource: read-only attributes in it are ignored, as in a PUT
(RFC 7644 3.5.1). A `path` that names a read-only attribute is a 400 `mutability`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.scim import PATCH_OP, ScimError
from gateway.scim.filter import (
    And,
    Compare,
    Filter,
    PatchPath,
    compile_value_filter,
    parse_path,
)
from gateway.scim.resources import check_required, invalid_value, validate_value
from gateway.scim.schema import Attribute, ResourceType, Schema

_MAX_OPERATIONS = 1000


@dataclass(frozen=True, slots=True)
class _Target:
    """Where an operation lands: an attribute (in an extension, or the core) and optionally
    a value filter over its elements and one sub-attribute."""

    extension: Schema | None
    attribute: Attribute
    matches: Callable[[dict[str, Any]], bool] | None = None
    equalities: dict[str, Any] | None = None  # what the filter fixes, for `add` to create
    sub: Attribute | None = None


def _invalid_syntax(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidSyntax")


def _operations(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise _invalid_syntax("The request body must be a JSON object.")
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or PATCH_OP not in schemas:
        raise _invalid_syntax(f"A PATCH body's `schemas` must be [{PATCH_OP!r}].")
    operations = next((v for k, v in body.items() if k.casefold() == "operations"), None)
    if not isinstance(operations, list) or not operations:
        raise _invalid_syntax("`Operations` must be a non-empty array.")
    if len(operations) > _MAX_OPERATIONS:
        raise _invalid_syntax(f"At most {_MAX_OPERATIONS} operations per request.")
    checked = []
    for operation in operations:
        if not isinstance(operation, dict):
            raise _invalid_syntax("Each operation must be an object.")
        fields = {k.casefold(): v for k, v in operation.items()}
        op, path = fields.get("op"), fields.get("path")
        if not isinstance(op, str) or op.lower() not in ("add", "remove", "replace"):
            raise _invalid_syntax(f"Unknown operation {op!r}: add, remove or replace.")
        if path is not None and not isinstance(path, str):
            raise ScimError(400, "`path` must be a string.", "invalidPath")
        if op.lower() != "remove" and "value" not in fields:
            raise invalid_value(f"An {op} operation needs a `value`.")
        checked.append({"op": op.lower(), "path": path or "", "value": fields.get("value")})
    return checked


def apply_patch(resource_type: ResourceType, stored: dict[str, Any], body: Any) -> dict[str, Any]:
    """The resource after the PATCH request `body`; `stored` itself is left unchanged."""
    operations = _operations(body)
    result = copy.deepcopy(stored)
    for operation in operations:
        op, path, value = operation["op"], operation["path"], operation["value"]
        extension = resource_type.extension(path) if path else None
        if extension is not None:
            # The whole extension object: its attributes as a path-less value.
            if op == "remove":
                result.pop(extension.id, None)
            else:
                _apply_pathless(resource_type, result, op, {extension.id: value})
        elif path:
            target = _target(resource_type, path)
            if target is not None:
                _apply(result, op, target, value)
        elif op == "remove":
            raise ScimError(400, "A remove operation needs a `path`.", "noTarget")
        else:
            _apply_pathless(resource_type, result, op, value)
    _prune(result)
    check_required(resource_type, result)
    return result


def _apply_pathless(
    resource_type: ResourceType, result: dict[str, Any], op: str, value: Any
) -> None:
    """RFC 7644 3.5.2.1 / 3.5.2.3 with no path: `value` holds attributes and their values."""
    if not isinstance(value, dict):
        raise invalid_value(f"A {op} without a path needs an object `value`.")
    for key, item in value.items():
        extension = resource_type.extension(key)
        if extension is not None:
            if not isinstance(item, dict):
                raise invalid_value(f"{extension.id} must be an object.")
            for name, inner in item.items():
                attribute = extension.attribute(name)
                if attribute is not None and attribute.mutability != "readOnly":
                    _apply(result, op, _Target(extension, attribute), inner)
            continue
        found = resource_type.resolve("", key)
        if found is None or key.casefold() == "schemas":
            continue
        attribute = found[1]
        if attribute.mutability == "readOnly" or attribute.returned == "never":
            continue  # Okta's rename sends the group's `id` along: ignored, as in a PUT
        _apply(result, op, _Target(None, attribute), item)


def _target(resource_type: ResourceType, path: str) -> _Target | None:
    """What `path` names; None for an attribute that is accepted and never stored (password)."""
    parsed = parse_path(path)
    found = resource_type.resolve(parsed.attribute.uri, parsed.attribute.name)
    if found is None:
        raise ScimError(400, f"No attribute {parsed.attribute} in {path!r}.", "invalidPath")
    holder, attribute = found
    if attribute.returned == "never":
        return None
    sub = attribute.sub(parsed.sub) if parsed.sub else None
    if parsed.sub and sub is None:
        raise ScimError(400, f"{attribute.name} has no sub-attribute {parsed.sub}.", "invalidPath")
    if attribute.mutability == "readOnly" or (sub is not None and sub.mutability == "readOnly"):
        raise ScimError(400, f"{path} is read-only.", "mutability")
    if parsed.filter is None:
        return _Target(holder, attribute, sub=sub)
    return _filtered_target(holder, attribute, parsed, sub)


def _filtered_target(
    holder: Schema | None, attribute: Attribute, parsed: PatchPath, sub: Attribute | None
) -> _Target:
    assert parsed.filter is not None  # noqa: S101 - the caller checked
    if attribute.type != "complex" or not attribute.multi_valued:
        raise ScimError(400, f"{attribute.name} has no values to filter.", "invalidPath")
    try:
        predicate = compile_value_filter(parsed.filter, attribute)
    except ScimError as exc:
        raise ScimError(400, exc.description, "invalidPath") from exc
    return _Target(holder, attribute, predicate, _equalities(parsed.filter, attribute), sub)


def _equalities(node: Filter, attribute: Attribute) -> dict[str, Any] | None:
    """The sub-attribute values a filter of `eq`s joined by `and` fixes, else None."""
    if isinstance(node, And):
        left, right = _equalities(node.left, attribute), _equalities(node.right, attribute)
        return {**left, **right} if left is not None and right is not None else None
    if isinstance(node, Compare) and node.op == "eq" and node.value is not None:
        sub = attribute.sub(node.path.name)
        return {sub.name: node.value} if sub is not None else None
    return None


def _holder(result: dict[str, Any], target: _Target) -> dict[str, Any]:
    if target.extension is None:
        return result
    holder: dict[str, Any] = result.setdefault(target.extension.id, {})
    return holder


def _apply(result: dict[str, Any], op: str, target: _Target, value: Any) -> None:
    holder = _holder(result, target)
    attribute, name = target.attribute, target.attribute.name
    if target.matches is not None:
        _apply_to_matching(holder, op, target, value)
    elif target.sub is not None:
        _apply_to_sub(holder, op, target, value)
    elif op == "remove":
        _remove(holder, attribute, value)
    elif attribute.multi_valued:
        items = validate_value(attribute, value if isinstance(value, list) else [value]) or []
        current = holder.get(name, []) if op == "add" else []
        holder[name] = _merged(attribute, current, items)
    elif attribute.type == "complex":
        # RFC 7644 3.5.2.1 / 3.5.2.3: sub-attributes not in the value are left unchanged.
        merged = {**holder.get(name, {}), **(validate_value(attribute, value) or {})}
        holder[name] = merged
    else:
        holder[name] = validate_value(attribute, value)


def _merged(attribute: Attribute, current: list[Any], added: list[Any]) -> list[Any]:
    """`current` with `added` appended, without repeating a value (RFC 7644 3.5.2.1)."""
    if attribute.type != "complex":
        return current + [v for v in added if v not in current]
    by_value = {item.get("value"): item for item in current if "value" in item}
    merged = list(current)
    for item in added:
        if "value" in item and item["value"] in by_value:
            by_value[item["value"]].update(item)
        else:
            merged.append(item)
    if any(item.get("primary") is True for item in added):
        # RFC 7644 3.5.2: a new primary value makes the others not primary.
        newest = next(i for i in reversed(merged) if i.get("primary") is True)
        for item in merged:
            if item is not newest and item.get("primary") is True:
                item["primary"] = False
    return merged


def _remove(holder: dict[str, Any], attribute: Attribute, value: Any) -> None:
    """RFC 7644 3.5.2.2: the attribute goes; with a `value` on a multi-valued one, only the
    values listed (the form some clients use for `members`)."""
    name = attribute.name
    if value is None or not attribute.multi_valued:
        holder.pop(name, None)
        return
    listed = value if isinstance(value, list) else [value]
    unwanted = [v.get("value") if isinstance(v, dict) else v for v in listed]
    holder[name] = [
        item
        for item in holder.get(name, [])
        if (item.get("value") if isinstance(item, dict) else item) not in unwanted
    ]


def _apply_to_sub(holder: dict[str, Any], op: str, target: _Target, value: Any) -> None:
    """`name.givenName`; on a multi-valued attribute the sub-attribute of every value."""
    attribute, sub = target.attribute, target.sub
    assert sub is not None  # noqa: S101 - the caller checked
    checked = None if op == "remove" else validate_value(sub, value)
    if attribute.multi_valued:
        items = holder.get(attribute.name, [])
        if not items and op != "remove":
            raise ScimError(400, f"{attribute.name} has no values.", "noTarget")
        elements = items
    else:
        elements = [holder.setdefault(attribute.name, {})]
    for element in elements:
        _set_sub(element, sub.name, checked)


def _set_sub(element: dict[str, Any], name: str, value: Any) -> None:
    if value is None:
        element.pop(name, None)
    else:
        element[name] = value


def _apply_to_matching(holder: dict[str, Any], op: str, target: _Target, value: Any) -> None:
    """`members[value eq "..."]` and `emails[type eq "work"].value` (RFC 7644 3.5.2)."""
    attribute, sub, matches = target.attribute, target.sub, target.matches
    assert matches is not None  # noqa: S101 - the caller checked
    items: list[dict[str, Any]] = holder.get(attribute.name, [])
    selected = [item for item in items if matches(item)]
    if op == "remove":
        if sub is None:
            holder[attribute.name] = [item for item in items if not matches(item)]
        else:
            for item in selected:
                item.pop(sub.name, None)
        return
    if not selected:
        if op == "add" and target.equalities is not None:
            created = {**target.equalities}
            if sub is not None:
                created[sub.name] = value
            elif isinstance(value, dict):
                created.update(value)
            holder[attribute.name] = _merged(
                attribute, items, validate_value(attribute, [created]) or []
            )
            return
        # RFC 7644 3.5.2.3: a value filter that matches nothing fails with noTarget.
        raise ScimError(400, "The value filter matched no values.", "noTarget")
    if sub is not None:
        checked = validate_value(sub, value)
        for item in selected:
            _set_sub(item, sub.name, checked)
        return
    replacement = validate_value(attribute, [value]) or []
    if not replacement:
        raise invalid_value(f"A value for {attribute.name} must be an object.")
    for item in selected:
        if op == "replace":
            item.clear()
        item.update(replacement[0])


def _prune(result: dict[str, Any]) -> None:
    """Drop what became unassigned: nulls, empty arrays and objects (RFC 7643 2.5)."""
    for key in list(result):
        value = result[key]
        if isinstance(value, dict) and key != "meta":
            _prune(value)
        if isinstance(value, list):
            value[:] = [v for v in value if v not in (None, {}, "")]
        if value is None or value == [] or value == {}:
            del result[key]
