"""`/api/apps`: protected applications with their policies, and revoking an app's sessions.

A body is the config file's `[[apps]]` table as JSON (policies inline) and is validated by the
same rules; the id, and so the AUD tag, is generated. Against the other apps and IdPs: a domain
another app already serves is a conflict (409), an `allowed_idps` entry naming no IdP is
unprocessable (422), and so is an error of the configuration checks (`gateway/checks.py`: a rule
naming an IdP that does not exist); their warnings (a group nobody has been seen in, no
policies) are accepted and listed in the answer's `messages`. Every instance serves a change
within the catalog's poll interval; this one at once.

`revoke_tokens` deletes every app session of the app, and of the apps sharing its host (their
cookie is one and the same), so the next request on any instance signs in again through the
team domain, where the policies are evaluated afresh. As at Cloudflare, the team-domain session
itself survives; `POST /api/revoke_user` ends that. An app served on the team host itself has
no app sessions (its cookie is the team-domain session), so there it revokes nothing.
"""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.api import commit
from gateway.admin.envelope import envelope, read_json
from gateway.admin.serialize import app_document, app_json
from gateway.checks import check_app, errors_in, known_groups, warnings_in
from gateway.config import App, same_domain
from gateway.errors import ConflictError, GatewayError, NotFoundError, ReadOnlyError
from gateway.runtime import Runtime
from gateway.state.catalog import Kind

KIND: Kind = "apps"


def _find(rt: Runtime, app_id: str) -> App:
    app = rt.app_by_id(app_id)
    if app is None:
        raise NotFoundError(f"No app with id {app_id!r}.")
    return app


def _writable(rt: Runtime, app_id: str) -> None:
    if rt.catalog.read_only(KIND, app_id):
        raise ReadOnlyError(f"App {app_id!r} is defined in the config file and is read-only here.")


async def _check(rt: Runtime, app: App) -> list[str]:
    """The checks that involve other objects, with messages that name them, and the
    configuration checks (`gateway/checks.py`, as `check-config` runs them): a clash is a 409,
    an error a 422; the warnings are returned, for the answer's `messages`."""
    for other in rt.settings.apps:
        if other.id != app.id and same_domain(other.domain, app.domain):
            raise ConflictError(f"domain: {app.domain!r} is already served by app {other.id!r}.")
    idps = rt.settings.identity_providers
    known = {idp.id for idp in idps}
    problems = [
        f"allowed_idps[{i}]: no identity provider {idp_id!r}"
        for i, idp_id in enumerate(app.allowed_idps)
        if idp_id not in known
    ]
    groups = await known_groups(rt.store, known)
    findings = check_app(app, idps, groups)
    problems += errors_in(findings)
    if problems:
        raise GatewayError("; ".join(problems), error="unprocessable", status=422)
    return warnings_in(findings)


async def list_apps(request: Request, rt: Runtime) -> Response:
    return envelope(
        [app_json(app, read_only=rt.catalog.read_only(KIND, app.id)) for app in rt.settings.apps]
    )


async def create_app(request: Request, rt: Runtime) -> Response:
    body = await read_json(request)
    document, app = app_document(body, str(uuid.uuid4()), rt.settings.gateway.session_duration)
    warnings = await _check(rt, app)
    await commit(rt, rt.catalog.put(KIND, document))
    return envelope(app_json(app, read_only=False), status=201, warnings=warnings)


async def get_app(request: Request, rt: Runtime) -> Response:
    app = _find(rt, request.path_params["app_id"])
    return envelope(app_json(app, read_only=rt.catalog.read_only(KIND, app.id)))


async def replace_app(request: Request, rt: Runtime) -> Response:
    app_id = request.path_params["app_id"]
    _writable(rt, app_id)
    await rt.catalog.document(KIND, app_id)  # 404 before the body is looked at
    body = await read_json(request)
    document, app = app_document(body, app_id, rt.settings.gateway.session_duration)
    warnings = await _check(rt, app)
    await commit(rt, rt.catalog.put(KIND, document, app_id))
    return envelope(app_json(app, read_only=False), warnings=warnings)


async def delete_app(request: Request, rt: Runtime) -> Response:
    app_id = request.path_params["app_id"]
    _writable(rt, app_id)
    await commit(rt, rt.catalog.delete(KIND, app_id))
    await rt.sessions.revoke_app(app_id)  # nothing left for them to open; don't keep them
    return envelope({"id": app_id})


async def revoke_tokens(request: Request, rt: Runtime) -> Response:
    app = _find(rt, request.path_params["app_id"])
    sharing = [a.id for a in rt.settings.apps if a.host == app.host]
    revoked = 0
    for app_id in sharing:
        revoked += await rt.sessions.revoke_app(app_id)
    return envelope({"id": app.id, "revoked_sessions": revoked})
