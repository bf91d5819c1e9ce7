"""The provisioning log: every SCIM request, newest first, kept bounded (SPEC 6).

Each entry records the time, the identity provider, the method, the resource type, the user or
group (id and name) concerned, the HTTP status, the outcome and the error. Entries go to a
capped list per identity provider and to one for all of them (`push_capped`: the newest
`LIMIT` are kept), which the admin API reads through `entries`. Logging never fails a request:
a store that does not answer loses the entry and says so in the process log.

Requests refused before any SCIM work (a missing or wrong secret, an identity provider that
does not exist or has SCIM off) go to a record of their own instead, the newest
`FAILURE_LIMIT` of them (`record_auth_failure`, read through `auth_failures`): anyone can
send those, and a flood of them must not push the identity provider's real entries out of the
log. A failure entry has the log entry's fields and the client's address and the `reason`;
never anything of the secret presented.
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
FAILURE_LIMIT = 100  # refused requests kept, of all identity providers together
_KEY = "provisioning_log"
_FAILURES_KEY = "scim_auth_failures"
_MAX_FIELD = 256  # characters kept of a name or error; the log stays small


class ProvisioningLog:
    def __init__(
        self,
        store: Store,
        clock: Clock = time.time,
        limit: int = LIMIT,
        failure_limit: int = FAILURE_LIMIT,
    ):
        self.store = store
        self.clock = clock
        self.limit = limit
        self.failure_limit = failure_limit

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
    ) -> None:
        """Append an entry to the IdP's log and to the log of all IdPs."""
        entry = self._entry(idp_id, method, resource_type, status, error)
        entry["resource_id"] = resource_id[:_MAX_FIELD]
        entry["resource_name"] = resource_name[:_MAX_FIELD]
        raw = _encode(entry)
        try:
            await self.store.push_capped(_KEY, raw, self.limit)
            await self.store.push_capped(f"{_KEY}:{idp_id}", raw, self.limit)
        except StoreUnavailableError as exc:
            log.warning("provisioning log entry lost: %s: %s", exc, entry)

    async def record_auth_failure(
        self,
        *,
        idp_id: str,
        method: str,
        resource_type: str,
        status: int,
        client_ip: str,
        reason: str,
        error: str,
    ) -> None:
        """Append a refused request to the failure record (`reason`: missing_secret,
        wrong_secret, unknown_idp or scim_off; `status` 401, 404, or 429 past the limit)."""
        entry = self._entry(idp_id, method, resource_type, status, error)
        entry["client_ip"] = client_ip[:_MAX_FIELD]
        entry["reason"] = reason
        try:
            await self.store.push_capped(_FAILURES_KEY, _encode(entry), self.failure_limit)
        except StoreUnavailableError as exc:
            log.warning("scim authentication failure not recorded: %s: %s", exc, entry)

    def _entry(
        self, idp_id: str, method: str, resource_type: str, status: int, error: str
    ) -> dict[str, Any]:
        moment = datetime.fromtimestamp(self.clock(), UTC)
        return {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "identity_provider_id": idp_id[:_MAX_FIELD],
            "method": method[:_MAX_FIELD],
            "resource_type": resource_type,
            "resource_id": "",
            "resource_name": "",
            "status": status,
            "outcome": "success" if status < 400 else "failure",
            "error": error[:_MAX_FIELD],
        }

    async def entries(self, idp_id: str | None, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` entries, newest first: of one IdP, or of all (None)."""
        key = _KEY if idp_id is None else f"{_KEY}:{idp_id}"
        return [json.loads(raw) for raw in await self.store.list_items(key, limit)]

    async def auth_failures(self, idp_id: str | None, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` refused requests, newest first: for one IdP id, or all (None)."""
        raws = await self.store.list_items(_FAILURES_KEY, self.failure_limit)
        entries = [json.loads(raw) for raw in raws]
        return [e for e in entries if idp_id is None or e["identity_provider_id"] == idp_id][:limit]


def _encode(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, separators=(",", ":")).encode()
