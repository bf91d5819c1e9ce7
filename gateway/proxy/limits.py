"""Admission to the upstream leg: no one app's origin, and no one client, takes every connection.

A worker's upstream client holds at most 256 connections (`UpstreamPool`; httpx's pool alike),
and an exchange keeps one for as long as its request body is arriving and its response is being
relayed. Slow uploads that never finish, or long-lived streams, to one app would otherwise hold
them all, and every other app would wait for a slot until its requests failed. `UpstreamLimits`
admits an exchange only while its upstream origin (scheme, host, port: apps on one origin share
it) has fewer than `per_origin` in flight, and its client address fewer than `per_client`. An
exchange over its origin's limit waits, in turn, for one of them to end (at most `wait` s, then
503); one over its client's limit is answered 429 at once: that client is the one holding them.
Both are counted in each worker process, as the connections are.
"""

from __future__ import annotations

import asyncio
from collections import deque
from urllib.parse import urlsplit

from gateway.errors import UpstreamError

# How long an exchange waits for its origin to have room: as long as the upstream clients wait
# for a free connection (their connect timeout), after which the answer would be the same.
ORIGIN_WAIT = 5.0


class _Origin:
    __slots__ = ("in_flight", "waiters")

    def __init__(self) -> None:
        self.in_flight = 0
        self.waiters: deque[asyncio.Future[None]] = deque()


class UpstreamLimits:
    """Exchanges in flight per upstream origin and per client address, in one worker."""

    def __init__(self, *, per_origin: int, per_client: int, wait: float = ORIGIN_WAIT) -> None:
        self.per_origin = per_origin
        self.per_client = per_client
        self._wait = wait
        self._origins: dict[str, _Origin] = {}  # by upstream URL; apps on one origin share one
        self._by_key: dict[tuple[str, str, int], _Origin] = {}
        self._clients: dict[str, int] = {}

    async def admit(self, upstream: str, client: str) -> None:
        """Count one exchange to `upstream` (an app's upstream URL) from `client`, waiting for
        room at the origin; `UpstreamError` 429 or 503 if it gets none. Every `admit` that
        returns is matched by one `leave` with the same arguments."""
        if not client:  # a loopback peer (clientinfo.client_network): all users behind it share it
            held = -1
        else:
            held = self._clients.get(client, 0)
        if held >= self.per_client:
            raise UpstreamError(
                "Too many requests from your address are in progress; try again shortly.",
                status=429,
                error="too_many_requests",
            )
        if held >= 0:
            self._clients[client] = held + 1  # a waiting exchange counts too
        origin = self._origins.get(upstream) or self._origin(upstream)
        if origin.in_flight < self.per_origin and not origin.waiters:
            origin.in_flight += 1
            return
        try:
            await self._wait_for_room(origin)
        except BaseException:
            self._forget(client)
            raise

    def leave(self, upstream: str, client: str) -> None:
        """The exchange `admit` let in has ended (however): its place goes to the next waiter."""
        self._forget(client)
        self._pass_on(self._origins[upstream])

    def _forget(self, client: str) -> None:
        if not client:
            return
        held = self._clients[client] - 1
        if held:
            self._clients[client] = held
        else:
            del self._clients[client]  # only clients with exchanges in flight are kept

    @staticmethod
    def _pass_on(origin: _Origin) -> None:
        """A place at `origin` is free: straight to the longest waiter if there is one."""
        while origin.waiters:
            waiter = origin.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # in_flight stays: the place changes hands
                return
        origin.in_flight -= 1

    async def _wait_for_room(self, origin: _Origin) -> None:
        waiter = asyncio.get_running_loop().create_future()
        origin.waiters.append(waiter)
        try:
            async with asyncio.timeout(self._wait):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._pass_on(origin)  # handed a place just as the wait ended: pass it on
            elif waiter in origin.waiters:  # not already skipped by a `_pass_on`
                origin.waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise UpstreamError(
                    "The application is busy; try again shortly.", status=503, error="upstream_busy"
                ) from exc
            raise

    def _origin(self, upstream: str) -> _Origin:
        parts = urlsplit(upstream)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:  # not a valid port: the client refuses the URL; count it on its own
            port = -1
        key = (parts.scheme, (parts.hostname or "").lower(), port)
        origin = self._by_key.get(key)
        if origin is None:
            origin = self._by_key[key] = _Origin()
        self._origins[upstream] = origin  # one per configured upstream URL: bounded
        return origin
