"""`/api/identity_providers`: Okta and OIDC identity providers, as Cloudflare's API has them.

A body is `{"name", "type", "config", "scim_config"}` and is validated by the config file's
rules and the configuration checks (`gateway/checks.py`: an Okta Admin Console URL is a 422);
the id is generated. File-defined IdPs are listed with `read_only: true` and cannot be
replaced or deleted here. An IdP that an app still names in `allowed_idps` or in a policy rule
cannot be deleted (409) until the app stops naming it.

SCIM: when a create or replace turns SCIM on, the answer carries the first SCIM secret in
`scim_config.secret`, that once; `refresh_scim_secret` makes a new one (the old one stops
working at once), also on file-defined IdPs unless the file pins the secret. The provisioned
users and groups are listed as SCIM renders them, a page at a time.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.api import commit
from gateway.admin.envelope import envelope, page_of, read_json
from gateway.admin.serialize import idp_document, idp_json, scim_base_url
from gateway.checks import check_idp, errors_in, named_idps, warnings_in
from gateway.config import IdentityProvider
from gateway.errors import ConflictError, GatewayError, NotFoundError, ReadOnlyError
from gateway.runtime import Runtime
from gateway.scim.repository import ScimRepository
from gateway.scim.schema import GROUPS, MAX_RESULTS, USERS, ResourceType
from gateway.state.catalog import Kind

KIND: Kind = "identity_providers"


def _json(rt: Runtime, idp: IdentityProvider) -> dict[str, Any]:
    return idp_json(
        idp,
        read_only=rt.catalog.read_only(KIND, idp.id),
        public_url=rt.settings.gateway.public_url,
    )


def _find(rt: Runtime, idp_id: str) -> IdentityProvider:
    idp = rt.settings.idp(idp_id)
    if idp is None:
        raise NotFoundError(f"No identity provider with id {idp_id!r}.")
    return idp


def _writable(rt: Runtime, idp_id: str) -> None:
    if rt.catalog.read_only(KIND, idp_id):
        raise ReadOnlyError(
            f"Identity provider {idp_id!r} is defined in the config file and is read-only here."
        )


async def list_identity_providers(request: Request, rt: Runtime) -> Response:
    return envelope([_json(rt, idp) for idp in rt.settings.identity_providers])


async def _with_first_secret(rt: Runtime, idp: IdentityProvider) -> dict[str, Any]:
    """The IdP's JSON; with SCIM on and no secret yet, a first one (shown this once). With SCIM
    off, no secret is kept: one that leaked cannot come back by turning SCIM on again."""
    result = _json(rt, idp)
    if not idp.scim_config.enabled:
        await rt.scim_secrets.forget(idp.id)
        return result
    secret = await rt.scim_secrets.ensure(idp)
    if secret is not None:
        result["scim_config"]["secret"] = secret
    return result


def _check(idp: IdentityProvider) -> list[str]:
    """The configuration checks (`gateway/checks.py`, as `check-config` runs them): an error is
    a 422; the warnings are returned, for the answer's `messages`."""
    findings = check_idp(idp)
    if errors_in(findings):
        raise GatewayError("; ".join(errors_in(findings)), error="unprocessable", status=422)
    return warnings_in(findings)


async def create_identity_provider(request: Request, rt: Runtime) -> Response:
    body = await read_json(request)
    document, idp = idp_document(body, str(uuid.uuid4()), stored=None)
    warnings = _check(idp)
    await commit(rt, rt.catalog.put(KIND, document))
    return envelope(await _with_first_secret(rt, idp), status=201, warnings=warnings)


async def get_identity_provider(request: Request, rt: Runtime) -> Response:
    return envelope(_json(rt, _find(rt, request.path_params["idp_id"])))


async def replace_identity_provider(request: Request, rt: Runtime) -> Response:
    idp_id = request.path_params["idp_id"]
    _writable(rt, idp_id)
    stored = await rt.catalog.document(KIND, idp_id)  # 404 before the body is looked at
    body = await read_json(request)
    document, idp = idp_document(body, idp_id, stored=stored)
    warnings = _check(idp)
    await commit(rt, rt.catalog.put(KIND, document, idp_id))
    return envelope(await _with_first_secret(rt, idp), warnings=warnings)


async def delete_identity_provider(request: Request, rt: Runtime) -> Response:
    idp_id = request.path_params["idp_id"]
    _writable(rt, idp_id)
    users = [app.id for app in rt.settings.apps if idp_id in app.allowed_idps]
    if users:
        raise ConflictError(
            f"Identity provider {idp_id!r} is in allowed_idps of app(s) "
            f"{', '.join(repr(u) for u in users)}; remove it there first."
        )
    ruled = [app.id for app in rt.settings.apps if idp_id in named_idps(app)]
    if ruled:
        raise ConflictError(
            f"Identity provider {idp_id!r} is named by policy rules of app(s) "
            f"{', '.join(repr(a) for a in ruled)}; change those rules first."
        )
    await commit(rt, rt.catalog.delete(KIND, idp_id))
    await rt.scim_secrets.forget(idp_id)
    return envelope({"id": idp_id})


async def refresh_scim_secret(request: Request, rt: Runtime) -> Response:
    idp = _find(rt, request.path_params["idp_id"])
    secret = await rt.scim_secrets.regenerate(idp)  # 409 when the file pins it
    result = _json(rt, idp)
    result["scim_config"]["secret"] = secret
    return envelope(result)


async def _provisioned(request: Request, rt: Runtime, resource_type: ResourceType) -> Response:
    idp = _find(rt, request.path_params["idp_id"])
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
