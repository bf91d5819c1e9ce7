"""The access log of the admin API (`GET /api/logs/access`, SPEC 7): sign-ins and refusals,
newest first, kept bounded.

SPEC 7 calls it "sign-in and access decisions (who, app, allowed or why not)". What is recorded:
every sign-in that reached an app decision (allowed or denied, with the policy and rule), every
failed sign-in, and requests to a protected app that the policies refused (proxied or asked
through forward-auth). Requests that are let through are NOT recorded here: the hot path has a
budget of one store round trip, spent on the session, and every request already leaves its
line (with the same fields) in the process log. A refusal repeated by the same person (or
address) at the same app for the same policy and rule is recorded once a minute per worker, so
one browser retrying cannot flush the sign-ins out of the list or write on every request.
Entries go to one capped list (`push_capped`: the newest `LIMIT` are kept). Logging never fails
a request: a store that does not answer loses the entry and says so in the process log.
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
REPEAT_WINDOW = 60.0  # seconds: the same refusal is recorded once in this long (per worker)
_RECENT_KEPT = 4096  # refusals remembered for that, at most
_MAX_FIELD = 512  # characters kept of a rule or error; the log stays small

Kind = Literal["access", "sign_in"]
Outcome = Literal["allow", "deny", "failure"]


class AccessLog:
    def __init__(self, store: Store, clock: Clock = time.time, limit: int = LIMIT):
        self.store = store
        self.clock = clock
        self.limit = limit
        # refusal -> when it was last recorded (this process): repeats within a minute skipped
        self._recent: dict[tuple[str, ...], float] = {}

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
        if kind == "access" and self._repeated((app, user_uuid or ip, policy, rule)):
            return
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

    def _repeated(self, refusal: tuple[str, ...]) -> bool:
        now = self.clock()
        last = self._recent.get(refusal)
        if last is not None and now - last < REPEAT_WINDOW:
            return True
        if len(self._recent) >= _RECENT_KEPT:
            self._recent.clear()
        self._recent[refusal] = now
        return False

    async def entries(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` entries, newest first."""
        return [json.loads(raw) for raw in await self.store.list_items(_KEY, limit)]
