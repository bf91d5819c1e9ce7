"""`/api/apps`: protected applications with their policies, and revoking an app's sessions.

A body is the config file's `[[apps]]` table as JSON (policies inline). The handlers read the
request and render the envelope; validation (a domain another app serves: 409; an
`allowed_idps` entry naming no IdP, an error of the configuration checks: 422; their warnings
in the answer's `messages`), storage and the audit log are the service layer's
(`gateway/services/apps.py`), which the console calls too. Every instance serves a change
within the catalog's poll interval; this one at once.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.envelope import envelope, read_json
from gateway.runtime import Runtime
from gateway.services import ADMIN_API
from gateway.services import apps as service


async def list_apps(request: Request, rt: Runtime) -> Response:
    return envelope([service.as_json(rt, app) for app in rt.settings.apps])


async def create_app(request: Request, rt: Runtime) -> Response:
    saved = await service.create(rt, await read_json(request), ADMIN_API)
    return envelope(service.as_json(rt, saved.app), status=201, warnings=saved.warnings)


async def get_app(request: Request, rt: Runtime) -> Response:
    return envelope(service.as_json(rt, service.find(rt, request.path_params["app_id"])))


async def replace_app(request: Request, rt: Runtime) -> Response:
    app_id = request.path_params["app_id"]
    service.writable(rt, app_id)
    await rt.catalog.document(service.KIND, app_id)  # 404 before the body is looked at
    saved = await service.replace(rt, app_id, await read_json(request), ADMIN_API)
    return envelope(service.as_json(rt, saved.app), warnings=saved.warnings)


async def delete_app(request: Request, rt: Runtime) -> Response:
    app_id = request.path_params["app_id"]
    await service.delete(rt, app_id, ADMIN_API)
    return envelope({"id": app_id})


async def revoke_tokens(request: Request, rt: Runtime) -> Response:
    app_id = request.path_params["app_id"]
    revoked = await service.revoke_tokens(rt, app_id, ADMIN_API)
    return envelope({"id": app_id, "revoked_sessions": revoked})
