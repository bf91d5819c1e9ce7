"""`GET /api/openapi.json`: the OpenAPI 3.1 description of the admin API, served without a token.

Built per request so `servers` names this gateway's `public_url`. Every operation of the API is
here with its parameters, request body, and every status it can answer with the body each
carries; the object schemas are in `schemas.py`. Creations link to the operations on the new
object (OpenAPI links), so a client or a test can follow them. What no schema can know, clashes
with other objects, is a 409 (a domain already served, an IdP deleted while something names it)
or a 422 (an `allowed_idps` entry naming no IdP).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.admin.envelope import CODES, MAX_BODY, MAX_PAGE
from gateway.admin.schemas import NON_BLANK, Schema, obj, ref, schemas
from gateway.admin.users import DEFAULT_LOG_ENTRIES as DEFAULT_LOG
from gateway.admin.users import MAX_USERS_PER_PAGE, USERS_PER_PAGE
from gateway.runtime import Runtime
from gateway.scim.schema import MAX_RESULTS
from gateway.state.access_log import LIMIT as ACCESS_LOG_LIMIT
from gateway.state.audit_log import LIMIT as AUDIT_LOG_LIMIT
from gateway.state.provisioning_log import FAILURE_LIMIT
from gateway.state.provisioning_log import LIMIT as LOG_LIMIT

_ERRORS = {
    400: "Malformed JSON, or an object the validator refuses: one error per problem, each with "
    "its key path ('config.client_id: is required')",
    401: "Missing or wrong admin token",
    403: "The object is defined in the config file and is read-only here",
    404: "No such object",
    409: "Conflicts with another object",
    413: f"Request body over {MAX_BODY} bytes",
    415: "Request body not sent as application/json",
    422: "Refers to an object that does not exist, or holds a value no schema can check (a "
    "certificate that does not parse, an Okta Admin Console URL)",
    503: "The store (Redis) cannot be reached",
}


# An object's id in a path: every id is made of URL-unreserved characters; "." and ".." alone,
# or a backslash, would be an ambiguous path, which the gateway refuses (400).
_PATH_ID: Schema = {"type": "string", "pattern": "^[A-Za-z0-9._~-]+$", "not": {"enum": [".", ".."]}}
# A user id under /zt_risk_scoring: a user uuid (Cloudflare's `format: uuid`), so never one of
# the fixed paths beside it (`behaviors`, `summary`, ...), which are routed to those.
_RISK_USER_ID: Schema = {
    "type": "string",
    "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
}


def _failure(status: int, description: str = "") -> Schema:
    response: Schema = {
        "description": description or _ERRORS[status],
        "content": {"application/json": {"schema": ref("Failure")}},
    }
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
    return response


def _success(result: Schema, *, paged: bool = False) -> Schema:
    properties: dict[str, Schema] = {
        "success": {"const": True},
        "errors": {"type": "array", "maxItems": 0},
        "messages": {"type": "array", "items": ref("Error")},  # config_warning items
        "result": result,
    }
    required = ["success", "errors", "messages", "result"]
    if paged:
        counts = ("page", "per_page", "count", "total_count")
        properties["result_info"] = obj(
            {k: {"type": "integer", "minimum": 0} for k in counts}, counts
        )
        required.append("result_info")
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _op(
    operation_id: str,
    summary: str,
    result: Schema,
    errors: tuple[int, ...] = (),
    *,
    body: str | None = None,
    status: int = 200,
    param: str | None = None,
    param_schema: Schema = _PATH_ID,
    query: tuple[Schema, ...] = (),
    links: tuple[tuple[str, str], ...] = (),
    meaning: dict[int, str] | None = None,
) -> Schema:
    """One operation: every authenticated call may also answer 401 and 503. `query`: its query
    parameters (a page of a list when they include `page`). `links`: the (operationId, path
    parameter) pairs the new object's `result.id` fills in. `meaning`: what an error status
    means for this operation, where the general description (`_ERRORS`) says too little."""
    meaning = meaning or {}
    codes = {*errors, 401, 503}
    if body is not None or query:
        codes.add(400)
    if body is not None:
        codes |= {413, 415}
    if param is not None:
        codes |= {400, 404}  # 400: a backslash, "." or ".." as the value: an ambiguous path
    paged = any(q["name"] == "page" for q in query)
    success: Schema = {
        "description": "Success",
        "content": {"application/json": {"schema": _success(result, paged=paged)}},
    }
    if links:
        success["links"] = {
            target: {"operationId": target, "parameters": {name: "$response.body#/result/id"}}
            for target, name in links
        }
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "responses": {
            str(status): success,
            **{str(code): _failure(code, meaning.get(code, "")) for code in sorted(codes)},
        },
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        }
    parameters = list(query)
    if param is not None:
        parameters.insert(
            0, {"name": param, "in": "path", "required": True, "schema": param_schema}
        )
    if parameters:
        operation["parameters"] = parameters
    return operation


def _query(name: str, maximum: int, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "integer", "minimum": 1, "maximum": maximum},
    }


def _paging(per_page: int, max_per_page: int) -> tuple[Schema, ...]:
    return (
        _query("page", MAX_PAGE, "Which page, from 1."),
        _query("per_page", max_per_page, f"Items per page (default {per_page})."),
    )


def _list(name: str) -> Schema:
    return {"type": "array", "items": ref(name)}


def paths() -> dict[str, dict[str, Schema]]:
    idp, app, token, user = "idp_id", "app_id", "token_id", "user_id"
    integration = "integration_id"
    integration_ops = ("getRiskIntegration", "replaceRiskIntegration", "deleteRiskIntegration")
    idp_ops = ("getIdentityProvider", "replaceIdentityProvider", "deleteIdentityProvider")
    app_ops = ("getApp", "replaceApp", "deleteApp", "revokeAppTokens")
    return {
        "/api/openapi.json": {
            "get": {
                "operationId": "getOpenAPI",
                "summary": "This document (no token needed)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/api/identity_providers": {
            "get": _op(
                "listIdentityProviders", "List identity providers", _list("IdentityProvider")
            ),
            "post": _op(
                "createIdentityProvider",
                "Create an identity provider (the id is generated)",
                ref("IdentityProviderCreated"),
                (409, 422),
                body="IdentityProviderInput",
                status=201,
                links=tuple((target, idp) for target in idp_ops),
            ),
        },
        "/api/identity_providers/{idp_id}": {
            "get": _op(
                "getIdentityProvider",
                "Get an identity provider",
                ref("IdentityProvider"),
                param=idp,
            ),
            "put": _op(
                "replaceIdentityProvider",
                "Replace an identity provider; secrets left out are kept, unless the type or "
                "an endpoint changes: then they must be sent again (422 otherwise)",
                ref("IdentityProviderCreated"),
                (403, 409, 422),
                body="IdentityProviderReplacement",
                param=idp,
            ),
            "delete": _op(
                "deleteIdentityProvider",
                "Delete an identity provider that nothing names",
                ref("Deleted"),
                (403, 409),
                param=idp,
                meaning={
                    409: "Still in use: named by an app's allowed_idps or policy rules, or by a "
                    "risk sharing integration's reference_id. The message names each; nothing "
                    "is deleted",
                },
            ),
        },
        "/api/identity_providers/{idp_id}/refresh_scim_secret": {
            "post": _op(
                "refreshScimSecret",
                "A new SCIM secret, in this answer only; the old one stops working",
                ref("IdentityProviderWithSecret"),
                (409,),
                param=idp,
            ),
        },
        "/api/identity_providers/{idp_id}/scim/users": {
            "get": _op(
                "listScimUsers",
                "Users this IdP provisioned over SCIM",
                _list("ScimResource"),
                param=idp,
                query=_paging(MAX_RESULTS, MAX_RESULTS),
            ),
        },
        "/api/identity_providers/{idp_id}/scim/groups": {
            "get": _op(
                "listScimGroups",
                "Groups this IdP provisioned over SCIM",
                _list("ScimResource"),
                param=idp,
                query=_paging(MAX_RESULTS, MAX_RESULTS),
            ),
        },
        "/api/apps": {
            "get": _op("listApps", "List apps with their policies", _list("App")),
            "post": _op(
                "createApp",
                "Create an app with its policies (the id is generated)",
                ref("App"),
                (409, 422),
                body="AppInput",
                status=201,
                links=tuple((target, app) for target in app_ops),
            ),
        },
        "/api/apps/{app_id}": {
            "get": _op("getApp", "Get an app", ref("App"), param=app),
            "put": _op(
                "replaceApp",
                "Replace an app and its policies",
                ref("App"),
                (403, 409, 422),
                body="AppInput",
                param=app,
            ),
            "delete": _op("deleteApp", "Delete an app", ref("Deleted"), (403, 409), param=app),
        },
        "/api/apps/{app_id}/revoke_tokens": {
            "post": _op(
                "revokeAppTokens",
                "Revoke every app session of this app (and of apps sharing its host)",
                ref("RevokedTokens"),
                param=app,
            ),
        },
        "/api/apps/{app_id}/explain": {
            "get": _op(
                "explainApp",
                "Would this user get into this app, and why: the decision, the policy that made "
                "it and the rule that settled it, for each last-seen identity with the email",
                _list("Explanation"),
                param=app,
                query=(
                    {
                        "name": "email",
                        "in": "query",
                        "required": True,
                        "description": "The user's email, as they sign in.",
                        "schema": NON_BLANK,
                    },
                    {
                        "name": "ip",
                        "in": "query",
                        "required": False,
                        "description": "The client address to judge ip rules against.",
                        "schema": {
                            "type": "string",
                            "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
                        },
                    },
                ),
            ),
        },
        "/api/users": {
            "get": _op(
                "listUsers",
                "The user registry",
                _list("User"),
                query=_paging(USERS_PER_PAGE, MAX_USERS_PER_PAGE),
            ),
        },
        "/api/users/{user_id}/last_seen_identity": {
            "get": _op(
                "getLastSeenIdentity",
                "The identity of the user's last sign-in (SCIM updates included)",
                ref("Identity"),
                param=user,
            ),
        },
        "/api/users/{user_id}/active_sessions": {
            "get": _op(
                "listActiveSessions",
                "The user's live sessions",
                _list("ActiveSession"),
                param=user,
            ),
        },
        "/api/revoke_user": {
            "post": _op(
                "revokeUser",
                "End every session of every user with this email",
                ref("RevokedUser"),
                (404,),
                body="RevokeUserInput",
            ),
        },
        "/api/service_tokens": {
            "get": _op("listServiceTokens", "List service tokens", _list("ServiceToken")),
            "post": _op(
                "createServiceToken",
                "Create a service token; its secret is in this answer only",
                ref("ServiceTokenWithSecret"),
                body="ServiceTokenInput",
                status=201,
                links=(("deleteServiceToken", token),),
            ),
        },
        "/api/service_tokens/{token_id}": {
            "delete": _op(
                "deleteServiceToken", "Delete a service token", ref("Deleted"), param=token
            ),
        },
        "/api/keys": {
            "get": _op("listKeys", "App-token signing keys (public halves)", _list("SigningKey")),
        },
        "/api/keys/rotate": {
            "post": _op(
                "rotateKeys", "Sign app tokens with a new key from now on", _list("SigningKey")
            ),
        },
        "/api/zt_risk_scoring/integrations": {
            "get": _op(
                "listRiskIntegrations",
                "Risk sharing with Okta: the integrations and their delivery status",
                _list("RiskIntegration"),
            ),
            "post": _op(
                "createRiskIntegration",
                "Send the risk level changes of one IdP's users to an Okta org (SSF)",
                ref("RiskIntegration"),
                (409, 422),
                body="RiskIntegrationInput",
                status=201,
                links=tuple((target, integration) for target in integration_ops),
            ),
        },
        "/api/zt_risk_scoring/integrations/{integration_id}": {
            "get": _op(
                "getRiskIntegration",
                "Get a risk sharing integration",
                ref("RiskIntegration"),
                param=integration,
            ),
            "put": _op(
                "replaceRiskIntegration",
                "Overwrite an integration's tenant_url, reference_id and active",
                ref("RiskIntegration"),
                (409, 422),
                body="RiskIntegrationInput",
                param=integration,
            ),
            "delete": _op(
                "deleteRiskIntegration",
                "Delete an integration; the events still waiting for it are dropped",
                ref("Deleted"),
                (409,),
                param=integration,
            ),
        },
        "/api/logs/scim": {
            "get": _op(
                "listProvisioningLog",
                "The SCIM provisioning log, newest first",
                _list("ProvisioningLogEntry"),
                query=(
                    _query("limit", LOG_LIMIT, f"How many entries (default {DEFAULT_LOG})."),
                    {
                        "name": "identity_provider_id",
                        "in": "query",
                        "required": False,
                        "description": "Only this IdP's entries.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "auth_failures",
                        "in": "query",
                        "required": False,
                        "description": (
                            "true: the record of SCIM requests refused before any SCIM work "
                            "instead (missing or wrong secret, unknown IdP, SCIM off; the "
                            f"newest {FAILURE_LIMIT}), each with `client_ip` and `reason`."
                        ),
                        "schema": {"type": "boolean"},
                    },
                ),
            ),
        },
        "/api/zt_risk_scoring/behaviors": {
            "get": _op(
                "getRiskBehaviors",
                "Every risk behaviour with its setting in force (the API's over the file's)",
                ref("RiskBehaviors"),
            ),
            "put": _op(
                "updateRiskBehaviors",
                "Change the behaviours named, on every instance; the others keep theirs",
                ref("RiskBehaviorsUpdated"),
                body="RiskBehaviorsInput",
            ),
        },
        "/api/zt_risk_scoring/summary": {
            "get": _op(
                "getRiskSummary",
                "Every user with risk events kept: their level now and how many events",
                ref("RiskSummary"),
            ),
        },
        "/api/zt_risk_scoring/{user_id}": {
            "get": _op(
                "getUserRisk",
                "One user's risk level and events, newest first",
                ref("UserRisk"),
                param=user,
                param_schema=_RISK_USER_ID,
            ),
        },
        "/api/zt_risk_scoring/{user_id}/reset": {
            "post": _op(
                "resetUserRisk",
                "Reset the user's risk level to low and clear their events",
                ref("UserRisk"),
                param=user,
                param_schema=_RISK_USER_ID,
            ),
        },
        "/api/logs/access": {
            "get": _op(
                "listAccessLog",
                "Sign-ins (allowed, denied, failed) and refused requests, newest first; "
                "allowed requests are in the process log only",
                _list("AccessLogEntry"),
                query=(
                    _query("limit", ACCESS_LOG_LIMIT, f"How many entries (default {DEFAULT_LOG})."),
                ),
            ),
        },
        "/api/logs/audit": {
            "get": _op(
                "listAuditLog",
                "Every change made through the admin API or the console (who, what, when), "
                "newest first",
                _list("AuditLogEntry"),
                query=(
                    _query("limit", AUDIT_LOG_LIMIT, f"How many entries (default {DEFAULT_LOG})."),
                ),
            ),
        },
    }


def build(public_url: str) -> dict[str, Any]:
    """The whole OpenAPI document for a gateway at `public_url`."""
    codes = ", ".join(f"{code} {name}" for name, code in CODES.items())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Gateway admin API",
            "version": "1",
            "description": (
                "Cloudflare Access's objects and envelope. Every answer is "
                '{"success", "errors": [{"code", "message"}], "messages", "result"}. '
                f"Error codes: {codes}. Request schemas are exact about structure and "
                "conservative about string formats: every body they admit passes the config "
                "file's validator, which accepts a little more. A clash with another object "
                "is a 409; a reference to an object that does not exist, a 422, as is an "
                "object the configuration checks find an error in (a policy rule naming an "
                "identity provider that does not exist, an Okta Admin Console URL). What they "
                "warn about (a group nobody has been seen in, an app without policies) is "
                "accepted and listed in `messages` with code 1013, one item per warning, "
                "each with its key path."
            ),
        },
        "servers": [{"url": public_url}],
        "security": [{"adminToken": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(),
        },
    }


async def document(request: Request, rt: Runtime) -> Response:
    return JSONResponse(build(rt.settings.gateway.public_url))
