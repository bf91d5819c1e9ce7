"""The audit log (`GET /api/logs/audit`, SPEC 7 and 9): every change made through the admin API
or the console, newest first, kept bounded.

Each entry says who (`actor`: "admin-api", the console user's email, or "console-link"), what
(`action`, `object_type`, `object_id`, `object_name`) and when. It is written by the service
layer (`gateway/services/`) after the change is stored, so both surfaces record alike and a
change refused by validation records nothing. Entries go to one capped list (`push_capped`:
the newest `LIMIT` are kept), as the access and provisioning logs do. Recording never undoes
or fails a change that is already stored: a store that does not answer loses the entry and says
so in the process log. Never a secret: an entry names objects, not their values.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any, Literal

from gateway.errors import StoreUnavailableError
from gateway.state.store import Clock, Store

log = logging.getLogger("gateway.audit")

LIMIT = 1000  # entries kept
_KEY = "audit_log"
_MAX_FIELD = 256  # characters kept of a name; the log stays small

ObjectType = Literal[
    "identity_provider", "app", "service_token", "signing_key", "user", "risk_behaviors",
    "risk_integration",
]  # fmt: skip
Action = Literal[
    "create", "update", "delete", "regenerate_scim_secret", "rotate", "revoke_sessions",
    "reset_risk",
]  # fmt: skip
ACTIONS: tuple[Action, ...] = (
    "create", "update", "delete", "regenerate_scim_secret", "rotate", "revoke_sessions",
    "reset_risk",
)  # fmt: skip
OBJECT_TYPES: tuple[ObjectType, ...] = (
    "identity_provider", "app", "service_token", "signing_key", "user", "risk_behaviors",
    "risk_integration",
)  # fmt: skip


class AuditLog:
    def __init__(self, store: Store, clock: Clock = time.time, limit: int = LIMIT):
        self.store = store
        self.clock = clock
        self.limit = limit

    async def record(
        self,
        actor: str,
        action: Action,
        object_type: ObjectType,
        object_id: str,
        object_name: str = "",
    ) -> None:
        """Append an entry for a change that has been made."""
        moment = datetime.fromtimestamp(self.clock(), UTC)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "actor": actor[:_MAX_FIELD],
            "action": action,
            "object_type": object_type,
            "object_id": object_id[:_MAX_FIELD],
            "object_name": object_name[:_MAX_FIELD],
        }
        log.info("audit: %s %s %s %s", entry["actor"], action, object_type, entry["object_id"])
        try:
            await self.store.push_capped(_KEY, json.dumps(entry).encode(), self.limit)
        except StoreUnavailableError as exc:
            log.warning("audit log entry lost: %s", exc, extra={"entry": entry})

    async def entries(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` entries, newest first."""
        return [json.loads(raw) for raw in await self.store.list_items(_KEY, limit)]
