"""The ASGI application: lifespan, dispatch, and the one place errors become responses.

`create_app(settings)` returns a `Gateway`, a pure ASGI callable. Requests for the gateway's own
routes (the table in `web/routes.py`: which paths, on which hosts) go to a small Starlette app
built from the same table; every other request is matched to a protected app and handed to the
guard, the hot path (cookie -> session -> policy -> upstream), which never touches Starlette's
request machinery. Before either, a request framed with a transfer coding other than `chunked`
is refused (`transfer_coding_refusal`).

Every request, whichever way it goes, gets a request id, is counted in the metrics and leaves
one JSON line in the log (`logs.py`), written when its response is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from gateway.authz.routing import is_ambiguous_path, is_origin_form, split_host
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.ops.logs import REQUEST_ID, REQUEST_RECORD, RequestRecord, log_request
from gateway.ops.metrics import InstrumentedClient, Metrics
from gateway.proxy.forwarding import open_upstreams
from gateway.proxy.guard import guard_request
from gateway.runtime import Runtime, error_page
from gateway.state.catalog import watch
from gateway.state.store import Clock, Store, open_store
from gateway.web.clientinfo import peer_is_trusted
from gateway.web.routes import RouteTable, gateway_routes, plain_invalid_path

log = logging.getLogger("gateway")


class Gateway:
    """The ASGI entry point: gateway routes to Starlette, protected apps to the guard."""

    def __init__(self, table: RouteTable, routes_app: Starlette):
        self.table = table
        self.routes_app = routes_app
        self.runtime: Runtime | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt = self.runtime
        if scope["type"] == "lifespan" or rt is None:
            # Before the lifespan has built the runtime nothing is served: the routes app
            # answers (its handlers fail closed without a runtime).
            await self.routes_app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        host: str | None = None
        plainly_framed = True
        for key, value in scope["headers"]:
            if key == b"host":
                # RFC 9112 3.2: more than one Host is answered 400, as no Host is, below.
                host = split_host(value.decode("latin-1")) if host is None else ""
            elif key == b"transfer-encoding":
                plainly_framed = False
        host = host or ""
        trusted = rt.settings.gateway.trusted_proxies
        record = RequestRecord(scope, trusted_peer=peer_is_trusted(scope, trusted))
        context = REQUEST_ID.set(record.request_id)
        serving = REQUEST_RECORD.set(record)
        send = record.watch(send)
        route = self.table.match(path)
        try:
            if not plainly_framed and (refusal := transfer_coding_refusal(scope)) is not None:
                record.decision = "bad_request"
                await refusal(scope, receive, send)
            elif not host or is_ambiguous_path(path) or not _origin_form(scope):
                record.decision = "bad_request"
                # the admin API and SCIM answer in their own formats, even here
                invalid_path = route.invalid_path if route is not None else plain_invalid_path
                await invalid_path()(scope, receive, send)
            # The gateway's own route, on a host it answers it on; else the path is an app's.
            elif route is not None and route.answers_on(host, rt, path):
                await self.routes_app(scope, receive, send)
            else:
                await guard_request(rt, host, scope, receive, send, record)
        except BaseException:
            record.status = record.status or 500  # what the server answers for us
            raise
        finally:
            seconds = time.perf_counter() - started
            rt.metrics.request_done(
                record.app, record.decision, record.status, seconds, record.forwarded
            )
            if record.decision == "gateway" and route is not None and route.name == "scim":
                rt.metrics.scim_request(record.status)
            log_request(record, scope, host, seconds)
            REQUEST_ID.reset(context)
            REQUEST_RECORD.reset(serving)


def _origin_form(scope: Scope) -> bool:
    """A WebSocket handshake's target is origin-form (HTTP's: uvicorn parsed it to its path)."""
    if scope["type"] != "websocket":
        return True
    return is_origin_form(scope.get("raw_path") or b"", scope.get("query_string", b""))


def transfer_coding_refusal(scope: Scope) -> Response | None:
    """The answer to a request whose Transfer-Encoding is anything but one `chunked`, else None.

    The server has already decoded the chunked framing; any other coding would reach the upstream
    undone and unannounced (forwarding re-chunks the body), and no path of the gateway decodes
    one. RFC 9112 6.1: 501 for a transfer coding the server does not understand (also for
    `chunked` twice, which a sender must never apply), and a Transfer-Encoding in an HTTP/1.0
    message means faulty framing: 400. The connection is closed after either, as the rest of
    the body cannot be trusted to end where the server thinks.
    """
    codings = [value for key, value in scope["headers"] if key == b"transfer-encoding"]
    if scope.get("http_version") not in ("1.1", None):
        status, text = 400, "Bad request: Transfer-Encoding outside HTTP/1.1."
    elif len(codings) == 1 and codings[0].strip().lower() == b"chunked":
        return None
    else:
        status, text = 501, "Not implemented: the only transfer coding accepted is chunked."
    return PlainTextResponse(text, status_code=status, headers={"Connection": "close"})


def create_app(
    settings: Settings, *, store: Store | None = None, clock: Clock = time.time
) -> Gateway:
    """The gateway for these settings. `store` overrides `settings.gateway.store` (tests)."""
    metrics = Metrics(clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        timeout = settings.gateway.idp_timeout
        the_store = (
            store
            if store is not None
            else open_store(
                settings.gateway.store, clock, session_reads=settings.gateway.session_reads
            )
        )
        http = InstrumentedClient(
            metrics,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
            follow_redirects=False,
        )
        upstreams = open_upstreams(settings.gateway)
        await upstreams.start()
        rt = Runtime(settings, the_store, http, upstreams, clock, metrics=metrics)
        try:
            rt.apply(await rt.catalog.load())
        except GatewayError as exc:  # Redis down at start: serve the file, catch up later
            log.warning("catalog not loaded at start: %s", exc.description)
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(rt.catalog, rt.apply, stop))
        transmitter = asyncio.create_task(rt.transmitter.run(stop))
        app.state.runtime = gateway.runtime = rt
        try:
            yield
        finally:
            app.state.runtime = gateway.runtime = None
            stop.set()
            await watcher
            await transmitter  # its round's sends finish before the client closes
            await upstreams.close()
            await http.aclose()
            if store is None:
                await the_store.close()
            log.info("stopped: catalog watcher, SSF transmitter, upstream pool, IdP client, store")

    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)  # noqa: S101 - registered for GatewayError only
        rt: Runtime | None = getattr(request.app.state, "runtime", None)
        if rt is None:  # starting or stopping (a request in flight at shutdown): no pages yet
            return PlainTextResponse(exc.description, status_code=exc.status)
        return error_page(rt, exc)

    table = gateway_routes()
    routes_app = Starlette(
        routes=table.starlette_routes(),
        lifespan=lifespan,
        exception_handlers={GatewayError: on_gateway_error},
    )
    gateway = Gateway(table, routes_app)
    return gateway
