"""The risk engine (SPEC 8): each behaviour raises the level exactly at its threshold, levels
decay after 24 hours and after a reset, listeners hear every change, and the user's sessions
carry the level so the proxy reads it with the session (in the memory store and in Redis)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import cast

import pytest
from clock import FakeClock

from gateway.errors import StoreUnavailableError
from gateway.identity import Identity, user_uuid_for
from gateway.risk.behaviors import DEFAULTS, BehaviorSetting
from gateway.risk.changes import LevelChange
from gateway.risk.engine import EVENTS_KEPT, RiskEngine, network_of
from gateway.risk.levels import WINDOW, RiskSchedule
from gateway.state.registry import Registry
from gateway.state.sessions import CookieSigner, SessionManager
from gateway.state.store import Store

IDP = "okta-test"
ALICE = Identity(
    id="n-1",
    user_uuid=user_uuid_for(IDP, "00ualice"),
    sub="00ualice",
    name="Alice Example",
    email="alice@example.com",
    groups=("Engineering",),
    idp_id=IDP,
    idp_type="okta",
    iat=1_764_460_800,
    ip="198.51.100.7",
)
USER = ALICE.user_uuid
DAYS = 86400.0


class Listener:
    def __init__(self) -> None:
        self.changes: list[LevelChange] = []

    async def level_changed(self, change: LevelChange) -> None:
        self.changes.append(change)


@dataclasses.dataclass
class World:
    engine: RiskEngine
    sessions: SessionManager
    registry: Registry
    listener: Listener
    clock: FakeClock


def build(store: Store, clock: FakeClock, **file: BehaviorSetting) -> World:
    sessions = SessionManager(store, CookieSigner(("k" * 32,), "gateway.session"), clock)
    registry = Registry(store, clock)
    listener = Listener()
    configured = {**DEFAULTS, **file}
    engine = RiskEngine(store, sessions, registry, lambda: configured, clock, [listener])
    sessions.risk = engine
    return World(engine, sessions, registry, listener, clock)


@pytest.fixture
async def world(store: Store, clock: FakeClock) -> World:
    built = build(store, clock)
    await built.registry.record_sign_in(ALICE)
    return built


async def deny(world: World, times: int) -> None:
    for _ in range(times):
        world.clock.advance(1)
        await world.engine.denied(USER, ALICE.email, "wiki")


def change(previous: str, current: str, entity: str, reason: str, at: float) -> LevelChange:
    return LevelChange(USER, ALICE.email, IDP, previous, current, entity, reason, int(at))  # type: ignore[arg-type]


# --- each behaviour at its threshold -----------------------------------------------------------


async def test_repeated_denials_raise_the_level_at_the_tenth_within_ten_minutes(
    world: World,
) -> None:
    await deny(world, 9)
    assert await world.engine.level(USER) == "low"
    assert world.listener.changes == []
    await world.engine.denied(USER, ALICE.email, "wiki")
    assert await world.engine.level(USER) == "medium"
    assert world.listener.changes == [
        change("low", "medium", "policy", "repeated_denials", world.clock())
    ]
    events = (await world.engine.user(USER)).events
    assert [(e.name, e.risk_level, dict(e.details)) for e in events] == [
        ("repeated_denials", "medium", {"app": "wiki"})
    ]


async def test_denials_further_apart_than_ten_minutes_do_not_add_up(world: World) -> None:
    await deny(world, 9)
    world.clock.advance(600)  # the first nine are older than ten minutes now
    await deny(world, 9)
    assert await world.engine.level(USER) == "low"
    await deny(world, 1)
    assert await world.engine.level(USER) == "medium"


async def test_failed_sign_ins_raise_the_level_at_the_fifth(world: World) -> None:
    for _ in range(4):
        await world.engine.sign_in_failed(USER, ALICE.email, IDP, "email")
    assert await world.engine.level(USER) == "low"
    await world.engine.sign_in_failed(USER, ALICE.email, IDP, "email")
    assert await world.engine.level(USER) == "medium"
    assert [c.reason for c in world.listener.changes] == ["failed_sign_ins"]


async def test_a_deactivated_users_sign_in_is_high_at_once(world: World) -> None:
    await world.engine.deactivated_sign_in(ALICE)
    assert await world.engine.level(USER) == "high"
    assert world.listener.changes == [
        change("low", "high", "policy", "scim_deprovisioned_sign_in", world.clock())
    ]


async def test_a_flood_of_lesser_events_does_not_push_a_high_one_out(world: World) -> None:
    """The record keeps its newest events, but never drops the one that holds the level: a
    user at high cannot get back to medium by being denied a thousand times."""
    await world.engine.deactivated_sign_in(ALICE)
    await deny(world, 10 * (EVENTS_KEPT + 1))  # more medium events than the record keeps
    assert await world.engine.level(USER) == "high"
    session, _ = await world.sessions.create(ALICE, kind="global", duration=DAYS)
    assert session.risk.level_at(world.clock()) == "high"
    assert len((await world.engine.user(USER)).events) <= EVENTS_KEPT + 1


async def test_a_new_network_counts_when_enabled_but_never_the_first_sign_in(
    world: World,
) -> None:
    await world.engine.set_behaviors({"new_network": BehaviorSetting(True, "medium")})
    await world.engine.signed_in(ALICE)  # first ever
    await world.engine.signed_in(dataclasses.replace(ALICE, ip="198.51.100.200"))  # same /24
    assert await world.engine.level(USER) == "low"
    await world.engine.signed_in(dataclasses.replace(ALICE, ip="203.0.113.9"))
    assert await world.engine.level(USER) == "medium"
    assert (await world.engine.user(USER)).events[0].details == {"network": "203.0.113.0/24"}


async def test_a_network_unseen_for_thirty_days_is_new_again(world: World) -> None:
    await world.engine.set_behaviors({"new_network": BehaviorSetting(True, "high")})
    await world.engine.signed_in(ALICE)
    await world.engine.signed_in(dataclasses.replace(ALICE, ip="203.0.113.9"))
    await world.engine.reset(USER, "test")
    world.clock.advance(29 * DAYS)
    await world.engine.signed_in(dataclasses.replace(ALICE, ip="203.0.113.10"))
    assert await world.engine.level(USER) == "low"  # seen 29 days ago
    world.clock.advance(31 * DAYS)
    await world.engine.signed_in(ALICE)
    assert await world.engine.level(USER) == "high"


def test_networks_are_ipv4_slash_24_and_ipv6_slash_48() -> None:
    assert network_of("192.0.2.77") == "192.0.2.0/24"
    assert network_of("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert network_of("") == ""


async def test_disabled_behaviours_do_nothing(world: World) -> None:
    await world.engine.set_behaviors(
        {
            "repeated_denials": BehaviorSetting(False, "high"),
            "scim_deprovisioned_sign_in": BehaviorSetting(False, "high"),
        }
    )
    await deny(world, 30)
    await world.engine.signed_in(ALICE)
    await world.engine.signed_in(dataclasses.replace(ALICE, ip="203.0.113.9"))  # new_network off
    await world.engine.deactivated_sign_in(ALICE)  # still a failed sign-in: one of five
    assert await world.engine.level(USER) == "low"
    assert (await world.engine.user(USER)).events == ()
    assert world.listener.changes == []


async def test_the_file_sets_the_level_and_the_api_overrides_it_for_every_instance(
    store: Store, clock: FakeClock
) -> None:
    a = build(store, clock, repeated_denials=BehaviorSetting(True, "high"))
    b = build(store, clock, repeated_denials=BehaviorSetting(True, "high"))
    assert (await b.engine.behaviors())["repeated_denials"] == BehaviorSetting(True, "high")
    await a.engine.set_behaviors({"failed_sign_ins": BehaviorSetting(False, "low")})
    seen = await b.engine.behaviors()
    assert seen["failed_sign_ins"] == BehaviorSetting(False, "low")
    assert seen["repeated_denials"] == BehaviorSetting(True, "high")  # untouched: the file's
    await deny(b, 10)
    assert await a.engine.level(USER) == "high"


# --- the level over time -----------------------------------------------------------------------


async def test_the_level_decays_after_24_hours_and_the_drop_is_announced_when_read(
    world: World,
) -> None:
    await deny(world, 10)
    tripped = world.clock()
    world.clock.advance(WINDOW - 1)
    assert await world.engine.level(USER) == "medium"
    world.clock.advance(1)
    assert await world.engine.level(USER) == "low"
    assert world.listener.changes == [
        change("low", "medium", "policy", "repeated_denials", tripped),
        change("medium", "low", "policy", "decay", world.clock()),
    ]
    assert await world.engine.level(USER) == "low"
    assert len(world.listener.changes) == 2  # announced once


async def test_the_level_is_the_highest_among_the_last_24_hours(world: World) -> None:
    await world.engine.deactivated_sign_in(ALICE)  # high (and one failed sign-in)
    world.clock.advance(12 * 3600)
    await deny(world, 10)  # medium, 12 h later
    assert await world.engine.level(USER) == "high"
    world.clock.advance(12 * 3600)  # the high event is 24 h old
    assert await world.engine.level(USER) == "medium"
    world.clock.advance(12 * 3600)
    assert await world.engine.level(USER) == "low"


async def test_a_reset_clears_the_events_and_counts_only_what_comes_after(world: World) -> None:
    await world.engine.deactivated_sign_in(ALICE)
    reset = await world.engine.reset(USER, "admin@example.com")
    assert reset.events == () and reset.level_at(world.clock()) == "low"
    assert world.listener.changes[-1] == change("high", "low", "admin", "reset", world.clock())
    world.clock.advance(1)
    await deny(world, 10)
    assert await world.engine.level(USER) == "medium"


async def test_a_reset_clears_a_count_in_progress(world: World) -> None:
    await deny(world, 9)
    await world.engine.reset(USER, "admin@example.com")
    await deny(world, 1)
    assert await world.engine.level(USER) == "low"
    await deny(world, 8)
    assert await world.engine.level(USER) == "low"
    await deny(world, 1)
    assert await world.engine.level(USER) == "medium"


async def test_a_reset_of_a_user_at_low_tells_nobody(world: World) -> None:
    await world.engine.reset(USER, "admin@example.com")
    assert world.listener.changes == []


async def test_the_summary_lists_users_with_events(world: World) -> None:
    assert await world.engine.summary() == []
    await deny(world, 10)
    (listed,) = await world.engine.summary()
    assert (listed.user_uuid, listed.email, listed.name) == (USER, ALICE.email, ALICE.name)
    assert len(listed.events) == 1


# --- the sessions carry it ---------------------------------------------------------------------


async def test_every_session_of_the_user_carries_the_level_as_it_changes(world: World) -> None:
    first, _ = await world.sessions.create(ALICE, kind="global", duration=3 * DAYS)
    await deny(world, 10)
    later, _ = await world.sessions.create(ALICE, kind="app", duration=3 * DAYS, app_id="wiki")
    now = world.clock()
    for session_id in (first.id, later.id):
        loaded = await world.sessions.by_id(session_id)
        assert loaded is not None and loaded.risk.level_at(now) == "medium"
        assert loaded.risk.level_at(now + WINDOW) == "low"  # decays by itself
    await world.engine.reset(USER, "test")
    for session_id in (first.id, later.id):
        loaded = await world.sessions.by_id(session_id)
        assert loaded is not None and not loaded.risk


class _IndexDown:
    """A store whose session indexes do not answer while `down` (the rest does)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.down = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def set_members(self, key: str) -> set[str]:
        if self.down:
            raise StoreUnavailableError("the index did not answer")
        return await self.store.set_members(key)


async def test_sessions_catch_up_with_a_level_the_store_failed_to_write_into_them(
    store: Store, clock: FakeClock
) -> None:
    """The record moved to medium but the store failed before the user's sessions were told:
    the next time the engine touches the user, the sessions get the level (else they would
    stay at low, and a `user_risk_score` rule let the user in, until the level moved again)."""
    flaky = _IndexDown(store)
    world = build(store, clock)
    world.sessions.store = cast(Store, flaky)
    session, _ = await world.sessions.create(ALICE, kind="global", duration=DAYS)
    flaky.down = True
    await deny(world, 10)  # the tenth makes a medium event; writing it into sessions fails
    flaky.down = False
    assert await world.engine.level(USER) == "medium"
    loaded = await world.sessions.by_id(session.id)
    assert loaded is not None and loaded.risk.level_at(world.clock()) == "medium"


class _LateSessions(SessionManager):
    """Sessions whose first `set_risk` waits until `meanwhile` (another instance's change)
    has run to its end."""

    meanwhile: Callable[[], Awaitable[object]] | None = None

    async def set_risk(self, user_uuid: str, schedule: RiskSchedule) -> None:
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            await meanwhile()
        await super().set_risk(user_uuid, schedule)


async def test_a_late_write_of_an_older_level_does_not_undo_a_newer_one(
    store: Store, clock: FakeClock
) -> None:
    """A reset and an event on two instances at once: the reset's write into the sessions
    arrives last, but the event came after it (the record says high), so they stay high."""
    world = build(store, clock)
    sessions = _LateSessions(store, CookieSigner(("k" * 32,), "gateway.session"), clock)
    sessions.risk = world.engine
    world.engine.sessions = sessions
    await deny(world, 10)
    session, _ = await sessions.create(ALICE, kind="global", duration=DAYS)

    async def event_after_the_reset() -> None:
        clock.advance(1)
        await world.engine.deactivated_sign_in(ALICE)

    sessions.meanwhile = event_after_the_reset
    await world.engine.reset(USER, "test")
    assert await world.engine.level(USER) == "high"
    loaded = await sessions.by_id(session.id)
    assert loaded is not None and loaded.risk.level_at(world.clock()) == "high"


async def test_writing_app_tokens_back_keeps_the_level(world: World) -> None:
    session, _ = await world.sessions.create(ALICE, kind="global", duration=3 * DAYS)
    stale = await world.sessions.by_id(session.id)
    assert stale is not None
    await world.engine.deactivated_sign_in(ALICE)
    until = world.clock() + 3600
    assert await world.sessions.save(dataclasses.replace(stale, tokens={"wiki": ("t", until)}))
    saved = await world.sessions.by_id(session.id)
    assert saved is not None
    assert saved.risk.level_at(world.clock()) == "high"
    assert saved.tokens == {"wiki": ("t", until)}


async def test_a_listener_that_fails_does_not_stop_the_others(world: World) -> None:
    class Broken:
        async def level_changed(self, change: LevelChange) -> None:
            raise RuntimeError("outbox down")

    world.engine.listeners.insert(0, Broken())
    await world.engine.deactivated_sign_in(ALICE)
    assert [c.current for c in world.listener.changes] == ["high"]


@pytest.mark.parametrize("reads", ["tracked-reads", "redis", "redis-py-reads"])
async def test_another_instance_sees_the_level_on_its_next_session_read(
    open_store_of: Callable[[str], Store], clock: FakeClock, reads: str
) -> None:
    """The proxy's instance keeps reading the session record (the tracked reader from its local
    copy); the level changed by another instance is in its very next read."""
    proxy = build(open_store_of(reads), clock)
    other = build(open_store_of("redis"), clock)
    await other.registry.record_sign_in(ALICE)
    session, _ = await proxy.sessions.create(ALICE, kind="global", duration=3 * DAYS)
    for _ in range(3):  # read, and read again: a tracked copy is kept
        loaded = await proxy.sessions.by_id(session.id)
        assert loaded is not None and not loaded.risk
    await other.engine.deactivated_sign_in(ALICE)
    loaded = await proxy.sessions.by_id(session.id)
    assert loaded is not None and loaded.risk.level_at(clock()) == "high"
    await other.engine.reset(USER, "test")
    loaded = await proxy.sessions.by_id(session.id)
    assert loaded is not None and loaded.risk.level_at(clock()) == "low"
