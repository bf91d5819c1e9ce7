"""What provisioning does to people who signed in, per the IdP's `scim_config` (SPEC 6).

- A user deactivated (`active: false`) or deleted: with `user_deprovision`, every session of
  theirs is revoked, so their next request on any app goes to sign in; with `seat_deprovision`
  their registry seat goes too. This holds whatever the user's previous state: a repeated
  deactivation (a retry after a failure) revokes again.
- `identity_update_behavior`:
  `automatic`: user changes (name, email) and group changes (membership, a rename, a delete)
  update the registry identity; sessions keep running.
  `reauth`: a change of a user's groups (added, removed, or a group of theirs renamed or
  deleted: its name is what policies match) revokes that user's sessions, and so does a
  change of their email; other attribute changes do not.
  `no_action`: nothing.
A SCIM user is a signed-in person when `userName` = their email or `externalId` = their
`sub`, or when it was found to be them before a rename (`Registry.matching`); the registry also
keeps the SCIM facts on their record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from gateway.config import IdentityProvider
from gateway.identity import user_uuid_for
from gateway.scim.repository import Change, ScimRepository
from gateway.scim.resources import user_display_name, user_email
from gateway.scim.schema import USERS
from gateway.state.registry import Registry, UserRecord
from gateway.state.sessions import SessionManager

log = logging.getLogger("gateway.scim")


def _member_ids(group: dict[str, Any] | None) -> set[str]:
    return {m["value"] for m in group.get("members", [])} if group is not None else set()


class ProvisioningEffects:
    def __init__(
        self,
        idp: IdentityProvider,
        repository: ScimRepository,
        registry: Registry,
        sessions: SessionManager,
    ):
        self.idp = idp
        self.config = idp.scim_config
        self.repository = repository
        self.registry = registry
        self.sessions = sessions

    async def user_changed(self, change: Change) -> None:
        """After a user was created, replaced, patched or deleted."""
        before, after = change.before, change.after
        if after is None:
            assert before is not None  # noqa: S101 - a change has a before or an after
            people = await self.registry.unprovisioned(self.idp.id, before)
            await self._deprovision(before, people)
            return
        people = await self.registry.provisioned(self.idp.id, after, before)
        if after.get("active") is False:
            await self._deprovision(after, people)
            return
        name, email = user_display_name(after), user_email(after)
        behavior = self.config.identity_update_behavior
        if behavior == "automatic":
            if before is None or (name, email) != (
                user_display_name(before),
                user_email(before),
            ):
                for person in people:
                    await self.registry.update_identity(person.id, name=name, email=email)
        elif behavior == "reauth" and before is not None:
            if email.casefold() != user_email(before).casefold():
                await self._revoke(after, people, "email changed")

    async def group_changed(self, change: Change) -> None:
        """After a group was created, replaced, patched or deleted."""
        before, after = change.before, change.after
        was, now = _member_ids(before), _member_ids(after)
        old_name = before["displayName"] if before is not None else ""
        new_name = after["displayName"] if after is not None else ""
        renamed = bool(old_name) and bool(new_name) and old_name != new_name
        added, removed, kept = now - was, was - now, now & was
        if after is None:
            removed, kept = was, set()
        behavior = self.config.identity_update_behavior
        if behavior == "automatic":
            await self._update_groups(added, add=[new_name], remove=[])
            await self._update_groups(removed, add=[], remove=[old_name])
            if renamed:
                await self._update_groups(kept, add=[new_name], remove=[old_name])
        elif behavior == "reauth":
            affected = added | removed | (kept if renamed else set())
            for user, people in await self._people(affected):
                await self._revoke(user, people, f"groups changed ({new_name or old_name})")

    async def _update_groups(self, user_ids: set[str], add: list[str], remove: list[str]) -> None:
        for _, people in await self._people(user_ids):
            for person in people:
                await self.registry.update_identity(person.id, add_groups=add, remove_groups=remove)

    async def _people(
        self, user_ids: Iterable[str]
    ) -> list[tuple[dict[str, Any], list[UserRecord]]]:
        """Each SCIM user (that still exists) with the signed-in people they are."""
        found = []
        for user_id in sorted(user_ids):
            user = await self.repository.get(USERS, user_id)
            if user is not None:
                found.append((user, await self.registry.matching(self.idp.id, user)))
        return found

    async def _deprovision(self, user: dict[str, Any], people: list[UserRecord]) -> None:
        if not self.config.user_deprovision:
            return
        await self._revoke(user, people, "deprovisioned")
        if self.config.seat_deprovision:
            for person in people:
                await self.registry.remove_seat(person.id)

    async def _revoke(self, user: dict[str, Any], people: list[UserRecord], why: str) -> None:
        """Revoke every session of these people; by `externalId` too, which names the uuid
        even when the registry has no record of them."""
        uuids = {p.id for p in people}
        if user.get("externalId"):
            uuids.add(user_uuid_for(self.idp.id, user["externalId"]))
        for user_uuid in sorted(uuids):
            revoked = await self.sessions.revoke_user(user_uuid)
            log.info(
                "scim %s: sessions revoked idp=%s scim_user=%s user=%s sessions=%d",
                why,
                self.idp.id,
                user["id"],
                user_uuid,
                revoked,
            )
