"""The HTTP ends of the logouts identity providers push (SPEC 4 and 8), on the team host only:

    POST /cdn-cgi/access/global-token-revocation/<idp id>   Okta Universal Logout
    POST /cdn-cgi/access/backchannel-logout/<idp id>        OpenID Connect Back-Channel Logout

Each reads the request (its IdP, its credentials, a body of bounded size and the right type),
hands it to `gateway.authn.logout` and answers in the machine format its protocol gives: 204 or
JSON `{"error", "error_description"}` for Universal Logout (with `WWW-Authenticate` on a 401),
200 or a 400 JSON error for back-channel logout. An IdP without the feature switched on, or no
such IdP, is a 404, as on any other host. Every answer is `Cache-Control: no-store`; no token
reaches the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.admin.envelope import is_json
from gateway.authn.logout import backchannel, spend, universal
from gateway.authn.providers import Provider
from gateway.authn.providers.oidc import OIDCProvider
from gateway.authn.providers.okta import OktaProvider
from gateway.authz.routing import split_host
from gateway.config import ClientConfig, IdPConfig, OktaConfig
from gateway.errors import GatewayError, LogoutRequestError, SignInError, StoreUnavailableError
from gateway.runtime import Runtime
from gateway.web import bodies
from gateway.web.bearer import bearer_token

log = logging.getLogger("gateway.logout")


def _not_found() -> LogoutRequestError:
    return LogoutRequestError("Not found", error="not_found", status=404)


def _answer(status: int) -> Response:
    return Response(status_code=status, headers={"Cache-Control": "no-store"})


def _refusal(exc: GatewayError, idp_id: str, receiver: str) -> Response:
    """The JSON answer to a refused logout request, logged without the token."""
    log.warning(
        "%s refused idp=%r status=%d error=%s: %s",  # the id is the caller's: repr-quoted
        receiver,
        idp_id,
        exc.status,
        exc.error,
        exc.description,
        extra={"step": receiver, "idp": idp_id, "status": exc.status, "error": exc.error},
    )
    headers = {"Cache-Control": "no-store"}
    if exc.status == 401:
        # RFC 6750 3.1: no error code when no credentials were sent at all.
        headers["WWW-Authenticate"] = (
            'Bearer error="invalid_token"' if exc.error == "invalid_token" else "Bearer"
        )
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status,
        headers=headers,
    )


def _runtime(request: Request) -> Runtime:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:
        raise StoreUnavailableError("The gateway is starting or stopping.")
    return rt


def _receiver(
    request: Request, idp_id: str, switched_on: Callable[[IdPConfig], bool]
) -> tuple[Runtime, Provider | None]:
    """The runtime and the provider of `idp_id`, on the team host, when its config has the
    receiver `switched_on`; a 404 otherwise."""
    rt = _runtime(request)
    idp = rt.settings.idp(idp_id)
    on_team_host = split_host(request.headers.get("host", "")) == rt.team_host
    if not on_team_host or idp is None or not switched_on(idp.config):
        raise _not_found()
    return rt, rt.providers.get(idp_id)


async def _body(
    request: Request, media_type: str, limit: int, *, refusal: int | None = None
) -> bytes:
    """The request body: 415 unless sent as `media_type`, 413 past `limit` bytes; `refusal`
    replaces both statuses."""
    given = bodies.media_type(request)
    if not (is_json(given) if media_type == "application/json" else given == media_type):
        raise LogoutRequestError(f"Send the body as {media_type}", status=refusal or 415)
    body = await bodies.read_bounded(request, limit)
    if body is None:
        raise LogoutRequestError(f"The body is larger than {limit} bytes", status=refusal or 413)
    return body


async def global_token_revocation(request: Request) -> Response:
    """`POST /cdn-cgi/access/global-token-revocation/<idp id>`: Okta Universal Logout."""
    idp_id = request.path_params["idp_id"]
    try:
        rt, provider = _receiver(
            request, idp_id, lambda c: isinstance(c, OktaConfig) and c.universal_logout
        )
        if not isinstance(provider, OktaProvider):
            raise _not_found()
        token = bearer_token(request.headers.get("authorization", ""))
        if token is None:
            raise LogoutRequestError(
                "Send the request with 'Authorization: Bearer <token>'",
                error="unauthorized",
                status=401,
            )
        raw = await _body(request, "application/json", universal.MAX_BODY)
        use = await universal.authenticate(
            provider,
            rt.store,
            token,
            audience=universal.endpoint_url(rt.settings.gateway.public_url, idp_id),
            now=rt.clock(),
        )
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise universal.bad_request("The body is not JSON") from exc
        subject = universal.read_subject(body)
        await universal.revoke(provider, rt.registry, rt.sessions, subject)
        await spend(rt.store, use)
    except LogoutRequestError as exc:
        return _refusal(exc, idp_id, "universal_logout")
    except (SignInError, StoreUnavailableError) as exc:
        # The Okta org's keys could not be read, or the store is down: nothing was ended, and
        # Okta may try again.
        unavailable = GatewayError(
            "The gateway cannot act on this request now; try again later",
            error="temporarily_unavailable",
            status=503,
        )
        log.warning("universal_logout unavailable idp=%r: %s", idp_id, exc)
        return _refusal(unavailable, idp_id, "universal_logout")
    return _answer(204)


async def backchannel_logout(request: Request) -> Response:
    """`POST /cdn-cgi/access/backchannel-logout/<idp id>`: OpenID Connect Back-Channel Logout."""
    idp_id = request.path_params["idp_id"]
    try:
        rt, provider = _receiver(
            request, idp_id, lambda c: isinstance(c, ClientConfig) and c.backchannel_logout
        )
        if not isinstance(provider, OIDCProvider):
            raise _not_found()
        # Section 2.8: every refusal is a 400, a body of the wrong type or size too.
        raw = await _body(
            request, "application/x-www-form-urlencoded", backchannel.MAX_BODY, refusal=400
        )
        try:
            fields = parse_qsl(raw.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as exc:
            raise backchannel.refuse("The body is not a well-formed form") from exc
        tokens = [value for name, value in fields if name == "logout_token"]
        if len(tokens) != 1 or not tokens[0]:
            raise backchannel.refuse("The form must carry exactly one logout_token")
        logout = await backchannel.validate(provider, rt.store, tokens[0], rt.clock())
        await backchannel.end_sessions(idp_id, rt.sessions, logout)
        await spend(rt.store, logout.use)
    except LogoutRequestError as exc:
        return _refusal(exc, idp_id, "backchannel_logout")
    except (SignInError, StoreUnavailableError) as exc:
        # Back-Channel Logout 1.0 section 2.8: a logout that failed is a 400 too.
        log.warning("backchannel_logout failed idp=%r: %s", idp_id, exc)
        failed = LogoutRequestError(
            "The gateway could not complete the logout now; try again later",
            error="temporarily_unavailable",
        )
        return _refusal(failed, idp_id, "backchannel_logout")
    return _answer(200)
