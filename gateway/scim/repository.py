"""SCIM users and groups of one identity provider, in the gateway store, safe with many writers.

Keys, under `scim:<idp id>:`:

    user:<id>, group:<id>     the resource (JSON), the source of truth
    users, groups             creation-ordered index: "<created ms>:<id>" members, for paging
    user_name:<folded>        -> user id: the case-insensitive `userName` uniqueness claim
    user_name_lock:<folded>   held (seconds) while that claim changes
    group_name:<folded>       {group id: [version, present]}: `displayName eq` lookups
    memberships:<user id>     {group id: [version, present, display]}: a user's `groups`

Every change to a resource is a compare-and-set of its record (read, compute, write only if
nobody wrote in between, else again), so several gateway instances on one Redis never lose an
update: two PATCHes adding members to one group both land. The two JSON-map indexes are
written after the record with the record's version, and an entry only replaces an older one,
so writers that finish out of order still leave the newest truth. A `userName` is
claimed under a short lock on that name (set-if-absent with a TTL), so two creates or renames
to one name never both succeed; a claim whose user is gone or renamed is stale and is taken
over. Records are validated whole before anything is written, so a request that fails stores
nothing.

A write's effects on sessions and the registry (`Effects`) run just before the record is
written, never after: if they fail (the store blipped), nothing is written and Okta's retry
finds the change still to make, so a revocation cannot be lost to a retry that sees no change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.scim import ScimError
from gateway.scim.filter import Filter, Predicate, attribute_names, required_equality
from gateway.scim.resources import invalid_value, render, user_display_name, version_tag
from gateway.scim.schema import GROUPS, MAX_RESULTS, USERS, ResourceType
from gateway.state.store import Clock, Store

_FOREVER = 10 * 365 * 86400.0  # sets take a TTL; SCIM data lives until deleted
_ATTEMPTS = 50  # compare-and-set rounds before a write gives up (409)
_BATCH = 32  # concurrent reads when loading many records (the Redis pool holds 50)
_LOCK_TTL = 10.0  # seconds a userName lock lives if its holder dies

Record = dict[str, Any]
Compute = Callable[[Record], Awaitable[Record]]


@dataclass(frozen=True, slots=True)
class Change:
    """A write's outcome: the stored record before (None: created) and after (None: deleted)."""

    before: Record | None
    after: Record | None


Effects = Callable[[Change], Awaitable[None]]


async def _no_effects(change: Change) -> None:
    """A write with nothing to do before it."""


def attributes_of(record: Record) -> Record:
    """A stored record without what the server owns (`id`, `meta`)."""
    return {k: v for k, v in record.items() if k not in ("id", "meta")}


def _fold(text: str) -> str:
    return text.casefold()


async def _backoff(attempt: int) -> None:
    """A short random pause before another try, so racing writers spread out."""
    await asyncio.sleep(secrets.randbelow(1000) / 1e6 * min(attempt + 1, 10))


def _order_member(record: Record) -> str:
    """The creation-order index entry: creation time in ms, then the id (a stable order)."""
    created = datetime.fromisoformat(record["meta"]["created"])
    return f"{round(created.timestamp() * 1000):015d}:{record['id']}"


def _encode(record: Record) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def not_found(resource_type: ResourceType, resource_id: str) -> ScimError:
    return ScimError(404, f"{resource_type.name} {resource_id} not found.")


def check_version(record: Record, if_match: str | None) -> None:
    """RFC 7644 3.14: a write with `If-Match` applies only to that version (412 otherwise)."""
    if if_match is None or if_match.strip() == "*":
        return
    current = version_tag(record["meta"]["version"]).removeprefix("W/")
    wanted = {tag.strip().removeprefix("W/") for tag in if_match.split(",")}
    if current not in wanted:
        raise ScimError(412, "The resource has changed since that version was read.")


class ScimRepository:
    """The users and groups one identity provider provisioned."""

    def __init__(self, store: Store, idp_id: str, clock: Clock):
        self.store = store
        self.clock = clock
        self._prefix = f"scim:{idp_id}:"

    # --- keys ---------------------------------------------------------------------------

    def _key(self, resource_type: ResourceType, resource_id: str) -> str:
        return f"{self._prefix}{resource_type.name.lower()}:{resource_id}"

    def _order_key(self, resource_type: ResourceType) -> str:
        return f"{self._prefix}{resource_type.name.lower()}s"

    def _user_name_key(self, user_name: str) -> str:
        return f"{self._prefix}user_name:{_fold(user_name)}"

    def _user_name_lock_key(self, user_name: str) -> str:
        return f"{self._prefix}user_name_lock:{_fold(user_name)}"

    def _group_name_key(self, display_name: str) -> str:
        return f"{self._prefix}group_name:{_fold(display_name)}"

    def _memberships_key(self, user_id: str) -> str:
        return f"{self._prefix}memberships:{user_id}"

    # --- reading ------------------------------------------------------------------------

    async def get(self, resource_type: ResourceType, resource_id: str) -> Record | None:
        """The stored record, users with their `groups`; None when there is none."""
        raw = await self.store.get(self._key(resource_type, resource_id))
        if raw is None:
            return None
        record: Record = json.loads(raw)
        if resource_type is USERS:
            await self.add_groups([record])
        return record

    async def require(self, resource_type: ResourceType, resource_id: str) -> Record:
        record = await self.get(resource_type, resource_id)
        if record is None:
            raise not_found(resource_type, resource_id)
        return record

    async def _load(self, resource_type: ResourceType, ids: Iterable[str]) -> list[Record]:
        """The records that exist among `ids`, in that order (read a batch at a time)."""
        ids = list(ids)
        records: list[Record] = []
        for start in range(0, len(ids), _BATCH):
            batch = ids[start : start + _BATCH]
            raws = await asyncio.gather(
                *(self.store.get(self._key(resource_type, i)) for i in batch)
            )
            records.extend(json.loads(raw) for raw in raws if raw is not None)
        return records

    async def add_groups(self, users: list[Record]) -> None:
        """Fill in each user's read-only `groups` (RFC 7643 4.1.2) from their memberships."""
        for start in range(0, len(users), _BATCH):
            batch = users[start : start + _BATCH]
            raws = await asyncio.gather(
                *(self.store.get(self._memberships_key(u["id"])) for u in batch)
            )
            for user, raw in zip(batch, raws, strict=True):
                entries = json.loads(raw) if raw is not None else {}
                groups = [
                    {"value": group_id, "display": entry[2], "type": "direct"}
                    for group_id, entry in sorted(entries.items())
                    if entry[1]
                ]
                if groups:
                    user["groups"] = groups

    async def page(
        self,
        resource_type: ResourceType,
        query: tuple[Filter, Predicate] | None,
        start_index: int,
        count: int,
    ) -> tuple[int, list[Record]]:
        """(totalResults, the records from `start_index` (1-based), at most `count`), in
        creation order then id: a stable order for paging (RFC 7644 3.4.2.4)."""
        first = max(start_index, 1) - 1
        if query is None:
            ids = await self._ordered_ids(resource_type)
            records = await self._load(resource_type, ids[first : first + count])
            if resource_type is USERS:
                await self.add_groups(records)
            return len(ids), records
        node, predicate = query
        candidates = await self._candidates(resource_type, node)
        needs_groups = resource_type is USERS and "groups" in attribute_names(node)
        if needs_groups:
            await self.add_groups(candidates)
        matched = sorted(
            (r for r in candidates if predicate(r)), key=lambda r: (r["meta"]["created"], r["id"])
        )
        page = matched[first : first + count]
        if resource_type is USERS and not needs_groups:
            await self.add_groups(page)
        return len(matched), page

    async def provisioned(
        self,
        resource_type: ResourceType,
        base_url: str,
        start_index: int = 1,
        count: int = MAX_RESULTS,
    ) -> tuple[int, list[dict[str, Any]]]:
        """The provisioned users or groups, as SCIM returns them (the admin API's listing):
        (how many there are, one page of them)."""
        total, records = await self.page(resource_type, None, start_index, count)
        return total, [render(resource_type, r, base_url) for r in records]

    async def _ordered_ids(self, resource_type: ResourceType) -> list[str]:
        members = await self.store.set_members(self._order_key(resource_type))
        return [member.partition(":")[2] for member in sorted(members)]

    async def _candidates(self, resource_type: ResourceType, node: Filter) -> list[Record]:
        """What a filter can match: from an index when it fixes the name, else everything."""
        if resource_type is USERS:
            user_name = required_equality(node, USERS, "userName")
            if user_name is not None:
                found = await self.user_by_name(user_name)
                return [found] if found is not None else []
        else:
            display_name = required_equality(node, GROUPS, "displayName")
            if display_name is not None:
                entries = await self._map(self._group_name_key(display_name))
                ids = sorted(i for i, entry in entries.items() if entry[1])
                return await self._load(GROUPS, ids)
        return await self._load(resource_type, await self._ordered_ids(resource_type))

    async def user_by_name(self, user_name: str) -> Record | None:
        """The user whose `userName` equals this one case-insensitively (without `groups`)."""
        raw_id = await self.store.get(self._user_name_key(user_name))
        if raw_id is None:
            return None
        found = await self._load(USERS, [raw_id.decode()])
        if not found or _fold(found[0]["userName"]) != _fold(user_name):
            return None  # a stale claim: the user is gone or renamed
        return found[0]

    async def groups_of(self, user_id: str) -> list[str]:
        """The ids of the groups a user is a member of."""
        entries = await self._map(self._memberships_key(user_id))
        return sorted(i for i, entry in entries.items() if entry[1])

    # --- creating -----------------------------------------------------------------------

    def _timestamp(self) -> str:
        """Now as an RFC 7643 2.3.5 dateTime, in UTC, to the millisecond."""
        moment = datetime.fromtimestamp(self.clock(), UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    async def create(
        self,
        resource_type: ResourceType,
        attributes: Record,
        effects: Effects = _no_effects,
    ) -> Record:
        """Store a new resource with a server-assigned id; ScimError 409 `uniqueness` for a
        `userName` another user has in any letter case."""
        if resource_type is GROUPS:
            attributes = {**attributes, "members": await self._members(attributes, [])}
            if not attributes["members"]:
                del attributes["members"]
        created = self._timestamp()
        record = {
            **attributes,
            "id": str(uuid.uuid4()),
            "meta": {"created": created, "lastModified": created, "version": 1},
        }
        key = self._key(resource_type, record["id"])
        if resource_type is USERS:
            async with self._user_name_lock(record["userName"]):
                await self._check_user_name_free(record["userName"], record["id"])
                await effects(Change(None, record))
                # The record, then the claim: a claim always has its record.
                await self.store.set(key, _encode(record))
                await self.store.set(self._user_name_key(record["userName"]), record["id"].encode())
        else:
            await effects(Change(None, record))
            await self.store.set(key, _encode(record))
            await self._index_group(None, record)
        # The order index last: the resource is listed once it is complete.
        await self.store.add_to_set(
            self._order_key(resource_type), _order_member(record), ttl=_FOREVER
        )
        return record

    @contextlib.asynccontextmanager
    async def _user_name_lock(self, user_name: str) -> AsyncIterator[None]:
        """Hold the lock on a userName while its claim is checked and changed."""
        key, token = self._user_name_lock_key(user_name), secrets.token_bytes(16)
        for attempt in range(_ATTEMPTS):
            if await self.store.set_if_absent(key, token, ttl=_LOCK_TTL):
                break
            await _backoff(attempt)
        else:
            raise ScimError(409, f"userName {user_name!r} is being changed; try again.")
        try:
            yield
        finally:
            await self.store.compare_and_set(key, token, None)

    async def _check_user_name_free(self, user_name: str, user_id: str) -> None:
        """ScimError 409 uniqueness unless the name is unclaimed, ours, or held by a claim
        whose user is gone or renamed (RFC 7644 3.3: userName is unique). Under the lock."""
        holder = await self.store.get(self._user_name_key(user_name))
        if holder is None or holder.decode() == user_id:
            return
        owner = await self.store.get(self._key(USERS, holder.decode()))
        if owner is not None and _fold(json.loads(owner)["userName"]) == _fold(user_name):
            raise ScimError(409, f"userName {user_name!r} is already taken.", "uniqueness")

    async def _release_user_name(self, user_name: str, user_id: str) -> None:
        """Drop a claim that is still this user's (a tidy-up: a stale claim is harmless)."""
        await self.store.compare_and_set(self._user_name_key(user_name), user_id.encode(), None)

    async def _members(self, new: Record, old: list[Record]) -> list[Record]:
        """A group's members as stored: each new one checked to be a user of this IdP and
        given its `display`; ScimError 400 invalidValue naming an unknown one."""
        for member in new.get("members", []):
            if not isinstance(member.get("value"), str):
                raise invalid_value("Each member needs a `value`: the id of a user.")
        known = {m["value"]: m for m in old}
        added = [m["value"] for m in new.get("members", []) if m["value"] not in known]
        users = {u["id"]: u for u in await self._load(USERS, added)}
        missing = [i for i in added if i not in users]
        if missing:
            raise invalid_value(f"No user with id {missing[0]!r} to make a member.")
        members = []
        for member in new.get("members", []):
            value = member["value"]
            user = users.get(value)
            display = user_display_name(user) if user else known[value].get("display", "")
            members.append({"value": value, "display": display, "type": "User"})
        return members

    # --- updating -----------------------------------------------------------------------

    async def update(
        self,
        resource_type: ResourceType,
        resource_id: str,
        compute: Compute,
        if_match: str | None = None,
        effects: Effects = _no_effects,
    ) -> Change:
        """Apply `compute` (current record -> new attributes) with compare-and-set, retrying
        when another writer came first. `compute` raises to refuse: nothing is then written."""
        key = self._key(resource_type, resource_id)
        for attempt in range(_ATTEMPTS):
            raw = await self.store.get(key)
            if raw is None:
                raise not_found(resource_type, resource_id)
            current: Record = json.loads(raw)
            check_version(current, if_match)
            attributes = await compute(current)
            if resource_type is GROUPS:
                old = current.get("members", [])
                attributes = {**attributes, "members": await self._members(attributes, old)}
                if not attributes["members"]:
                    del attributes["members"]
            if attributes == attributes_of(current):
                # Nothing changes and no new version; the effects still run, so a repeated
                # deactivation cuts sessions made since the first.
                await effects(Change(current, current))
                return Change(current, current)
            meta = current["meta"]
            new = {
                **attributes,
                "id": resource_id,
                "meta": {**meta, "lastModified": self._timestamp(), "version": meta["version"] + 1},
            }
            renamed = resource_type is USERS and _fold(new["userName"]) != _fold(
                current["userName"]
            )
            await effects(Change(current, new))
            if renamed:
                written = await self._write_renamed(key, raw, new)
            else:
                written = await self.store.compare_and_set(key, raw, _encode(new))
            if written:
                if renamed:
                    await self._release_user_name(current["userName"], resource_id)
                if resource_type is GROUPS:
                    await self._index_group(current, new)
                return Change(current, new)
            await _backoff(attempt)
        raise ScimError(409, "The resource is being changed by other requests; try again.")

    async def _write_renamed(self, key: str, raw: bytes, new: Record) -> bool:
        """Compare-and-set a user whose userName changes, claiming the new name first (under
        its lock, and given back if the write loses the race)."""
        claim = self._user_name_key(new["userName"])
        async with self._user_name_lock(new["userName"]):
            await self._check_user_name_free(new["userName"], new["id"])
            previous = await self.store.get(claim)
            await self.store.set(claim, new["id"].encode())
            if await self.store.compare_and_set(key, raw, _encode(new)):
                return True
            if previous is None:
                await self.store.compare_and_set(claim, new["id"].encode(), None)
            else:
                await self.store.set(claim, previous)
            return False

    async def delete(
        self,
        resource_type: ResourceType,
        resource_id: str,
        if_match: str | None = None,
        effects: Effects = _no_effects,
    ) -> Record:
        """Delete a resource (RFC 7644 3.6); a deleted user leaves every group it was in."""
        key = self._key(resource_type, resource_id)
        for attempt in range(_ATTEMPTS):
            raw = await self.store.get(key)
            if raw is None:
                raise not_found(resource_type, resource_id)
            current: Record = json.loads(raw)
            check_version(current, if_match)
            await effects(Change(current, None))
            if await self.store.compare_and_set(key, raw, None):
                break
            await _backoff(attempt)
        else:
            raise ScimError(409, "The resource is being changed by other requests; try again.")
        await self.store.remove_from_set(self._order_key(resource_type), _order_member(current))
        if resource_type is USERS:
            await self._release_user_name(current["userName"], resource_id)
            for group_id in await self.groups_of(resource_id):
                await self._drop_member(group_id, resource_id)
            await self.store.delete(self._memberships_key(resource_id))
        else:
            gone = {
                **current,
                "meta": {**current["meta"], "version": current["meta"]["version"] + 1},
            }
            await self._index_group(current, gone, deleted=True)
        return current

    async def _drop_member(self, group_id: str, user_id: str) -> None:
        async def without(group: Record) -> Record:
            attributes = attributes_of(group)
            attributes["members"] = [m for m in group.get("members", []) if m["value"] != user_id]
            return attributes

        try:
            await self.update(GROUPS, group_id, without)
        except ScimError as exc:
            if exc.status != 404:
                raise

    # --- the versioned indexes ----------------------------------------------------------

    async def _map(self, key: str) -> dict[str, list[Any]]:
        raw = await self.store.get(key)
        return json.loads(raw) if raw is not None else {}

    async def _put_entry(self, key: str, member: str, entry: list[Any]) -> None:
        """Set `member`'s entry ([version, ...]) in the JSON map at `key`, unless the map
        already holds a newer version of it: writers finishing out of order keep the newest."""
        while True:
            raw = await self.store.get(key)
            entries = json.loads(raw) if raw is not None else {}
            held = entries.get(member)
            if held is not None and held[0] >= entry[0]:
                return
            entries[member] = entry
            if await self.store.compare_and_set(key, raw, _encode(entries)):
                return

    async def _index_group(
        self, before: Record | None, after: Record, *, deleted: bool = False
    ) -> None:
        """Bring the name index and the members' memberships up to `after`'s version."""
        version, group_id = after["meta"]["version"], after["id"]
        name = after["displayName"]
        old_name = before["displayName"] if before is not None else None
        if old_name is not None and _fold(old_name) != _fold(name):
            await self._put_entry(self._group_name_key(old_name), group_id, [version, False])
        await self._put_entry(self._group_name_key(name), group_id, [version, not deleted])
        now = {m["value"] for m in after.get("members", [])} if not deleted else set()
        was = {m["value"] for m in (before or {}).get("members", [])}
        renamed = old_name is not None and old_name != name
        touched = (now ^ was) | (now if renamed else set())
        for start in range(0, len(touched), _BATCH):
            await asyncio.gather(
                *(
                    self._put_entry(
                        self._memberships_key(user_id), group_id, [version, user_id in now, name]
                    )
                    for user_id in sorted(touched)[start : start + _BATCH]
                )
            )
