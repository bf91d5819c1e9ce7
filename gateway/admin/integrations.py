"""`/api/zt_risk_scoring/integrations`: risk sharing with Okta, as Cloudflare's API has it.

A body is `{"integration_type": "Okta", "tenant_url", "reference_id", "active"}` (the type may be
left out, `active` defaults to true) and PUT overwrites all three values. `reference_id` must
name an identity provider (422 otherwise): every risk level change of a user who signed in
through it is sent to `tenant_url`. The answer adds `id`, `created_at`, `well_known_url` (what
the Okta admin enters for the Security Events Provider) and `delivery`: events waiting, the last
success and the last error. Deleting an integration forgets the events still waiting for it, and
so does a new `tenant_url` (they are addressed to the old org). The changes go through
`gateway/services/risk.py`, as the console's do.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.envelope import envelope, read_json
from gateway.runtime import Runtime
from gateway.services import ADMIN_API
from gateway.services import risk as service
from gateway.services.risk import integration_json


async def list_integrations(request: Request, rt: Runtime) -> Response:
    return envelope([await integration_json(rt, i) for i in await rt.risk_integrations.all()])


async def create_integration(request: Request, rt: Runtime) -> Response:
    integration = await service.create_integration(rt, await read_json(request), ADMIN_API)
    return envelope(await integration_json(rt, integration), status=201)


async def get_integration(request: Request, rt: Runtime) -> Response:
    integration = await rt.risk_integrations.get(request.path_params["integration_id"])
    return envelope(await integration_json(rt, integration))


async def replace_integration(request: Request, rt: Runtime) -> Response:
    integration_id = request.path_params["integration_id"]
    await rt.risk_integrations.get(integration_id)  # 404 before the body is looked at
    body = await read_json(request)
    integration = await service.replace_integration(rt, integration_id, body, ADMIN_API)
    return envelope(await integration_json(rt, integration))


async def delete_integration(request: Request, rt: Runtime) -> Response:
    integration_id = request.path_params["integration_id"]
    await service.delete_integration(rt, integration_id, ADMIN_API)
    return envelope({"id": integration_id})
