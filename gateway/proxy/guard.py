"""The hot path: every request to a protected app passes here.

cookie -> session (one store GET) -> policy -> upstream. No template is rendered and no token is
minted for an allowed request; pages are built only for the requests that are turned away.
Anything unexpected on the way fails closed: no session means sign in, a store that does not
answer means 503, never a pass.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from urllib.parse import quote, urlsplit

from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from gateway.authz.policy import RequestFacts, evaluate, evaluate_before_sign_in
from gateway.config import App
from gateway.errors import GatewayError, UpstreamError
from gateway.ops.logs import RequestRecord
from gateway.proxy.forwarding import forward, request_headers
from gateway.proxy.websocket import relay
from gateway.runtime import Runtime, error_page
from gateway.state.sessions import Session
from gateway.web.clientinfo import ClientInfo, client_info, header

log = logging.getLogger("gateway.guard")

SESSION_COOKIE = "CF_Authorization"
APP_BINDING_COOKIE = "CF_AppSession"
LOGIN_BINDING_COOKIE = "CF_Session"
BINDING_TTL = 600


def read_cookie(scope: Scope, name: str) -> str | None:
    """One cookie's value from the request, without parsing every cookie into objects."""
    raw = header(scope, b"cookie")
    if not raw or name not in raw:
        return None
    prefix = name + "="
    for part in raw.split(";"):
        part = part.strip()
        if part.startswith(prefix):
            return part[len(prefix) :].strip('"')
    return None


def binding_hash(binding: str) -> str:
    """What the login URL carries of the app-host binding: its hash, never the value."""
    return hashlib.sha256(binding.encode()).hexdigest()


def wants_redirect(scope: Scope) -> bool:
    """A browser navigation (Accept has text/html and not an XHR) is sent to sign in; others 401."""
    if header(scope, b"x-requested-with") == "XMLHttpRequest":
        return False
    accept = header(scope, b"accept") or ""
    return "text/html" in accept


def login_url(rt: Runtime, app: App, host: str, path_qs: str, app_binding: str = "") -> str:
    url = (
        f"{rt.settings.gateway.public_url}/cdn-cgi/access/login/{host}"
        f"?kid={app.aud}&redirect_url={quote(path_qs, safe='')}"
    )
    return url + (f"&meta={binding_hash(app_binding)}" if app_binding else "")


def _path_qs(scope: Scope) -> str:
    path: str = scope["path"]
    query: bytes = scope.get("query_string", b"")
    return path + ("?" + query.decode("latin-1") if query else "")


def session_fits(rt: Runtime, session: Session, app: App, host: str) -> bool:
    """A team-host app takes the global session; an app host takes that host's app session."""
    if host == rt.team_host:
        return session.kind == "global"
    if session.kind != "app":
        return False
    if session.app_id == app.id:
        return True
    # Path-based apps sharing one host share its cookie; the matched app's policy still decides.
    other = rt.app_by_id(session.app_id)
    return other is not None and other.domain.partition("/")[0] == app.domain.partition("/")[0]


def set_binding_cookie(rt: Runtime, response: Response, name: str, binding: str) -> None:
    response.set_cookie(
        name,
        rt.bindings.sign(binding),
        max_age=BINDING_TTL,
        path="/",
        secure=rt.settings.gateway.cookie_secure,
        httponly=True,
        samesite="lax",
    )


def cross_site(scope: Scope, host: str) -> bool:
    """A handshake from a page on another host, by its Origin (browsers always send one on a
    WebSocket; a client that sends none is no page). WebSocket has no CORS: a page elsewhere
    that opened a socket carrying this browser's cookie would read all it returns."""
    origin = header(scope, b"origin")
    if origin is None:
        return False
    try:
        origin_host = urlsplit(origin).hostname
    except ValueError:
        return True
    return origin_host != host


def _plain(status: int, text: str) -> Response:
    return PlainTextResponse(text, status_code=status, headers={"Cache-Control": "no-store"})


def unauthenticated(rt: Runtime, app: App, host: str, scope: Scope) -> Response:
    """No usable session: browsers go to sign in, everything else gets 401."""
    if not wants_redirect(scope):
        return _plain(401, "Unauthorized: sign in to this application first.")
    binding = secrets.token_urlsafe(24)
    response = RedirectResponse(login_url(rt, app, host, _path_qs(scope), binding), status_code=302)
    response.headers["Cache-Control"] = "no-store"
    set_binding_cookie(rt, response, APP_BINDING_COOKIE, binding)
    return response


def denied(rt: Runtime, app: App, email: str) -> Response:
    return rt.pages.render(
        "denied.html",
        403,
        title="Access denied",
        app_name=app.name,
        message=app.custom_deny_message,
        email=email,
    )


async def decide(
    rt: Runtime,
    app: App,
    host: str,
    scope: Scope,
    info: ClientInfo,
    record: RequestRecord | None = None,
) -> Response | list[tuple[bytes, bytes]]:
    """A refusal to send back, or the identity headers to forward the request with.

    Order (SPEC 3): a presented service token is checked first (401 if it does not
    authenticate); bypass and non_identity policies decide before any session is read; then
    the session, the app's allow/deny policies, and the app token. The user of the session, if
    any, is noted on `record` for the request's log line.
    """
    facts = RequestFacts(client_ip=info.address)
    client_id = header(scope, b"cf-access-client-id")
    service_token = None
    if client_id is not None:
        secret = header(scope, b"cf-access-client-secret") or ""
        service_token = await rt.service_tokens.authenticate(client_id, secret)
        if service_token is None:
            return _plain(401, "Unauthorized: invalid service token.")
        facts = RequestFacts(client_ip=info.address, service_token_id=service_token.id)
    before = evaluate_before_sign_in(app, facts)
    if before is not None and before.outcome == "non_identity" and service_token is not None:
        # Admitted by its service token: the origin can tell which one (Cloudflare's shape).
        token = await rt.app_tokens.for_service_token(service_token, app)
        return [(b"cf-access-jwt-assertion", token.encode())]
    if before is not None:
        return []  # bypass: through, with no identity attached
    if client_id is not None:
        # A valid service token that no policy admits: no fallback to a browser sign-in.
        return _plain(403, "Forbidden: this service token is not allowed here.")
    session = await rt.sessions.load(read_cookie(scope, SESSION_COOKIE))
    if (
        session is None
        or not session_fits(rt, session, app, host)
        or not rt.accepts_sign_in(session.identity, app)
    ):
        return unauthenticated(rt, app, host, scope)
    if record is not None:
        record.user = session.identity.user_uuid
    if not evaluate(app, session.identity, facts).allowed:
        return denied(rt, app, session.identity.email)
    app_token = rt.app_tokens.cached(session, app) or await rt.app_tokens.mint(session, app)
    return [
        (b"cf-access-jwt-assertion", app_token.encode()),
        (b"cf-access-authenticated-user-email", session.identity.email.encode()),
    ]


_POLICY_VIOLATION = 1008  # RFC 6455 7.4.1, for a WebSocket handshake refused

# How a refusal from `decide` is reported: the request's log line and metrics "decision".
_REFUSALS = {302: "unauthenticated", 401: "unauthenticated", 403: "deny"}


async def guard_request(
    rt: Runtime, host: str, scope: Scope, receive: Receive, send: Send, record: RequestRecord
) -> None:
    """Decide one request to a protected app and proxy it if allowed; what happened goes on
    `record` (app, decision, user) for the request's log line and metrics."""
    websocket = scope["type"] == "websocket"
    app = rt.directory.match(host, scope["path"])
    if app is None:
        record.decision = "no_app"
        if websocket:
            await send({"type": "websocket.close", "code": _POLICY_VIOLATION})
            return
        response = rt.pages.error(404, "No application is served at this address.")
        await response(scope, receive, send)
        return
    record.app = app.id
    info = client_info(scope, rt.settings.gateway.trusted_proxies)
    try:
        outcome = await decide(rt, app, host, scope, info, record)
        if isinstance(outcome, Response):
            record.decision = _REFUSALS.get(outcome.status_code, "deny")
            if websocket:  # closed before the handshake: the server answers HTTP 403
                await send({"type": "websocket.close", "code": _POLICY_VIOLATION})
                return
            await outcome(scope, receive, send)
            return
        if websocket and record.user and cross_site(scope, host):
            record.decision = "deny"  # cross-site WebSocket hijacking: not as this user
            await send({"type": "websocket.close", "code": _POLICY_VIOLATION})
            return
        # bypass and non_identity policies let the request through with no identity headers
        record.decision = "allow" if outcome else "bypass"
        record.forwarded = True
        outcome.append((b"x-request-id", record.request_id.encode()))
        if record.id_sent:  # the client's own X-Request-Id: replaced, never sent along too
            scope = {**scope, "headers": [h for h in scope["headers"] if h[0] != b"x-request-id"]}
        if websocket:
            headers, _, _ = request_headers(
                scope["headers"],
                method="GET",
                forwarded_for=info.forwarded_for,
                proto="https" if info.proto in ("https", "wss") else "http",
                host=header(scope, b"host") or host,
                identity_headers=outcome,
            )
            await relay(
                scope,
                receive,
                send,
                upstream=app.upstream,
                headers=headers,
                open_timeout=rt.settings.gateway.upstream_timeout,
            )
            return
        await forward(
            rt.upstreams,
            scope,
            receive,
            send,
            upstream=app.upstream,
            client_ip=info.ip,
            forwarded_for=info.forwarded_for,
            proto=info.proto,
            host=header(scope, b"host") or host,
            identity_headers=outcome,
        )
    except GatewayError as exc:
        if record.forwarded and isinstance(exc, UpstreamError):
            rt.metrics.upstream_error(app.id, exc.error)
        elif not record.forwarded:
            record.decision = "error"  # e.g. the store did not answer: nobody gets in
        if websocket:
            await send({"type": "websocket.close", "code": 1011})
            return
        await error_page(rt, exc, browser=wants_redirect(scope))(scope, receive, send)
