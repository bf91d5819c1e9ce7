"""The access log of the admin API (`GET /api/logs/access`, SPEC 7): sign-ins and refusals,
newest first, kept bounded.

SPEC 7 calls it "sign-in and access decisions (who, app, allowed or why not)". What is recorded:
every sign-in that reached an app decision (allowed or denied, with the policy and rule), every
failed sign-in, and every request to a protected app that the policies refused. Requests that
are let through are NOT recorded here: the hot path has a budget of one store round trip, spent
on the session, and every request already leaves its line (with the same fields) in the process
log. Entries go to one capped list (`push_capped`: the newest `LIMIT` are kept). Logging never
fails a request: a store that does not answer loses the entry and says so in the process log.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any, Literal

from gateway.errors import StoreUnavailableError
from gateway.state.store import Clock, Store

log = logging.getLogger("gateway.access_log")

LIMIT = 1000  # entries kept
_KEY = "access_log"
_MAX_FIELD = 512  # characters kept of a rule or error; the log stays small

Kind = Literal["access", "sign_in"]
Outcome = Literal["allow", "deny", "failure"]


class AccessLog:
    def __init__(self, store: Store, clock: Clock = time.time, limit: int = LIMIT):
        self.store = store
        self.clock = clock
        self.limit = limit

    async def record(
        self,
        kind: Kind,
        decision: Outcome,
        *,
        reference: str,
        app: str = "",
        email: str = "",
        user_uuid: str = "",
        identity_provider_id: str = "",
        policy: str = "",
        rule: str = "",
        ip: str = "",
        error: str = "",
    ) -> None:
        """Append an entry. `reference` is the request id: it finds the request's log line."""
        moment = datetime.fromtimestamp(self.clock(), UTC)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "kind": kind,
            "decision": decision,
            "app": app,
            "email": email,
            "user_uuid": user_uuid,
            "identity_provider_id": identity_provider_id,
            "policy": policy,
            "rule": rule[:_MAX_FIELD],
            "ip": ip,
            "error": error[:_MAX_FIELD],
            "reference": reference,
        }
        try:
            await self.store.push_capped(_KEY, json.dumps(entry).encode(), self.limit)
        except StoreUnavailableError as exc:
            log.warning("access log entry lost: %s", exc, extra={"entry": entry})

    async def entries(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` entries, newest first."""
        return [json.loads(raw) for raw in await self.store.list_items(_KEY, limit)]
