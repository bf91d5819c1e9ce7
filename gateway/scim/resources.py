"""SCIM resources in and out: request bodies to stored attributes, stored to returned JSON.

Input (POST, PUT, PATCH values) is checked against the schema (RFC 7643 2): types, required
attributes, one `primary` at most. Read-only attributes sent by the client (`id`, `meta`, a
user's `groups`) are ignored as RFC 7644 3.5.1 says for PUT; `password` (write-only, returned
never) is dropped and never stored; unknown attributes are ignored. Attribute names are
case-insensitive on input and stored under their schema spelling, so filters, PATCH and
projection look them up one way.

Output adds `schemas`, `meta.location` and `meta.version`, a group's members' `$ref`, and
applies `attributes` / `excludedAttributes` (RFC 7644 3.4.2.5, 3.9).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.scim import ScimError
from gateway.scim.filter import parse_attribute, parse_datetime
from gateway.scim.schema import Attribute, ResourceType


def invalid_value(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidValue")


def validate_resource(resource_type: ResourceType, body: Any) -> dict[str, Any]:
    """The attributes to store from a POST or PUT body; ScimError 400 if it is not a valid
    `resource_type` resource."""
    if not isinstance(body, dict):
        raise ScimError(400, "The request body must be a JSON object.", "invalidSyntax")
    schemas = body.get("schemas")
    known = {s.casefold() for s in resource_type.schema_ids()}
    if (
        not isinstance(schemas, list)
        or not all(isinstance(s, str) for s in schemas)
        or resource_type.schema.id.casefold() not in {s.casefold() for s in schemas}
        or not {s.casefold() for s in schemas} <= known
    ):
        raise ScimError(
            400,
            f"`schemas` must list {resource_type.schema.id} (and only schemas of "
            f"{resource_type.endpoint}: {', '.join(resource_type.schema_ids())}).",
            "invalidSyntax",
        )
    stored: dict[str, Any] = {}
    for key, value in body.items():
        extension = resource_type.extension(key)
        if extension is not None:
            if value is not None:
                if not isinstance(value, dict):
                    raise invalid_value(f"{extension.id} must be an object.")
                attributes = _validate_attributes(extension.attributes, value)
                if attributes:
                    stored[extension.id] = attributes
            continue
        found = resource_type.resolve("", key)
        if found is None or key.casefold() == "schemas":
            continue
        attribute = found[1]
        if attribute.mutability == "readOnly" or attribute.returned == "never":
            continue
        checked = validate_value(attribute, value)
        if checked is not None:
            stored[attribute.name] = checked
    check_required(resource_type, stored)
    return stored


def check_required(resource_type: ResourceType, stored: Mapping[str, Any]) -> None:
    for attribute in resource_type.schema.attributes:
        if attribute.required and stored.get(attribute.name) is None:
            raise invalid_value(f"{attribute.name} is required.")


def _validate_attributes(
    attributes: tuple[Attribute, ...], values: Mapping[str, Any]
) -> dict[str, Any]:
    by_name = {a.name.casefold(): a for a in attributes}
    out: dict[str, Any] = {}
    for key, value in values.items():
        attribute = by_name.get(key.casefold())
        if attribute is None or attribute.mutability == "readOnly":
            continue
        checked = validate_value(attribute, value)
        if checked is not None:
            out[attribute.name] = checked
    return out


def validate_value(attribute: Attribute, value: Any) -> Any:
    """`value` checked against `attribute` and in canonical form; None when it is unassigned
    (null, an empty list or object: RFC 7643 2.5)."""
    if value is None:
        return None
    if attribute.multi_valued:
        if not isinstance(value, list):
            raise invalid_value(f"{attribute.name} must be an array.")
        items = [v for v in (_single_value(attribute, item) for item in value) if v is not None]
        if attribute.type == "complex":
            # RFC 7643 2.4: "primary" true appears no more than once.
            if sum(1 for item in items if item.get("primary") is True) > 1:
                raise invalid_value(f"Only one of {attribute.name} can be primary.")
            if attribute.sub("value") is not None:
                items = _unique_by_value(items)
        return items or None
    return _single_value(attribute, value)


def _unique_by_value(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop repeats of the same `value` (RFC 7644 3.5.2.1: no duplicate values), first kept."""
    seen: set[Any] = set()
    unique = []
    for item in items:
        key = item.get("value")
        if key is None or key not in seen:
            unique.append(item)
            if key is not None:
                seen.add(key)
    return unique


def _single_value(attribute: Attribute, value: Any) -> Any:
    kind = attribute.type
    if value is None:
        return None
    if kind == "complex":
        if not isinstance(value, dict):
            raise invalid_value(f"{attribute.name} must be an object.")
        return _validate_attributes(attribute.sub_attributes, value) or None
    if kind == "boolean":
        valid = isinstance(value, bool)
    elif kind == "integer":
        valid = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "decimal":
        valid = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "dateTime":
        valid = isinstance(value, str) and parse_datetime(value) is not None
    else:
        valid = isinstance(value, str)
    if not valid:
        raise invalid_value(f"{attribute.name} must be a {kind}, not {_json_type(value)}.")
    if attribute.required and isinstance(value, str) and not value.strip():
        raise invalid_value(f"{attribute.name} must not be empty.")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


# --- output ---------------------------------------------------------------------------------


def version_tag(version: int) -> str:
    """`meta.version` and the ETag (RFC 7644 3.14): a weak entity tag of the write count."""
    return f'W/"{version}"'


def render(resource_type: ResourceType, stored: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """The resource as returned: `schemas` first, `meta` last, references filled in."""
    meta = stored["meta"]
    extensions = [s.id for s in resource_type.extensions if s.id in stored]
    document: dict[str, Any] = {"schemas": [resource_type.schema.id, *extensions]}
    document["id"] = stored["id"]
    for key, value in stored.items():
        if key not in ("id", "meta"):
            document[key] = value
    if "members" in document:
        document["members"] = [
            {**m, "type": m.get("type", "User"), "$ref": f"{base_url}/Users/{m['value']}"}
            for m in document["members"]
        ]
    document["meta"] = {
        "resourceType": resource_type.name,
        "created": meta["created"],
        "lastModified": meta["lastModified"],
        "location": f"{base_url}{resource_type.endpoint}/{stored['id']}",
        "version": version_tag(meta["version"]),
    }
    return document


# A selected attribute: (extension URN or None, attribute name, sub-attribute name or None).
_Selection = tuple[str | None, str, str | None]


def _selections(resource_type: ResourceType, names: str) -> list[_Selection]:
    """The attributes a comma-separated `attributes` / `excludedAttributes` value names;
    unknown names select nothing."""
    selected: list[_Selection] = []
    for raw in names.split(","):
        name = raw.strip()
        extension = resource_type.extension(name)
        if extension is not None:
            selected.extend((extension.id, a.name, None) for a in extension.attributes)
            continue
        path = parse_attribute(name)
        found = resource_type.resolve(path.uri, path.name) if path else None
        if path is None or found is None:
            continue
        holder, attribute = found
        sub = attribute.sub(path.sub) if path.sub else None
        if path.sub and sub is None:
            continue
        selected.append((holder.id if holder else None, attribute.name, sub.name if sub else None))
    return selected


def project(
    resource_type: ResourceType,
    document: dict[str, Any],
    attributes: str = "",
    excluded: str = "",
) -> dict[str, Any]:
    """`document` narrowed by `attributes` (only these, plus `returned: always`) or else
    widened-down by `excludedAttributes` (RFC 7644 3.4.2.5)."""
    if attributes.strip():
        return _only(resource_type, document, _selections(resource_type, attributes))
    if excluded.strip():
        return _without(resource_type, document, _selections(resource_type, excluded))
    return document


def _only(
    resource_type: ResourceType, document: dict[str, Any], selected: list[_Selection]
) -> dict[str, Any]:
    out: dict[str, Any] = {"schemas": document["schemas"], "id": document["id"]}
    for holder, name, sub in selected:
        source = document.get(holder, {}) if holder else document
        if name not in source:
            continue
        target = out.setdefault(holder, {}) if holder else out
        value = source[name]
        if sub is None:
            target[name] = value
            continue
        kept = target.get(name)
        if isinstance(value, list):
            kept = kept if isinstance(kept, list) else [{} for _ in value]
            for item, into in zip(value, kept, strict=True):
                if sub in item:
                    into[sub] = item[sub]
            target[name] = kept
        elif sub in value:
            target[name] = {**(kept or {}), sub: value[sub]}
    return out


def _without(
    resource_type: ResourceType, document: dict[str, Any], selected: list[_Selection]
) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in document.items()}
    for holder, name, sub in selected:
        found = resource_type.resolve(holder or "", name)
        if found is not None and found[1].returned == "always":
            continue  # id cannot be excluded (RFC 7643 2.2 "returned")
        target = out.get(holder, {}) if holder else out
        if name not in target:
            continue
        if sub is None:
            del target[name]
        elif isinstance(target[name], list):
            target[name] = [{k: v for k, v in i.items() if k != sub} for i in target[name]]
        else:
            target[name] = {k: v for k, v in target[name].items() if k != sub}
    return out


# --- facts about users that the gateway uses ------------------------------------------------


def user_email(user: Mapping[str, Any]) -> str:
    """The user's email: the primary (else first) of `emails`, else a `userName` that is one."""
    emails = [e for e in user.get("emails", []) if isinstance(e.get("value"), str)]
    primary = next((e for e in emails if e.get("primary") is True), emails[0] if emails else None)
    if primary is not None:
        return str(primary["value"])
    user_name = str(user.get("userName", ""))
    return user_name if "@" in user_name else ""


def user_display_name(user: Mapping[str, Any]) -> str:
    """`displayName`, else `name.formatted`, else given and family name, else `userName`."""
    name = user.get("name", {})
    joined = " ".join(p for p in (name.get("givenName"), name.get("familyName")) if p)
    return str(user.get("displayName") or name.get("formatted") or joined or user["userName"])
