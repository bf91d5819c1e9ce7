"""RFC 7644 3.5.2 PATCH as a pure function: each operation's semantics, all-or-nothing, and
no body that makes it fail other than with a SCIM error."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.scim import ScimError
from gateway.scim.patch import apply_patch
from gateway.scim.resources import check_required, validate_resource
from gateway.scim.schema import GROUPS, USERS

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

USER: dict[str, Any] = {
    "userName": "bjensen",
    "name": {"givenName": "Barbara", "familyName": "Jensen"},
    "emails": [
        {"value": "b@work.example", "type": "work", "primary": True},
        {"value": "b@home.example", "type": "home"},
    ],
    "active": True,
}
GROUP: dict[str, Any] = {
    "displayName": "Engineering",
    "members": [{"value": "u1", "display": "One", "type": "User"}, {"value": "u2"}],
}


def body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def user_after(*operations: dict[str, Any]) -> dict[str, Any]:
    return apply_patch(USERS, USER, body(*operations))


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        # replace without path: complex attributes keep the sub-attributes not mentioned
        (
            {"op": "replace", "value": {"name": {"familyName": "Smith"}, "title": "CEO"}},
            {"name": {"givenName": "Barbara", "familyName": "Smith"}, "title": "CEO"},
        ),
        # add without path to a multi-valued attribute appends
        (
            {"op": "add", "value": {"emails": [{"value": "b@other.example"}]}},
            {"emails": [*USER["emails"], {"value": "b@other.example"}]},
        ),
        # ...and a value that is already there is not repeated
        ({"op": "add", "path": "emails", "value": [{"value": "b@home.example"}]}, {}),
        # replace with path on a multi-valued attribute replaces them all
        (
            {"op": "replace", "path": "emails", "value": [{"value": "x@y"}]},
            {"emails": [{"value": "x@y"}]},
        ),
        (
            {"op": "replace", "path": "name.givenName", "value": "Babs"},
            {"name": {**USER["name"], "givenName": "Babs"}},
        ),
        ({"op": "remove", "path": "name.givenName"}, {"name": {"familyName": "Jensen"}}),
        ({"op": "remove", "path": "emails"}, {"emails": None}),
        (
            {"op": "remove", "path": 'emails[type eq "work"]'},
            {"emails": [{"value": "b@home.example", "type": "home"}]},
        ),
        ({"op": "remove", "path": 'emails[type eq "other"]'}, {}),  # nothing matched: no-op
        (
            {"op": "remove", "path": "emails.primary"},
            {"emails": [{"value": "b@work.example", "type": "work"}, USER["emails"][1]]},
        ),
        (
            {
                "op": "replace",
                "path": 'emails[type eq "home"]',
                "value": {"value": "n@h", "type": "home"},
            },
            {"emails": [USER["emails"][0], {"value": "n@h", "type": "home"}]},
        ),
        (
            {"op": "add", "path": 'emails[type eq "other"].value', "value": "o@x"},
            {"emails": [*USER["emails"], {"type": "other", "value": "o@x"}]},
        ),
        (
            {"op": "add", "path": f"{ENTERPRISE}:manager.value", "value": "m1"},
            {ENTERPRISE: {"manager": {"value": "m1"}}},
        ),
        (
            {"op": "add", "path": ENTERPRISE, "value": {"department": "Tour"}},
            {ENTERPRISE: {"department": "Tour"}},
        ),
        ({"op": "replace", "path": "title", "value": None}, {}),  # null: unassigned
        ({"op": "replace", "path": "PASSWORD", "value": "x"}, {}),  # never stored
        ({"op": "replace", "value": {"password": "x", "meta": {}, "id": "other"}}, {}),
        ({"op": "REMOVE", "path": "active"}, {"active": None}),
    ],
)
def test_user_operations(operation: dict[str, Any], expected: dict[str, Any]) -> None:
    wanted = {**copy.deepcopy(USER), **expected}
    wanted = {k: v for k, v in wanted.items() if v is not None}

    assert user_after(operation) == wanted


def test_a_new_primary_value_makes_the_others_not_primary() -> None:
    after = user_after(
        {"op": "add", "path": "emails", "value": [{"value": "p@x", "primary": True}]}
    )

    assert [e.get("primary") for e in after["emails"]] == [False, None, True]


@pytest.mark.parametrize(
    ("operation", "expected_members"),
    [
        ({"op": "add", "path": "members", "value": [{"value": "u3"}]}, ["u1", "u2", "u3"]),
        ({"op": "remove", "path": 'members[value eq "u1"]'}, ["u2"]),
        ({"op": "remove", "path": "members", "value": [{"value": "u2"}]}, ["u1"]),
        ({"op": "remove", "path": "members"}, []),
        ({"op": "replace", "path": "members", "value": [{"value": "u9"}]}, ["u9"]),
        ({"op": "replace", "value": {"members": [{"value": "u8"}]}}, ["u8"]),
    ],
)
def test_group_member_operations(operation: dict[str, Any], expected_members: list[str]) -> None:
    after = apply_patch(GROUPS, GROUP, body(operation))

    assert [m["value"] for m in after.get("members", [])] == expected_members


@pytest.mark.parametrize(
    ("operations", "status", "scim_type"),
    [
        ([{"op": "remove", "path": "userName"}], 400, "invalidValue"),  # required
        ([{"op": "replace", "path": "groups", "value": []}], 400, "mutability"),
        ([{"op": "replace", "path": "meta.version", "value": "1"}], 400, "mutability"),
        ([{"op": "replace", "path": "emails.display.x", "value": 1}], 400, "invalidPath"),
        ([{"op": "replace", "path": 'name[givenName eq "x"]', "value": {}}], 400, "invalidPath"),
        ([{"op": "replace", "path": 'emails[nope eq "x"]', "value": {}}], 400, "invalidPath"),
        ([{"op": "replace", "path": "title", "value": 3}], 400, "invalidValue"),
        ([{"op": "replace", "value": "not an object"}], 400, "invalidValue"),
        (
            [{"op": "add", "path": 'emails[type eq "work" or type eq "x"].display'}],
            400,
            "invalidValue",
        ),
        ([{"op": "replace", "path": 'emails[type eq "fax"].value', "value": "f"}], 400, "noTarget"),
        (
            [
                {"op": "add", "path": 'emails[type ne "work"]', "value": {"display": "d"}},
                {"op": "add", "path": "emails[type pr]", "value": "scalar"},
            ],
            400,
            "invalidValue",
        ),
        ([{"op": "replace", "path": 7, "value": 1}], 400, "invalidPath"),
        (["not an object"], 400, "invalidSyntax"),
    ],
)
def test_failing_operations_change_nothing(
    operations: list[Any], status: int, scim_type: str
) -> None:
    before = copy.deepcopy(USER)
    with pytest.raises(ScimError) as caught:
        apply_patch(
            USERS,
            USER,
            {
                "schemas": [PATCH_OP],
                "Operations": [
                    {"op": "replace", "path": "title", "value": "changed first"},
                    *operations,
                ],
            },
        )

    assert (caught.value.status, caught.value.scim_type) == (status, scim_type)
    assert before == USER  # the input is never modified


def test_too_many_operations_are_refused() -> None:
    many = [{"op": "replace", "path": "title", "value": str(i)} for i in range(1001)]

    with pytest.raises(ScimError) as caught:
        apply_patch(USERS, USER, body(*many))

    assert caught.value.scim_type == "invalidSyntax"


# --- any body: a result or a ScimError, never another exception ------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
_PATHS = st.sampled_from(
    [
        "userName",
        "name",
        "name.givenName",
        "emails",
        "emails.value",
        'emails[type eq "work"]',
        'emails[type eq "work"].value',
        'emails[value co "@"].primary',
        "members",
        'members[value eq "u1"]',
        "active",
        "groups",
        "id",
        "meta.created",
        ENTERPRISE,
        f"{ENTERPRISE}:manager.value",
        "nope",
        "emails[",
        "",
    ]
)
_OPERATIONS = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "remove", "replace", "Replace", "move"])},
    optional={"path": _PATHS, "value": _JSON},
)


@settings(max_examples=300, deadline=None)
@given(operations=st.lists(_OPERATIONS, min_size=1, max_size=4), group=st.booleans())
def test_any_patch_is_applied_or_refused_with_a_scim_error(
    operations: list[dict[str, Any]], group: bool
) -> None:
    resource_type, resource = (GROUPS, GROUP) if group else (USERS, USER)
    before = copy.deepcopy(resource)
    try:
        after = apply_patch(resource_type, resource, body(*operations))
    except ScimError as exc:
        assert exc.status == 400 and exc.scim_type
    else:
        check_required(resource_type, after)
    assert resource == before


@settings(max_examples=300, deadline=None)
@given(document=st.dictionaries(st.sampled_from([*USER, "schemas", "x"]), _JSON))
def test_any_body_is_a_valid_resource_or_a_scim_error(document: dict[str, Any]) -> None:
    document = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], **USER, **document}
    try:
        stored = validate_resource(USERS, document)
    except ScimError as exc:
        assert exc.status == 400 and exc.scim_type in ("invalidSyntax", "invalidValue")
    else:
        assert validate_resource(USERS, {**stored, "schemas": document["schemas"]}) == stored
