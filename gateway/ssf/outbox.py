"""The outbox: signed SETs waiting for delivery, in the store, so a restart loses none.

One queue per integration and user (`ssf:queue:<integration>:<user>`), a JSON list in the order
the changes happened; only its head is ever sent, so one user's changes reach Okta in order,
while other users' queues are not held up by it. The set `ssf:queues` names the queues that may
hold something. Enqueuers only append and the one worker holding a queue's lease only changes
its head, both by compare-and-set, so neither loses the other's write. Each integration's last
success and last error are kept beside them for the admin API.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from gateway.errors import StoreUnavailableError
from gateway.state.store import Store
from gateway.state.store.lock import leased

KEEP = 2 * 86400.0  # a queue untouched this long expires (its events are past retrying anyway)
LEASE = 60.0  # a worker's hold on one queue; a round's sends fit well inside it
_QUEUES = "ssf:queues"
_ATTEMPTS = 50  # compare-and-set rounds before giving up (the queue is very busy)


@dataclass(frozen=True, slots=True)
class Pending:
    """One SET waiting: built once, so every retry sends the same token (same `jti`)."""

    jti: str
    token: str
    created: float
    attempts: int = 0  # failed deliveries so far
    next_at: float = 0.0  # not sent again before this time


@dataclass(frozen=True, slots=True)
class Queue:
    """One integration's events about one user."""

    integration_id: str
    user_uuid: str

    @property
    def key(self) -> str:
        return f"ssf:queue:{self.integration_id}:{self.user_uuid}"

    @property
    def member(self) -> str:
        return f"{self.integration_id} {self.user_uuid}"  # integration ids hold no space


@dataclass(frozen=True, slots=True)
class DeliveryError:
    """What went wrong with a delivery: Okta's `err` and `description` for a refusal; for a
    failure to get an answer, what kind of failure."""

    at: float
    status: int | None  # the HTTP status; None when no answer came
    err: str
    description: str


class Outbox:
    def __init__(self, store: Store):
        self.store = store

    async def enqueue(self, queue: Queue, event: Pending) -> None:
        await self._change(queue, lambda events: [*events, event])
        await self.store.add_to_set(_QUEUES, queue.member, ttl=KEEP)

    async def queues(self) -> list[Queue]:
        members = await self.store.set_members(_QUEUES)
        return [Queue(*member.split(" ", 1)) for member in sorted(members)]

    async def pending(self, queue: Queue) -> list[Pending]:
        return _events(await self.store.get(queue.key))

    async def settle(self, queue: Queue, jti: str) -> None:
        """The event is done with (delivered, refused or given up): off the queue."""
        await self._change(queue, lambda events: [e for e in events if e.jti != jti])

    async def postpone(self, queue: Queue, jti: str, next_at: float) -> None:
        """Another failed attempt: not sent again before `next_at`."""
        await self._change(
            queue,
            lambda events: [
                replace(e, attempts=e.attempts + 1, next_at=next_at) if e.jti == jti else e
                for e in events
            ],
        )

    async def tidy(self, queue: Queue) -> None:
        """Stop listing an empty queue; an event enqueued meanwhile lists it again."""
        await self.store.remove_from_set(_QUEUES, queue.member)
        if await self.pending(queue):
            await self.store.add_to_set(_QUEUES, queue.member, ttl=KEEP)

    async def drop(self, queue: Queue) -> None:
        """Forget a queue and its events (its integration was deleted)."""
        await self.store.delete(queue.key)
        await self.store.remove_from_set(_QUEUES, queue.member)

    def leased(self, queue: Queue) -> contextlib.AbstractAsyncContextManager[bool]:
        """Whether this worker may deliver the queue's events, for the block: one at a time
        across every instance, so an event is never sent by two at once."""
        return leased(self.store, f"ssf:lease:{queue.integration_id}:{queue.user_uuid}", ttl=LEASE)

    async def record_success(self, integration_id: str, at: float) -> None:
        await self.store.set(f"ssf:last_success:{integration_id}", str(at).encode(), ttl=None)

    async def record_error(self, integration_id: str, error: DeliveryError) -> None:
        data = json.dumps(asdict(error)).encode()
        await self.store.set(f"ssf:last_error:{integration_id}", data, ttl=None)

    async def status(self, integration_id: str) -> tuple[int, float | None, DeliveryError | None]:
        """(events waiting, last success, last error) of one integration."""
        waiting = 0
        for queue in await self.queues():
            if queue.integration_id == integration_id:
                waiting += len(await self.pending(queue))
        success = await self.store.get(f"ssf:last_success:{integration_id}")
        error = await self.store.get(f"ssf:last_error:{integration_id}")
        return (
            waiting,
            float(success) if success else None,
            DeliveryError(**json.loads(error)) if error else None,
        )

    async def drop_all(self, integration_id: str) -> None:
        """Drop every event waiting for one integration."""
        for queue in await self.queues():
            if queue.integration_id == integration_id:
                await self.drop(queue)

    async def forget(self, integration_id: str) -> None:
        """Everything kept for a deleted integration."""
        await self.drop_all(integration_id)
        await self.store.delete(
            f"ssf:last_success:{integration_id}", f"ssf:last_error:{integration_id}"
        )

    async def _change(self, queue: Queue, change: Callable[[list[Pending]], list[Pending]]) -> None:
        for _ in range(_ATTEMPTS):
            raw = await self.store.get(queue.key)
            events = change(_events(raw))
            value = json.dumps([asdict(e) for e in events]).encode() if events else None
            if await self.store.compare_and_set(queue.key, raw, value, ttl=KEEP):
                return
        raise StoreUnavailableError("The SSF outbox is too busy; try again.")


def _events(raw: bytes | None) -> list[Pending]:
    items: list[dict[str, Any]] = json.loads(raw) if raw else []
    return [Pending(**item) for item in items]
