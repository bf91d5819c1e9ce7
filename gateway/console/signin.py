"""Getting into the console: a sign-in with a login method, or a `gateway console-link` URL.

`/console/login?idp=<id>&next=<console path>` starts an ordinary sign-in (`authn/signin.py`)
whose login state says `purpose="console"`; the callback (`web/views.py`) makes the team session
from it and returns to the console page, where `access.admits` decides. `/console/link?token=`
shows a button; pressing it POSTs the token (a link preview that GETs the URL does not spend
it), which is redeemed once (`link.py`) into a break-glass console session: an identity from no
IdP (`access.CONSOLE_LINK_IDP`), named "console-link" in the audit log, that no app accepts.
Both end like any team session: `/cdn-cgi/access/logout` revokes it.
"""

from __future__ import annotations

import logging
import secrets
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.authn import login_limit
from gateway.authn import signin as flow
from gateway.console import access, link, security
from gateway.errors import GatewayError, NotFoundError
from gateway.identity import Identity, user_uuid_for
from gateway.runtime import Runtime
from gateway.web import bodies
from gateway.web.clientinfo import client_info
from gateway.web.cookies import (
    LOGIN_BINDING_COOKIE,
    read_cookie,
    set_binding_cookie,
    set_session_cookie,
)

log = logging.getLogger("gateway.console")

HOME = "/console/"
LINK_SESSION_DURATION = 3600.0  # a break-glass session lasts at most an hour
MAX_LINK_FORM_BYTES = 1024  # the link page's form: one token


def console_path(path: str | None) -> str:
    """`path` if it is a console page path to return to, else the overview."""
    if not path or not path.startswith(HOME) or "//" in path or "\\" in path or "/." in path:
        return HOME
    if any(ord(c) < 0x21 for c in path) or len(path) > 512:
        return HOME
    return path


def choices(rt: Runtime, next_path: str) -> list[dict[str, str]]:
    """The login methods to sign in to the console with, each with its sign-in URL."""
    back = console_path(next_path)
    return [
        {"name": idp.name, "url": f"/console/login?{urlencode({'idp': idp.id, 'next': back})}"}
        for idp in rt.settings.identity_providers
    ]


async def start(request: Request, rt: Runtime) -> Response:
    """`/console/login?idp=<id>&next=<path>`: off to the IdP, to come back to the console."""
    idp_id = request.query_params.get("idp", "")
    if idp_id not in rt.providers:
        raise NotFoundError("No such login method.")
    address = client_info(request.scope, rt.settings.gateway.trusted_proxies).address
    await login_limit.count_start(rt.store, address, rt.clock)
    binding = rt.bindings.unsign(
        read_cookie(request.scope, LOGIN_BINDING_COOKIE) or ""
    ) or secrets.token_urlsafe(24)
    state = flow.LoginState(
        binding=binding,
        idp_id=idp_id,
        purpose="console",
        redirect_url=console_path(request.query_params.get("next")),
    )
    authorize_url = await flow.start(rt.store, rt.providers[idp_id], state)
    response = RedirectResponse(authorize_url, status_code=302)
    saml = rt.providers[idp_id].idp.type == "saml"  # its answer is a cross-site POST
    set_binding_cookie(rt, response, LOGIN_BINDING_COOKIE, binding, cross_site_post=saml)
    return response


async def link_page(request: Request, rt: Runtime) -> Response:
    """`GET /console/link?token=`: a button that signs in with the link (the token unspent)."""
    return rt.pages.render(
        "console/link.html",
        200,
        headers=security.HEADERS,
        title="Sign in to the console",
        token=request.query_params.get("token", ""),
        nav=False,
    )


async def redeem_link(request: Request, rt: Runtime) -> Response:
    """`POST /console/link`: the token, once, from the gateway's own page, into a break-glass
    console session."""
    if not security.same_origin(
        rt.settings.gateway.public_url,
        request.headers.get("origin"),
        request.headers.get("referer"),
    ):
        raise GatewayError("This form was sent from another site.", error="forbidden", status=403)
    body = await bodies.read_bounded(request, MAX_LINK_FORM_BYTES)
    if body is None:
        raise GatewayError("The form is too large.", status=413)
    token = dict(parse_qsl(body.decode("utf-8", errors="replace"))).get("token", "")
    if not await link.redeem(rt.store, rt.clock, token):
        raise GatewayError(
            "This console link has expired or was already used. "
            "Run `gateway console-link` for a new one.",
            error="forbidden",
            status=403,
        )
    ip = client_info(request.scope, rt.settings.gateway.trusted_proxies).ip
    sub = secrets.token_urlsafe(16)
    identity = Identity(
        id=secrets.token_urlsafe(16),
        user_uuid=user_uuid_for(access.CONSOLE_LINK_IDP, sub),
        sub=sub,
        name="Console link (break-glass)",
        email=access.CONSOLE_LINK_ACTOR,
        groups=(),
        idp_id=access.CONSOLE_LINK_IDP,
        idp_type=access.CONSOLE_LINK_ACTOR,
        iat=int(rt.clock()),
        ip=ip,
    )
    duration = min(rt.settings.gateway.session_duration, LINK_SESSION_DURATION)
    session, cookie_value = await rt.sessions.create(identity, kind="global", duration=duration)
    log.warning(
        "console: signed in with a console link",
        extra={"step": "console-link", "user_uuid": identity.user_uuid, "ip": ip},
    )
    response = RedirectResponse(HOME, status_code=303)
    set_session_cookie(rt, response, cookie_value, None, session.expires - rt.clock())
    return response
