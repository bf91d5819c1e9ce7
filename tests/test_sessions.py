"""Sessions on both stores: create, read, expiry, revoke-all, tampered and rotated cookies."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import hypothesis
import pytest
from clock import FakeClock
from hypothesis import strategies as st

from gateway.errors import StoreUnavailableError
from gateway.identity import Identity
from gateway.state.sessions import CookieSigner, SessionManager
from gateway.state.store import Store
from gateway.state.store.memory import MemoryStore

KEY_A = "a" * 32
KEY_B = "b" * 32


def identity(user: str = "alice", groups: tuple[str, ...] = ("Engineering",)) -> Identity:
    return Identity(
        id=f"nonce-{user}",
        user_uuid=f"uuid-{user}",
        sub=f"00u{user}",
        name=user.title(),
        email=f"{user}@example.com",
        groups=groups,
        idp_id="okta-1",
        idp_type="okta",
        iat=1_764_460_800,
        amr=("pwd", "mfa"),
        oidc_fields={"department": ["R&D", "Ops"]},
    )


# seconds: a session life that real Redis ends quickly, yet long enough that reading the session
# right after creating it never races its expiry on a loaded machine.
SHORT = 0.5


@pytest.fixture
def manager(store: Store, clock: FakeClock) -> SessionManager:
    # The memory store runs on the fake clock; Redis expires on real time, so its manager does too.
    use_clock = clock if isinstance(store, MemoryStore) else time.time
    return SessionManager(store, CookieSigner((KEY_A,), "gateway.session"), use_clock)


async def expire(store: Store, clock: FakeClock, seconds: float) -> None:
    if isinstance(store, MemoryStore):
        clock.advance(seconds)
    else:
        await asyncio.sleep(seconds)


async def test_a_created_session_reads_back_with_its_identity(manager: SessionManager) -> None:
    session, cookie = await manager.create(identity(), kind="global", duration=3600)
    loaded = await manager.load(cookie)
    assert loaded == session
    assert loaded.identity.groups == ("Engineering",)
    assert loaded.identity.to_json()["oidc_fields"] == {"department": ["R&D", "Ops"]}


async def test_a_session_read_from_the_decode_cache_cannot_be_changed_by_a_reader(
    manager: SessionManager,
) -> None:
    # Every request for one cookie gets the same decoded Session: a change made through one
    # reader would show in the next request's session without the store knowing.
    _, cookie = await manager.create(identity(), kind="global", duration=3600)
    first = await manager.load(cookie)
    assert first is not None
    with pytest.raises(TypeError):
        first.tokens["app-1"] = ("forged", 9e9)  # type: ignore[index]
    with pytest.raises(TypeError):
        first.identity.oidc_fields["department"] = "Finance"  # type: ignore[index]
    with pytest.raises(AttributeError):  # a claim's array too: a policy reads it next request
        first.identity.oidc_fields["department"].append("Finance")
    document = first.identity.to_json()
    document["oidc_fields"]["department"].append("Finance")
    again = await manager.load(cookie)
    assert again is not None
    assert again.tokens == {}
    assert again.identity.to_json()["oidc_fields"] == {"department": ["R&D", "Ops"]}


async def test_the_cookie_holds_no_identity_only_an_opaque_id(manager: SessionManager) -> None:
    _, cookie = await manager.create(identity(), kind="global", duration=3600)
    assert "alice" not in cookie and "Engineering" not in cookie


async def test_a_session_expires_after_its_duration(
    manager: SessionManager, store: Store, clock: FakeClock
) -> None:
    _, cookie = await manager.create(identity(), kind="global", duration=SHORT)
    assert await manager.load(cookie) is not None
    await expire(store, clock, SHORT + 0.1)
    assert await manager.load(cookie) is None


async def test_revoke_user_ends_every_session_of_that_user_only(manager: SessionManager) -> None:
    _, first = await manager.create(identity(), kind="global", duration=3600)
    _, second = await manager.create(identity(), kind="app", duration=600, app_id="wiki")
    _, bobs = await manager.create(identity("bob"), kind="global", duration=3600)
    assert await manager.revoke_user("uuid-alice") == 2
    assert await manager.load(first) is None
    assert await manager.load(second) is None
    assert await manager.load(bobs) is not None


async def test_revoke_idp_session_ends_the_sessions_of_that_sid_only(
    manager: SessionManager,
) -> None:
    laptop = dataclasses.replace(identity(), sid="okta-sid-1")
    _, global_one = await manager.create(laptop, kind="global", duration=3600)
    _, app_one = await manager.create(laptop, kind="app", duration=600, app_id="wiki")
    phone = dataclasses.replace(identity(), sid="okta-sid-2")
    _, other_sid = await manager.create(phone, kind="global", duration=3600)
    elsewhere = dataclasses.replace(laptop, idp_id="okta-2")  # the same sid at another IdP
    _, other_idp = await manager.create(elsewhere, kind="global", duration=3600)
    assert await manager.revoke_idp_session("okta-1", "okta-sid-1") == 2
    assert await manager.load(global_one) is None
    assert await manager.load(app_one) is None
    assert await manager.load(other_sid) is not None
    assert await manager.load(other_idp) is not None
    assert await manager.revoke_idp_session("okta-1", "okta-sid-1") == 0  # nothing left


async def test_revoke_idp_session_with_a_sub_ends_only_that_users(manager: SessionManager) -> None:
    _, alices = await manager.create(
        dataclasses.replace(identity(), sid="okta-sid-1"), kind="global", duration=3600
    )
    assert await manager.revoke_idp_session("okta-1", "okta-sid-1", sub="00ubob") == 0
    assert await manager.load(alices) is not None
    assert await manager.revoke_idp_session("okta-1", "okta-sid-1", sub="00ualice") == 1
    assert await manager.load(alices) is None


class _IndexDown(MemoryStore):
    """The store fails when one index is written (`failing` the key's prefix); records the
    keys of what was stored."""

    def __init__(self, clock: FakeClock, failing: str) -> None:
        super().__init__(clock=clock)
        self.failing = failing
        self.stored: list[str] = []

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.stored.append(key)
        await super().set(key, value, ttl)

    async def add_to_set(self, key: str, member: str, ttl: float) -> None:
        if key.startswith(self.failing):
            raise StoreUnavailableError("The session store is unavailable.")
        await super().add_to_set(key, member, ttl)


@pytest.mark.parametrize("failing", ["user_sessions:", "app_sessions:", "idp_session:"])
async def test_no_session_exists_that_an_index_does_not_name(
    clock: FakeClock, failing: str
) -> None:
    """A session missing from an index could not be revoked by it (SCIM deactivation, an app's
    revocation, a back-channel logout): when an index cannot be written, no session is made."""
    store = _IndexDown(clock, failing)
    manager = SessionManager(store, CookieSigner((KEY_A,), "gateway.session"), clock)
    with pytest.raises(StoreUnavailableError):
        await manager.create(
            dataclasses.replace(identity(), sid="okta-sid-1"),
            kind="app",
            duration=600,
            app_id="wiki",
        )
    assert store.stored == []


async def test_the_sid_is_kept_with_the_session_but_not_shown(manager: SessionManager) -> None:
    _, cookie = await manager.create(
        dataclasses.replace(identity(), sid="okta-sid-1"), kind="global", duration=3600
    )
    loaded = await manager.load(cookie)
    assert loaded is not None and loaded.identity.sid == "okta-sid-1"
    assert "sid" not in loaded.identity.to_json()  # get-identity's shape (SPEC 4) is unchanged


async def test_active_sessions_lists_live_ones_and_forgets_expired(
    manager: SessionManager, store: Store, clock: FakeClock
) -> None:
    await manager.create(identity(), kind="global", duration=3600)
    await manager.create(identity(), kind="app", duration=SHORT, app_id="wiki")
    assert len(await manager.active_sessions("uuid-alice")) == 2
    await expire(store, clock, SHORT + 0.1)
    live = await manager.active_sessions("uuid-alice")
    assert [s.kind for s in live] == ["global"]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),  # signature changed
        lambda c: "x" + c,  # id changed
        lambda c: c.split(".")[0],  # signature removed
        lambda c: "",
        lambda c: "not-a-cookie",
        lambda c: c + "\u00e9",
    ],
)
async def test_a_tampered_cookie_is_no_session(manager: SessionManager, mangle: object) -> None:
    _, cookie = await manager.create(identity(), kind="global", duration=3600)
    assert callable(mangle)
    assert await manager.load(mangle(cookie)) is None


async def test_an_unknown_session_id_is_no_session(manager: SessionManager) -> None:
    forged = manager.signer.sign("never-created")
    assert await manager.load(forged) is None


async def test_rotated_cookie_keys_first_signs_all_verify(store: Store, clock: FakeClock) -> None:
    old = SessionManager(store, CookieSigner((KEY_A,), "gateway.session"), clock)
    _, old_cookie = await old.create(identity(), kind="global", duration=3600)
    rotated = SessionManager(store, CookieSigner((KEY_B, KEY_A), "gateway.session"), clock)
    assert (await rotated.load(old_cookie)) is not None
    _, new_cookie = await rotated.create(identity(), kind="global", duration=3600)
    # The new cookie is signed by the first key: a gateway with only the new key accepts it,
    # one with only the old key does not.
    only_new = SessionManager(store, CookieSigner((KEY_B,), "gateway.session"), clock)
    assert await only_new.load(new_cookie) is not None
    assert await old.load(new_cookie) is None
    # Dropping the old key signs out cookies made with it.
    assert await only_new.load(old_cookie) is None


def test_a_signer_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one"):
        CookieSigner((), "gateway.session")


@pytest.mark.parametrize("value", ["a.b", "a.", ".a", "a.bc", "a.b.c", "x" * 5000 + ".y", "é.b"])
def test_an_unreadable_cookie_is_no_session_not_an_error(value: str) -> None:
    assert CookieSigner((KEY_A,), "gateway.session").unsign(value) is None


def test_every_truncation_of_a_real_cookie_is_no_session() -> None:
    signer = CookieSigner((KEY_A,), "gateway.session")
    cookie = signer.sign("session-id-0123456789")
    for length in range(len(cookie)):
        assert signer.unsign(cookie[:length]) is None, cookie[:length]
    assert signer.unsign(cookie) == "session-id-0123456789"


_REAL_COOKIE = CookieSigner((KEY_A,), "gateway.session").sign("session-id-0123456789")
# One signer for every example: it has verified the real cookie (and remembers it), so an
# altered cookie is judged against a signer that knows the genuine one.
_WARM_SIGNER = CookieSigner((KEY_A,), "gateway.session")
assert _WARM_SIGNER.unsign(_REAL_COOKIE) == "session-id-0123456789"


@hypothesis.settings(max_examples=500, deadline=None)
@hypothesis.given(value=st.text())
def test_any_string_is_a_session_id_or_none(value: str) -> None:
    unsigned = CookieSigner((KEY_A,), "gateway.session").unsign(value)
    assert unsigned is None or value == _REAL_COOKIE


@hypothesis.settings(max_examples=500, deadline=None)
@hypothesis.given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_REAL_COOKIE) - 1), st.integers(0, 255)), min_size=1
    )
)
def test_byte_level_mutations_of_a_real_cookie_are_no_session(
    edits: list[tuple[int, int]],
) -> None:
    raw = bytearray(_REAL_COOKIE.encode())
    for at, byte in edits:
        raw[at] = byte
    mutated = raw.decode("latin-1")
    for signer in (CookieSigner((KEY_A,), "gateway.session"), _WARM_SIGNER):
        unsigned = signer.unsign(mutated)
        assert unsigned is None or mutated == _REAL_COOKIE


def test_a_remembered_cookie_verifies_only_for_its_own_value_and_memory_stays_bounded() -> None:
    signer = CookieSigner((KEY_A,), "gateway.session")
    other_keys = CookieSigner((KEY_B,), "gateway.session")
    assert signer.unsign(_REAL_COOKIE) == "session-id-0123456789"
    assert signer.unsign(_REAL_COOKIE) == "session-id-0123456789"  # from memory, the same
    assert other_keys.unsign(_REAL_COOKIE) is None  # remembered per signer, never shared
    assert signer.unsign(_REAL_COOKIE[:-1] + ("A" if _REAL_COOKIE[-1] != "A" else "B")) is None
    # More cookies than it remembers: it forgets and checks again, with the same answers.
    cookies = [signer.sign(f"session-{n}") for n in range(CookieSigner.VERIFIED_KEPT + 10)]
    assert [signer.unsign(c) for c in cookies] == [f"session-{n}" for n in range(len(cookies))]
    assert len(signer._verified) <= CookieSigner.VERIFIED_KEPT
    assert signer.unsign(_REAL_COOKIE) == "session-id-0123456789"
