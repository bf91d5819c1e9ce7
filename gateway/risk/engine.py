"""The risk engine (SPEC 8): behaviour events per user, their level, and who hears of a change.

What is kept, all in the store so every instance sees the same:

    risk:user:<uuid>              the user's events, last reset and last announced level (JSON)
    risk:users                    every uuid with a record, for the summary
    risk:hits:<behaviour>:<uuid>  the recent occurrences of a counted behaviour (JSON, expiring)
    risk:networks:<uuid>          the networks the user signed in from, with when (JSON)
    risk:behaviors                the behaviours' settings changed through the API (JSON)

The callers count where things already happen, never on an allowed request: a denial where the
proxy records it, a failed sign-in where the sign-in fails it, a new network or a deactivated
user at sign-in. Records change by compare-and-set, so two instances never lose an event.

When an event moves the user's schedule (`levels.py`), the engine writes it into each of the
user's session records, which is where the proxy's `user_risk_score` rules read the level (if
the store fails half-way, the record says so and the next change or read writes them again). When
the level itself moves (up by a behaviour, down by a reset), every listener hears it before the
call returns. A level that falls because its events grew older than 24 hours needs nobody to
act for the sessions (the schedule says when); listeners hear of it lazily, the next time the
engine touches or reads that user (a sign-in, an event, the admin API), with the reason "decay".
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.errors import StoreUnavailableError
from gateway.identity import Identity
from gateway.risk.behaviors import BEHAVIORS, BehaviorSetting
from gateway.risk.changes import LevelChange, LevelChangeListener, RiskLevel
from gateway.risk.levels import NO_RISK, WINDOW, RiskSchedule, schedule_of
from gateway.state.registry import Registry
from gateway.state.sessions import SessionManager
from gateway.state.store import Clock, Store

log = logging.getLogger("gateway.risk")

_USER_KEY = "risk:user:"
_USERS_KEY = "risk:users"
_HITS_KEY = "risk:hits:"
_NETWORKS_KEY = "risk:networks:"
_BEHAVIORS_KEY = "risk:behaviors"
_FOREVER = 10 * 365 * 86400.0  # index sets take a TTL; the summary's lives until deleted
EVENTS_KEPT = 100  # per user, newest kept (and the ones the level needs: `_trimmed`)
EVENT_RETENTION = 7 * 86400.0  # seconds an event stays in the user's history
NETWORK_MEMORY = 30 * 86400.0  # a network not seen for this long is new again
DECAY = "decay"  # the reason of a change made by events growing old

Entity = Literal["policy", "admin"]


@dataclass(frozen=True, slots=True)
class RiskEvent:
    id: str
    name: str  # the behaviour
    risk_level: RiskLevel
    at: float
    details: Mapping[str, str]

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "risk_level": self.risk_level,
            "at": self.at,
            "details": dict(self.details),
        }

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> RiskEvent:
        return cls(data["id"], data["name"], data["risk_level"], data["at"], data["details"])


@dataclass(frozen=True, slots=True)
class UserRisk:
    """One user's risk record: events newest first, the last reset, the level last announced
    to the listeners, and who the user is (for the changes and the API)."""

    user_uuid: str
    email: str = ""
    name: str = ""
    idp_id: str = ""
    events: tuple[RiskEvent, ...] = ()
    reset_at: float = 0.0
    announced: RiskLevel = "low"
    version: int = 0  # how many times the schedule moved (`RiskSchedule.version`)
    # The schedule moved and the user's sessions may not have it yet (the store failed while
    # writing them): the next change or read writes it into them again.
    sessions_behind: bool = False

    def schedule(self) -> RiskSchedule:
        found = schedule_of(((e.risk_level, e.at) for e in self.events), self.reset_at)
        return dataclasses.replace(found, version=self.version)

    def level_at(self, now: float) -> RiskLevel:
        return self.schedule().level_at(now)

    def counted(self, now: float) -> tuple[RiskEvent, ...]:
        """The events the level counts now: of the last 24 hours, after the last reset."""
        since = max(now - WINDOW, self.reset_at)
        return tuple(e for e in self.events if e.at > since)

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "email": self.email,
                "name": self.name,
                "idp_id": self.idp_id,
                "events": [e.to_record() for e in self.events],
                "reset_at": self.reset_at,
                "announced": self.announced,
                "sessions_behind": self.sessions_behind,
                "version": self.version,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, user_uuid: str, raw: bytes) -> UserRisk:
        data = json.loads(raw)
        return cls(
            user_uuid,
            data["email"],
            data["name"],
            data["idp_id"],
            tuple(RiskEvent.from_record(e) for e in data["events"]),
            data["reset_at"],
            data["announced"],
            version=data.get("version", 0),
            sessions_behind=data.get("sessions_behind", False),
        )


def _trimmed(events: tuple[RiskEvent, ...]) -> tuple[RiskEvent, ...]:
    """The newest `EVENTS_KEPT` events, and the newest high and medium events beyond them
    when those kept have none: the level stays what all of them make it, so a flood of lesser
    events cannot push out the one that holds a user at high."""
    kept = events[:EVENTS_KEPT]
    for level in ("high", "medium"):
        if all(e.risk_level != level for e in kept):
            older = next((e for e in events[EVENTS_KEPT:] if e.risk_level == level), None)
            kept += (older,) if older is not None else ()
    return kept


def network_of(ip: str) -> str:
    """The network a sign-in comes from: its IPv4 /24 or IPv6 /48; "" for no address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


async def risk_schedule(store: Store, user_uuid: str) -> RiskSchedule:
    """The user's risk level over time as the store holds it (no announcing): what a new
    session carries, and what `gateway explain` judges."""
    raw = await store.get(_USER_KEY + user_uuid)
    return UserRisk.from_bytes(user_uuid, raw).schedule() if raw is not None else NO_RISK


class RiskEngine:
    """Scores behaviours into users' risk levels; the API and the console read and reset them."""

    def __init__(
        self,
        store: Store,
        sessions: SessionManager,
        registry: Registry,
        configured: Callable[[], Mapping[str, BehaviorSetting]],
        clock: Clock = time.time,
        listeners: list[LevelChangeListener] | None = None,
    ):
        self.store = store
        self.sessions = sessions
        self.registry = registry
        self._configured = configured  # the file's settings, as the runtime serves them now
        self.clock = clock
        self.listeners: list[LevelChangeListener] = listeners if listeners is not None else []

    # --- behaviours' settings -------------------------------------------------------------

    async def behaviors(self) -> dict[str, BehaviorSetting]:
        """Every behaviour's setting in force: the API's changes over the file's."""
        settings = dict(self._configured())
        raw = await self.store.get(_BEHAVIORS_KEY)
        if raw is not None:
            for name, value in json.loads(raw).items():
                if name in BEHAVIORS:
                    settings[name] = BehaviorSetting(value["enabled"], value["risk_level"])
        return settings

    async def set_behaviors(
        self, changes: Mapping[str, BehaviorSetting]
    ) -> dict[str, BehaviorSetting]:
        """Change the named behaviours (others keep theirs), for every instance at once;
        returns every behaviour's setting in force."""
        while True:
            raw = await self.store.get(_BEHAVIORS_KEY)
            stored: dict[str, Any] = json.loads(raw) if raw is not None else {}
            stored.update({name: s.to_json() for name, s in changes.items()})
            if await self.store.compare_and_set(_BEHAVIORS_KEY, raw, json.dumps(stored).encode()):
                return await self.behaviors()

    # --- counting (called where things already happen) ------------------------------------

    async def denied(self, user_uuid: str, email: str, app_id: str) -> None:
        """A request by this user was denied by policy (`repeated_denials`). Counting never
        fails the request: a store that does not answer loses the count, and says so."""
        try:
            await self._occurred("repeated_denials", user_uuid, email, "", {"app": app_id})
        except StoreUnavailableError as exc:
            log.warning(
                "risk: a denial of %s was not counted (or not yet in their sessions): %s",
                user_uuid,
                exc,
            )

    async def sign_in_failed(self, user_uuid: str, email: str, idp_id: str, step: str) -> None:
        """A sign-in failed after the IdP proved who the user is (`failed_sign_ins`); the
        failure is what the user sees, even if the store cannot count it."""
        try:
            await self._occurred("failed_sign_ins", user_uuid, email, idp_id, {"step": step})
        except StoreUnavailableError as exc:
            log.warning(
                "risk: a failed sign-in of %s was not counted (or not yet in their sessions): %s",
                user_uuid,
                exc,
            )

    async def deactivated_sign_in(self, identity: Identity) -> None:
        """A user whom SCIM deactivated tried to sign in (`scim_deprovisioned_sign_in`); it
        is a failed sign-in too."""
        details = {"ip": identity.ip}
        who = (identity.user_uuid, identity.email, identity.idp_id)
        await self._occurred("scim_deprovisioned_sign_in", *who, details)
        await self._occurred("failed_sign_ins", *who, {"step": "deprovisioned"})

    async def signed_in(self, identity: Identity) -> None:
        """A successful sign-in: its network is remembered (`new_network` when it is new)
        and a level that decayed meanwhile is announced."""
        network = network_of(identity.ip)
        if network:
            key = _NETWORKS_KEY + identity.user_uuid
            now = self.clock()
            while True:
                raw = await self.store.get(key)
                seen: dict[str, float] = json.loads(raw) if raw is not None else {}
                last = seen.get(network)
                known = last is not None and now - last < NETWORK_MEMORY
                kept = {n: at for n, at in seen.items() if now - at < NETWORK_MEMORY}
                kept[network] = now
                if await self.store.compare_and_set(key, raw, json.dumps(kept).encode()):
                    break
            if raw is not None and not known:  # a first sign-in ever is not "new"
                who = (identity.user_uuid, identity.email, identity.idp_id)
                await self._occurred("new_network", *who, {"network": network})
        await self._settle(identity.user_uuid)

    async def _occurred(
        self, behavior: str, user_uuid: str, email: str, idp_id: str, details: dict[str, str]
    ) -> None:
        """One occurrence of a behaviour; an event once it reaches the behaviour's threshold
        within its window (the count then starts over)."""
        setting = (await self.behaviors())[behavior]
        if not setting.enabled or not user_uuid:
            return
        rule = BEHAVIORS[behavior]
        if rule.threshold > 1 and not await self._reached(behavior, user_uuid):
            return
        now = self.clock()
        event = RiskEvent(secrets.token_hex(8), behavior, setting.risk_level, now, details)

        def add(current: UserRisk) -> UserRisk:
            events = (event, *(e for e in current.events if now - e.at < EVENT_RETENTION))
            return dataclasses.replace(
                current,
                email=email or current.email,
                idp_id=idp_id or current.idp_id,
                events=_trimmed(events),
            )

        await self._change(user_uuid, add, "policy", behavior)

    async def _reached(self, behavior: str, user_uuid: str) -> bool:
        """Count an occurrence; True when it makes `threshold` within the window."""
        rule = BEHAVIORS[behavior]
        key = f"{_HITS_KEY}{behavior}:{user_uuid}"
        now = self.clock()
        while True:
            raw = await self.store.get(key)
            hits = [at for at in (json.loads(raw) if raw else []) if now - at < rule.window]
            hits.append(now)
            reached = len(hits) >= rule.threshold
            value = None if reached else json.dumps(hits[-rule.threshold :]).encode()
            if await self.store.compare_and_set(key, raw, value, rule.window):
                return reached

    # --- reading ----------------------------------------------------------------------------

    async def user(self, user_uuid: str) -> UserRisk:
        """The user's risk record (empty for a user with none); a decayed level is announced."""
        return await self._settle(user_uuid)

    async def level(self, user_uuid: str) -> RiskLevel:
        return (await self.user(user_uuid)).level_at(self.clock())

    async def schedule(self, user_uuid: str) -> RiskSchedule:
        """What a new session of this user carries (`SessionManager.create` asks)."""
        return await risk_schedule(self.store, user_uuid)

    async def events(self, user_uuid: str) -> tuple[RiskEvent, ...]:
        """The user's events kept, newest first."""
        return (await self.user(user_uuid)).events

    async def summary(self) -> list[UserRisk]:
        """Every user with events kept, by email."""
        users = []
        for user_uuid in sorted(await self.store.set_members(_USERS_KEY)):
            record = await self._settle(user_uuid)
            if record.events:
                users.append(record)
        return sorted(users, key=lambda u: (u.email.casefold(), u.user_uuid))

    # --- reset ------------------------------------------------------------------------------

    async def reset(self, user_uuid: str, actor: str) -> UserRisk:
        """Back to low, events cleared (SPEC 7), and the counts in progress too (nine denials
        before a reset and one after are not ten); `actor` is who did it, for the log."""
        now = self.clock()
        log.info("risk reset user=%s by %s", user_uuid, actor, extra={"user_uuid": user_uuid})
        await self.store.delete(*(f"{_HITS_KEY}{name}:{user_uuid}" for name in BEHAVIORS))
        return await self._change(
            user_uuid,
            lambda current: dataclasses.replace(current, events=(), reset_at=now),
            "admin",
            "reset",
        )

    # --- the record -------------------------------------------------------------------------

    async def _read(self, user_uuid: str) -> tuple[UserRisk, bytes | None]:
        raw = await self.store.get(_USER_KEY + user_uuid)
        if raw is None:
            return UserRisk(user_uuid), None
        return UserRisk.from_bytes(user_uuid, raw), raw

    async def _settle(self, user_uuid: str) -> UserRisk:
        """The record, after announcing a level that fell by decay since it was last told."""
        return await self._change(user_uuid, lambda current: current, "policy", DECAY)

    async def _change(
        self,
        user_uuid: str,
        change: Callable[[UserRisk], UserRisk],
        entity: Entity,
        reason: str,
    ) -> UserRisk:
        """Apply `change` by compare-and-set; write a moved schedule into the user's sessions
        (again, if an earlier write of it failed: `sessions_behind`); tell every listener when
        the level moved from the one last announced."""
        key = _USER_KEY + user_uuid
        while True:
            current, raw = await self._read(user_uuid)
            now = self.clock()
            changed = change(current)
            moved = changed.schedule() != current.schedule()
            if moved:
                changed = dataclasses.replace(changed, version=current.version + 1)
            level = changed.level_at(now)
            behind = current.sessions_behind or moved
            new = dataclasses.replace(changed, announced=level, sessions_behind=behind)
            if new == current and not behind:
                return current
            if raw is None and not new.events and level == "low":
                return current  # nothing to keep (a reset or read of a user without events)
            if not (new.email and new.idp_id and new.name):  # who, for listeners and the API
                person = await self.registry.get(user_uuid)
                if person is not None:
                    new = dataclasses.replace(
                        new,
                        email=new.email or person.email,
                        name=new.name or person.name,
                        idp_id=new.idp_id or person.idp_id,
                    )
            written = new.to_bytes()
            if await self.store.compare_and_set(key, raw, written):
                break
        await self.store.add_to_set(_USERS_KEY, user_uuid, ttl=_FOREVER)
        if behind:
            await self.sessions.set_risk(user_uuid, new.schedule())
            new = dataclasses.replace(new, sessions_behind=False)
            # Only if nobody changed the record meanwhile: a change that did saw the flag set,
            # and wrote its own schedule into the sessions.
            await self.store.compare_and_set(key, written, new.to_bytes())
        if level != current.announced:
            await self._announce(
                LevelChange(
                    user_uuid=user_uuid,
                    email=new.email,
                    idp_id=new.idp_id,
                    previous=current.announced,
                    current=level,
                    initiating_entity=entity,
                    reason=reason,
                    at=int(now),
                )
            )
        return new

    async def _announce(self, change: LevelChange) -> None:
        log.info(
            "risk level of %s: %s -> %s (%s)",
            change.user_uuid,
            change.previous,
            change.current,
            change.reason,
            extra={"user_uuid": change.user_uuid},
        )
        for listener in self.listeners:
            try:
                await listener.level_changed(change)
            except Exception:  # one listener failing must not fail the request, nor the others
                log.exception("risk listener %r failed on %s", listener, change)
