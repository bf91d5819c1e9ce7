"""The hot path: every request to a protected app passes here.

cookie -> session (one store GET) -> policy -> upstream. `decide` makes the access decision
once, as a value (`authz/verdict.py`); `guard_request` labels the request's log line and metrics
from it and renders it: proxies the request or answers the refusal, or for a WebSocket handshake
relays the socket or closes it. Forward-auth renders the same value its own way. No template is
rendered and no token is minted for an allowed request; pages are built only for the requests
that are turned away. Anything unexpected on the way fails closed: no session means sign in, a
store that does not answer means 503, never a pass. A request the policies refuse is also
recorded in the admin API's access log (a store write, for refused requests only), and its
access-denied page gives the user a reference: the request id of its log line, which names the
policy and the rule behind the refusal.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote, urlencode, urlsplit

from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from gateway.authz.policy import RequestFacts, evaluate, evaluate_before_sign_in
from gateway.authz.verdict import (
    INVALID_SERVICE_TOKEN,
    SERVICE_TOKEN_NOT_ADMITTED,
    SIGN_IN,
    Deny,
    Forward,
    Reject,
    SignIn,
    Undecided,
    Verdict,
)
from gateway.config import App
from gateway.errors import GatewayError, UpstreamError
from gateway.ops.logs import RequestRecord
from gateway.proxy.forwarding import forward, request_headers
from gateway.proxy.websocket import relay
from gateway.runtime import Runtime, error_page
from gateway.state.sessions import Session
from gateway.web.clientinfo import ClientInfo, client_info, client_network, header
from gateway.web.cookies import (
    APP_BINDING_COOKIE,
    SESSION_COOKIE,
    binding_hash,
    read_cookie,
    set_binding_cookie,
)
from gateway.web.pages import Kept


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
    return other is not None and other.host == app.host


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


CROSS_SITE_SOCKET = "a WebSocket opened from a page on another site (Origin)"


def _sign_in(rt: Runtime, app: App, host: str, scope: Scope) -> SignIn:
    """No usable session: a browser is sent to sign in, bound to this host; others get 401."""
    if not wants_redirect(scope):
        return SIGN_IN
    binding = secrets.token_urlsafe(24)
    return SignIn(login_url(rt, app, host, _path_qs(scope), binding), binding)


async def decide(rt: Runtime, app: App, host: str, scope: Scope, info: ClientInfo) -> Verdict:
    """The access decision for one request to `app`, made once, rendered by the caller.

    Order (SPEC 3): a presented service token is checked first (rejected if it does not
    authenticate); bypass and non_identity policies decide before any session is read; then
    the session, the app's allow/deny policies, and the app token. A WebSocket handshake from
    another site is denied. A store that does not answer leaves the request undecided.
    """
    user = email = ""
    try:
        facts = RequestFacts(client_ip=info.address)
        client_id = header(scope, b"cf-access-client-id")
        service_token = None
        if client_id is not None:
            secret = header(scope, b"cf-access-client-secret") or ""
            service_token = await rt.service_tokens.authenticate(client_id, secret)
            if service_token is None:
                return INVALID_SERVICE_TOKEN
            facts = RequestFacts(client_ip=info.address, service_token_id=service_token.id)
        before = evaluate_before_sign_in(app, facts)
        if before is not None:
            name = before.policy_name
            if before.outcome == "bypass":
                return Forward("bypass", name)
            if service_token is None:
                return Forward("non_identity", name)  # admitted by a rule on the request
            # Admitted by its service token: the origin can tell which one (Cloudflare's shape).
            token = await rt.app_tokens.for_service_token(service_token, app)
            return Forward("service_token", name, ((b"cf-access-jwt-assertion", token.encode()),))
        if client_id is not None:
            return SERVICE_TOKEN_NOT_ADMITTED
        session = await rt.sessions.load(read_cookie(scope, SESSION_COOKIE))
        if (
            session is None
            or not session_fits(rt, session, app, host)
            or not rt.accepts_sign_in(session.identity, app)
        ):
            return _sign_in(rt, app, host, scope)
        identity = session.identity
        user, email = identity.user_uuid, identity.email
        if session.risk:  # the user's risk level, from the record just read (SPEC 8)
            facts = RequestFacts(
                client_ip=info.address, risk_level=session.risk.level_at(rt.clock())
            )
        decision = evaluate(app, identity, facts)
        if not decision.allowed:
            return Deny(app, email, user, decision.policy_name, decision.rule)
        if scope["type"] == "websocket" and cross_site(scope, host):
            # cross-site WebSocket hijacking
            return Deny(app, email, user, decision.policy_name, CROSS_SITE_SOCKET)
        app_token = rt.app_tokens.cached(session, app) or await rt.app_tokens.mint(session, app)
        headers = (
            (b"cf-access-jwt-assertion", app_token.encode()),
            (b"cf-access-authenticated-user-email", identity.email.encode()),
        )
        return Forward("allow", decision.policy_name, headers, user, email)
    except GatewayError as exc:
        return Undecided(exc, user, email)


# --- rendering ------------------------------------------------------------------------------

SIGN_IN_FIRST = "Unauthorized: sign in to this application first."


def plain(status: int, text: str) -> Response:
    """A one-line answer, never cached: what a client that is not a browser is told."""
    return PlainTextResponse(text, status_code=status, headers={"Cache-Control": "no-store"})


def denied_page(app: App, email: str, reference: str, app_url: str) -> Kept:
    """The access-denied page: what the user may do (sign in again after being given access,
    or try again) and a reference for the helpdesk, which matches the request's log line. Why
    the policies refused is for the operator: it is on that log line, not on the page."""
    return Kept(
        "denied.html",
        403,
        {
            "title": "Access denied",
            "app_name": app.name,
            "message": app.custom_deny_message,
            "email": email,
            "reference": reference,
            "retry_url": app_url,
            # Sessions carry the groups of their sign-in: a new group is seen at the next one.
            "signin_again_url": "/cdn-cgi/access/logout?" + urlencode({"returnTo": app_url}),
        },
    )


def _refusal(
    rt: Runtime,
    verdict: SignIn | Deny | Reject | Undecided,
    scope: Scope,
    info: ClientInfo,
    reference: str,
) -> Response:
    """The proxy's answer to a request it does not forward."""
    match verdict:
        case SignIn(login_url=""):
            return plain(401, SIGN_IN_FIRST)
        case SignIn(login_url=url, binding=binding):
            response = RedirectResponse(url, status_code=302)
            response.headers["Cache-Control"] = "no-store"
            set_binding_cookie(rt, response, APP_BINDING_COOKIE, binding)
            return response
        case Deny(app=app, email=email):
            here = f"{info.proto}://{header(scope, b'host')}{_path_qs(scope)}"
            return rt.pages.show(denied_page(app, email, reference, here))
        case Reject(status=status, text=text):
            return plain(status, text)
        case Undecided(error=error):
            return error_page(rt, error, browser=wants_redirect(scope))


# RFC 6455 7.4.1 close codes for a WebSocket handshake refused, or left undecided
_POLICY_VIOLATION = 1008
_UNEXPECTED_CONDITION = 1011


async def note_denial(rt: Runtime, app: App, verdict: Verdict, ip: str, reference: str) -> None:
    """A policy's refusal goes to the API's access log (it holds refusals, never allows) and
    counts towards the user's `repeated_denials` (SPEC 8), in the proxy and forward-auth modes
    alike."""
    if verdict.label == "deny":
        if verdict.user and verdict.rule != CROSS_SITE_SOCKET:
            await rt.risk.denied(verdict.user, verdict.email, app.id)
        await rt.access_log.record(
            "access",
            "deny",
            reference=reference,
            app=app.id,
            email=verdict.email,
            user_uuid=verdict.user,
            policy=verdict.policy,
            rule=verdict.rule,
            ip=ip,
        )


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
    verdict = await decide(rt, app, host, scope, info)
    record.decision = verdict.label
    record.user = verdict.user
    record.email = verdict.email
    record.policy = verdict.policy
    record.rule = verdict.rule
    if not isinstance(verdict, Forward):
        await note_denial(rt, app, verdict, info.ip, record.request_id)
        if websocket:  # closed before the handshake: the server answers HTTP 403
            code = _UNEXPECTED_CONDITION if isinstance(verdict, Undecided) else _POLICY_VIOLATION
            await send({"type": "websocket.close", "code": code})
            return
        await _refusal(rt, verdict, scope, info, record.request_id)(scope, receive, send)
        return
    record.forwarded = True
    identity_headers = [*verdict.headers, (b"x-request-id", record.request_id.encode())]
    if record.id_sent:  # the client's own X-Request-Id: replaced, never sent along too
        scope = {**scope, "headers": [h for h in scope["headers"] if h[0] != b"x-request-id"]}
    if websocket:
        headers, _, _ = request_headers(
            scope["headers"],
            method="GET",
            forwarded_for=info.forwarded_for,
            proto="https" if info.proto in ("https", "wss") else "http",
            host=header(scope, b"host") or host,
            identity_headers=identity_headers,
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
    try:
        await forward(
            rt.upstreams,
            scope,
            receive,
            send,
            upstream=app.upstream,
            client_ip=info.ip,
            client_network=client_network(info.address) or "",
            forwarded_for=info.forwarded_for,
            proto=info.proto,
            host=header(scope, b"host") or host,
            identity_headers=identity_headers,
        )
    except UpstreamError as exc:  # raised only while no response has started
        rt.metrics.upstream_error(app.id, exc.error)
        await error_page(rt, exc, browser=wants_redirect(scope))(scope, receive, send)
