"""The `/console` ASGI app: access, CSRF, dispatch to a page, and every answer's headers.

The route table (`web/routes.py`) mounts it at `/console` on the team host, so every path there
comes here, an unknown one included. In order:

1. the public pages (`console/routes.py` `PUBLIC`: the static files, the sign-in start, the
   console-link page) are served to anyone;
2. everything else needs a team session that `access.admits`: no session is the sign-in page
   (a GET) or a 403 (anything else); a session the console does not admit is the 403 page,
   whatever the path or method, before the path is even looked up;
3. a POST must come from the gateway's origin and carry the session's CSRF token
   (`security.py`), else 403 and nothing is changed;
4. the page's handler runs with a `Console` context; a `GatewayError` it raises is a console
   page with that status, a bug a 500 page with a reference id, never a traceback.

Every response leaves with `security.HEADERS`.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from gateway.authz.policy import RequestFacts
from gateway.console import access, security
from gateway.console.context import Console, render_message
from gateway.console.routes import PAGES, PREFIX, PUBLIC, match
from gateway.console.signin import choices
from gateway.errors import GatewayError, StoreUnavailableError
from gateway.runtime import Runtime, reference_id
from gateway.state.sessions import Session
from gateway.web.clientinfo import client_info
from gateway.web.cookies import SESSION_COOKIE, read_cookie

log = logging.getLogger("gateway.console")


class ConsoleApp:
    """Serves `/console` and everything below it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self._respond(request)
        response.headers.update(security.HEADERS)
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        rt: Runtime | None = getattr(request.app.state, "runtime", None)
        try:
            if rt is None:
                raise StoreUnavailableError("The gateway is starting or stopping.")
            return await self._dispatch(request, rt)
        except GatewayError as exc:
            if rt is None:
                return Response("The gateway is starting or stopping.", status_code=503)
            if exc.status >= 500:
                log.warning("console %s %s: %s", request.method, request.url.path, exc)
            return render_message(rt, exc.status, exc.description)
        except Exception:  # a bug: a page with a reference, never a traceback
            ref = reference_id()
            log.exception("console error ref=%s %s %s", ref, request.method, request.url.path)
            if rt is None:
                return Response(f"Internal error (reference {ref}).", status_code=500)
            return render_message(rt, 500, f"Internal error (reference {ref}).")

    async def _dispatch(self, request: Request, rt: Runtime) -> Response:
        path = request.url.path.removeprefix(PREFIX)
        if path == "":
            return RedirectResponse(PREFIX + "/", status_code=302)
        public, _ = match(PUBLIC, request.method, path)
        if public is not None:
            request.scope["path_params"] = public.params(path)
            return await public.handler(request, rt)
        session = await rt.sessions.load(read_cookie(request.scope, SESSION_COOKIE))
        if session is None or session.kind != "global":
            if request.method == "GET":
                return sign_in_page(rt, request)
            raise GatewayError("Sign in to use the console.", error="forbidden", status=403)
        if not self._admitted(rt, request, session):
            raise GatewayError(
                f"{session.identity.email} may not use the gateway console. "
                "An administrator can add you to [console.policy].",
                error="forbidden",
                status=403,
            )
        page, allowed = match(PAGES, request.method, path)
        if page is None:
            if allowed:
                raise GatewayError(f"Use {', '.join(allowed)} here.", status=405)
            raise GatewayError("No such console page.", error="not_found", status=404)
        console = Console(request, rt, session, access.actor_of(session.identity))
        if request.method == "POST":
            await self._check_form(console)
        request.scope["path_params"] = page.params(path)
        return await page.handler(console)

    def _admitted(self, rt: Runtime, request: Request, session: Session) -> bool:
        identity = session.identity
        facts = RequestFacts(
            client_ip=client_info(request.scope, rt.settings.gateway.trusted_proxies).address,
            risk_level=session.risk.level_at(rt.clock()),  # SPEC 8, as the proxy judges it
        )
        return access.admits(rt.settings, identity, facts, rt.accepts_sign_in(identity))

    async def _check_form(self, console: Console) -> None:
        """SPEC 9: a form is refused from another origin or without this session's token."""
        request = console.request
        if not security.same_origin(
            console.rt.settings.gateway.public_url,
            request.headers.get("origin"),
            request.headers.get("referer"),
        ):
            raise GatewayError(
                "This form was sent from another site; nothing was changed.",
                error="forbidden",
                status=403,
            )
        form = await console.read_form()
        token = form.get(security.CSRF_FIELD, "")
        if not security.csrf_valid(
            console.rt.settings.gateway.cookie_secret, console.session.id, token
        ):
            raise GatewayError(
                "This form has expired (or belongs to another session); nothing was changed. "
                "Reload the page and try again.",
                error="forbidden",
                status=403,
            )


def sign_in_page(rt: Runtime, request: Request) -> Response:
    """Not signed in: the login methods to sign in to the console with."""
    return rt.pages.render(
        "console/signin.html",
        401,
        headers=security.HEADERS,
        title="Sign in to the console",
        idps=choices(rt, request.url.path),
        nav=False,
    )
