"""Forward-auth: `/cdn-cgi/access/authz`, the access decision for a proxy that does the proxying.

nginx `auth_request`, Traefik `forwardAuth` and Caddy `forward_auth` ask here about each request
they receive. The proxy describes the original request with `X-Forwarded-Host`,
`X-Forwarded-Uri` (or nginx's customary `X-Original-URI`) and `X-Forwarded-Method`, and copies
its headers (the app host's `CF_Authorization` cookie, service-token headers, `Accept`). The
description is believed only from a direct peer in `trusted_proxies`. The decision is the
verdict of `guard.decide`, the proxy mode's own, rendered here in forward-auth terms, so the two
modes cannot disagree. Answers, all tiny:

    200  allowed (or a bypass or non_identity policy): the identity headers for the proxy to
         copy upstream
    401  not signed in. A browser's answer has `Location` = the login URL and the
         `CF_AppSession` cookie (nginx turns it into a redirect with `error_page 401`; Traefik
         and Caddy pass it on as it is, so the body is a one-line refresh to the same URL);
         anything else gets a bare 401, as in proxy mode
    403  denied; or the peer is not a trusted proxy; or no app is served at that host
    400  a trusted proxy sent no usable description (no host, a URI that is not a path, an
         ambiguous path: refused like the proxy refuses it)
    503  the store did not answer: no decision, the error page of any gateway route
"""

from __future__ import annotations

import html
import re
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Scope

from gateway.authz.routing import is_ambiguous_path, split_host
from gateway.authz.verdict import Deny, Forward, Reject, SignIn, Undecided, Verdict
from gateway.errors import StoreUnavailableError
from gateway.ops.logs import REQUEST_ID, REQUEST_RECORD
from gateway.proxy.guard import SIGN_IN_FIRST, decide, note_denial, plain
from gateway.runtime import Runtime, error_page
from gateway.web.clientinfo import client_info, header, peer_is_trusted
from gateway.web.cookies import APP_BINDING_COOKIE, set_binding_cookie

# nginx, Traefik and Caddy ask with GET (X-Forwarded-Method names the original method); others
# (Envoy's ext_authz) repeat the original method, so the route takes every common one. The body
# is never read.
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}\Z")  # RFC 9110 5.6.2: a token
_NO_STORE = {"Cache-Control": "no-store"}
_REFRESH = (  # what a browser shown the 401 as it is (Traefik, Caddy) does next
    '<!doctype html>\n<meta http-equiv="refresh" content="0;url={0}">\n<a href="{0}">Sign in</a>\n'
)


def _runtime(request: Request) -> Runtime:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:
        raise StoreUnavailableError("The gateway is starting or stopping.")
    return rt


# The headers that describe the original request. A proxy passes the client's own headers along
# (nginx's auth_request does), so a client can add any of them: each must come once, and the
# two spellings of the URI must agree, or which one is judged would be the client's choice.
_DESCRIPTION = (b"x-forwarded-host", b"x-forwarded-uri", b"x-original-uri", b"x-forwarded-method")


def _described_once(scope: Scope) -> bool:
    names = [key for key, _ in scope["headers"] if key in _DESCRIPTION]
    if len(names) != len(set(names)):
        return False
    forwarded, original = header(scope, b"x-forwarded-uri"), header(scope, b"x-original-uri")
    return forwarded is None or original is None or forwarded == original


def original_request(scope: Scope) -> tuple[str, Scope] | None:
    """The request the proxy asks about: its host (no port) and an ASGI scope for it with the
    method, path and query the proxy reported and the headers it copied; None if the
    description is missing, malformed or ambiguous (a header twice, two URIs that differ)."""
    if not _described_once(scope):
        return None
    host = split_host(header(scope, b"x-forwarded-host") or "")
    uri = header(scope, b"x-forwarded-uri") or header(scope, b"x-original-uri") or ""
    method = header(scope, b"x-forwarded-method") or scope["method"]
    if not host or not uri.startswith("/") or not _METHOD.match(method):
        return None
    raw_path, _, query = uri.partition("?")
    path = unquote(raw_path)  # what uvicorn puts in scope["path"] in proxy mode
    if is_ambiguous_path(path):
        return None
    headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
    view = {
        **scope,
        "method": method,
        "path": path,
        "raw_path": raw_path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "headers": [(b"host", host.encode()), *headers],
    }
    return host, view


def _answer(rt: Runtime, verdict: Verdict) -> Response:
    """`decide`'s verdict in forward-auth terms."""
    match verdict:
        case Forward(headers=headers):
            # Every SAML attribute header is answered, empty when this user has no value: the
            # front proxy copies them over what the client sent (client copies never pass).
            blank = {name.decode(): "" for name in rt.attribute_header_names}
            identity = {name.decode(): value.decode("latin-1") for name, value in headers}
            return Response(status_code=200, headers={**_NO_STORE, **blank, **identity})
        case SignIn(login_url=""):
            return plain(401, SIGN_IN_FIRST)
        case SignIn(login_url=url, binding=binding):
            # The browser's way to sign in. An auth subrequest cannot answer with a redirect,
            # so it is a 401 carrying the login URL and the CF_AppSession cookie a redirect sets.
            response = HTMLResponse(
                _REFRESH.format(html.escape(url)),
                status_code=401,
                headers={**_NO_STORE, "Location": url},
            )
            set_binding_cookie(rt, response, APP_BINDING_COOKIE, binding)
            return response
        case Deny(app=app):  # not the access-denied page: the proxy shows its own
            return plain(403, app.custom_deny_message or "Forbidden: access denied.")
        case Reject(status=status, text=text):  # the proxy mode's own one-line answers
            return plain(status, text)
        case Undecided(error=error):  # as any gateway route's error: the page
            return error_page(rt, error)


async def authz(request: Request) -> Response:
    """`/cdn-cgi/access/authz`: would the request the trusted proxy describes be let through?"""
    rt = _runtime(request)
    scope = request.scope
    trusted = rt.settings.gateway.trusted_proxies
    # Checked before anything is read: an untrusted caller must not learn how any host would
    # answer it (nor collect the identity headers), so its answer never varies.
    if not peer_is_trusted(scope, trusted):
        return plain(403, "Forbidden: only a trusted proxy may ask for access decisions.")
    described = original_request(scope)
    if described is None:
        return plain(400, "Bad request: X-Forwarded-Host and X-Forwarded-Uri must name a path.")
    host, view = described
    app = rt.directory.match(host, view["path"])
    if app is None:
        # 403, not proxy mode's 404: the proxy does serve this address, and whatever it
        # protects that no app covers stays shut (nginx would turn a 404 into a 500).
        return plain(403, "Forbidden: no application is served at this address.")
    info = client_info(scope, trusted)
    verdict = await decide(rt, app, host, view, info)
    record = REQUEST_RECORD.get()
    if record is not None:  # the line of this request says what was decided, as the guard's
        record.app = app.id
        record.decision = verdict.label
        record.user = verdict.user
        record.email = verdict.email
        record.policy = verdict.policy
        record.rule = verdict.rule
    await note_denial(rt, app, verdict, info.ip, REQUEST_ID.get())
    return _answer(rt, verdict)
