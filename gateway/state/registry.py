"""The user registry (SPEC 5): one record per person who signed in, kept in the store.

A record holds the user uuid, email, name, `access_seat`, first and last sign-in, the last-seen
identity (the SPEC 4 document) and, when the identity provider provisions the person over SCIM,
the SCIM facts (`id`, `userName`, `externalId`, `active`). Sign-ins and SCIM both update it; the
admin API reads it.

    registry:user:<uuid>                    the record (JSON)
    registry:users                          every uuid, for listing
    registry:email:<folded email>           the uuids with that email (any identity provider)
    registry:scim:<idp>:sub:<externalId>    the SCIM facts of a person, for their first sign-in
    registry:scim:<idp>:email:<userName>    (the same, by `userName`)
    registry:scim:<idp>:id:<SCIM id>        the uuids of the people a SCIM user was found to be

Records change by compare-and-set (read, change, write only if unchanged meanwhile), so a
sign-in and a SCIM update of one person on two instances never lose either change. SPEC 6
matches a SCIM user to people who signed in by `userName` = email (case-insensitively) or
`externalId` = the Okta user id (`sub`); `matching` answers that from the email index and the
uuid, which is a function of the identity provider and `sub`, and also from the people the SCIM
user was linked to before: once linked, a rename in Okta (a new `userName`, and no
`externalId`) must not let the person escape a later deactivation. The record's `email` is the
one they signed in with (what sessions, the origin and `revoke_user` know); SCIM changes reach
the last-seen identity, not that.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.identity import Identity, user_uuid_for
from gateway.state.store import Clock, Store

_FOREVER = 10 * 365 * 86400.0  # index sets take a TTL; registry data lives until deleted
_RECORD_KEY = "registry:user:"
_USERS_KEY = "registry:users"
_EMAIL_KEY = "registry:email:"


def _link_key(idp_id: str, scim_id: str) -> str:
    return f"registry:scim:{idp_id}:id:{scim_id}"


def _pending_keys(idp_id: str, facts: dict[str, Any]) -> list[str]:
    """Where a SCIM user's facts wait for the person's first sign-in."""
    keys = [f"registry:scim:{idp_id}:email:{facts['userName'].casefold()}"]
    if facts["externalId"]:
        keys.append(f"registry:scim:{idp_id}:sub:{facts['externalId']}")
    return keys


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str  # the user uuid
    idp_id: str
    sub: str
    email: str
    name: str
    access_seat: bool
    created_at: float
    updated_at: float
    last_successful_login: float | None = None
    identity: dict[str, Any] | None = None  # the last-seen identity (SPEC 4 document)
    scim: dict[str, Any] | None = None  # SCIM facts while provisioned

    def to_bytes(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> UserRecord:
        return cls(**json.loads(raw))

    def public(self) -> dict[str, Any]:
        """The admin API's user object: Cloudflare's shape, plus the IdP and SCIM facts."""
        return {
            "id": self.id,
            "uid": self.id,
            "email": self.email,
            "name": self.name,
            "access_seat": self.access_seat,
            "gateway_seat": False,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "last_successful_login": _iso(self.last_successful_login),
            "identity_provider_id": self.idp_id,
            "scim": self.scim,
        }


def scim_facts(resource: dict[str, Any]) -> dict[str, Any]:
    """What the registry keeps of a SCIM user resource."""
    return {
        "id": resource["id"],
        "userName": resource["userName"],
        "externalId": resource.get("externalId", ""),
        "active": resource.get("active", True) is not False,
    }


class Registry:
    """Reads and updates registry records."""

    def __init__(self, store: Store, clock: Clock = time.time):
        self.store = store
        self.clock = clock

    # --- reading ------------------------------------------------------------------------

    async def get(self, user_id: str) -> UserRecord | None:
        raw = await self.store.get(_RECORD_KEY + user_id)
        return UserRecord.from_bytes(raw) if raw is not None else None

    async def _records(self, user_ids: Iterable[str]) -> list[UserRecord]:
        records = []
        for user_id in sorted(set(user_ids)):
            record = await self.get(user_id)
            if record is not None:
                records.append(record)
        return records

    async def all(self) -> list[UserRecord]:
        """Every record, by email then id."""
        records = await self._records(await self.store.set_members(_USERS_KEY))
        return sorted(records, key=lambda r: (r.email.casefold(), r.id))

    async def deactivated(self, identity: Identity) -> bool:
        """Whether SCIM says this person is deactivated (`active: false`): in their record,
        or in the facts waiting for their first sign-in."""
        record = await self.get(identity.user_uuid)
        facts = record.scim if record is not None else await self._pending_scim(identity)
        return facts is not None and facts.get("active") is False

    async def last_seen_identity(self, user_id: str) -> dict[str, Any] | None:
        record = await self.get(user_id)
        return record.identity if record is not None else None

    async def by_email(self, email: str) -> list[UserRecord]:
        """The records with this email, case-insensitively, at any identity provider."""
        ids = await self.store.set_members(_EMAIL_KEY + email.casefold())
        return [r for r in await self._records(ids) if r.email.casefold() == email.casefold()]

    async def matching(self, idp_id: str, user: dict[str, Any]) -> list[UserRecord]:
        """The people of `idp_id` the SCIM user `user` is (SPEC 6): `userName` = their email,
        or `externalId` = their `sub`, or someone it was linked to before."""
        ids = {r.id for r in await self.by_email(user["userName"]) if r.idp_id == idp_id}
        if user.get("externalId"):
            ids.add(user_uuid_for(idp_id, user["externalId"]))
        ids |= await self.store.set_members(_link_key(idp_id, user["id"]))
        return await self._records(ids)

    # --- writing ------------------------------------------------------------------------

    async def _update(
        self, user_id: str, change: Callable[[UserRecord | None], UserRecord | None]
    ) -> UserRecord | None:
        """Apply `change` (None: leave as is) with compare-and-set, again if another writer
        came first; the record as it then is."""
        key = _RECORD_KEY + user_id
        while True:
            raw = await self.store.get(key)
            current = UserRecord.from_bytes(raw) if raw is not None else None
            new = change(current)
            if new is None or new == current:
                return current
            if await self.store.compare_and_set(key, raw, new.to_bytes()):
                if current is not None and current.email.casefold() != new.email.casefold():
                    await self.store.remove_from_set(_EMAIL_KEY + current.email.casefold(), user_id)
                if new.email:
                    await self.store.add_to_set(
                        _EMAIL_KEY + new.email.casefold(), user_id, ttl=_FOREVER
                    )
                return new

    async def record_sign_in(self, identity: Identity) -> UserRecord:
        """A successful sign-in: the record is created or refreshed, and takes a seat."""
        now = self.clock()
        facts = await self._pending_scim(identity)

        def signed_in(current: UserRecord | None) -> UserRecord:
            base = current or UserRecord(
                id=identity.user_uuid,
                idp_id=identity.idp_id,
                sub=identity.sub,
                email=identity.email,
                name=identity.name,
                access_seat=True,
                created_at=now,
                updated_at=now,
            )
            return dataclasses.replace(
                base,
                sub=identity.sub,
                email=identity.email,
                name=identity.name,
                access_seat=True,
                updated_at=now,
                last_successful_login=now,
                identity=identity.to_json(),
                scim=facts if facts is not None else base.scim,
            )

        record = await self._update(identity.user_uuid, signed_in)
        assert record is not None  # noqa: S101 - `signed_in` always returns one
        await self.store.add_to_set(_USERS_KEY, record.id, ttl=_FOREVER)
        if facts is not None:
            await self._link(identity.idp_id, facts["id"], [record])
        return record

    async def _pending_scim(self, identity: Identity) -> dict[str, Any] | None:
        """SCIM facts stored for this person before they first signed in."""
        for key in (
            f"registry:scim:{identity.idp_id}:sub:{identity.sub}",
            f"registry:scim:{identity.idp_id}:email:{identity.email.casefold()}",
        ):
            raw = await self.store.get(key)
            if raw is None:
                continue
            facts: dict[str, Any] = json.loads(raw)
            if facts["externalId"] == identity.sub or (
                facts["userName"].casefold() == identity.email.casefold()
            ):
                return facts
        return None

    async def provisioned(
        self, idp_id: str, resource: dict[str, Any], before: dict[str, Any] | None = None
    ) -> list[UserRecord]:
        """A SCIM user was created or changed (from `before`): link its facts to the people it
        is (returned), and keep them for a first sign-in yet to come under its new names only."""
        facts = scim_facts(resource)
        if before is not None:
            await self.store.delete(*_pending_keys(idp_id, scim_facts(before)))
        raw = json.dumps(facts).encode()
        for key in _pending_keys(idp_id, facts):
            await self.store.set(key, raw)
        linked = []
        for record in await self.matching(idp_id, resource):
            updated = await self._update(
                record.id, lambda r: dataclasses.replace(r, scim=facts) if r else None
            )
            if updated is not None:
                linked.append(updated)
        await self._link(idp_id, facts["id"], linked)
        return linked

    async def unprovisioned(self, idp_id: str, resource: dict[str, Any]) -> list[UserRecord]:
        """A SCIM user was deleted: its facts go; the people it was are returned."""
        facts = scim_facts(resource)
        await self.store.delete(*_pending_keys(idp_id, facts))
        unlinked = []
        for record in await self.matching(idp_id, resource):
            updated = await self._update(
                record.id, lambda r: dataclasses.replace(r, scim=None) if r else None
            )
            if updated is not None:
                unlinked.append(updated)
        await self.store.delete(_link_key(idp_id, facts["id"]))
        return unlinked

    async def _link(self, idp_id: str, scim_id: str, people: Iterable[UserRecord]) -> None:
        for person in people:
            await self.store.add_to_set(_link_key(idp_id, scim_id), person.id, ttl=_FOREVER)

    async def remove_seat(self, user_id: str) -> None:
        """SPEC 6 `seat_deprovision`: the person no longer holds a seat (until a sign-in)."""
        now = self.clock()
        await self._update(
            user_id,
            lambda r: (
                dataclasses.replace(r, access_seat=False, updated_at=now)
                if r is not None and r.access_seat
                else None
            ),
        )

    async def update_identity(
        self,
        user_id: str,
        *,
        name: str = "",
        email: str = "",
        add_groups: Iterable[str] = (),
        remove_groups: Iterable[str] = (),
    ) -> None:
        """SPEC 6 `identity_update_behavior = "automatic"`: SCIM changes reach the registry
        identity (sessions keep theirs until the next sign-in). Empty name/email: unchanged.
        The record's own `email` stays the signed-in one (see the module docstring)."""
        now = self.clock()
        added, removed = list(add_groups), set(remove_groups) - set(add_groups)

        def updated(record: UserRecord | None) -> UserRecord | None:
            if record is None:
                return None
            identity = dict(record.identity) if record.identity is not None else None
            if identity is not None:
                groups = [g for g in identity["groups"] if g not in removed]
                identity["groups"] = groups + [g for g in added if g not in groups]
                identity["name"] = name or identity["name"]
                identity["email"] = email or identity["email"]
            candidate = dataclasses.replace(record, name=name or record.name, identity=identity)
            return dataclasses.replace(candidate, updated_at=now) if candidate != record else None

        await self._update(user_id, updated)
