"""`/api/zt_risk_scoring/integrations`: risk sharing with Okta, as Cloudflare's API has it.

A body is `{"integration_type": "Okta", "tenant_url", "reference_id", "active"}` (the type may be
left out, `active` defaults to true) and PUT overwrites all three values. `reference_id` must
name an identity provider (422 otherwise): every risk level change of a user who signed in
through it is sent to `tenant_url`. The answer adds `id`, `created_at`, `well_known_url` (what
the Okta admin enters for the Security Events Provider) and `delivery`: events waiting, the last
success and the last error. Deleting an integration forgets the events still waiting for it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.envelope import envelope, read_json
from gateway.admin.serialize import timestamp
from gateway.config import RiskIntegrationBody, parse_risk_integration
from gateway.errors import GatewayError
from gateway.runtime import Runtime
from gateway.ssf.events import WELL_KNOWN_PATH
from gateway.ssf.integrations import Integration


async def _json(rt: Runtime, integration: Integration) -> dict[str, Any]:
    waiting, success, error = await rt.transmitter.outbox.status(integration.id)
    last_error = None
    if error is not None:
        last_error = {
            "at": timestamp(error.at),
            "status": error.status,
            "err": error.err,
            "description": error.description,
        }
    return {
        "id": integration.id,
        "integration_type": "Okta",
        "tenant_url": integration.tenant_url,
        "reference_id": integration.reference_id,
        "active": integration.active,
        "created_at": timestamp(integration.created),
        "well_known_url": rt.settings.gateway.public_url + WELL_KNOWN_PATH,
        "delivery": {
            "pending": waiting,
            "last_success_at": timestamp(success) if success is not None else None,
            "last_error": last_error,
        },
    }


async def _body(request: Request, rt: Runtime) -> RiskIntegrationBody:
    body = parse_risk_integration(await read_json(request))  # 400, one item per problem
    if rt.settings.idp(body.reference_id) is None:
        raise GatewayError(
            f"reference_id: no identity provider {body.reference_id!r}",
            error="unprocessable",
            status=422,
        )
    return body


async def list_integrations(request: Request, rt: Runtime) -> Response:
    return envelope([await _json(rt, i) for i in await rt.risk_integrations.all()])


async def create_integration(request: Request, rt: Runtime) -> Response:
    integration = await rt.risk_integrations.create(await _body(request, rt))
    return envelope(await _json(rt, integration), status=201)


async def get_integration(request: Request, rt: Runtime) -> Response:
    integration = await rt.risk_integrations.get(request.path_params["integration_id"])
    return envelope(await _json(rt, integration))


async def replace_integration(request: Request, rt: Runtime) -> Response:
    integration_id = request.path_params["integration_id"]
    await rt.risk_integrations.get(integration_id)  # 404 before the body is looked at
    integration = await rt.risk_integrations.replace(integration_id, await _body(request, rt))
    return envelope(await _json(rt, integration))


async def delete_integration(request: Request, rt: Runtime) -> Response:
    integration_id = request.path_params["integration_id"]
    await rt.risk_integrations.delete(integration_id)
    await rt.transmitter.outbox.forget(integration_id)
    return envelope({"id": integration_id})
