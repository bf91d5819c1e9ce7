"""What SCIM provisioning does to people who signed in (SPEC 6), end to end: a browser signs in
through FakeOkta on two apps, then Okta's SCIM requests deactivate, regroup or rename them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fake_okta import FakeOkta
from harness import (
    IDP_ID,
    TEAM,
    WIKI,
    EchoUpstream,
    assert_sent_to_sign_in,
    assert_still_in,
    browser,
    running,
    sign_in_everywhere,
)
from scim_harness import (
    create_group,
    create_user,
    deactivate,
    new_secret,
    okta_client,
    okta_user,
    patch,
    runtime,
    scim_doc,
)

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.errors import StoreUnavailableError
from gateway.identity import user_uuid_for
from gateway.state.registry import Registry
from gateway.state.store import Store

ALICE = user_uuid_for(IDP_ID, "00ualice")


@contextlib.asynccontextmanager
async def provisioned(
    store: Store, upstream: EchoUpstream, **scim_config: Any
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient, httpx.AsyncClient]]:
    """The gateway, a browser, and Okta's SCIM client."""
    settings = parse_settings(scim_doc(upstream.url, **scim_config))
    async with running(create_app(settings, store=store)) as app:
        secret = await new_secret(app)
        async with browser(app, WIKI) as person, okta_client(app, secret) as okta_scim:
            yield app, person, okta_scim


async def registry(app: Gateway) -> Registry:
    return runtime(app).registry


# --- deprovisioning --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "how",
    ["path-less PATCH", "PUT", "DELETE"],
)
async def test_a_deactivated_user_is_bounced_to_sign_in_on_every_app(
    store: Store, upstream: EchoUpstream, okta: FakeOkta, how: str
) -> None:
    async with provisioned(store, upstream, user_deprovision=True) as (app, person, scim):
        await sign_in_everywhere(person, okta)
        user = await create_user(scim)
        await assert_still_in(person)  # provisioning alone changes nothing

        if how == "path-less PATCH":
            response = await scim.patch(f"/Users/{user['id']}", json=deactivate())
        elif how == "PUT":
            response = await scim.put(f"/Users/{user['id']}", json={**user, "active": False})
        else:
            response = await scim.delete(f"/Users/{user['id']}")
        assert response.is_success, response.text

        await assert_sent_to_sign_in(person, upstream)
        assert await runtime(app).sessions.active_sessions(ALICE) == []
        record = await (await registry(app)).get(ALICE)
        assert record is not None and record.access_seat is True  # no seat_deprovision


async def test_a_user_matched_by_user_name_alone_is_deprovisioned(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with provisioned(store, upstream, user_deprovision=True) as (_, person, scim):
        await sign_in_everywhere(person, okta)
        body = okta_user(user_name="ALICE@example.com")
        del body["externalId"]  # Okta does not always send it
        user = (await scim.post("/Users", json=body)).json()

        await scim.patch(f"/Users/{user['id']}", json=deactivate())

        await assert_sent_to_sign_in(person, upstream)


async def test_seat_deprovision_removes_the_seat(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with provisioned(store, upstream, user_deprovision=True, seat_deprovision=True) as (
        app,
        person,
        scim,
    ):
        await sign_in_everywhere(person, okta)
        user = await create_user(scim)
        record = await (await registry(app)).get(ALICE)
        assert record is not None and record.access_seat is True
        assert record.scim == {
            "id": user["id"],
            "userName": "alice@example.com",
            "externalId": "00ualice",
            "active": True,
        }

        await scim.patch(f"/Users/{user['id']}", json=deactivate())

        await assert_sent_to_sign_in(person, upstream)
        record = await (await registry(app)).get(ALICE)
        assert record is not None
        assert record.access_seat is False and record.public()["access_seat"] is False
        assert record.scim is not None and record.scim["active"] is False
        # Signing in again (Okta would allow it once reactivated) takes a seat again.
        await scim.patch(
            f"/Users/{user['id']}", json=patch({"op": "replace", "value": {"active": True}})
        )
        await sign_in_everywhere(person, okta)
        record = await (await registry(app)).get(ALICE)
        assert record is not None and record.access_seat is True


async def test_without_user_deprovision_sessions_survive_deactivation(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with provisioned(store, upstream) as (_, person, scim):
        await sign_in_everywhere(person, okta)
        user = await create_user(scim)

        await scim.patch(f"/Users/{user['id']}", json=deactivate())

        await assert_still_in(person)


async def test_a_user_provisioned_before_signing_in_gets_the_scim_facts(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with provisioned(store, upstream, user_deprovision=True) as (app, person, scim):
        user = await create_user(scim)
        await sign_in_everywhere(person, okta)

        record = await (await registry(app)).get(ALICE)
        assert record is not None and record.scim is not None
        assert record.scim["id"] == user["id"]
        assert record.identity is not None and record.identity["email"] == "alice@example.com"
        await scim.patch(f"/Users/{user['id']}", json=deactivate())
        await assert_sent_to_sign_in(person, upstream)


# --- identity_update_behavior ----------------------------------------------------------------


async def test_reauth_revokes_sessions_when_the_users_groups_change(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with provisioned(store, upstream, identity_update_behavior="reauth") as (
        _,
        person,
        scim,
    ):
        await sign_in_everywhere(person, okta)
        alice = await create_user(scim)
        bob = await create_user(scim, user_name="bob@example.com", external_id="00ubob")
        group = await create_group(scim, "Platform", (bob["id"],))
        await assert_still_in(person)  # a group change that is not Alice's

        add = patch({"op": "add", "path": "members", "value": [{"value": alice["id"]}]})
        assert (await scim.patch(f"/Groups/{group['id']}", json=add)).status_code == 200
        await assert_sent_to_sign_in(person, upstream)

        await sign_in_everywhere(person, okta)
        title = patch({"op": "replace", "path": "title", "value": "Staff"})
        await scim.patch(f"/Users/{alice['id']}", json=title)
        await assert_still_in(person)  # not a groups (or email) change

        rename = patch({"op": "replace", "value": {"id": group["id"], "displayName": "Infra"}})
        await scim.patch(f"/Groups/{group['id']}", json=rename)
        await assert_sent_to_sign_in(person, upstream)

        await sign_in_everywhere(person, okta)
        remove = patch({"op": "remove", "path": f'members[value eq "{alice["id"]}"]'})
        await scim.patch(f"/Groups/{group['id']}", json=remove)
        await assert_sent_to_sign_in(person, upstream)


async def test_automatic_updates_the_registry_identity_and_keeps_sessions(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with provisioned(store, upstream, identity_update_behavior="automatic") as (
        app,
        person,
        scim,
    ):
        await sign_in_everywhere(person, okta)
        reg = await registry(app)
        alice = await create_user(scim, given="Alicia")
        record = await reg.get(ALICE)
        assert record is not None and record.name == "Alicia Example"

        group = await create_group(scim, "Platform", (alice["id"],))
        identity = await reg.last_seen_identity(ALICE)
        assert identity is not None
        assert identity["groups"] == ["Engineering", "Everyone", "Platform"]
        assert identity["name"] == "Alicia Example"
        await assert_still_in(person)
        # The session keeps its identity until the next sign-in.
        seen = (await person.get(f"{TEAM}/cdn-cgi/access/get-identity")).json()
        assert seen["groups"] == ["Engineering", "Everyone"] and seen["name"] == "Alice Example"

        rename = patch({"op": "replace", "value": {"id": group["id"], "displayName": "Infra"}})
        await scim.patch(f"/Groups/{group['id']}", json=rename)
        identity = await reg.last_seen_identity(ALICE)
        assert identity is not None and identity["groups"] == ["Engineering", "Everyone", "Infra"]

        await scim.delete(f"/Groups/{group['id']}")
        identity = await reg.last_seen_identity(ALICE)
        assert identity is not None and identity["groups"] == ["Engineering", "Everyone"]
        await assert_still_in(person)


async def test_no_action_changes_nothing(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with provisioned(store, upstream, identity_update_behavior="no_action") as (
        app,
        person,
        scim,
    ):
        await sign_in_everywhere(person, okta)
        reg = await registry(app)
        before = await reg.last_seen_identity(ALICE)
        alice = await create_user(scim, given="Alicia")
        group = await create_group(scim, "Platform", (alice["id"],))
        rename = patch({"op": "replace", "value": {"id": group["id"], "displayName": "Infra"}})
        await scim.patch(f"/Groups/{group['id']}", json=rename)

        assert await reg.last_seen_identity(ALICE) == before
        record = await reg.get(ALICE)
        assert record is not None and record.name == "Alice Example"
        await assert_still_in(person)


# --- the person behind a SCIM user, across renames (from a security review) -----------------


async def alice_without_external_id(
    scim: httpx.AsyncClient, email: str = "alice@example.com"
) -> dict[str, Any]:
    body = okta_user(user_name="alice@example.com")
    del body["externalId"]  # Okta does not always send one
    body["emails"] = [{"primary": True, "value": email, "type": "work"}]
    created = await scim.post("/Users", json=body)
    assert created.status_code == 201, created.text
    user: dict[str, Any] = created.json()
    return user


def renamed(user: dict[str, Any], email: str) -> dict[str, Any]:
    return {**user, "userName": email, "emails": [{"primary": True, "value": email}]}


async def test_deactivating_a_renamed_user_still_revokes_their_sessions(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with provisioned(store, upstream, user_deprovision=True) as (_, person, scim):
        await sign_in_everywhere(person, okta)
        user = await alice_without_external_id(scim)
        put = await scim.put(f"/Users/{user['id']}", json=renamed(user, "alice.new@example.com"))
        assert put.status_code == 200

        assert (await scim.patch(f"/Users/{user['id']}", json=deactivate())).status_code == 200

        await assert_sent_to_sign_in(person, upstream)


async def test_reauth_revokes_when_the_email_changes_with_the_user_name(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    async with provisioned(store, upstream, identity_update_behavior="reauth") as (
        _,
        person,
        scim,
    ):
        await sign_in_everywhere(person, okta)
        user = await alice_without_external_id(scim)
        put = await scim.put(f"/Users/{user['id']}", json=renamed(user, "mallory@example.com"))
        assert put.status_code == 200

        await assert_sent_to_sign_in(person, upstream)


async def test_deactivation_revokes_when_the_primary_email_differs_from_the_user_name(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    """Under `automatic`, the SCIM primary email reaches the registry identity; the person is
    still found by the userName they sign in with."""
    async with provisioned(store, upstream, user_deprovision=True) as (_, person, scim):
        await sign_in_everywhere(person, okta)
        user = await alice_without_external_id(scim, email="alice@mail.example.net")

        assert (await scim.patch(f"/Users/{user['id']}", json=deactivate())).status_code == 200

        await assert_sent_to_sign_in(person, upstream)


class FlakyStore:
    """The test's store, except that reading one key's set fails `failures` times (a Redis
    blip while a SCIM write revokes sessions)."""

    def __init__(self, inner: Store, key: str):
        self._inner, self._key, self.failures = inner, key, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def set_members(self, key: str) -> set[str]:
        if key == self._key and self.failures > 0:
            self.failures -= 1
            raise StoreUnavailableError("Redis SMEMBERS failed (test)")
        members: set[str] = await self._inner.set_members(key)
        return members


async def test_a_revocation_that_failed_happens_when_okta_retries(
    store: Store, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    """The write waits for its effects: a failed revocation stores nothing (503), so Okta's
    retry of the same PATCH still finds a change to make, and revokes."""
    flaky = FlakyStore(store, "user_sessions:" + user_uuid_for(IDP_ID, "00ualice"))
    async with provisioned(flaky, upstream, identity_update_behavior="reauth") as (  # type: ignore[arg-type]
        _,
        person,
        scim,
    ):
        await sign_in_everywhere(person, okta)
        alice = await create_user(scim)
        group = await create_group(scim, "Platform")
        add = patch({"op": "add", "path": "members", "value": [{"value": alice["id"]}]})

        flaky.failures = 1
        first = await scim.patch(f"/Groups/{group['id']}", json=add)
        assert first.status_code == 503, first.text
        assert "members" not in (await scim.get(f"/Groups/{group['id']}")).json()
        await assert_still_in(person)
        assert (await scim.patch(f"/Groups/{group['id']}", json=add)).status_code == 200

        await assert_sent_to_sign_in(person, upstream)
