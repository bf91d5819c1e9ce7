"""The SCIM 2.0 HTTP surface: `/populations/<idp-id>/scim/v2/...` on the team host (SPEC 6).

Every request goes through `_serve`: the identity provider must exist and have SCIM enabled
(else 404), the bearer secret must verify (else 401), a body is read in chunks and refused past
1 MiB (413) before any parsing, and every failure, ours or the store's, becomes the RFC 7644
3.12 error document in `application/scim+json`. A request refused for its identity provider or
its secret is counted (metric, and per client network: 429 past `auth_limit`'s cap) and kept in
the failure record; every other request, whatever its outcome, is written to the provisioning
log. Writes run their effects on sessions and the registry (effects.py) after the store has the
change. A query at the server root (`GET /`, `POST /.search`) searches users and groups.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from gateway.errors import GatewayError, RateLimitedError, StoreUnavailableError
from gateway.runtime import Runtime
from gateway.scim import ERROR, LIST_RESPONSE, SEARCH_REQUEST, ScimError, auth_limit
from gateway.scim.effects import ProvisioningEffects
from gateway.scim.filter import Filter, Predicate, compile_filter, compile_filters, parse_filter
from gateway.scim.patch import apply_patch
from gateway.scim.repository import Effects, Record, ScimRepository, attributes_of
from gateway.scim.resources import project, render, validate_resource, version_tag
from gateway.scim.schema import (
    GROUPS,
    MAX_RESULTS,
    RESOURCE_TYPES,
    SCHEMAS,
    USERS,
    ResourceType,
    resource_type_document,
    schema_document,
    service_provider_config,
)
from gateway.scim.secret import presented_secret
from gateway.web.clientinfo import client_info

log = logging.getLogger("gateway.scim")

MAX_BODY = 1024 * 1024  # bytes: larger requests are refused (413) before they are parsed
DEFAULT_COUNT = 100  # resources per page when the client does not say (Okta asks for 100)
MEDIA_TYPE = "application/scim+json"
_ACCEPTED_TYPES = ("application/scim+json", "application/json")


@dataclass
class _Call:
    """One SCIM request in progress, and what the provisioning log will say of it."""

    request: Request
    base_url: str
    repository: ScimRepository
    effects: ProvisioningEffects
    resource_id: str = ""
    resource_name: str = ""

    def param(self, name: str) -> str:
        return self.request.query_params.get(name, "")

    def concerns(self, record: Record) -> None:
        self.resource_id = record["id"]
        self.resource_name = record.get("userName") or record.get("displayName") or ""


Handler = Callable[[_Call], Awaitable[Response]]
Handlers = dict[str, Handler]  # by HTTP method


def scim_response(
    document: dict[str, Any] | None, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = b"" if document is None else json.dumps(document, ensure_ascii=False).encode()
    response = Response(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def scim_invalid_path() -> Response:
    """The answer to a SCIM path the gateway refuses before routing it (a "." or ".." segment
    or a backslash: `routing.is_ambiguous_path`), in the SCIM error format."""
    return scim_error_response(ScimError(400, "Bad request: invalid path."))


def scim_error_response(exc: GatewayError) -> Response:
    """The RFC 7644 3.12 error document; `status` is a string there."""
    document: dict[str, Any] = {
        "schemas": [ERROR],
        "status": str(exc.status),
        "detail": exc.description,
    }
    scim_type = getattr(exc, "scim_type", "")
    if scim_type:
        document["scimType"] = scim_type
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="SCIM"'
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(exc.retry_after)  # an integer: Okta honours it (OKTA.md)
    return scim_response(document, exc.status, headers)


def _runtime(request: Request) -> Runtime:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:
        raise StoreUnavailableError("The gateway is starting or stopping.")
    return rt


def _endpoint(label: str, handlers: Handlers) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await _serve(request, label, handlers)

    return endpoint


async def _serve(request: Request, label: str, handlers: Handlers) -> Response:
    idp_id: str = request.path_params["idp_id"]
    try:
        rt = _runtime(request)
    except StoreUnavailableError as exc:
        return scim_error_response(exc)
    idp = rt.settings.idp(idp_id)
    if idp is None or not idp.scim_config.enabled:
        reason = "unknown_idp" if idp is None else "scim_off"
        refusal = ScimError(404, "No SCIM service here: unknown identity provider or SCIM off.")
        return await _refuse(rt, request, idp_id, label, reason, refusal)
    base_url = f"{rt.settings.gateway.public_url}/populations/{idp.id}/scim/v2"
    repository = ScimRepository(rt.store, idp.id, rt.clock)
    effects = ProvisioningEffects(idp, repository, rt.registry, rt.sessions)
    call = _Call(request, base_url, repository, effects)
    try:
        presented = presented_secret(request.headers.get("authorization", ""))
        if not await rt.scim_secrets.verify(idp, presented):
            reason = "wrong_secret" if presented else "missing_secret"
            refusal = ScimError(401, "Missing or wrong SCIM secret (Authorization: Bearer ...).")
            return await _refuse(rt, request, idp_id, label, reason, refusal)
        handler = handlers.get(request.method)
        if handler is None:
            allowed = ", ".join(sorted(handlers))
            raise ScimError(405, f"{request.method} is not supported here (only {allowed}).")
        response = await handler(call)
        error = ""
    except GatewayError as exc:
        # ScimError, and the store failing (503): the SCIM error document either way.
        response, error = scim_error_response(exc), str(exc)
        if exc.status >= 500:
            log.warning("scim request failed idp=%s %s: %s", idp_id, request.url.path, error)
    await rt.provisioning_log.record(
        idp_id=idp_id,
        method=request.method,
        resource_type=label,
        status=response.status_code,
        resource_id=call.resource_id,
        resource_name=call.resource_name,
        error=error,
    )
    return response


async def _refuse(
    rt: Runtime, request: Request, idp_id: str, label: str, reason: str, refusal: ScimError
) -> Response:
    """A request refused before any SCIM work (`reason`): counted in the metric and against
    its client network's cap (a 429 past it), and kept in the failure record, not the
    provisioning log, which anyone could otherwise flush with them (SPEC 6)."""
    client = client_info(request.scope, rt.settings.gateway.trusted_proxies)
    error: GatewayError = refusal
    try:
        error = await auth_limit.count_failure(rt.store, client.address, rt.clock) or refusal
    except StoreUnavailableError as exc:
        # Refused either way; the store is down for everyone, the answer stays the refusal.
        log.warning("scim refusal not counted: %s", exc)
    rt.metrics.scim_auth_failure(reason)
    await rt.provisioning_log.record_auth_failure(
        idp_id=idp_id,
        method=request.method,
        resource_type=label,
        status=error.status,
        client_ip=client.ip,
        reason=reason,
        error=str(error),
    )
    return scim_error_response(error)


# --- bodies and parameters ------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


async def _body(call: _Call) -> Any:
    """The request's JSON; 413 past MAX_BODY (read in chunks, stopped early), 415 for another
    media type, 400 invalidSyntax for anything that is not JSON."""
    request = call.request
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type and media_type not in _ACCEPTED_TYPES:
        raise ScimError(415, f"Send {MEDIA_TYPE} (or application/json), not {media_type}.")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        raise ScimError(413, f"The request body is larger than {MAX_BODY} bytes.")
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > MAX_BODY:
            raise ScimError(413, f"The request body is larger than {MAX_BODY} bytes.")
    try:
        return json.loads(received, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ScimError(400, "The request body is not valid JSON.", "invalidSyntax") from exc


def _integer(raw: Any, name: str, default: int) -> int:
    """A query parameter's text or a search body's JSON integer: nothing else (no 1.5, true or
    1e400, which JSON decodes to infinity)."""
    if raw is None or raw == "":
        return default
    problem = ScimError(400, f"{name} must be an integer.", "invalidValue")
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise problem
    try:
        return int(raw)
    except ValueError as exc:
        raise problem from exc


@dataclass(frozen=True, slots=True)
class _Query:
    filter: str
    start_index: int
    count: int
    attributes: str
    excluded: str


def _query(values: dict[str, Any]) -> _Query:
    """RFC 7644 3.4.2: startIndex below 1 counts as 1, a negative count as 0, and no page is
    larger than MAX_RESULTS (advertised in ServiceProviderConfig)."""

    def names(value: Any) -> str:
        return ",".join(map(str, value)) if isinstance(value, list) else str(value or "")

    raw_filter = values.get("filter")
    if raw_filter is not None and not isinstance(raw_filter, str):
        raise ScimError(400, "filter must be a string.", "invalidFilter")
    return _Query(
        filter=raw_filter or "",
        start_index=max(_integer(values.get("startIndex"), "startIndex", 1), 1),
        count=min(max(_integer(values.get("count"), "count", DEFAULT_COUNT), 0), MAX_RESULTS),
        attributes=names(values.get("attributes")),
        excluded=names(values.get("excludedAttributes")),
    )


def _shown(
    call: _Call, resource_type: ResourceType, record: Record, query: _Query
) -> dict[str, Any]:
    document = render(resource_type, record, call.base_url)
    return project(resource_type, document, query.attributes, query.excluded)


def _resource_response(
    call: _Call, resource_type: ResourceType, record: Record, status: int = 200
) -> Response:
    call.concerns(record)
    query = _query(dict(call.request.query_params))
    headers = {"ETag": version_tag(record["meta"]["version"])}
    if status == 201:
        headers["Location"] = f"{call.base_url}{resource_type.endpoint}/{record['id']}"
    return scim_response(_shown(call, resource_type, record, query), status, headers)


# --- resources ------------------------------------------------------------------------------


def _predicates(
    call: _Call, resource_types: tuple[ResourceType, ...], text: str
) -> list[tuple[Filter, Predicate] | None]:
    """Each resource type's compiled filter (None: no filter), over records as returned."""
    if not text:
        return [None for _ in resource_types]
    node = parse_filter(text)
    if len(resource_types) == 1:
        compiled = [compile_filter(node, resource_types[0])]
    else:
        compiled = compile_filters(node, resource_types)
    call.resource_name = text
    base_url = call.base_url

    def over_rendered(resource_type: ResourceType, predicate: Predicate) -> Predicate:
        def matches(record: Mapping[str, Any]) -> bool:
            # RFC 7644 3.4.2.2: compare with what is returned (meta.location, meta.version...)
            return predicate(render(resource_type, record, base_url))

        return matches

    return [(node, over_rendered(t, p)) for t, p in zip(resource_types, compiled, strict=True)]


async def _list(call: _Call, resource_types: tuple[ResourceType, ...], query: _Query) -> Response:
    """RFC 7644 3.4.2: a ListResponse page, filtered. Across several resource types (the
    server root) the list is each type's matches in turn, in the order given, each in its
    own stable order, and `startIndex` / `count` page through it as one list; `attributes`
    and `excludedAttributes` apply to each resource by its type. `sortBy` is not supported
    (ServiceProviderConfig says so) and, as any parameter we do not know, ignored."""
    predicates = _predicates(call, resource_types, query.filter)
    total = 0
    shown: list[dict[str, Any]] = []
    for resource_type, compiled in zip(resource_types, predicates, strict=True):
        # This type's part of the page starts where the page does, less the types before it.
        start = max(query.start_index - total, 1)
        matched, records = await call.repository.page(
            resource_type, compiled, start, query.count - len(shown)
        )
        total += matched
        shown += [_shown(call, resource_type, r, query) for r in records]
    return scim_response(
        {
            "schemas": [LIST_RESPONSE],
            "totalResults": total,
            "startIndex": query.start_index,
            "itemsPerPage": len(shown),
            "Resources": shown,
        }
    )


async def _search(call: _Call, resource_types: tuple[ResourceType, ...]) -> Response:
    """RFC 7644 3.4.3: POST .search, the query in a SearchRequest body."""
    body = await _body(call)
    schemas = body.get("schemas") if isinstance(body, dict) else None
    if not isinstance(schemas, list) or SEARCH_REQUEST not in schemas:
        raise ScimError(
            400, f"A search body's `schemas` must be [{SEARCH_REQUEST!r}].", "invalidSyntax"
        )
    return await _list(call, resource_types, _query(body))


async def _list_everything(call: _Call) -> Response:
    return await _list(call, RESOURCE_TYPES, _query(dict(call.request.query_params)))


async def _search_everything(call: _Call) -> Response:
    return await _search(call, RESOURCE_TYPES)


def _id(call: _Call) -> str:
    return str(call.request.path_params["resource_id"])


def _if_match(call: _Call) -> str | None:
    return call.request.headers.get("if-match")


def _effects(call: _Call, resource_type: ResourceType) -> Effects:
    """What a write does to sessions and the registry, run just before it is stored."""
    if resource_type is USERS:
        return call.effects.user_changed
    return call.effects.group_changed


def _handlers(
    resource_type: ResourceType,
) -> tuple[Handlers, Handlers, Handlers]:
    """The handlers of `/Users`, `/Users/.search` and `/Users/{id}` (or Groups)."""

    async def list_resources(call: _Call) -> Response:
        return await _list(call, (resource_type,), _query(dict(call.request.query_params)))

    async def search(call: _Call) -> Response:
        return await _search(call, (resource_type,))

    async def create(call: _Call) -> Response:
        attributes = validate_resource(resource_type, await _body(call))
        call.resource_name = attributes.get("userName") or attributes.get("displayName", "")
        record = await call.repository.create(
            resource_type, attributes, _effects(call, resource_type)
        )
        return _resource_response(call, resource_type, record, 201)

    async def read(call: _Call) -> Response:
        call.resource_id = _id(call)
        record = await call.repository.require(resource_type, call.resource_id)
        if_none_match = call.request.headers.get("if-none-match")
        if if_none_match and version_tag(record["meta"]["version"]) in if_none_match:
            call.concerns(record)
            return scim_response(None, 304, {"ETag": version_tag(record["meta"]["version"])})
        return _resource_response(call, resource_type, record)

    async def replace(call: _Call) -> Response:
        call.resource_id = _id(call)
        body = await _body(call)

        async def compute(current: Record) -> Record:
            return validate_resource(resource_type, body)

        return await _write(call, resource_type, compute)

    async def modify(call: _Call) -> Response:
        call.resource_id = _id(call)
        body = await _body(call)

        async def compute(current: Record) -> Record:
            return apply_patch(resource_type, attributes_of(current), body)

        return await _write(call, resource_type, compute)

    async def delete(call: _Call) -> Response:
        call.resource_id = _id(call)
        record = await call.repository.delete(
            resource_type, call.resource_id, _if_match(call), _effects(call, resource_type)
        )
        call.concerns(record)
        return scim_response(None, 204)

    return (
        {"GET": list_resources, "POST": create},
        {"POST": search},
        {"GET": read, "PUT": replace, "PATCH": modify, "DELETE": delete},
    )


async def _write(
    call: _Call, resource_type: ResourceType, compute: Callable[[Record], Awaitable[Record]]
) -> Response:
    change = await call.repository.update(
        resource_type, call.resource_id, compute, _if_match(call), _effects(call, resource_type)
    )
    assert change.after is not None  # noqa: S101 - an update never deletes
    record = change.after
    if resource_type is USERS:
        await call.repository.add_groups([record])
    return _resource_response(call, resource_type, record)


# --- discovery (RFC 7644 4) -----------------------------------------------------------------


def _no_filter(call: _Call) -> None:
    # RFC 7644 4: these endpoints take no filter; 403 so no client thinks one applied.
    if call.param("filter"):
        raise ScimError(403, "This endpoint does not support filtering.")


def _listing(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": [LIST_RESPONSE],
        "totalResults": len(documents),
        "startIndex": 1,
        "itemsPerPage": len(documents),
        "Resources": documents,
    }


async def _config(call: _Call) -> Response:
    _no_filter(call)
    return scim_response(service_provider_config(call.base_url))


async def _resource_types(call: _Call) -> Response:
    _no_filter(call)
    return scim_response(
        _listing([resource_type_document(t, call.base_url) for t in RESOURCE_TYPES])
    )


async def _resource_type(call: _Call) -> Response:
    name = call.request.path_params["name"]
    found = next((t for t in RESOURCE_TYPES if t.name == name), None)
    if found is None:
        raise ScimError(404, f"No resource type {name!r}.")
    return scim_response(resource_type_document(found, call.base_url))


async def _schemas(call: _Call) -> Response:
    _no_filter(call)
    return scim_response(_listing([schema_document(s, call.base_url) for s in SCHEMAS]))


async def _schema(call: _Call) -> Response:
    schema_id = call.request.path_params["schema_id"]
    found = next((s for s in SCHEMAS if s.id == schema_id), None)
    if found is None:
        raise ScimError(404, f"No schema {schema_id!r}.")
    return scim_response(schema_document(found, call.base_url))


async def _not_found(call: _Call) -> Response:
    raise ScimError(404, f"No SCIM endpoint {call.request.url.path}.")


async def _not_implemented(call: _Call) -> Response:
    # RFC 7644 3.7 (Bulk, not in ServiceProviderConfig) and 3.11 (/Me): 501.
    raise ScimError(501, f"{call.request.url.path.rsplit('/', 1)[-1]} is not implemented.")


def _route(path: str, label: str, handlers: Handlers) -> Route:
    # Every method reaches `_serve`, so an unsupported one is a SCIM 405, not Starlette's.
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Route(path, _endpoint(label, handlers), methods=methods)


def routes() -> list[BaseRoute]:
    every = ("GET", "POST", "PUT", "PATCH", "DELETE")
    inner: list[BaseRoute] = [
        # RFC 7644 3.4.2 and 3.4.3: a query at the server root searches every resource type.
        _route("/", "", {"GET": _list_everything}),
        _route("/.search", "", {"POST": _search_everything}),
        _route("/ServiceProviderConfig", "ServiceProviderConfig", {"GET": _config}),
        _route("/ResourceTypes", "ResourceType", {"GET": _resource_types}),
        _route("/ResourceTypes/{name}", "ResourceType", {"GET": _resource_type}),
        _route("/Schemas", "Schema", {"GET": _schemas}),
        _route("/Schemas/{schema_id}", "Schema", {"GET": _schema}),
    ]
    for resource_type in (USERS, GROUPS):
        collection, search, item = _handlers(resource_type)
        label, endpoint = resource_type.name, resource_type.endpoint
        inner += [
            _route(endpoint, label, collection),
            _route(f"{endpoint}/.search", label, search),
            _route(f"{endpoint}/{{resource_id}}", label, item),
        ]
    inner += [
        _route("/Bulk", "Bulk", dict.fromkeys(every, _not_implemented)),
        _route("/Me", "Me", dict.fromkeys(every, _not_implemented)),
        _route("/{rest:path}", "", dict.fromkeys(every, _not_found)),
    ]
    return [Mount("/populations/{idp_id}/scim/v2", routes=inner)]
