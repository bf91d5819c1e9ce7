"""`/api/identity_providers`: Okta and OIDC identity providers, as Cloudflare's API has them.

The handlers read the request and render the envelope; validation, storage, the SCIM secret
and the audit log are the service layer's (`gateway/services/identity_providers.py`), which
the console calls too. File-defined IdPs are listed with `read_only: true` and cannot be
replaced or deleted here. When a create or replace turns SCIM on, the answer carries the first
SCIM secret in `scim_config.secret`, that once; `refresh_scim_secret` makes a new one. The
provisioned users and groups are listed as SCIM renders them, a page at a time.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.envelope import envelope, page_of, read_json
from gateway.admin.serialize import scim_base_url
from gateway.runtime import Runtime
from gateway.scim.repository import ScimRepository
from gateway.scim.schema import GROUPS, MAX_RESULTS, USERS, ResourceType
from gateway.services import ADMIN_API
from gateway.services import identity_providers as service


async def list_identity_providers(request: Request, rt: Runtime) -> Response:
    return envelope([service.as_json(rt, idp) for idp in rt.settings.identity_providers])


async def create_identity_provider(request: Request, rt: Runtime) -> Response:
    saved = await service.create(rt, await read_json(request), ADMIN_API)
    return envelope(saved.result, status=201, warnings=saved.warnings)


async def get_identity_provider(request: Request, rt: Runtime) -> Response:
    return envelope(service.as_json(rt, service.find(rt, request.path_params["idp_id"])))


async def replace_identity_provider(request: Request, rt: Runtime) -> Response:
    idp_id = request.path_params["idp_id"]
    saved = await service.replace(rt, idp_id, await _body_after_checks(request, rt), ADMIN_API)
    return envelope(saved.result, warnings=saved.warnings)


async def _body_after_checks(request: Request, rt: Runtime) -> dict[str, Any]:
    """The body, read once the IdP is known to be replaceable (read-only: 403, gone: 404,
    before the body is looked at)."""
    idp_id = request.path_params["idp_id"]
    service.writable(rt, idp_id)
    await rt.catalog.document(service.KIND, idp_id)
    return await read_json(request)


async def delete_identity_provider(request: Request, rt: Runtime) -> Response:
    idp_id = request.path_params["idp_id"]
    await service.delete(rt, idp_id, ADMIN_API)
    return envelope({"id": idp_id})


async def refresh_scim_secret(request: Request, rt: Runtime) -> Response:
    result = await service.refresh_scim_secret(rt, request.path_params["idp_id"], ADMIN_API)
    return envelope(result)


async def _provisioned(request: Request, rt: Runtime, resource_type: ResourceType) -> Response:
    idp = service.find(rt, request.path_params["idp_id"])
    page = page_of(request, default_size=MAX_RESULTS, max_size=MAX_RESULTS)
    repository = ScimRepository(rt.store, idp.id, rt.clock)
    base_url = scim_base_url(rt.settings.gateway.public_url, idp.id)
    total, resources = await repository.provisioned(
        resource_type, base_url, start_index=page.start + 1, count=page.per_page
    )
    return envelope(resources, result_info=page.info(len(resources), total))


async def scim_users(request: Request, rt: Runtime) -> Response:
    return await _provisioned(request, rt, USERS)


async def scim_groups(request: Request, rt: Runtime) -> Response:
    return await _provisioned(request, rt, GROUPS)
