"""The SCIM 2.0 service provider end to end, in process, on both stores: Okta's provisioning
sequence with Okta's exact request shapes (OKTA.md), discovery, paging, projection, and every
kind of bad input answered with the RFC 7644 3.12 error document."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from harness import IDP_ID, TEAM, EchoUpstream, free_port, running, settings_doc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scim_harness import (
    BASE,
    ERROR,
    GROUP,
    LIST,
    PATCH_OP,
    USER,
    create_group,
    create_user,
    deactivate,
    okta_client,
    okta_user,
    patch,
    runtime,
    scim_doc,
    scim_gateway,
)

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.errors import GatewayError
from gateway.scim.repository import ScimRepository
from gateway.scim.routes import MAX_BODY
from gateway.scim.schema import GROUPS, USERS
from gateway.state.store import Store
from gateway.state.store.redis import RedisStore

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


@pytest_asyncio.fixture
async def scim(
    store: Store, upstream: EchoUpstream
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    async with scim_gateway(store, upstream.url) as pair:
        yield pair


@pytest.fixture
def client(scim: tuple[Gateway, httpx.AsyncClient]) -> Iterator[httpx.AsyncClient]:
    yield scim[1]


def assert_scim_error(
    response: httpx.Response, status: int, scim_type: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    body: dict[str, Any] = response.json()
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    assert body["detail"]
    if scim_type is None:
        assert "scimType" not in body
    else:
        assert body["scimType"] == scim_type
    return body


def names_filter(attribute: str, value: str) -> dict[str, Any]:
    """Okta's lookup: an `eq` filter, always with startIndex=1&count=100."""
    return {"filter": f'{attribute} eq "{value}"', "startIndex": 1, "count": 100}


# --- Okta's provisioning sequence ------------------------------------------------------------


async def test_okta_provisioning_sequence_for_users(
    scim: tuple[Gateway, httpx.AsyncClient], store: Store
) -> None:
    app, client = scim
    # "Test API Credentials"
    listed = await client.get("/Users", params={"startIndex": 1, "count": 1})
    assert listed.status_code == 200
    assert listed.headers["content-type"].startswith("application/scim+json")
    assert listed.json() == {
        "schemas": [LIST],
        "totalResults": 0,
        "startIndex": 1,
        "itemsPerPage": 0,
        "Resources": [],
    }

    # Lookup before create: nothing (200, totalResults 0, not 404).
    missing = await client.get("/Users", params=names_filter("userName", "alice@example.com"))
    assert missing.status_code == 200 and missing.json()["totalResults"] == 0

    # Create, with Okta's throw-away password and `groups: []`.
    created = await client.post("/Users", json=okta_user())
    assert created.status_code == 201, created.text
    user = created.json()
    assert created.headers["location"] == user["meta"]["location"]
    assert user["meta"]["location"] == f"{BASE}/Users/{user['id']}"
    assert created.headers["etag"] == user["meta"]["version"] == 'W/"1"'
    assert user["schemas"] == [USER]
    assert user["userName"] == "alice@example.com"
    assert user["externalId"] == "00ualice"
    assert user["active"] is True
    assert user["name"] == {"givenName": "Alice", "familyName": "Example"}
    assert user["meta"]["resourceType"] == "User"
    assert user["meta"]["created"] == user["meta"]["lastModified"]
    assert "password" not in user and "groups" not in user
    raw = await store.get(f"scim:{IDP_ID}:user:{user['id']}")
    assert raw is not None and b"password" not in raw and b"tHr0w" not in raw

    # Lookup finds it, in any letter case, and returns the stored case.
    found = await client.get("/Users", params=names_filter("userName", "ALICE@Example.COM"))
    assert found.json()["totalResults"] == 1
    assert found.json()["Resources"][0]["userName"] == "alice@example.com"

    # Update: GET, then PUT the whole resource with the change.
    current = (await client.get(f"/Users/{user['id']}")).json()
    current["name"]["givenName"] = "Alicia"
    current["displayName"] = "Alicia Example"
    current["title"] = "Engineer"
    updated = await client.put(f"/Users/{user['id']}", json=current)
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"]["givenName"] == "Alicia"
    assert updated.json()["title"] == "Engineer"
    assert updated.json()["meta"]["version"] == 'W/"2"'
    assert updated.json()["meta"]["created"] == user["meta"]["created"]

    # Deactivate with the path-less PATCH; the user stays readable (Okta never deletes).
    deactivated = await client.patch(f"/Users/{user['id']}", json=deactivate())
    assert deactivated.status_code == 200, deactivated.text
    assert deactivated.json()["active"] is False
    assert (await client.get(f"/Users/{user['id']}")).json()["active"] is False

    # Reactivate likewise.
    reactivate = patch({"op": "replace", "value": {"active": True}})
    assert (await client.patch(f"/Users/{user['id']}", json=reactivate)).json()["active"] is True

    # Deactivate with PUT (wizard-made apps).
    whole = (await client.get(f"/Users/{user['id']}")).json()
    whole["active"] = False
    put = await client.put(f"/Users/{user['id']}", json=whole)
    assert put.status_code == 200 and put.json()["active"] is False
    assert put.json()["title"] == "Engineer"

    log = await runtime(app).provisioning_log.entries(IDP_ID, 100)
    assert [(e["method"], e["status"]) for e in reversed(log)] == [
        ("GET", 200),
        ("GET", 200),
        ("POST", 201),
        ("GET", 200),
        ("GET", 200),
        ("PUT", 200),
        ("PATCH", 200),
        ("GET", 200),
        ("PATCH", 200),
        ("GET", 200),
        ("PUT", 200),
    ]
    assert log[0]["resource_type"] == "User"
    assert log[0]["resource_id"] == user["id"]
    assert log[0]["resource_name"] == "alice@example.com"
    assert log[0]["outcome"] == "success" and log[0]["error"] == ""


async def test_okta_group_push(client: httpx.AsyncClient) -> None:
    alice = await create_user(client)
    bob = await create_user(client, user_name="bob@example.com", given="Bob", external_id="00ubob")
    carol = await create_user(client, user_name="carol@example.com", external_id="00ucarol")

    missing = await client.get("/Groups", params=names_filter("displayName", "Engineering"))
    assert missing.json()["totalResults"] == 0

    # Create with members.
    created = await client.post(
        "/Groups",
        json={
            "schemas": [GROUP],
            "displayName": "Engineering",
            "members": [
                {"value": alice["id"], "display": "alice@example.com"},
                {"value": bob["id"], "display": "bob@example.com"},
            ],
        },
    )
    assert created.status_code == 201, created.text
    group = created.json()
    assert created.headers["location"] == f"{BASE}/Groups/{group['id']}"
    assert [m["value"] for m in group["members"]] == [alice["id"], bob["id"]]
    assert group["members"][0]["$ref"] == f"{BASE}/Users/{alice['id']}"
    assert group["members"][0]["display"] == "Alice Example"

    found = await client.get("/Groups", params=names_filter("displayName", "engineering"))
    assert [g["id"] for g in found.json()["Resources"]] == [group["id"]]

    user_groups = (await client.get(f"/Users/{alice['id']}")).json()["groups"]
    assert user_groups == [{"value": group["id"], "display": "Engineering", "type": "direct"}]

    # Membership change: several removes on members[value eq ...], then one add.
    changed = await client.patch(
        f"/Groups/{group['id']}",
        json=patch(
            {"op": "remove", "path": f'members[value eq "{alice["id"]}"]'},
            {"op": "remove", "path": f'members[value eq "{bob["id"]}"]'},
            {
                "op": "add",
                "path": "members",
                "value": [{"value": carol["id"], "display": "carol@example.com"}],
            },
        ),
    )
    assert changed.status_code == 200, changed.text
    assert [m["value"] for m in changed.json()["members"]] == [carol["id"]]
    assert "groups" not in (await client.get(f"/Users/{alice['id']}")).json()

    # Rename: a path-less replace carrying the group's id, which is ignored.
    renamed = await client.patch(
        f"/Groups/{group['id']}",
        json=patch({"op": "replace", "value": {"id": group["id"], "displayName": "Platform"}}),
    )
    assert renamed.status_code == 200 and renamed.json()["displayName"] == "Platform"
    assert (await client.get(f"/Users/{carol['id']}")).json()["groups"][0]["display"] == "Platform"
    old_name = await client.get("/Groups", params=names_filter("displayName", "Engineering"))
    assert old_name.json()["totalResults"] == 0

    # Full replace of the members.
    replaced = await client.patch(
        f"/Groups/{group['id']}",
        json=patch(
            {
                "op": "replace",
                "path": "members",
                "value": [{"value": alice["id"], "display": "a"}, {"value": bob["id"]}],
            }
        ),
    )
    assert [m["value"] for m in replaced.json()["members"]] == [alice["id"], bob["id"]]

    # Delete.
    deleted = await client.delete(f"/Groups/{group['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_scim_error(await client.get(f"/Groups/{group['id']}"), 404)
    assert "groups" not in (await client.get(f"/Users/{bob['id']}")).json()
    assert (await client.get("/Groups")).json()["totalResults"] == 0


async def test_a_deleted_user_leaves_its_groups(client: httpx.AsyncClient) -> None:
    alice = await create_user(client)
    group = await create_group(client, "Engineering", (alice["id"],))

    assert (await client.delete(f"/Users/{alice['id']}")).status_code == 204

    assert_scim_error(await client.get(f"/Users/{alice['id']}"), 404)
    assert "members" not in (await client.get(f"/Groups/{group['id']}")).json()
    # The userName is free again.
    assert (await client.post("/Users", json=okta_user())).status_code == 201


# --- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form", ["Bearer {}", "bearer {}", "{}", "Bearer Bearer {}", " Bearer  {} "]
)
async def test_the_secret_is_accepted_in_the_forms_okta_sends(
    client: httpx.AsyncClient, form: str
) -> None:
    secret = client.headers["authorization"].removeprefix("Bearer ")
    response = await client.get("/Users", headers={"Authorization": form.format(secret)})
    assert response.status_code == 200


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer wrong", "Basic abc"])
async def test_a_missing_or_wrong_secret_is_401(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = dict(client.headers)
    headers.pop("authorization")
    if authorization is not None:
        headers["Authorization"] = authorization
    async with httpx.AsyncClient(
        transport=client._transport, base_url=BASE, headers=headers
    ) as stranger:
        response = await stranger.get("/Users")
        body = assert_scim_error(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "Resources" not in body
        creating = await stranger.post("/Users", json=okta_user())
        assert_scim_error(creating, 401)
    assert (await client.get("/Users")).json()["totalResults"] == 0


async def test_a_regenerated_secret_replaces_the_old_one_at_once(
    scim: tuple[Gateway, httpx.AsyncClient],
) -> None:
    app, client = scim
    rt = runtime(app)
    idp = rt.settings.idp(IDP_ID)
    assert idp is not None
    new = await rt.scim_secrets.regenerate(idp)

    assert_scim_error(await client.get("/Users"), 401)
    async with okta_client(app, new) as renewed:
        assert (await renewed.get("/Users")).status_code == 200
    assert await rt.scim_secrets.ensure(idp) is None  # one exists: not replaced


async def test_a_pinned_secret_verifies_and_cannot_be_regenerated(
    store: Store, upstream: EchoUpstream
) -> None:
    doc = scim_doc(upstream.url, secret="pinned-secret-0123456789")
    async with running(create_app(parse_settings(doc), store=store)) as app:
        rt = runtime(app)
        idp = rt.settings.idp(IDP_ID)
        assert idp is not None
        async with okta_client(app, "pinned-secret-0123456789") as client:
            assert (await client.get("/Users")).status_code == 200
        with pytest.raises(GatewayError) as caught:
            await rt.scim_secrets.regenerate(idp)
        assert caught.value.status == 409
        assert await rt.scim_secrets.ensure(idp) is None
        async with okta_client(app, "pinned-secret-012345678") as client:
            assert_scim_error(await client.get("/Users"), 401)


async def test_pinning_a_secret_retires_the_generated_one(
    store: Store, upstream: EchoUpstream
) -> None:
    """Pinning is how an operator replaces a generated secret that leaked (a pinned one cannot
    be regenerated): after the restart, the leaked one must be refused."""
    async with running(create_app(parse_settings(scim_doc(upstream.url)), store=store)) as app:
        idp = runtime(app).settings.idp(IDP_ID)
        assert idp is not None
        leaked = await runtime(app).scim_secrets.regenerate(idp)

    doc = scim_doc(upstream.url, secret="pinned-secret-0123456789")
    async with running(create_app(parse_settings(doc), store=store)) as app:
        async with okta_client(app, leaked) as attacker:
            assert_scim_error(await attacker.get("/Users"), 401)
        async with okta_client(app, "pinned-secret-0123456789") as okta:
            assert (await okta.get("/Users")).status_code == 200


async def test_ensure_generates_the_first_secret_once(store: Store, upstream: EchoUpstream) -> None:
    async with running(create_app(parse_settings(scim_doc(upstream.url)), store=store)) as app:
        rt = runtime(app)
        idp = rt.settings.idp(IDP_ID)
        assert idp is not None
        first = await rt.scim_secrets.ensure(idp)
        assert first
        assert await rt.scim_secrets.ensure(idp) is None
        async with okta_client(app, first) as client:
            assert (await client.get("/Users")).status_code == 200


async def test_unknown_idp_or_scim_off_is_404(
    scim: tuple[Gateway, httpx.AsyncClient], store: Store, upstream: EchoUpstream
) -> None:
    app, client = scim
    secret = client.headers["authorization"].removeprefix("Bearer ")
    async with okta_client(app, secret, f"{TEAM}/populations/nope/scim/v2") as elsewhere:
        assert_scim_error(await elsewhere.get("/Users"), 404)
    # Refused before any SCIM work: in the failure record, not the provisioning log.
    failures = await runtime(app).provisioning_log.auth_failures(None, 1)
    assert failures[0]["identity_provider_id"] == "nope" and failures[0]["status"] == 404
    assert failures[0]["reason"] == "unknown_idp"
    assert await runtime(app).provisioning_log.entries(None, 10) == []
    assert await runtime(app).provisioning_log.entries("nope", 10) == []

    async with running(create_app(parse_settings(settings_doc(upstream.url)), store=store)) as off:
        async with okta_client(off, secret) as client_off:
            assert_scim_error(await client_off.get("/Users"), 404)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [b"{", b"not json", b'{"schemas": NaN}', b"[" * 300_000 + b"]" * 300_000, b""]
)
async def test_malformed_json_is_400_invalid_syntax(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/Users", content=body)
    assert_scim_error(response, 400, "invalidSyntax")
    assert (await client.get("/Users")).json()["totalResults"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {**okta_user(), "schemas": [GROUP]},
        {k: v for k, v in okta_user().items() if k != "schemas"},
        {**okta_user(), "schemas": "urn:ietf:params:scim:schemas:core:2.0:User"},
        {**okta_user(), "schemas": [USER, "urn:example:unknown"]},
        ["not", "an", "object"],
    ],
)
async def test_a_wrong_schema_is_400_invalid_syntax(client: httpx.AsyncClient, body: Any) -> None:
    assert_scim_error(await client.post("/Users", json=body), 400, "invalidSyntax")
    assert (await client.get("/Users")).json()["totalResults"] == 0


@pytest.mark.parametrize(
    "change",
    [
        {"userName": None},
        {"userName": ""},
        {"userName": 42},
        {"active": "yes"},
        {"name": "Alice"},
        {"emails": {"value": "a@example.com"}},
        {"emails": [{"value": "a@x", "primary": True}, {"value": "b@x", "primary": True}]},
        {ENTERPRISE: "tour"},
        {ENTERPRISE: {"department": 7}},
    ],
)
async def test_schema_violations_are_400_invalid_value(
    client: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    body = {**okta_user(), **change, "schemas": [USER, ENTERPRISE]}
    assert_scim_error(await client.post("/Users", json=body), 400, "invalidValue")
    assert (await client.get("/Users")).json()["totalResults"] == 0


async def test_a_group_member_must_be_a_user(client: httpx.AsyncClient) -> None:
    body = {"schemas": [GROUP], "displayName": "Eng", "members": [{"value": "no-such-user"}]}
    assert_scim_error(await client.post("/Groups", json=body), 400, "invalidValue")
    assert_scim_error(await client.post("/Groups", json={"schemas": [GROUP]}), 400, "invalidValue")
    assert (await client.get("/Groups")).json()["totalResults"] == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
async def test_an_unknown_id_is_404(client: httpx.AsyncClient, method: str) -> None:
    body = {"PUT": okta_user(), "PATCH": deactivate()}.get(method)
    for endpoint in ("/Users", "/Groups"):
        response = await client.request(method, f"{endpoint}/nope", json=body)
        assert_scim_error(response, 404)


async def test_a_duplicate_user_name_in_another_case_is_409(client: httpx.AsyncClient) -> None:
    await create_user(client)
    bob = await create_user(client, user_name="bob@example.com", external_id="00ubob")

    duplicate = await client.post("/Users", json=okta_user(user_name="ALICE@Example.com"))
    assert_scim_error(duplicate, 409, "uniqueness")
    rename = patch({"op": "replace", "path": "userName", "value": "Alice@EXAMPLE.com"})
    assert_scim_error(await client.patch(f"/Users/{bob['id']}", json=rename), 409, "uniqueness")
    assert (await client.get("/Users")).json()["totalResults"] == 2
    assert (await client.get(f"/Users/{bob['id']}")).json()["userName"] == "bob@example.com"

    # A user may change the case of their own userName, and the old name is then free.
    recase = patch({"op": "replace", "path": "userName", "value": "BOB@example.com"})
    assert (await client.patch(f"/Users/{bob['id']}", json=recase)).status_code == 200
    move = patch({"op": "replace", "path": "userName", "value": "robert@example.com"})
    assert (await client.patch(f"/Users/{bob['id']}", json=move)).status_code == 200
    assert (await client.post("/Users", json=okta_user(user_name="bob@example.com"))).is_success


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "replace", "path": "id", "value": "another-id"},
        {"op": "replace", "path": "meta.created", "value": "2020-01-01T00:00:00Z"},
        {"op": "add", "path": "groups", "value": [{"value": "g"}]},
        {"op": "remove", "path": "meta"},
    ],
)
async def test_changing_a_read_only_attribute_is_400_mutability(
    client: httpx.AsyncClient, operation: dict[str, Any]
) -> None:
    alice = await create_user(client)
    response = await client.patch(f"/Users/{alice['id']}", json=patch(operation))
    assert_scim_error(response, 400, "mutability")
    assert (await client.get(f"/Users/{alice['id']}")).json()["meta"]["version"] == 'W/"1"'


async def test_an_oversized_body_is_413_before_it_is_parsed(client: httpx.AsyncClient) -> None:
    big = b'{"schemas": ["' + b"x" * MAX_BODY + b'"]}'
    assert_scim_error(await client.post("/Users", content=big), 413)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(MAX_BODY // 65536 + 2):
            yield b" " * 65536

    assert_scim_error(await client.post("/Users", content=chunks()), 413)
    assert (await client.get("/Users")).json()["totalResults"] == 0


async def test_json_media_types_are_accepted_and_others_are_415(client: httpx.AsyncClient) -> None:
    plain_json = await client.post(
        "/Users", json=okta_user(), headers={"Content-Type": "application/json"}
    )
    assert plain_json.status_code == 201
    other = await client.post(
        "/Users", content=b"userName=bob", headers={"Content-Type": "text/plain"}
    )
    assert_scim_error(other, 415)


async def test_a_failed_patch_changes_nothing(client: httpx.AsyncClient) -> None:
    alice = await create_user(client)
    group = await create_group(client, "Engineering", (alice["id"],))

    failing = patch(
        {"op": "replace", "path": "displayName", "value": "Renamed"},
        {"op": "remove", "path": "members"},
        {"op": "replace", "path": 'members[value eq "nobody"]', "value": {"value": "x"}},
    )
    assert_scim_error(await client.patch(f"/Groups/{group['id']}", json=failing), 400, "noTarget")
    after = (await client.get(f"/Groups/{group['id']}")).json()
    assert after == group

    user_failing = patch(deactivate()["Operations"][0], {"op": "replace", "path": "nope"})
    response = await client.patch(f"/Users/{alice['id']}", json=user_failing)
    assert_scim_error(response, 400, "invalidValue")
    assert (await client.get(f"/Users/{alice['id']}")).json()["active"] is True


@pytest.mark.parametrize(
    ("body", "scim_type"),
    [
        ({"Operations": [{"op": "replace", "value": {"active": False}}]}, "invalidSyntax"),
        (patch(), "invalidSyntax"),
        (patch({"op": "frobnicate", "path": "title", "value": "x"}), "invalidSyntax"),
        (patch({"op": "remove"}), "noTarget"),
        (patch({"op": "replace", "path": "nope", "value": 1}), "invalidPath"),
        (patch({"op": "replace", "path": "emails[type eq", "value": 1}), "invalidPath"),
        (patch({"op": "replace", "path": 'emails[type eq "home"]', "value": {}}), "noTarget"),
        (patch({"op": "add", "path": "title"}), "invalidValue"),
        (patch({"op": "replace", "path": "active", "value": "false"}), "invalidValue"),
    ],
)
async def test_bad_patch_requests(
    client: httpx.AsyncClient, body: dict[str, Any], scim_type: str
) -> None:
    alice = await create_user(client)
    response = await client.patch(f"/Users/{alice['id']}", json=body)
    assert_scim_error(response, 400, scim_type)


async def test_an_unsupported_method_is_a_scim_405(client: httpx.AsyncClient) -> None:
    assert_scim_error(await client.delete("/Users"), 405)
    assert_scim_error(await client.put("/ServiceProviderConfig", json={}), 405)
    assert_scim_error(await client.options("/Users"), 405)


async def test_an_ambiguous_path_is_refused_in_the_scim_format(client: httpx.AsyncClient) -> None:
    assert_scim_error(await client.get("/Users/..%2Fx"), 400)


async def test_bulk_and_me_are_not_implemented(client: httpx.AsyncClient) -> None:
    assert_scim_error(await client.post("/Bulk", json={}), 501)
    assert_scim_error(await client.get("/Me"), 501)
    assert_scim_error(await client.get("/Nothing/here"), 404)


# --- reading: paging, projection, versions, search -------------------------------------------


async def test_paging_is_stable_in_creation_order(client: httpx.AsyncClient) -> None:
    ids = [
        (await create_user(client, user_name=f"user{i}@example.com", external_id=f"00u{i}"))["id"]
        for i in range(5)
    ]
    pages = []
    for start in (1, 3, 5):
        page = (await client.get("/Users", params={"startIndex": start, "count": 2})).json()
        assert page["totalResults"] == 5 and page["startIndex"] == start
        assert isinstance(page["itemsPerPage"], int)
        pages += [r["id"] for r in page["Resources"]]
    listed = [
        (r["meta"]["created"], r["id"]) for r in (await client.get("/Users")).json()["Resources"]
    ]
    # By creation time, then id (users made in the same millisecond): every page agrees.
    assert listed == sorted(listed) and pages == [i for _, i in listed]
    assert sorted(pages) == sorted(ids)

    assert (await client.get("/Users", params={"count": 0})).json()["Resources"] == []
    everything = (await client.get("/Users", params={"startIndex": 0, "count": 100000})).json()
    assert [r["id"] for r in everything["Resources"]] == pages and everything["startIndex"] == 1
    filtered = await client.get(
        "/Users", params={"filter": 'userName sw "user"', "startIndex": 2, "count": 2}
    )
    assert [r["id"] for r in filtered.json()["Resources"]] == pages[1:3]
    assert filtered.json()["totalResults"] == 5
    assert_scim_error(await client.get("/Users", params={"count": "ten"}), 400, "invalidValue")


async def test_filters_through_the_endpoint(client: httpx.AsyncClient) -> None:
    alice = await create_user(client)
    await create_user(client, user_name="bob@example.com", external_id="00ubob", active=False)

    async def matched(text: str) -> list[str]:
        response = await client.get("/Users", params={"filter": text})
        assert response.status_code == 200, response.text
        return sorted(r["userName"] for r in response.json()["Resources"])

    assert await matched("active eq false") == ["bob@example.com"]
    assert await matched('meta.resourceType eq "User" and externalId eq "00ualice"') == [
        "alice@example.com"
    ]
    assert await matched(f'meta.location eq "{BASE}/Users/{alice["id"]}"') == ["alice@example.com"]
    assert await matched('emails[type eq "work" and value ew "@example.com"]') == [
        "alice@example.com",
        "bob@example.com",
    ]
    assert await matched('userName eq "alice@example.com" and active eq false') == []
    assert_scim_error(
        await client.get("/Users", params={"filter": "userName eq"}), 400, "invalidFilter"
    )


async def test_attributes_and_excluded_attributes(client: httpx.AsyncClient) -> None:
    body = {**okta_user(), "schemas": [USER, ENTERPRISE], ENTERPRISE: {"department": "R&D"}}
    alice = (await client.post("/Users", json=body)).json()
    assert alice[ENTERPRISE] == {"department": "R&D"}
    assert alice["schemas"] == [USER, ENTERPRISE]

    only = (await client.get(f"/Users/{alice['id']}", params={"attributes": "userName"})).json()
    assert only == {"schemas": [USER, ENTERPRISE], "id": alice["id"], "userName": alice["userName"]}
    given = await client.get(
        "/Users", params={"attributes": "name.givenName,emails.value,UNKNOWN,active"}
    )
    assert given.json()["Resources"][0] == {
        "schemas": [USER, ENTERPRISE],
        "id": alice["id"],
        "name": {"givenName": "Alice"},
        "emails": [{"value": "alice@example.com"}],
        "active": True,
    }
    extension = await client.get(f"/Users/{alice['id']}", params={"attributes": ENTERPRISE})
    assert extension.json()[ENTERPRISE] == {"department": "R&D"}
    without = (
        await client.get(
            f"/Users/{alice['id']}",
            params={"excludedAttributes": f"emails,name.familyName,id,{ENTERPRISE}:department"},
        )
    ).json()
    assert "emails" not in without and without["name"] == {"givenName": "Alice"}
    assert without["id"] == alice["id"]  # returned: always
    assert without[ENTERPRISE] == {}
    created = await client.post(
        "/Users", json=okta_user(user_name="b@example.com"), params={"attributes": "userName"}
    )
    assert set(created.json()) == {"schemas", "id", "userName"}


async def test_versions_and_preconditions(client: httpx.AsyncClient) -> None:
    alice = await create_user(client)
    url = f"/Users/{alice['id']}"

    unchanged = await client.get(url, headers={"If-None-Match": 'W/"1"'})
    assert unchanged.status_code == 304 and unchanged.headers["etag"] == 'W/"1"'
    stale = await client.patch(url, json=deactivate(), headers={"If-Match": 'W/"7"'})
    assert_scim_error(stale, 412)
    fresh = await client.patch(url, json=deactivate(), headers={"If-Match": 'W/"1"'})
    assert fresh.status_code == 200 and fresh.headers["etag"] == 'W/"2"'
    same = await client.patch(url, json=deactivate())  # nothing changes: no new version
    assert same.json()["meta"]["version"] == 'W/"2"'
    assert_scim_error(await client.delete(url, headers={"If-Match": 'W/"1"'}), 412)
    assert (await client.delete(url, headers={"If-Match": "*"})).status_code == 204


async def test_search_with_post(client: httpx.AsyncClient) -> None:
    await create_user(client)
    await create_user(client, user_name="bob@example.com", external_id="00ubob")
    search = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": 'userName sw "bob"',
        "attributes": ["userName"],
        "startIndex": 1,
        "count": 10,
    }
    found = (await client.post("/Users/.search", json=search)).json()
    assert found["totalResults"] == 1
    assert set(found["Resources"][0]) == {"schemas", "id", "userName"}
    for bad in ({"filter": "x"}, {"schemas": 5}, [search]):
        assert_scim_error(await client.post("/Users/.search", json=bad), 400, "invalidSyntax")
    wrong = await client.post("/Users/.search", json={**search, "filter": 7})
    assert_scim_error(wrong, 400, "invalidFilter")
    wrong = await client.post("/Users/.search", json={**search, "count": [1]})
    assert_scim_error(wrong, 400, "invalidValue")
    # Only integers: JSON's 1e400 is infinity, 1.5 and true are no page sizes.
    for field, number in [("count", "1e400"), ("startIndex", "1e400"), ("count", "1.5")]:
        body = f'{{"schemas":["{search["schemas"][0]}"],"{field}":{number}}}'
        wrong = await client.post("/Users/.search", content=body)
        assert_scim_error(wrong, 400, "invalidValue")
    wrong = await client.post("/Users/.search", json={**search, "count": True})
    assert_scim_error(wrong, 400, "invalidValue")


async def test_patch_shapes_beyond_okta(client: httpx.AsyncClient) -> None:
    alice = await create_user(client)
    url = f"/Users/{alice['id']}"
    response = await client.patch(
        url,
        json=patch(
            {"op": "Replace", "path": "name.familyName", "value": "Jensen"},
            {"op": "add", "path": 'emails[type eq "home"].value', "value": "a@home.example"},
            {"op": "add", "path": "phoneNumbers", "value": [{"value": "555", "type": "work"}]},
            {"op": "replace", "path": 'emails[type eq "work"].primary', "value": False},
            {"op": "add", "value": {ENTERPRISE: {"department": "Ops"}, "nickName": "Al"}},
            {"op": "remove", "path": "locale"},
            {"op": "replace", "path": "password", "value": "never-stored"},
        ),
    )
    assert response.status_code == 200, response.text
    user = response.json()
    assert user["name"] == {"givenName": "Alice", "familyName": "Jensen"}
    assert {"type": "home", "value": "a@home.example"} in user["emails"]
    assert user["phoneNumbers"] == [{"value": "555", "type": "work"}]
    assert user[ENTERPRISE] == {"department": "Ops"} and user["nickName"] == "Al"
    assert "locale" not in user and "password" not in user
    removed = await client.patch(
        url, json=patch({"op": "remove", "path": 'emails[type eq "home"]'})
    )
    assert [e["type"] for e in removed.json()["emails"]] == ["work"]
    primary = await client.patch(
        url,
        json=patch({"op": "add", "path": "emails", "value": [{"value": "n@x", "primary": True}]}),
    )
    assert [e.get("primary") for e in primary.json()["emails"]] == [False, True]


# --- discovery (RFC 7644 4) ------------------------------------------------------------------


async def test_service_provider_config_says_what_is_supported(client: httpx.AsyncClient) -> None:
    config = (await client.get("/ServiceProviderConfig")).json()
    assert config["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"]
    assert config["patch"] == {"supported": True}
    assert config["bulk"]["supported"] is False
    assert config["filter"] == {"supported": True, "maxResults": 200}
    assert config["sort"] == {"supported": False}
    assert config["etag"] == {"supported": True}
    assert config["changePassword"] == {"supported": False}
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    assert config["meta"]["location"] == f"{BASE}/ServiceProviderConfig"
    filtered = await client.get("/ServiceProviderConfig", params={"filter": "patch pr"})
    assert_scim_error(filtered, 403)


async def test_resource_types_and_schemas(client: httpx.AsyncClient) -> None:
    types = (await client.get("/ResourceTypes")).json()
    assert types["totalResults"] == 2
    user_type = next(t for t in types["Resources"] if t["name"] == "User")
    assert user_type["endpoint"] == "/Users" and user_type["schema"] == USER
    assert user_type["schemaExtensions"] == [{"schema": ENTERPRISE, "required": False}]
    assert (await client.get("/ResourceTypes/Group")).json()["schema"] == GROUP
    assert_scim_error(await client.get("/ResourceTypes/Device"), 404)

    schemas = (await client.get("/Schemas")).json()
    assert {s["id"] for s in schemas["Resources"]} == {USER, GROUP, ENTERPRISE}
    user_schema = (await client.get(f"/Schemas/{USER}")).json()
    user_name = next(a for a in user_schema["attributes"] if a["name"] == "userName")
    assert user_name["uniqueness"] == "server" and user_name["caseExact"] is False
    assert user_name["required"] is True
    password = next(a for a in user_schema["attributes"] if a["name"] == "password")
    assert (password["mutability"], password["returned"]) == ("writeOnly", "never")
    emails = next(a for a in user_schema["attributes"] if a["name"] == "emails")
    assert {s["name"] for s in emails["subAttributes"]} == {"value", "display", "type", "primary"}
    assert_scim_error(await client.get("/Schemas/urn:nope"), 404)
    assert_scim_error(await client.get("/Schemas", params={"filter": "id pr"}), 403)


async def test_the_provisioning_log_is_bounded(scim: tuple[Gateway, httpx.AsyncClient]) -> None:
    app, client = scim
    log = runtime(app).provisioning_log
    log.limit = 3
    for _ in range(5):
        await client.get("/Users")
    assert_scim_error(await client.post("/Users", json={}), 400, "invalidSyntax")

    entries = await log.entries(IDP_ID, 10)
    assert len(entries) == 3
    assert entries[0]["outcome"] == "failure" and entries[0]["status"] == 400
    assert "schemas" in entries[0]["error"]
    assert len(await log.entries(None, 10)) == 3
    assert len(await log.entries(IDP_ID, 2)) == 2


async def test_the_admin_api_can_list_what_was_provisioned(
    scim: tuple[Gateway, httpx.AsyncClient],
) -> None:
    app, client = scim
    alice = await create_user(client)
    group = await create_group(client, "Engineering", (alice["id"],))
    repository = ScimRepository(runtime(app).store, IDP_ID, runtime(app).clock)

    total, users = await repository.provisioned(USERS, BASE)
    assert total == 1 and users[0]["userName"] == "alice@example.com"
    assert users[0]["groups"][0]["value"] == group["id"]
    assert users[0] == (await client.get(f"/Users/{alice['id']}")).json()
    total, groups = await repository.provisioned(GROUPS, BASE, start_index=2)
    assert (total, groups) == (1, [])


# --- no body makes a write answer 500 --------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_BODIES = st.one_of(
    _JSON,
    st.fixed_dictionaries(
        {"schemas": st.sampled_from([[USER], [GROUP], [PATCH_OP], [SEARCH], "x"])},
        optional={
            "userName": _JSON,
            "displayName": _JSON,
            "members": _JSON,
            "emails": _JSON,
            "Operations": st.lists(
                st.fixed_dictionaries(
                    {"op": st.sampled_from(["add", "remove", "replace"])},
                    optional={"path": st.text(max_size=20), "value": _JSON},
                ),
                max_size=3,
            ),
            "filter": _JSON,
            "count": _JSON,
            "attributes": _JSON,
        },
    ),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=_BODIES,
    method=st.sampled_from(["POST /Users", "POST /Groups", "PUT", "PATCH", "POST /Users/.search"]),
)
async def test_random_bodies_never_get_a_500(
    fuzzed: tuple[httpx.AsyncClient, str, str], body: Any, method: str
) -> None:
    client, user_id, group_id = fuzzed
    verb, _, path = method.partition(" ")
    if not path:
        path = (
            f"/Users/{user_id}"
            if isinstance(body, dict) and "userName" in body
            else f"/Groups/{group_id}"
        )
    response = await client.request(verb, path, json=body)
    assert response.status_code < 500, (method, body, response.text)
    if response.status_code >= 400:
        assert response.json()["schemas"] == [ERROR]


@pytest_asyncio.fixture
async def fuzzed(client: httpx.AsyncClient) -> tuple[httpx.AsyncClient, str, str]:
    alice = await create_user(client)
    group = await create_group(client, "Engineering", (alice["id"],))
    return client, alice["id"], group["id"]


async def test_with_the_store_down_scim_is_a_503_that_names_no_address(
    upstream: EchoUpstream,
) -> None:
    port = free_port()  # nothing listens here: the store is down
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        async with running(create_app(parse_settings(scim_doc(upstream.url)), store=store)) as app:
            async with okta_client(app, "not-the-secret") as stranger:
                response = await stranger.get("/Users")
    finally:
        await store.close()
    assert_scim_error(response, 503)
    assert "Redis" not in response.text and str(port) not in response.text
