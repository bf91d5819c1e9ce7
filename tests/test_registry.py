"""The user registry on both stores: sign-ins, SCIM links, seats, identity updates, and
concurrent writers that must not lose each other's changes."""

from __future__ import annotations

import asyncio
import dataclasses

from clock import FakeClock

from gateway.identity import Identity, user_uuid_for
from gateway.state.registry import Registry
from gateway.state.store import Store

IDP = "okta-test"


def identity(
    sub: str = "00ualice", email: str = "alice@example.com", **changes: object
) -> Identity:
    base = Identity(
        id="nonce",
        user_uuid=user_uuid_for(IDP, sub),
        sub=sub,
        name="Alice Example",
        email=email,
        groups=("Engineering", "Everyone"),
        idp_id=IDP,
        idp_type="okta",
        iat=1_764_460_800,
        ip="203.0.113.7",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def scim_user(**fields: object) -> dict[str, object]:
    return {"id": "scim-1", "userName": "alice@example.com", "externalId": "00ualice", **fields}


async def test_a_sign_in_creates_then_refreshes_the_record(store: Store, clock: FakeClock) -> None:
    registry = Registry(store, clock)
    first = await registry.record_sign_in(identity())
    clock.advance(60)
    second = await registry.record_sign_in(identity(name="Alice E.", groups=("Everyone",)))

    assert second.id == user_uuid_for(IDP, "00ualice")
    assert second.created_at == first.created_at == clock.now - 60
    assert second.last_successful_login == clock.now
    assert second.access_seat is True
    assert second.name == "Alice E."
    assert second.identity is not None and second.identity["groups"] == ["Everyone"]
    assert (
        await registry.last_seen_identity(second.id)
        == identity(name="Alice E.", groups=("Everyone",)).to_json()
    )
    assert await registry.get(second.id) == second
    assert await registry.get("nobody") is None
    assert second.public() == {
        "id": second.id,
        "uid": second.id,
        "email": "alice@example.com",
        "name": "Alice E.",
        "access_seat": True,
        "gateway_seat": False,
        "created_at": "2025-11-30T00:00:00.000Z",
        "updated_at": "2025-11-30T00:01:00.000Z",
        "last_successful_login": "2025-11-30T00:01:00.000Z",
        "identity_provider_id": IDP,
        "scim": None,
    }


async def test_listing_and_lookup_by_email(store: Store, clock: FakeClock) -> None:
    registry = Registry(store, clock)
    await registry.record_sign_in(identity("00ubob", "Bob@Example.com", name="Bob"))
    alice = await registry.record_sign_in(identity())

    assert [r.email for r in await registry.all()] == ["alice@example.com", "Bob@Example.com"]
    assert [r.id for r in await registry.by_email("ALICE@example.com")] == [alice.id]

    # A new email moves the record in the email index.
    await registry.record_sign_in(identity(email="alice@new.example"))
    assert await registry.by_email("alice@example.com") == []
    assert [r.id for r in await registry.by_email("alice@new.example")] == [alice.id]


async def test_matching_a_scim_user_by_user_name_or_external_id(
    store: Store, clock: FakeClock
) -> None:
    registry = Registry(store, clock)
    alice = await registry.record_sign_in(identity())
    other_idp = dataclasses.replace(
        identity(), idp_id="other", user_uuid=user_uuid_for("other", "00ualice")
    )
    await registry.record_sign_in(other_idp)

    by_name = scim_user(userName="ALICE@example.com", externalId="")
    assert [r.id for r in await registry.matching(IDP, by_name)] == [alice.id]
    by_sub = scim_user(userName="someone@else")
    assert [r.id for r in await registry.matching(IDP, by_sub)] == [alice.id]
    assert await registry.matching(IDP, scim_user(userName="someone@else", externalId="00uo")) == []


async def test_a_scim_user_stays_linked_to_the_person_across_renames(
    store: Store, clock: FakeClock
) -> None:
    """Okta may send no externalId: once found by userName, a renamed SCIM user is still that
    person (a later deactivation must find them), and the old name no longer waits for anyone."""
    registry = Registry(store, clock)
    alice = await registry.record_sign_in(identity())
    before = scim_user(externalId="")
    assert [r.id for r in await registry.provisioned(IDP, before)] == [alice.id]

    renamed = scim_user(userName="alice.new@example.com", externalId="")
    assert [r.id for r in await registry.provisioned(IDP, renamed, before)] == [alice.id]
    assert [r.id for r in await registry.matching(IDP, renamed)] == [alice.id]
    assert await registry.matching(IDP, scim_user(id="scim-2", userName="x@y", externalId="")) == []

    newcomer = await registry.record_sign_in(identity(sub="00unew"))  # alice@ again, new person
    assert newcomer.scim is None  # the facts left the old userName with the rename
    assert [r.id for r in await registry.unprovisioned(IDP, renamed)] == [alice.id]
    assert await registry.matching(IDP, renamed) == []


async def test_a_person_provisioned_before_signing_in_is_linked_at_the_sign_in(
    store: Store, clock: FakeClock
) -> None:
    registry = Registry(store, clock)
    before = scim_user(externalId="")
    assert await registry.provisioned(IDP, before) == []
    alice = await registry.record_sign_in(identity())
    renamed = scim_user(userName="alice.new@example.com", externalId="")
    await registry.provisioned(IDP, renamed, before)

    assert [r.id for r in await registry.matching(IDP, renamed)] == [alice.id]


async def test_scim_facts_link_now_and_at_a_later_first_sign_in(
    store: Store, clock: FakeClock
) -> None:
    registry = Registry(store, clock)
    alice = await registry.record_sign_in(identity())
    linked = await registry.provisioned(IDP, scim_user(active=False))
    assert [r.id for r in linked] == [alice.id]
    record = await registry.get(alice.id)
    assert record is not None
    assert record.scim == {
        "id": "scim-1",
        "userName": "alice@example.com",
        "externalId": "00ualice",
        "active": False,
    }

    # Provisioned before signing in: the facts wait for the first sign-in.
    await registry.provisioned(IDP, {"id": "scim-2", "userName": "BOB@example.com", "active": True})
    bob = await registry.record_sign_in(identity("00ubob", "bob@example.com"))
    assert bob.scim is not None and bob.scim["id"] == "scim-2"

    unlinked = await registry.unprovisioned(IDP, scim_user())
    assert [r.id for r in unlinked] == [alice.id]
    record = await registry.get(alice.id)
    assert record is not None and record.scim is None
    again = await registry.record_sign_in(identity())
    assert again.scim is None  # nothing waiting any more


async def test_people_of_an_idp_by_email_or_sub(store: Store, clock: FakeClock) -> None:
    registry = Registry(store, clock)
    alice = await registry.record_sign_in(identity())
    elsewhere = dataclasses.replace(identity(), idp_id="other-idp", user_uuid="uuid-elsewhere")
    await registry.record_sign_in(elsewhere)  # the same email at another IdP: not this one's

    assert await registry.people_of(IDP, email="ALICE@example.com") == {alice.id}
    assert await registry.people_of(IDP, sub="00ualice") == {alice.id}
    assert await registry.people_of(IDP, email="bob@example.com") is None
    assert await registry.people_of(IDP, sub="00ubob") is None
    assert await registry.people_of("other-idp", email="alice@example.com") == {"uuid-elsewhere"}


async def test_people_of_an_idp_include_whom_scim_provisioned(
    store: Store, clock: FakeClock
) -> None:
    registry = Registry(store, clock)
    await registry.provisioned(IDP, scim_user(userName="bob@example.com", externalId="00ubob"))
    carol = scim_user(id="scim-2", userName="carol@example.com", externalId="")
    await registry.provisioned(IDP, carol)

    bob = {user_uuid_for(IDP, "00ubob")}  # never signed in: the uuid their sign-in would have
    assert await registry.people_of(IDP, email="bob@example.com") == bob
    assert await registry.people_of(IDP, sub="00ubob") == bob
    assert await registry.people_of(IDP, email="carol@example.com") == set()  # known, no uuid


async def test_seats_and_automatic_identity_updates(store: Store, clock: FakeClock) -> None:
    registry = Registry(store, clock)
    alice = await registry.record_sign_in(identity())

    await registry.remove_seat(alice.id)
    await registry.update_identity(
        alice.id, name="Alicia", email="alicia@example.com", add_groups=["Platform"]
    )
    await registry.update_identity(alice.id, remove_groups=["Everyone"])
    await registry.update_identity("nobody", name="x")  # no record: nothing happens

    record = await registry.get(alice.id)
    assert record is not None
    assert record.access_seat is False
    # The record keeps the email the person signs in with (sessions, revoke_user); the
    # last-seen identity shows what SCIM said.
    assert (record.name, record.email) == ("Alicia", "alice@example.com")
    assert record.identity is not None
    assert record.identity["groups"] == ["Engineering", "Platform"]
    assert record.identity["email"] == "alicia@example.com"
    assert [r.id for r in await registry.by_email("alice@example.com")] == [alice.id]

    clock.advance(5)
    await registry.update_identity(alice.id, name="Alicia", add_groups=["Platform"])  # no change
    unchanged = await registry.get(alice.id)
    assert unchanged == record  # not even `updated_at` moved


async def test_concurrent_updates_all_land(store: Store, clock: FakeClock) -> None:
    registry = Registry(store, clock)
    alice = await registry.record_sign_in(identity(groups=()))

    await asyncio.gather(
        *(registry.update_identity(alice.id, add_groups=[f"g{i}"]) for i in range(10)),
        registry.remove_seat(alice.id),
        registry.provisioned(IDP, scim_user()),
    )

    record = await registry.get(alice.id)
    assert record is not None and record.identity is not None
    assert sorted(record.identity["groups"]) == sorted(f"g{i}" for i in range(10))
    assert record.access_seat is False
    assert record.scim is not None
