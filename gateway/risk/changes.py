"""A change of one user's risk level, and the protocol of those who act on it.

The risk engine (gateway/risk/) makes a `LevelChange` whenever a user's level moves, by a
behaviour crossing its threshold ("policy") or by an operator's reset ("admin"); listeners such
as the SSF transmitter to Okta receive it. The engine awaits each listener before it reports the
change done, so a listener that stores the change durably (an outbox) loses none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

RiskLevel = Literal["low", "medium", "high"]
RISK_LEVELS: tuple[RiskLevel, ...] = ("low", "medium", "high")


@dataclass(frozen=True, slots=True)
class LevelChange:
    user_uuid: str
    email: str
    idp_id: str  # the IdP the user last signed in through ("" when unknown)
    previous: RiskLevel
    current: RiskLevel
    initiating_entity: Literal["policy", "admin"]  # a behaviour, or an operator's reset
    reason: str  # the behaviour's name (e.g. "repeated_denials"), or "reset"
    at: int  # when, epoch seconds


class LevelChangeListener(Protocol):
    async def level_changed(self, change: LevelChange) -> None: ...
