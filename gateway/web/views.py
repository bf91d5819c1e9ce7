"""Thin handlers for the gateway's own routes: login, callback, authorized, logout, identity,
the IdP test page (its rendering lives in `testpage.py`) and the result pages a sign-in ends on
(access denied, the test's outcome), kept for a reload (`web/pages.py`).

The flow logic lives in `signin.py`, `handoff.py`, `sessions.py` and `policy.py`; these functions
read the request, call them, and set cookies and redirects. Every failure is a `GatewayError`,
which the app turns into an HTML page with a reference id.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Mapping
from typing import NoReturn
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from gateway.authn import handoff, login_limit, signin, testpage
from gateway.authn.providers.saml import SamlProvider
from gateway.authz.app_tokens import certs_document
from gateway.authz.policy import RequestFacts, app_session_duration, evaluate
from gateway.authz.routing import split_host
from gateway.config import CONSOLE_POLICY_NAME, App
from gateway.console import access
from gateway.console.signin import console_path
from gateway.errors import GatewayError, NotFoundError, SignInError, StoreUnavailableError
from gateway.identity import Identity, user_uuid_for
from gateway.ops.logs import REQUEST_ID
from gateway.ops.metrics import CONTENT_TYPE_LATEST
from gateway.proxy.guard import denied_page
from gateway.runtime import Runtime
from gateway.ssf.events import configuration_document, jwks_document
from gateway.state.sessions import Session
from gateway.web import bodies, pages
from gateway.web.bearer import bearer_matches
from gateway.web.clientinfo import client_info
from gateway.web.cookies import (
    APP_BINDING_COOKIE,
    LOGIN_BINDING_COOKIE,
    SESSION_COOKIE,
    binding_hash,
    clear_app_binding_cookie,
    clear_session_cookie,
    read_cookie,
    set_binding_cookie,
    set_session_cookie,
)

log = logging.getLogger("gateway.views")

_MAX_REDIRECT_URL = 2048  # kept in the store with each sign-in: bounded
_MAX_CALLBACK_FORM = 512 * 1024  # a SAML Response form: Okta's are a few KiB
_SAML_FIELDS = ("SAMLResponse", "RelayState")
_BINDING_HASH = re.compile(r"[0-9a-f]{64}")
DENIED_PATH = "/cdn-cgi/access/denied"
TEST_RESULT_PATH = "/test-idp/result"
SAML_METADATA_PATH = "/cdn-cgi/access/saml-metadata"


def _rt(request: Request) -> Runtime:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:
        raise StoreUnavailableError("The gateway is starting or stopping.")
    return rt


def _host(request: Request) -> str:
    return split_host(request.headers.get("host", ""))


def safe_path(redirect_url: str | None) -> str:
    """`redirect_url` if it is a path on this host, else "/" (no open redirects)."""
    if not redirect_url or not redirect_url.startswith("/") or redirect_url.startswith("//"):
        return "/"
    if len(redirect_url) > _MAX_REDIRECT_URL:
        return "/"
    if "\\" in redirect_url or any(ord(c) < 0x20 for c in redirect_url):
        return "/"
    parts = urlsplit(redirect_url)
    return "/" if parts.scheme or parts.netloc else redirect_url


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


async def _session(rt: Runtime, request: Request) -> Session | None:
    # The same cookie the proxy reads when a request carries several (read_cookie: the first).
    return await rt.sessions.load(read_cookie(request.scope, SESSION_COOKIE))


def _facts(rt: Runtime, request: Request, session: Session | None = None) -> RequestFacts:
    """The request's facts; with a session, its user's risk level (from the record)."""
    address = client_info(request.scope, rt.settings.gateway.trusted_proxies).address
    if session is None or not session.risk:
        return RequestFacts(client_ip=address)
    return RequestFacts(client_ip=address, risk_level=session.risk.level_at(rt.clock()))


# --- login ----------------------------------------------------------------------------------


async def login(request: Request) -> Response:
    """`/cdn-cgi/access/login/<app-host>?kid=<AUD>&redirect_url=<path>` on the team host."""
    rt = _rt(request)
    if _host(request) != rt.team_host:
        raise GatewayError("Sign-in happens on the gateway's team domain.", status=404)
    app_host = request.path_params["app_host"].lower()
    app = rt.directory.find_by_aud(request.query_params.get("kid", ""))
    redirect_url = safe_path(request.query_params.get("redirect_url"))
    app_binding = request.query_params.get("meta", "")
    # app_host and meta end up in a redirect and in the store: only well-formed values pass.
    if split_host(app_host) != app_host or (
        app_binding and not _BINDING_HASH.fullmatch(app_binding)
    ):
        raise GatewayError("Malformed sign-in link.", error="bad_request", status=400)
    # The AUD names the app; the host and path it returns to must be that app's.
    if app is None or rt.directory.match(app_host, urlsplit(redirect_url).path) is not app:
        raise GatewayError("Unknown application.", error="unknown_app", status=404)
    session = await _session(rt, request)
    # A global session from an IdP this app does not allow is no sign-in here: pick one it does.
    if (
        session is not None
        and session.kind == "global"
        and rt.accepts_sign_in(session.identity, app)
    ):
        return await continue_to_app(rt, request, session, app, app_host, redirect_url, app_binding)
    idps = rt.idps_for(app)
    if not idps:
        raise GatewayError("No identity provider is configured for this application.", status=503)
    chosen = request.query_params.get("idp")
    if chosen:
        idp = next((i for i in idps if i.id == chosen), None)
        if idp is None:
            raise GatewayError("That identity provider is not allowed here.", status=400)
    elif len(idps) == 1 and app.auto_redirect_to_identity:
        idp = idps[0]
    else:
        base = {k: v for k, v in request.query_params.items() if k != "idp"}
        choices = [
            {"name": i.name, "url": f"{request.url.path}?{urlencode({**base, 'idp': i.id})}"}
            for i in idps
        ]
        return rt.pages.render("picker.html", 200, title="Sign in", app_name=app.name, idps=choices)
    await login_limit.count_start(rt.store, _facts(rt, request).client_ip, rt.clock)
    binding = rt.bindings.unsign(
        read_cookie(request.scope, LOGIN_BINDING_COOKIE) or ""
    ) or secrets.token_urlsafe(24)
    state = signin.LoginState(
        binding=binding,
        idp_id=idp.id,
        purpose="login",
        app_id=app.id,
        app_host=app_host,
        redirect_url=redirect_url,
        app_binding=app_binding,
    )
    authorize_url = await signin.start(rt.store, rt.providers[idp.id], state)
    response = _no_store(RedirectResponse(authorize_url, status_code=302))
    set_binding_cookie(
        rt, response, LOGIN_BINDING_COOKIE, binding, cross_site_post=idp.type == "saml"
    )
    return response


async def continue_to_app(
    rt: Runtime,
    request: Request,
    session: Session,
    app: App,
    app_host: str,
    redirect_url: str,
    app_binding: str,
    cookie_value: str | None = None,
) -> Response:
    """With a global session: evaluate the app's policies and send the browser on.

    On the team host (single-host deployment) the global session is the app session too; on an
    app host a single-use token, bound to that browser's CF_AppSession, carries the sign-in over.
    A deny is kept and shown at `/cdn-cgi/access/denied/<id>`, a page that can be reloaded. The
    decision goes to the log and the API's access log with the policy and rule behind it, and a
    deny counts towards the user's `repeated_denials` (SPEC 8).
    """
    facts = _facts(rt, request, session)
    identity = session.identity
    decision = evaluate(app, identity, facts)
    reference = REQUEST_ID.get()
    log.info(
        "sign-in: app decision %s",
        decision.outcome,
        extra={
            "step": "decision",
            "app": app.id,
            "user_uuid": identity.user_uuid,
            "email": identity.email,
            "policy": decision.policy_name,
            "rule": decision.rule,
        },
    )
    await rt.access_log.record(
        "sign_in",
        "allow" if decision.allowed else "deny",
        reference=reference,
        app=app.id,
        email=identity.email,
        user_uuid=identity.user_uuid,
        identity_provider_id=identity.idp_id,
        policy=decision.policy_name,
        rule=decision.rule,
        ip=identity.ip,
    )
    if not decision.allowed:  # a refusal by policy, as the proxy's are (repeated_denials)
        await rt.risk.denied(identity.user_uuid, identity.email, app.id)
    scheme = urlsplit(rt.settings.gateway.public_url).scheme
    app_url = f"{scheme}://{app_host}{_port_suffix(request)}{redirect_url}"
    if not decision.allowed:
        # Kept and shown at a URL of its own: reloading the callback URL could only fail.
        page = denied_page(app, identity.email, reference, app_url)
        result_id = await pages.keep(rt.store, "denied", page)
        response: Response = _no_store(
            RedirectResponse(f"{DENIED_PATH}/{result_id}", status_code=302)
        )
    elif app_host == rt.team_host:
        response = _no_store(RedirectResponse(redirect_url, status_code=302))
    else:
        token = await handoff.issue(
            rt.store,
            handoff.Handoff(
                session_id=session.id, app_id=app.id, host=app_host, app_binding=app_binding
            ),
        )
        target = (
            f"{scheme}://{app_host}{_port_suffix(request)}/cdn-cgi/access/authorized?"
            + urlencode({"token": token, "redirect_url": redirect_url})
        )
        response = _no_store(RedirectResponse(target, status_code=302))
    if cookie_value:
        set_session_cookie(rt, response, cookie_value, None, session.expires - rt.clock())
    return response


async def denied(request: Request) -> Response:
    """`/cdn-cgi/access/denied/<id>`: the access-denied page a sign-in ended with, again."""
    rt = _rt(request)
    page = await pages.kept(rt.store, "denied", request.path_params["result_id"])
    if page is None:
        raise NotFoundError(
            "This page has expired. Go back to the application to try again.",
        )
    return rt.pages.show(page)


def _port_suffix(request: Request) -> str:
    """The port the team host is served on, reused for app hosts (local and test setups)."""
    port = urlsplit(f"//{request.headers.get('host', '')}").port
    return f":{port}" if port else ""


# --- callback -------------------------------------------------------------------------------


async def _posted_form(request: Request) -> dict[str, str]:
    """A SAML HTTP-POST binding's form (`SAMLResponse`, `RelayState`), size-bounded."""
    if bodies.media_type(request) != "application/x-www-form-urlencoded":
        raise GatewayError("Expected a SAML Response form.", error="bad_request", status=400)
    body = await bodies.read_bounded(request, _MAX_CALLBACK_FORM)
    if body is None:
        raise GatewayError("The sign-in answer is too large.", error="too_large", status=413)
    try:
        fields = parse_qs(body.decode("latin-1"), max_num_fields=16)
    except ValueError as exc:  # more fields than any SAML form has
        raise GatewayError("Malformed sign-in answer.", error="bad_request", status=400) from exc
    return {name: values[0] for name, values in fields.items() if name in _SAML_FIELDS}


async def callback(request: Request) -> Response:
    """The redirect URI (OIDC, GET) and Assertion Consumer Service (SAML, POST): state check,
    the provider's validation, session, app decision.

    A sign-in started by the IdP test page (`purpose == "test"`) runs the same steps, then
    renders what it learned, or where it failed, instead of creating a session.
    """
    rt = _rt(request)
    params: Mapping[str, str] = request.query_params
    state_param = params.get("state")
    if request.method == "POST":  # SAML HTTP-POST binding: the RelayState is the state
        params = await _posted_form(request)
        state_param = params.get("RelayState")
        if not state_param:
            rt.metrics.sign_in("", "failure", "unsolicited")
            raise SignInError(
                "This sign-in was not started here (IdP-initiated sign-in, such as an Okta "
                "dashboard tile, is not accepted). Start from the application's address.",
                step="unsolicited",
            )
    binding = rt.bindings.unsign(read_cookie(request.scope, LOGIN_BINDING_COOKIE) or "")
    try:
        state = await signin.take_state(rt.store, state_param, binding)
    except SignInError as exc:
        rt.metrics.sign_in("", "failure", exc.step)  # which IdP is in the state it lacks
        raise
    idp = rt.settings.idp(state.idp_id)
    if idp is None:
        raise SignInError("The identity provider of this sign-in no longer exists.", step="state")
    if (idp.type == "saml") != (request.method == "POST"):
        # Each protocol answers by its own binding: a SAML Response only in a POSTed form, never
        # in a URL (where proxies and access logs keep it); an OIDC code only in the query.
        rt.metrics.sign_in(idp.id, "failure", "response")
        raise SignInError("The sign-in answer came by the wrong HTTP method.", step="response")
    ip = client_info(request.scope, rt.settings.gateway.trusted_proxies).ip
    started = time.perf_counter()
    try:
        outcome = await signin.finish(rt.store, rt.providers[idp.id], state, params, ip, rt.clock)
    except SignInError as exc:
        rt.metrics.sign_in(idp.id, "failure", exc.step, time.perf_counter() - started)
        if state.purpose == "test":
            return await _test_result(rt, testpage.failure_page(rt, idp, exc))
        await rt.access_log.record(
            "sign_in",
            "failure",
            reference=REQUEST_ID.get(),
            app=state.app_id,
            identity_provider_id=idp.id,
            ip=ip,
            error=f"{exc.step or 'sign-in'}: {exc.description}",
        )
        if exc.subject:  # it failed after the IdP proved who this is (SPEC 8)
            user = user_uuid_for(idp.id, exc.subject)
            await rt.risk.sign_in_failed(user, exc.subject_email, idp.id, exc.step)
        raise
    seconds = time.perf_counter() - started
    if isinstance(outcome, str):  # to the IdP once more (Okta: without the groups scope)
        rt.metrics.sign_in(idp.id, "restarted", "", seconds)
        return _no_store(RedirectResponse(outcome, status_code=302))
    rt.metrics.sign_in(idp.id, "success", "", seconds)
    if state.purpose == "test":
        # The IdP test stops here, before any session or cookie exists (SPEC 4 "Test page").
        return await _test_result(rt, testpage.success_page(rt, idp, outcome))
    identity = outcome.identity
    console = state.purpose == "console"
    app = None if console else rt.app_by_id(state.app_id)
    if app is None and not console:
        raise SignInError("The application of this sign-in no longer exists.", step="state")
    if await rt.registry.deactivated(identity):  # the console included
        await _refuse_deactivated(rt, identity, app.id if app else "console")
    if app is None:
        return await _console_sign_in(rt, request, identity, state.redirect_url)
    facts = _facts(rt, request)
    duration = rt.settings.gateway.session_duration
    if state.app_host == rt.team_host:
        # Single-host deployment: one cookie names a session that is both global and app.
        duration = min(duration, app_session_duration(app, identity, facts))
    # The registry first: SCIM deprovisioning finds the sessions through it (fails closed).
    await rt.registry.record_sign_in(identity)
    # Its network (new_network), before the session: it starts with the level that makes.
    await rt.risk.signed_in(identity)
    session, cookie_value = await rt.sessions.create(identity, kind="global", duration=duration)
    log.info(
        "sign-in ok idp=%s user=%s app=%s",
        idp.id,
        identity.user_uuid,
        app.id,
        extra={"step": "session", "idp": idp.id, "user_uuid": identity.user_uuid, "app": app.id},
    )
    return await continue_to_app(
        rt,
        request,
        session,
        app,
        state.app_host,
        state.redirect_url,
        state.app_binding,
        cookie_value,
    )


async def _console_sign_in(
    rt: Runtime, request: Request, identity: Identity, redirect_url: str
) -> Response:
    """A sign-in started by the console (`console/signin.py`): the team session, then back to
    the console page, which decides whether this identity may use it. The console's decision
    goes to the access log as an app decision does, under the app name "console"."""
    await rt.registry.record_sign_in(identity)
    await rt.risk.signed_in(identity)  # its network counts as an app sign-in's does
    session, cookie_value = await rt.sessions.create(
        identity, kind="global", duration=rt.settings.gateway.session_duration
    )
    admitted = access.admits(
        rt.settings, identity, _facts(rt, request, session), rt.accepts_sign_in(identity)
    )
    await rt.access_log.record(
        "sign_in",
        "allow" if admitted else "deny",
        reference=REQUEST_ID.get(),
        app="console",
        email=identity.email,
        user_uuid=identity.user_uuid,
        identity_provider_id=identity.idp_id,
        policy=CONSOLE_POLICY_NAME if rt.settings.console.policy else "",
        rule="" if admitted else "not admitted by [console.policy]",
        ip=identity.ip,
    )
    response = _no_store(RedirectResponse(console_path(redirect_url), status_code=302))
    set_session_cookie(rt, response, cookie_value, None, session.expires - rt.clock())
    return response


async def _refuse_deactivated(rt: Runtime, identity: Identity, app_id: str) -> NoReturn:
    """A person SCIM deactivated proved who they are at the IdP: no session, and it counts
    (`scim_deprovisioned_sign_in`, `failed_sign_ins`)."""
    error = SignInError(
        "Your account has been deactivated.",
        step="deprovisioned",
        status=403,
        hint="the identity provider's SCIM provisioning deactivated this user",
    )
    await rt.access_log.record(
        "sign_in",
        "failure",
        reference=REQUEST_ID.get(),
        app=app_id,
        email=identity.email,
        user_uuid=identity.user_uuid,
        identity_provider_id=identity.idp_id,
        ip=identity.ip,
        error=f"{error.step}: {error.description}",
    )
    await rt.risk.deactivated_sign_in(identity)
    raise error


# --- SAML service-provider metadata ---------------------------------------------------------


async def saml_metadata(request: Request) -> Response:
    """`/cdn-cgi/access/saml-metadata/<idp-id>` on the team host: this gateway as a SAML SP for
    that IdP (SPEC 10); public, as metadata is. 404 for an unknown or non-SAML id."""
    rt = _rt(request)
    provider = rt.providers.get(request.path_params["idp_id"])
    if _host(request) != rt.team_host or not isinstance(provider, SamlProvider):
        raise NotFoundError("There is no SAML identity provider with that id.")
    document = await provider.metadata_document()
    return Response(
        document,
        media_type="application/samlmetadata+xml",
        headers={"Cache-Control": "public, max-age=300"},
    )


# --- the IdP test page ----------------------------------------------------------------------


async def test_idp(request: Request) -> Response:
    """`/test-idp?idp=<id>` on the team host: the IdP "Test" button (testpage.py)."""
    rt = _rt(request)
    if _host(request) != rt.team_host:
        raise NotFoundError("Not found.")
    binding_cookie = read_cookie(request.scope, LOGIN_BINDING_COOKIE) or ""
    await login_limit.count_start(rt.store, _facts(rt, request).client_ip, rt.clock)
    return await testpage.begin(rt, request.query_params.get("idp", ""), binding_cookie)


async def _test_result(rt: Runtime, page: pages.Kept) -> Response:
    """The test's outcome, kept and shown at a URL that can be reloaded or shared."""
    result_id = await pages.keep(rt.store, "test", page)
    return _no_store(RedirectResponse(f"{TEST_RESULT_PATH}/{result_id}", status_code=302))


async def test_idp_result(request: Request) -> Response:
    """`/test-idp/result/<id>`: a test's outcome, for a few minutes, to whoever has the link
    (it shows only what the test showed: the tester's identity and the ID token's claims)."""
    rt = _rt(request)
    if _host(request) != rt.team_host:
        raise NotFoundError("Not found.")
    page = await pages.kept(rt.store, "test", request.path_params["result_id"])
    if page is None:
        raise NotFoundError(
            "This test result has expired (results are kept for "
            f"{int(pages.RESULT_TTL // 60)} minutes). Run the test again."
        )
    return rt.pages.show(page)


# --- authorized (app host) ------------------------------------------------------------------


async def authorized(request: Request) -> Response:
    """`/cdn-cgi/access/authorized?token=...`: redeem the one-time token into an app session."""
    rt = _rt(request)
    app_binding = rt.bindings.unsign(read_cookie(request.scope, APP_BINDING_COOKIE) or "") or ""
    redeemed = await handoff.redeem(
        rt.store,
        request.query_params.get("token", ""),
        _host(request),
        binding_hash(app_binding) if app_binding else "",
    )
    signed_in = await handoff.open_app_session(
        rt.sessions, redeemed, rt.app_by_id(redeemed.app_id), _facts(rt, request)
    )
    log.info(
        "sign-in: app session created",
        extra={
            "step": "authorized",
            "app": signed_in.app.id,
            "user_uuid": signed_in.session.identity.user_uuid,
        },
    )
    response = _no_store(RedirectResponse(safe_path(request.query_params.get("redirect_url")), 302))
    set_session_cookie(rt, response, signed_in.cookie_value, signed_in.app, signed_in.duration)
    clear_app_binding_cookie(response)
    return response


# --- identity and logout --------------------------------------------------------------------


async def get_identity(request: Request) -> Response:
    rt = _rt(request)
    try:
        session = await _session(rt, request)
    except StoreUnavailableError as exc:  # JSON callers get JSON, even now
        log.warning("get-identity: %s", exc)
        return _no_store(JSONResponse({"err": exc.description}, status_code=503))
    if session is None or not rt.accepts_sign_in(session.identity):
        return _no_store(JSONResponse({"err": "no session"}, status_code=401))
    return _no_store(JSONResponse(session.identity.to_json()))


async def logout(request: Request) -> Response:
    """Revoke every session of the user, clear the cookie, then the signed-out page."""
    rt = _rt(request)
    session = await _session(rt, request)
    if session is not None:
        user_uuid = session.identity.user_uuid
        revoked = await rt.sessions.revoke_user(user_uuid)
        log.info(
            "logout user=%s sessions_revoked=%d",
            user_uuid,
            revoked,
            extra={"step": "logout", "user_uuid": user_uuid, "sessions_revoked": revoked},
        )
    return_to = request.query_params.get("returnTo", "")
    target = urlsplit(return_to)
    if (
        return_to
        and target.scheme in ("http", "https")
        and target.hostname
        and rt.is_known_host(target.hostname.lower())
    ):
        response: Response = RedirectResponse(return_to, status_code=302)
    else:
        response = rt.pages.render("signed_out.html", 200, title="Signed out")
    clear_session_cookie(rt, response)
    return _no_store(response)


async def certs(request: Request) -> Response:
    """The app-token verification keys, current and previous (Cloudflare's shape)."""
    rt = _rt(request)
    document = certs_document(await rt.signing_keys.published())
    return JSONResponse(document, headers={"Cache-Control": "public, max-age=300"})


async def ssf_configuration(request: Request) -> Response:
    """`/.well-known/ssf-configuration` (team host): the SSF transmitter's metadata, the URL an
    Okta admin gives its Security Events Provider (SPEC 8)."""
    document = configuration_document(_rt(request).settings.gateway.public_url)
    return JSONResponse(document, headers={"Cache-Control": "public, max-age=300"})


async def ssf_jwks(request: Request) -> Response:
    """`/cdn-cgi/access/ssf/jwks` (team host): the keys the SETs sent to Okta are signed with."""
    rt = _rt(request)
    if _host(request) != rt.team_host:
        raise NotFoundError("Not found.")
    document = jwks_document(await rt.ssf_keys.published())
    return JSONResponse(document, headers={"Cache-Control": "public, max-age=300"})


# --- health ---------------------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    """Readiness: the config is loaded (the lifespan built the runtime from it) and the store
    answers; 503 otherwise, so a load balancer stops sending sign-ins to an instance that
    would fail them closed."""
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:
        return PlainTextResponse("not ready: starting", status_code=503)
    try:
        await rt.store.ping()
    except StoreUnavailableError:
        return PlainTextResponse("not ready: store unreachable", status_code=503)
    return PlainTextResponse("ready")


async def metrics(request: Request) -> Response:
    """`/metrics`: the Prometheus text format, for `Authorization: Bearer <admin token>`.

    With no admin token configured there is nothing to authenticate with: 404, as for the admin
    API. A missing or wrong token is a plain 401 (scrapers read the status, not a page).
    """
    rt = _rt(request)
    token = rt.settings.gateway.admin_token
    if not token:
        return PlainTextResponse("Not found.", status_code=404)
    if not bearer_matches(request.headers.get("authorization", ""), token):
        return PlainTextResponse(
            "Unauthorized: send 'Authorization: Bearer <admin token>'.",
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return Response(
        rt.metrics.render(),
        media_type=CONTENT_TYPE_LATEST,
        headers={"Cache-Control": "no-store"},
    )
