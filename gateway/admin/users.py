"""`/api/users`, `/api/revoke_user`, `/api/logs/scim`, `/api/logs/access`, `/api/logs/audit`:
the user registry, what it allows, what happened to users, and who changed what.

Users are the registry's records (SPEC 5), one per person and identity provider, in
Cloudflare's shape. `revoke_user` takes an email and ends every session of every record with
that email (one person may have signed in through several IdPs); revocation is in the store,
so the next request on any instance finds no session. The SCIM provisioning log is read newest
first, of all IdPs or of one (`?identity_provider_id=`, a deleted one's included); with
`?auth_failures=true`, the record of SCIM requests refused for a wrong secret or an unknown IdP
instead, in the same shape with the client's address and the reason added. The access log is
read newest first: sign-ins (allowed, denied or failed) and refused requests, each with who,
which app, the policy and the rule (`state/access_log.py` says why allowed requests are not in
it). The audit log is read newest first: every change made through the API or the console
(`state/audit_log.py`). Revocation and the logs are the service layer's (`gateway/services/`),
which the console calls too.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.envelope import envelope, page_of, query_int, read_json
from gateway.admin.serialize import session_json
from gateway.errors import ConfigError, GatewayError, NotFoundError
from gateway.runtime import Runtime
from gateway.services import ADMIN_API, logs, users
from gateway.state import access_log, audit_log
from gateway.state.provisioning_log import LIMIT
from gateway.state.registry import UserRecord

USERS_PER_PAGE = 50
MAX_USERS_PER_PAGE = 1000
DEFAULT_LOG_ENTRIES = 100


async def _record(rt: Runtime, user_id: str) -> UserRecord:
    record = await rt.registry.get(user_id)
    if record is None:
        raise NotFoundError(f"No user with id {user_id!r}.")
    return record


async def list_users(request: Request, rt: Runtime) -> Response:
    page = page_of(request, default_size=USERS_PER_PAGE, max_size=MAX_USERS_PER_PAGE)
    records = await rt.registry.all()
    shown = records[page.start : page.start + page.per_page]
    return envelope([r.public() for r in shown], result_info=page.info(len(shown), len(records)))


async def last_seen_identity(request: Request, rt: Runtime) -> Response:
    record = await _record(rt, request.path_params["user_id"])
    if record.identity is None:
        raise NotFoundError(f"User {record.id!r} has not signed in yet.")
    return envelope(record.identity)


async def active_sessions(request: Request, rt: Runtime) -> Response:
    record = await _record(rt, request.path_params["user_id"])
    sessions = await rt.sessions.active_sessions(record.id)
    return envelope([session_json(s, rt.app_by_id(s.app_id)) for s in sessions])


def _email(body: dict[str, Any]) -> str:
    problems = [f"{key}: unknown key" for key in body if key != "email"]
    email = body.get("email")
    clean = email.strip() if isinstance(email, str) else ""
    if email is None:
        problems.append("email: is required")
    elif not clean:
        problems.append("email: must be a non-empty string")
    if problems:
        raise ConfigError(problems)
    return clean


async def revoke_user(request: Request, rt: Runtime) -> Response:
    revoked = await users.revoke_user(rt, _email(await read_json(request)), ADMIN_API)
    return envelope(
        {"email": revoked.email, "user_ids": revoked.user_ids, "revoked_sessions": revoked.sessions}
    )


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false")
    if raw not in ("true", "false"):
        raise GatewayError(f"{name}: must be true or false", error="invalid_query", status=400)
    return raw == "true"


async def scim_log(request: Request, rt: Runtime) -> Response:
    limit = query_int(request, "limit", DEFAULT_LOG_ENTRIES, LIMIT)
    idp_id = request.query_params.get("identity_provider_id") or None
    auth_failures = _flag(request, "auth_failures")
    return envelope(await logs.provisioning_entries(rt, idp_id, limit, auth_failures=auth_failures))


async def access_log_entries(request: Request, rt: Runtime) -> Response:
    limit = query_int(request, "limit", DEFAULT_LOG_ENTRIES, access_log.LIMIT)
    return envelope(await logs.access_entries(rt, limit))


async def audit_log_entries(request: Request, rt: Runtime) -> Response:
    limit = query_int(request, "limit", DEFAULT_LOG_ENTRIES, audit_log.LIMIT)
    return envelope(await logs.audit_entries(rt, limit))
