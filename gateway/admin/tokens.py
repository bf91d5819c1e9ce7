"""`/api/service_tokens` and `/api/keys`: machine credentials and the app-token signing keys.

A service token's secret is in the creation answer and nowhere else, ever. The signing keys are
listed by their public halves only. Validation, storage and the audit log are the service
layer's (`gateway/services/tokens.py`), which the console calls too.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.envelope import envelope, read_json
from gateway.admin.serialize import service_token_json, signing_key_json
from gateway.runtime import Runtime
from gateway.services import ADMIN_API
from gateway.services import tokens as service


async def list_service_tokens(request: Request, rt: Runtime) -> Response:
    return envelope([service_token_json(t) for t in await rt.service_tokens.all()])


async def create_service_token(request: Request, rt: Runtime) -> Response:
    token, secret = await service.create_service_token(rt, await read_json(request), ADMIN_API)
    return envelope({**service_token_json(token), "client_secret": secret}, status=201)


async def delete_service_token(request: Request, rt: Runtime) -> Response:
    token_id = request.path_params["token_id"]
    await service.delete_service_token(rt, token_id, ADMIN_API)
    return envelope({"id": token_id})


async def _keys(rt: Runtime) -> list[dict[str, Any]]:
    keys = await rt.signing_keys.published()
    return [signing_key_json(k, current=k.retired is None) for k in keys]


async def list_keys(request: Request, rt: Runtime) -> Response:
    return envelope(await _keys(rt))


async def rotate_keys(request: Request, rt: Runtime) -> Response:
    await service.rotate_keys(rt, ADMIN_API)
    return envelope(await _keys(rt))
