"""The gateway's own routes: one table, from which the dispatch and the Starlette app are derived.

Each `GatewayRoute` is a path the gateway answers itself, the hosts it answers it on, and the
Starlette routes that serve it. A request path is the gateway's when it equals a route's path or,
for a mount, lies below it at a "/" boundary: the mount `/api` takes `/api` and `/api/apps`,
never `/apix`. Any other path, on a host an app covers, is the app's, so an app on the team host
(single-host deployment) keeps its own `/healthzone` or `/api-docs`.

Host scopes (SPEC 4):

    any    every host: `/cdn-cgi/access/...` (sign-in legs, identity, logout, certs, forward-auth)
    team   the team host only: the IdP test page, the admin API, SCIM, the SSF metadata, the
           console. On an app host the same path is the app's: any name pointing at the
           gateway is not a second door to them
    probe  the team host, and hosts no app covers: load balancers and Prometheus probe each
           instance by its address (`/metrics` still needs the admin token)

`Gateway` (app.py) asks `RouteTable.match` on every request, the proxied ones included: an app's
path is told apart by one `str.startswith` over the routes' paths; a path that shares a prefix
with one costs a dict lookup on its first segment and a comparison or two more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.admin import OPERATIONS
from gateway.admin.api import AdminAPI
from gateway.admin.envelope import envelope_invalid_path
from gateway.console.app import ConsoleApp
from gateway.proxy import forward_auth
from gateway.runtime import Runtime
from gateway.scim.routes import routes as scim_routes
from gateway.scim.routes import scim_invalid_path
from gateway.ssf.events import JWKS_PATH, WELL_KNOWN_PATH
from gateway.web import views

Hosts = Literal["any", "team", "probe"]

ACCESS = "/cdn-cgi/access"


def plain_invalid_path() -> Response:
    """The answer to a request with no host, or an ambiguous path (`routing.is_ambiguous_path`)
    outside the admin API and SCIM, which answer in their own formats."""
    return PlainTextResponse("Bad request: invalid host or path.", status_code=400)


@dataclass(frozen=True, slots=True)
class GatewayRoute:
    """A path (`mount`: a path and everything below it) the gateway answers on `hosts`.

    Served by the Starlette routes `serve`, all within `path`; or, for a mount, by one ASGI `app`
    that takes its every path, whatever its characters (a `{path:path}` route would miss a
    decoded newline, and Starlette would answer that in plain text).
    """

    path: str  # "/name", without a trailing "/"
    hosts: Hosts
    serve: tuple[BaseRoute, ...] = ()
    mount: bool = False
    app: ASGIApp | None = None
    # The answer, in this route's own format, to a path refused before routing (no host, or
    # ambiguous: "." or ".." segments, a backslash), on any host.
    invalid_path: Callable[[], Response] = plain_invalid_path
    name: str = ""  # for tests, and the SCIM request count ("scim")
    _below: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_below", self.path + "/")
        if self.app is not None:
            object.__setattr__(self, "serve", (*self.serve, _WholeMount(self, self.app)))

    def covers(self, path: str) -> bool:
        """`path` is this route's: equal to it, or (a mount) below it at a "/" boundary."""
        return path == self.path or (self.mount and path.startswith(self._below))

    def answers_on(self, host: str, rt: Runtime, path: str) -> bool:
        """Whether the gateway answers this route's `path` on `host`; if not, it is the app's."""
        if self.hosts == "any" or host == rt.team_host:
            return True
        return self.hosts == "probe" and rt.directory.match(host, path) is None


class RouteTable:
    """The gateway's routes, looked up by a request path's first segment."""

    def __init__(self, routes: Iterable[GatewayRoute]):
        self.routes = tuple(routes)
        by_segment: dict[str, list[GatewayRoute]] = {}
        # The longest path first: a route inside a mount (`/cdn-cgi/access/x` in
        # `/cdn-cgi/access`) is found before the mount.
        for route in sorted(self.routes, key=lambda r: len(r.path), reverse=True):
            by_segment.setdefault(_first_segment(route.path), []).append(route)
        self._by_segment = {segment: tuple(found) for segment, found in by_segment.items()}
        self._prefixes = tuple(route.path for route in self.routes)

    def match(self, path: str) -> GatewayRoute | None:
        """The gateway route `path` falls in, whatever the host; None: only an app's path."""
        if not path.startswith(self._prefixes):  # most requests: one C call says "the app's"
            return None
        for route in self._by_segment.get(_first_segment(path), ()):
            if route.covers(path):
                return route
        return None

    def starlette_routes(self) -> list[BaseRoute]:
        """What the Starlette app behind the dispatch serves."""
        return [served for route in self.routes for served in route.serve]


def _first_segment(path: str) -> str:
    end = path.find("/", 1)
    return path if end < 0 else path[:end]


class _WholeMount(BaseRoute):
    """The Starlette route of a mount served by one ASGI app: every HTTP path the mount covers."""

    def __init__(self, route: GatewayRoute, app: ASGIApp):
        self.route = route
        self.app = app

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and self.route.covers(scope["path"]):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _one_path(
    path: str, hosts: Hosts, endpoint: Callable[[Request], Awaitable[Response]]
) -> GatewayRoute:
    return GatewayRoute(path, hosts, (Route(path, endpoint),), name=path.removeprefix("/"))


def gateway_routes() -> RouteTable:
    """Every route the gateway answers itself (SPEC 4)."""
    return RouteTable(
        [
            # Cloudflare's reserved prefix: every path below it is the gateway's, on every host
            # (login, which only the team host serves, checks the host itself).
            GatewayRoute(
                ACCESS,
                "any",
                (
                    Route(f"{ACCESS}/login/{{app_host}}", views.login),
                    Route(f"{ACCESS}/callback", views.callback),
                    Route(f"{ACCESS}/authorized", views.authorized),
                    Route(f"{ACCESS}/get-identity", views.get_identity),
                    Route(f"{ACCESS}/logout", views.logout, methods=["GET", "POST"]),
                    Route(f"{ACCESS}/certs", views.certs),
                    Route(JWKS_PATH, views.ssf_jwks),  # the team host's only (SPEC 4)
                    Route(f"{views.DENIED_PATH}/{{result_id}}", views.denied),
                    Route(f"{ACCESS}/authz", forward_auth.authz, methods=forward_auth.METHODS),
                ),
                mount=True,
                name="access",
            ),
            _one_path("/test-idp", "team", views.test_idp),
            # The IdP test's outcome, kept for a reload: `/test-idp/result/<id>`.
            GatewayRoute(
                views.TEST_RESULT_PATH,
                "team",
                (Route(f"{views.TEST_RESULT_PATH}/{{result_id}}", views.test_idp_result),),
                mount=True,
                name="test-idp/result",
            ),
            GatewayRoute(
                "/api",
                "team",
                mount=True,
                app=AdminAPI(OPERATIONS),
                invalid_path=envelope_invalid_path,
                name="admin",
            ),
            GatewayRoute(
                "/populations",
                "team",
                tuple(scim_routes()),
                mount=True,
                invalid_path=scim_invalid_path,
                name="scim",
            ),
            # The operator console (SPEC 9): every path below it, for its access check first.
            GatewayRoute("/console", "team", mount=True, app=ConsoleApp(), name="console"),
            _one_path(WELL_KNOWN_PATH, "team", views.ssf_configuration),
            _one_path("/healthz", "probe", views.healthz),
            _one_path("/readyz", "probe", views.readyz),
            _one_path("/metrics", "probe", views.metrics),
        ]
    )
