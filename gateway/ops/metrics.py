"""Prometheus metrics, rendered at `/metrics` for the holder of the admin token.

Each gateway instance (`create_app`) has its own `CollectorRegistry`, so several apps in one
process (tests, `gateway demo`) never share counters. With `gateway serve --workers N` every
worker process has its own registry and a scrape reads the worker that answers it: run
`gateway serve --workers 1` per container (or pod; serve's default is one worker per CPU) and
let Prometheus scrape each.

    gateway_requests_total{app,decision,status}    every request; app "" for the gateway's own
                                                   routes (decision "gateway"), unknown hosts
                                                   ("no_app") and malformed ones ("bad_request")
    gateway_proxy_request_duration_seconds{app}    requests handed to the upstream, end to end;
                                                   its `_count` is the number of upstream calls
    gateway_upstream_errors_total{app,reason}      upstream calls refused ("unreachable") or
                                                   too slow ("timeout")
    gateway_signins_total{idp,outcome,step}        callbacks: "success", "restarted" (without
                                                   the groups scope), "failure" at `step`
    gateway_signin_duration_seconds{idp}           the callback's work: exchange, validation,
                                                   groups (the user's time at Okta excluded)
    gateway_idp_requests_total{endpoint,status}    calls to Okta / the OIDC provider, by status
                                                   class, "error" when no answer came
    gateway_idp_request_errors_total{endpoint,reason}  timeout, unreachable, rate_limited,
                                                   server_error
    gateway_scim_requests_total{outcome}           SCIM requests by outcome (`scim_outcome`)
    gateway_scim_auth_failures_total{reason}       SCIM requests refused before any SCIM work:
                                                   missing_secret, wrong_secret, unknown_idp,
                                                   scim_off
    gateway_sessions_created_total{kind}           global and app sessions created
    gateway_sessions_revoked_total                 sessions revoked (logout, admin, SCIM, IdP)
    gateway_sessions_active                        see `LiveSessions`
    gateway_ssf_events_sent_total                  risk SETs Okta accepted (SPEC 8)
    gateway_ssf_events_failed_total{reason}        SETs given up on: "rejected" (Okta refused
                                                   it: a 4xx), "expired" (24 hours of retries)
    gateway_ssf_delivery_retries_total{reason}     failed tries to be tried again: "network",
                                                   "server_error" (5xx, 408), "rate_limited"
    gateway_ssf_events_pending                     SETs waiting in the (shared) outbox, as this
                                                   instance last counted them

The request path pays for one counter increment and, when the request is proxied, one
histogram observation, on label children cached in plain dicts; everything else is counted off
the hot path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from gateway.state.store import Clock

__all__ = ["CONTENT_TYPE_LATEST", "InstrumentedClient", "LiveSessions", "Metrics"]

_PROXY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SIGNIN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# UpstreamError.error -> reason; the last three are the upstream limits (proxy/limits.py) and
# the request body timeout turning a request away
_UPSTREAM_REASONS = {
    "upstream_timeout": "timeout",
    "upstream_busy": "busy",
    "too_many_requests": "client_limit",
    "request_timeout": "body_timeout",
}


class LiveSessions:
    """The `gateway_sessions_active` gauge: sessions this process created that have neither
    expired nor been revoked through it.

    Sessions are counted where they are made, not read back from the store (Redis has no cheap
    count of them). Creation and revocation are exact for one process; with several instances
    each counts its own, so sum the gauge over instances, and a session revoked through another
    instance than the one that created it stays counted there until it expires. Kept by session
    id, so that every way sessions end here (sign-out, a user's or an app's revocation, an IdP
    session's logout, one session ended) removes exactly those it ended; pruned at scrape time.
    """

    def __init__(self, clock: Clock):
        self._clock = clock
        self._expires: dict[str, float] = {}  # session id -> when it expires

    def add(self, session_id: str, expires: float) -> None:
        self._expires[session_id] = expires

    def drop(self, session_ids: Iterable[str]) -> None:
        for session_id in session_ids:
            self._expires.pop(session_id, None)

    def count(self) -> float:
        now = self._clock()
        self.drop([i for i, expires in self._expires.items() if expires <= now])
        return len(self._expires)


class Metrics:
    """The registry and every metric of one gateway instance, with cached label children."""

    def __init__(self, clock: Clock = time.time):
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self._requests = Counter(
            "gateway_requests",
            "Requests served, by app, access decision and response status.",
            ("app", "decision", "status"),
            registry=registry,
        )
        self._proxy_seconds = Histogram(
            "gateway_proxy_request_duration_seconds",
            "Time to serve a request handed to the upstream, from its arrival to the last "
            "byte sent back; the count is the number of upstream calls.",
            ("app",),
            buckets=_PROXY_BUCKETS,
            registry=registry,
        )
        self._upstream_errors = Counter(
            "gateway_upstream_errors",
            "Upstream requests that got no answer: refused (unreachable) or too slow (timeout).",
            ("app", "reason"),
            registry=registry,
        )
        self._signins = Counter(
            "gateway_signins",
            "Sign-in callbacks, by identity provider, outcome and the step that failed.",
            ("idp", "outcome", "step"),
            registry=registry,
        )
        self._signin_seconds = Histogram(
            "gateway_signin_duration_seconds",
            "Time the gateway spends on a sign-in callback (code exchange, ID token, groups).",
            ("idp",),
            buckets=_SIGNIN_BUCKETS,
            registry=registry,
        )
        self._idp_requests = Counter(
            "gateway_idp_requests",
            "Requests to the identity provider (Okta), by endpoint and status class.",
            ("endpoint", "status"),
            registry=registry,
        )
        self._idp_errors = Counter(
            "gateway_idp_request_errors",
            "Identity provider requests that failed: timeout, unreachable, rate_limited, "
            "server_error.",
            ("endpoint", "reason"),
            registry=registry,
        )
        self._scim = Counter(
            "gateway_scim_requests",
            "SCIM requests, by outcome.",
            ("outcome",),
            registry=registry,
        )
        self._scim_auth_failures = Counter(
            "gateway_scim_auth_failures",
            "SCIM requests refused before any SCIM work, by reason: missing_secret, "
            "wrong_secret, unknown_idp (or SCIM off: scim_off).",
            ("reason",),
            registry=registry,
        )
        self._sessions_created = Counter(
            "gateway_sessions_created",
            "Sessions created, global (team domain) or app.",
            ("kind",),
            registry=registry,
        )
        self._sessions_revoked = Counter(
            "gateway_sessions_revoked",
            "Sessions revoked (sign-out, admin API, SCIM, back-channel and Universal Logout).",
            registry=registry,
        )
        self.live_sessions = LiveSessions(clock)
        Gauge(
            "gateway_sessions_active",
            "Sessions created by this process that have not expired or been revoked through it.",
            registry=registry,
        ).set_function(self.live_sessions.count)
        self._ssf_sent = Counter(
            "gateway_ssf_events_sent",
            "Security Event Tokens (risk level changes) Okta accepted.",
            registry=registry,
        )
        self._ssf_failed = Counter(
            "gateway_ssf_events_failed",
            "Security Event Tokens given up on: rejected (refused by Okta) or expired "
            "(undelivered for 24 hours).",
            ("reason",),
            registry=registry,
        )
        self._ssf_retries = Counter(
            "gateway_ssf_delivery_retries",
            "Failed Security Event Token deliveries that will be tried again, by reason: "
            "network, server_error, rate_limited.",
            ("reason",),
            registry=registry,
        )
        self._ssf_pending = Gauge(
            "gateway_ssf_events_pending",
            "Security Event Tokens waiting for delivery in the shared outbox, as this instance "
            "last counted them.",
            registry=registry,
        )
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self._proxied_children: dict[str, Histogram] = {}

    # --- the request path -------------------------------------------------------------------

    def request_done(
        self, app: str, decision: str, status: int, seconds: float, forwarded: bool
    ) -> None:
        """Count one request; `forwarded` when it was handed to the upstream."""
        key = (app, decision, status)
        requests = self._request_children.get(key)
        if requests is None:
            requests = self._requests.labels(app, decision, str(status))
            self._request_children[key] = requests
        requests.inc()
        if forwarded:
            proxied = self._proxied_children.get(app)
            if proxied is None:
                proxied = self._proxied_children[app] = self._proxy_seconds.labels(app)
            proxied.observe(seconds)

    def upstream_error(self, app: str, error: str) -> None:
        """An upstream that refused or timed out (`UpstreamError.error`)."""
        self._upstream_errors.labels(app, _UPSTREAM_REASONS.get(error, "unreachable")).inc()

    # --- sign-ins, sessions, SCIM -----------------------------------------------------------

    def sign_in(self, idp: str, outcome: str, step: str = "", seconds: float | None = None) -> None:
        """One callback: outcome "success", "restarted" or "failure" (at `step`)."""
        self._signins.labels(idp, outcome, step).inc()
        if seconds is not None:
            self._signin_seconds.labels(idp).observe(seconds)

    def session_created(self, kind: str, session_id: str, expires: float) -> None:
        self._sessions_created.labels(kind).inc()
        self.live_sessions.add(session_id, expires)

    def sessions_revoked(self, count: int, session_ids: Iterable[str]) -> None:
        """`count` live sessions revoked, of the `session_ids` a revocation deleted (those of
        them that had already ended included)."""
        self._sessions_revoked.inc(count)
        self.live_sessions.drop(session_ids)

    def scim_request(self, status: int) -> None:
        self._scim.labels(scim_outcome(status)).inc()

    def scim_auth_failure(self, reason: str) -> None:
        self._scim_auth_failures.labels(reason).inc()

    # --- risk sent to Okta (SSF) -----------------------------------------------------------

    def ssf_sent(self) -> None:
        self._ssf_sent.inc()

    def ssf_failed(self, reason: str) -> None:
        self._ssf_failed.labels(reason).inc()

    def ssf_retry(self, reason: str) -> None:
        self._ssf_retries.labels(reason).inc()

    def ssf_pending(self, count: int) -> None:
        self._ssf_pending.set(count)

    # --- identity provider calls ------------------------------------------------------------

    def idp_answer(self, endpoint: str, status: int) -> None:
        self._idp_requests.labels(endpoint, f"{status // 100}xx").inc()
        if status == 429:
            self._idp_errors.labels(endpoint, "rate_limited").inc()
        elif status >= 500:
            self._idp_errors.labels(endpoint, "server_error").inc()

    def idp_failure(self, endpoint: str, reason: str) -> None:
        self._idp_requests.labels(endpoint, "error").inc()
        self._idp_errors.labels(endpoint, reason).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition (`CONTENT_TYPE_LATEST`)."""
        return generate_latest(self.registry)


def scim_outcome(status: int) -> str:
    """success, unauthorized (401/403), conflict (409), client_error, unavailable (503) or
    server_error, from the status of a SCIM response."""
    if status < 400:
        return "success"
    if status in (401, 403):
        return "unauthorized"
    if status == 409:
        return "conflict"
    if status < 500:
        return "client_error"
    return "unavailable" if status == 503 else "server_error"


def idp_endpoint(url: httpx.URL) -> str:
    """Which identity provider endpoint a URL is, from Okta's paths (and the usual names)."""
    path = url.path
    if path.endswith("/.well-known/openid-configuration"):
        return "discovery"
    if "/api/v1/users/" in path:
        return "groups_api"
    last = path.rstrip("/").rpartition("/")[2]
    if last in ("keys", "jwks", "certs"):
        return "jwks"
    return last if last in ("token", "userinfo") else "other"


class InstrumentedClient(httpx.AsyncClient):
    """The identity-provider HTTP client: every call counted by endpoint and outcome.

    A subclass rather than a transport so that proxies from the environment still apply.
    """

    def __init__(self, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._metrics = metrics

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        endpoint = idp_endpoint(request.url)
        try:
            response = await super().send(request, **kwargs)
        except httpx.TimeoutException:
            self._metrics.idp_failure(endpoint, "timeout")
            raise
        except httpx.TransportError:
            self._metrics.idp_failure(endpoint, "unreachable")
            raise
        self._metrics.idp_answer(endpoint, response.status_code)
        return response
