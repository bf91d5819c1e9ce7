"""`/console/users` and `/console/users/<user uuid>`: the user registry (SPEC 5), as the gateway
sees each person.

The list searches the registry by email (a part of it, any letter case). A user's page shows
their last-seen identity (the SPEC 4 document, as `get-identity` returns it), their groups,
their active sessions, their risk level and events, their SCIM state; it revokes their sessions
and resets their risk: a confirmation page first
(`confirm.html`, as every destructive console action), then the same service as
`POST /api/revoke_user` (every session of every record with that email, on every instance by
their next request) or `POST /api/zt_risk_scoring/{user_id}/reset`.
"""

from __future__ import annotations

import json

from starlette.responses import Response

from gateway.admin.serialize import timestamp
from gateway.console.context import Console
from gateway.errors import NotFoundError
from gateway.services import risk as risk_service
from gateway.services import users as user_service
from gateway.state.registry import UserRecord

SHOWN = 100  # users listed at most; the search narrows it


async def _record(console: Console) -> UserRecord:
    user_id = console.request.path_params["user_id"]
    record = await console.rt.registry.get(user_id)
    if record is None:
        raise NotFoundError(f"No user with id {user_id!r}.")
    return record


def matching(records: list[UserRecord], query: str) -> list[UserRecord]:
    """The records whose email contains `query`, in any letter case."""
    folded = query.strip().casefold()
    return [r for r in records if folded in r.email.casefold()]


async def list_page(console: Console) -> Response:
    query = console.request.query_params.get("q", "")
    found = matching(await console.rt.registry.all(), query)
    return console.render(
        "users.html",
        title="Users",
        query=query,
        users=found[:SHOWN],
        more=max(0, len(found) - SHOWN),
        idp_names={idp.id: idp.name for idp in console.rt.settings.identity_providers},
        when=_when,
    )


def _when(epoch: float | None) -> str:
    return "never" if epoch is None else timestamp(epoch)


async def show(console: Console) -> Response:
    rt = console.rt
    record = await _record(console)
    sessions = []
    for session in await rt.sessions.active_sessions(record.id):
        app = rt.app_by_id(session.app_id) if session.app_id else None
        sessions.append(
            {
                "where": app.name if app is not None else "Team domain (sign-in)",
                "kind": session.kind,
                "created": timestamp(session.created),
                "expires": timestamp(session.expires),
            }
        )
    identity = record.identity
    risk = await rt.risk.user(record.id)
    revoked = console.request.query_params.get("revoked")
    return console.render(
        "user.html",
        title=record.email,
        user=record,
        idp=rt.settings.idp(record.idp_id),
        identity_json=json.dumps(identity, indent=2, sort_keys=True) if identity else "",
        groups=list((identity or {}).get("groups", [])),
        sessions=sessions,
        revoked=revoked if revoked is not None and revoked.isdigit() else None,
        risk_reset=console.request.query_params.get("reset") == "1",
        risk_level=risk.level_at(rt.clock()),
        risk_events=risk.events,
        risk_reset_at=_when(risk.reset_at) if risk.reset_at else "",
        when=_when,
    )


async def revoke(console: Console) -> Response:
    """Revoke the user's sessions: first a confirmation page, then (confirmed) the revocation."""
    rt = console.rt
    record = await _record(console)
    form = await console.read_form()
    if form.get("confirm") != "yes":
        live = len(await rt.sessions.active_sessions(record.id))
        return console.confirm(
            title=f"Revoke the sessions of {record.email}?",
            question=f"Revoke every session of {record.email}?",
            consequence=f"Their {live} active session(s) end on every application and every "
            "instance of the gateway, and so do those of any other login method they used "
            "with this email. Their next request signs in again, where the policies are "
            "judged afresh.",
            button="Revoke sessions",
            back=f"/console/users/{record.id}",
        )
    revoked = await user_service.revoke_user(rt, record.email, console.actor)
    return console.redirect(f"/console/users/{record.id}?revoked={revoked.sessions}")


async def reset_risk(console: Console) -> Response:
    """Reset the user's risk to low: first a confirmation page, then (confirmed) the reset,
    through the same service as `POST /api/zt_risk_scoring/{user_id}/reset`."""
    rt = console.rt
    record = await _record(console)
    form = await console.read_form()
    if form.get("confirm") != "yes":
        level = (await rt.risk.user(record.id)).level_at(rt.clock())
        return console.confirm(
            title=f"Reset the risk of {record.email}?",
            question=f"Reset the risk level of {record.email} (now {level}) to low?",
            consequence="Their risk events are cleared, and policies with a user risk score "
            "rule judge them as low from their next request, on every instance.",
            button="Reset risk",
            back=f"/console/users/{record.id}#risk",
        )
    await risk_service.reset(rt, record.id, console.actor)
    return console.redirect(f"/console/users/{record.id}?reset=1#risk")
