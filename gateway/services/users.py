"""Users of the registry: ending a person's sessions (SPEC 5, 7).

`revoke_user` takes an email and ends every session of every registry record with that email
(one person may have signed in through several IdPs); revocation is in the store, so the next
request on any instance finds no session.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import NotFoundError
from gateway.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Revoked:
    email: str
    user_ids: list[str]
    sessions: int


async def revoke_user(rt: Runtime, email: str, actor: str) -> Revoked:
    records = await rt.registry.by_email(email)
    if not records:
        raise NotFoundError(f"No user with email {email!r}.")
    revoked = 0
    for record in records:
        revoked += await rt.sessions.revoke_user(record.id)
    await rt.audit_log.record(actor, "revoke_sessions", "user", records[0].id, email)
    return Revoked(email, [r.id for r in records], revoked)
