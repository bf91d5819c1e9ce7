"""Risk sharing integrations (`/api/zt_risk_scoring/integrations`): which Okta org hears of the
risk level changes of which IdP's users.

All of them live under one store key, as a JSON list, changed by compare-and-set so that two
instances changing them at once both land; every instance reads them when a level changes and
on each delivery round, so a change applies everywhere at once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from gateway.config import RiskIntegrationBody
from gateway.errors import ConflictError, NotFoundError
from gateway.state.store import Clock, Store

_KEY = "ssf:integrations"
_ATTEMPTS = 20  # compare-and-set rounds before a change gives up (409)


@dataclass(frozen=True, slots=True)
class Integration:
    id: str
    tenant_url: str
    reference_id: str  # an IdP id
    active: bool
    created: float


class Integrations:
    """The integrations in the store."""

    def __init__(self, store: Store, clock: Clock):
        self.store = store
        self.clock = clock

    async def all(self) -> list[Integration]:
        _, integrations = await self._read()
        return integrations

    async def get(self, integration_id: str) -> Integration:
        for integration in await self.all():
            if integration.id == integration_id:
                return integration
        raise _not_found(integration_id)

    async def create(self, body: RiskIntegrationBody) -> Integration:
        new = Integration(
            str(uuid.uuid4()), body.tenant_url, body.reference_id, body.active, self.clock()
        )
        await self._change(lambda current: [*current, new])
        return new

    async def replace(self, integration_id: str, body: RiskIntegrationBody) -> Integration:
        """Overwrite tenant_url, reference_id and active (Cloudflare's PUT)."""
        replaced: list[Integration] = []

        def change(current: list[Integration]) -> list[Integration]:
            replaced.clear()
            result = []
            for integration in current:
                if integration.id == integration_id:
                    integration = replace(
                        integration,
                        tenant_url=body.tenant_url,
                        reference_id=body.reference_id,
                        active=body.active,
                    )
                    replaced.append(integration)
                result.append(integration)
            if not replaced:
                raise _not_found(integration_id)
            return result

        await self._change(change)
        return replaced[0]

    async def delete(self, integration_id: str) -> None:
        def change(current: list[Integration]) -> list[Integration]:
            remaining = [i for i in current if i.id != integration_id]
            if len(remaining) == len(current):
                raise _not_found(integration_id)
            return remaining

        await self._change(change)

    async def _read(self) -> tuple[bytes | None, list[Integration]]:
        raw = await self.store.get(_KEY)
        return raw, [Integration(**d) for d in json.loads(raw)] if raw else []

    async def _change(self, change: Callable[[list[Integration]], list[Integration]]) -> None:
        for _ in range(_ATTEMPTS):
            raw, current = await self._read()
            new = json.dumps([asdict(i) for i in change(current)]).encode()
            if await self.store.compare_and_set(_KEY, raw, new):
                return
        raise ConflictError("The integrations are being changed by another request; try again.")


def _not_found(integration_id: str) -> NotFoundError:
    return NotFoundError(f"No risk score integration with id {integration_id!r}.")
