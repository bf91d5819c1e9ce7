"""The provisioning log: every SCIM request, newest first, kept bounded (SPEC 6).

Each entry records the time, the identity provider, the method, the resource type, the user or
group (id and name) concerned, the HTTP status, the outcome and the error. Entries go to a
capped list per identity provider and to one for all of them (`push_capped`: the newest
`LIMIT` are kept), which the admin API reads through `entries`. Logging never fails a request:
a store that does not answer loses the entry and says so in the process log.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from gateway.errors import StoreUnavailableError
from gateway.state.store import Clock, Store

log = logging.getLogger("gateway.scim")

LIMIT = 1000  # entries kept per identity provider, and in the log of all of them
_KEY = "provisioning_log"
_MAX_FIELD = 256  # characters kept of a name or error; the log stays small


class ProvisioningLog:
    def __init__(self, store: Store, clock: Clock = time.time, limit: int = LIMIT):
        self.store = store
        self.clock = clock
        self.limit = limit

    async def record(
        self,
        *,
        idp_id: str,
        method: str,
        resource_type: str,
        status: int,
        resource_id: str = "",
        resource_name: str = "",
        error: str = "",
        known_idp: bool = True,
    ) -> None:
        """Append an entry; `known_idp` False (a request for an IdP that does not exist or has
        no SCIM) goes to the log of all IdPs only."""
        moment = datetime.fromtimestamp(self.clock(), UTC)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "identity_provider_id": idp_id[:_MAX_FIELD],
            "method": method,
            "resource_type": resource_type,
            "resource_id": resource_id[:_MAX_FIELD],
            "resource_name": resource_name[:_MAX_FIELD],
            "status": status,
            "outcome": "success" if status < 400 else "failure",
            "error": error[:_MAX_FIELD],
        }
        raw = json.dumps(entry, separators=(",", ":")).encode()
        try:
            await self.store.push_capped(_KEY, raw, self.limit)
            if known_idp:
                await self.store.push_capped(f"{_KEY}:{idp_id}", raw, self.limit)
        except StoreUnavailableError as exc:
            log.warning("provisioning log entry lost: %s: %s", exc, entry)

    async def entries(self, idp_id: str | None, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` entries, newest first: of one IdP, or of all (None)."""
        key = _KEY if idp_id is None else f"{_KEY}:{idp_id}"
        return [json.loads(raw) for raw in await self.store.list_items(key, limit)]
