"""The gateway's cookies: their names, how one is read off a request, and how each is set.

    CF_Authorization  the session: the global one on the team host, an app session on an app host
    CF_AppSession     an app host's binding, set when a browser is sent to sign in; the login URL
                      carries its hash, and `/authorized` accepts the sign-in only from the
                      browser that holds it
    CF_Session        the team host's binding of a sign-in (or a test sign-in) to the browser
                      that started it

All three are credentials for the gateway, never for an application (SPEC 4): the proxy strips
`GATEWAY_COOKIES` from what it forwards. The binding values are signed; the session value is
signed by the session manager.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from starlette.responses import Response
from starlette.types import Scope

from gateway.web.clientinfo import header

if TYPE_CHECKING:  # the runtime imports the proxy, which imports the names from here
    from gateway.config import App
    from gateway.runtime import Runtime

SESSION_COOKIE = "CF_Authorization"
APP_BINDING_COOKIE = "CF_AppSession"
LOGIN_BINDING_COOKIE = "CF_Session"
GATEWAY_COOKIES = frozenset(
    name.encode() for name in (SESSION_COOKIE, APP_BINDING_COOKIE, LOGIN_BINDING_COOKIE)
)
BINDING_TTL = 600


def read_cookie(scope: Scope, name: str) -> str | None:
    """One cookie's value from the request, without parsing every cookie into objects; of
    several with that name, the first."""
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


def set_binding_cookie(
    rt: Runtime, response: Response, name: str, binding: str, *, cross_site_post: bool = False
) -> None:
    """A binding cookie; `cross_site_post` for a SAML sign-in, whose answer is a POST from the
    IdP's site: a SameSite=Lax cookie is not sent with it, so this one is SameSite=None (which
    browsers take only with Secure: over plain http it stays Lax). Lax or None, what it binds
    stays safe: the RelayState and the AuthnRequest ID it guards are random and single-use."""
    secure = rt.settings.gateway.cookie_secure
    response.set_cookie(
        name,
        rt.bindings.sign(binding),
        max_age=BINDING_TTL,
        path="/",
        secure=secure,
        httponly=True,
        samesite="none" if cross_site_post and secure else "lax",
    )


def set_session_cookie(
    rt: Runtime, response: Response, cookie_value: str, app: App | None, max_age: float
) -> None:
    """`app`'s cookie attributes on an app host; the team host's global session cookie (app
    None) is always HttpOnly and SameSite=Lax, whatever an app on the team host asks for."""
    response.set_cookie(
        SESSION_COOKIE,
        cookie_value,
        max_age=int(max_age),
        path="/",
        secure=rt.settings.gateway.cookie_secure,
        httponly=app.http_only_cookie_attribute if app else True,
        samesite=app.same_site_cookie_attribute if app else "lax",
    )


def clear_session_cookie(rt: Runtime, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=rt.settings.gateway.cookie_secure, httponly=True
    )


def clear_app_binding_cookie(response: Response) -> None:
    """The app-host binding is spent once its app session is made (`/authorized`)."""
    response.delete_cookie(APP_BINDING_COOKIE, path="/")
