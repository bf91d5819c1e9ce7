"""The SSF transmitter: hears every risk level change and delivers it to Okta (SPEC 8).

`level_changed` (a `LevelChangeListener`) signs one SET per active integration of the user's
IdP and puts it in the outbox before it returns, so the change is durable once the risk engine
has it reported. `run` is the worker every instance starts in its lifespan: each round it walks
the outbox's queues, takes a queue's lease (skipping queues another instance holds) and POSTs
its due events, oldest first, to `{tenant_url}/security/api/v1/security-events` (RFC 8935):

    2xx                         delivered: off the queue, the integration's last success
    408, 429, 5xx, no answer    tried again later, with exponential backoff, or after
                                `Retry-After` when the answer has one; the user's later events
                                wait behind it
    any other answer (400...)   refused: recorded with Okta's `err` and `description`, off the
                                queue, never sent again
    older than `give_up_after`  dropped (24 hours) and recorded as the last error

An inactive integration's events wait (and expire) instead of being sent; a deleted one's are
forgotten. A worker that dies mid-send loses its lease after a minute and another instance sends
the event again: delivery is at least once, never twice at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.authz.app_tokens import SigningKeys
from gateway.errors import StoreUnavailableError
from gateway.ops.metrics import Metrics
from gateway.risk.changes import LevelChange
from gateway.ssf.events import SET_MEDIA_TYPE, risk_change_set
from gateway.ssf.integrations import Integration, Integrations
from gateway.ssf.outbox import DeliveryError, Outbox, Pending, Queue
from gateway.state.store import Clock

log = logging.getLogger("gateway.ssf")

EVENTS_PATH = "/security/api/v1/security-events"
SEND_TIMEOUT = 10.0  # one POST; a round sends at most PER_ROUND, well within the lease
PER_ROUND = 4
_MAX_TEXT = 500  # of Okta's `err` / `description` kept


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How often the worker looks, how long it waits between tries, when it gives up."""

    poll_interval: float = 1.0
    first_backoff: float = 5.0  # doubled after each failure...
    max_backoff: float = 1800.0  # ...up to this
    max_retry_after: float = 3600.0  # a longer `Retry-After` is cut to this
    give_up_after: float = 86400.0  # SPEC 8: retried for up to 24 hours


@dataclass(frozen=True, slots=True)
class _Outcome:
    delivered: bool
    retry_after: float | None = None  # None and not delivered: refused for good
    error: DeliveryError | None = None
    reason: str = ""  # the metrics' label of a failure


class Transmitter:
    """The listener that fills the outbox and the worker that empties it."""

    def __init__(
        self,
        integrations: Integrations,
        outbox: Outbox,
        keys: SigningKeys,
        http: httpx.AsyncClient,
        metrics: Metrics,
        clock: Clock,
        issuer: str,
        policy: DeliveryPolicy | None = None,
    ):
        self.integrations = integrations
        self.outbox = outbox
        self.keys = keys
        self.http = http
        self.metrics = metrics
        self.clock = clock
        self.issuer = issuer
        self.policy = policy or DeliveryPolicy()
        self._wake = asyncio.Event()

    async def level_changed(self, change: LevelChange) -> None:
        """Queue one SET per active integration of the user's IdP. Okta names the user by
        email: a change without one (or without an IdP) concerns no integration."""
        if not change.email or not change.idp_id:
            return
        targets = [
            i for i in await self.integrations.all() if i.active and i.reference_id == change.idp_id
        ]
        if not targets:
            return
        key = await self.keys.current()
        now = self.clock()
        for integration in targets:
            jti, token = risk_change_set(
                change, key=key, issuer=self.issuer, audience=integration.tenant_url, now=now
            )
            queue = Queue(integration.id, change.user_uuid)
            await self.outbox.enqueue(queue, Pending(jti, token, now))
            log.info(
                "ssf event queued integration=%s user=%s jti=%s level=%s",
                integration.id,
                change.user_uuid,
                jti,
                change.current,
                extra={"integration": integration.id, "user_uuid": change.user_uuid, "jti": jti},
            )
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver rounds until `stop` is set; a failing round is logged and the next one tries
        again (the store down: nothing is lost, the events wait in it)."""
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.deliver_round()
            except StoreUnavailableError as exc:
                log.warning("ssf delivery round failed: %s", exc.description)
            except Exception:
                log.exception("ssf delivery round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_either(stop, self._wake), self.policy.poll_interval)

    async def deliver_round(self) -> int:
        """Send every due event this instance can take a lease for; update the pending gauge.
        Returns how many queues were left alone because another worker held them."""
        integrations = {i.id: i for i in await self.integrations.all()}
        waiting = held_elsewhere = 0
        for queue in await self.outbox.queues():
            integration = integrations.get(queue.integration_id)
            if integration is None:  # made since the round began, or deleted: read again
                integrations = {i.id: i for i in await self.integrations.all()}
                integration = integrations.get(queue.integration_id)
            if integration is None:
                await self.outbox.drop(queue)
                continue
            async with self.outbox.leased(queue) as ours:
                if ours:
                    waiting += await self._deliver_queue(integration, queue)
                else:
                    waiting += len(await self.outbox.pending(queue))
                    held_elsewhere += 1
        self.metrics.ssf_pending(waiting)
        return held_elsewhere

    async def _deliver_queue(self, integration: Integration, queue: Queue) -> int:
        """Send the queue's due events in order (under its lease); returns how many wait."""
        events = await self.outbox.pending(queue)
        if not events:
            await self.outbox.tidy(queue)
            return 0
        done = 0
        for event in events[:PER_ROUND]:
            now = self.clock()
            if now - event.created >= self.policy.give_up_after:
                await self._give_up(integration, queue, event, now)
            elif not integration.active or event.next_at > now:
                break
            elif not await self._send(integration, queue, event):
                break
            done += 1
        return len(events) - done

    async def _give_up(
        self, integration: Integration, queue: Queue, event: Pending, now: float
    ) -> None:
        hours = self.policy.give_up_after / 3600
        error = DeliveryError(
            now, None, "expired", f"Not delivered within {hours:g} hours; dropped."
        )
        await self.outbox.settle(queue, event.jti)
        await self.outbox.record_error(integration.id, error)
        self.metrics.ssf_failed("expired")
        log.warning(
            "ssf event dropped integration=%s jti=%s attempts=%d: undelivered for %g hours",
            integration.id,
            event.jti,
            event.attempts,
            hours,
        )

    async def _send(self, integration: Integration, queue: Queue, event: Pending) -> bool:
        """POST one event and settle its fate; True when it is off the queue."""
        outcome = await self._post(integration.tenant_url, event)
        now = self.clock()
        if outcome.delivered:
            await self.outbox.settle(queue, event.jti)
            await self.outbox.record_success(integration.id, now)
            self.metrics.ssf_sent()
            log.info("ssf event delivered integration=%s jti=%s", integration.id, event.jti)
            return True
        assert outcome.error is not None  # noqa: S101 - every failed outcome carries one
        await self.outbox.record_error(integration.id, outcome.error)
        log.warning(
            "ssf event %s integration=%s jti=%s status=%s err=%s: %s",
            "refused" if outcome.retry_after is None else "not delivered, will retry",
            integration.id,
            event.jti,
            outcome.error.status,
            outcome.error.err,
            outcome.error.description,
        )
        if outcome.retry_after is None:
            await self.outbox.settle(queue, event.jti)
            self.metrics.ssf_failed(outcome.reason)
            return True
        await self.outbox.postpone(queue, event.jti, now + outcome.retry_after)
        self.metrics.ssf_retry(outcome.reason)
        return False

    async def _post(self, tenant_url: str, event: Pending) -> _Outcome:
        now = self.clock()
        backoff = min(self.policy.first_backoff * 2**event.attempts, self.policy.max_backoff)
        try:
            response = await self.http.post(
                tenant_url + EVENTS_PATH,
                content=event.token,
                headers={"Content-Type": SET_MEDIA_TYPE, "Accept": "application/json"},
                timeout=SEND_TIMEOUT,
            )
        except httpx.HTTPError as exc:  # the error's text may hold the URL: its kind only
            error = DeliveryError(now, None, "network_error", type(exc).__name__)
            return _Outcome(False, backoff, error, "network")
        status = response.status_code
        if 200 <= status < 300:
            return _Outcome(True)
        if status in (408, 429) or status >= 500:
            wait = _retry_after(response.headers.get("retry-after", ""), now)
            if wait is not None:
                backoff = min(wait, self.policy.max_retry_after)
            reason = "rate_limited" if status == 429 else "server_error"
            error = DeliveryError(now, status, reason, f"HTTP {status}")
            return _Outcome(False, backoff, error, reason)
        err, description = _okta_error(response)
        return _Outcome(False, None, DeliveryError(now, status, err, description), "rejected")


def _retry_after(value: str, now: float) -> float | None:
    """Seconds from a `Retry-After` header (delay-seconds or an HTTP date), None if absent or
    unreadable (RFC 9110 10.2.3)."""
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value[:9])
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(moment.timestamp() - now, 0.0)


def _okta_error(response: httpx.Response) -> tuple[str, str]:
    """Okta's `{"err", "description"}` of a refusal, else what the answer says of itself."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("err"), str):
        description = body.get("description")
        return body["err"][:_MAX_TEXT], (description if isinstance(description, str) else "")[
            :_MAX_TEXT
        ]
    return f"http_{response.status_code}", f"HTTP {response.status_code}, not Okta's error JSON"


async def _either(*events: asyncio.Event) -> None:
    """Until one of the events is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
