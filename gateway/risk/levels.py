"""A user's risk level over time, as sessions carry it: pure values, no I/O.

Level = the highest level among the user's behaviour events of the last `WINDOW` seconds that
came after their last reset (SPEC 8). So the level at any moment follows from two instants:
until when some `high` event is younger than the window, and until when some `medium` (or
higher) event is. A `RiskSchedule` holds exactly those two; the engine writes it into each of
the user's session records, and the proxy reads the level from the session it already fetched,
so a `user_risk_score` rule costs no store round trip and the level decays on time by itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.risk.changes import RISK_LEVELS, RiskLevel

WINDOW = 24 * 3600.0  # seconds an event counts towards the level


def rank(level: RiskLevel) -> int:
    """low 0, medium 1, high 2."""
    return RISK_LEVELS.index(level)


@dataclass(frozen=True, slots=True)
class RiskSchedule:
    """The level is `high` before `high_until`, else `medium` before `medium_until`, else
    `low` (epoch seconds; 0: never). `version` counts the user's schedule changes: a session
    record takes only a newer one than it holds, so two instances writing the sessions at
    once never leave them with the older."""

    high_until: float = 0.0
    medium_until: float = 0.0
    version: int = 0

    def level_at(self, now: float) -> RiskLevel:
        if now < self.high_until:
            return "high"
        if now < self.medium_until:
            return "medium"
        return "low"

    def __bool__(self) -> bool:
        return bool(self.high_until or self.medium_until)

    def newer_than(self, other: RiskSchedule) -> bool:
        return self.version > other.version

    def to_json(self) -> list[float]:
        return [self.high_until, self.medium_until, self.version]

    @classmethod
    def from_json(cls, value: object) -> RiskSchedule:
        """The schedule a record holds (one without a version is version 0); anything else
        (an older record) is no risk."""
        if isinstance(value, list) and len(value) in (2, 3):
            return cls(float(value[0]), float(value[1]), int(value[2]) if value[2:] else 0)
        return NO_RISK


NO_RISK = RiskSchedule()


def schedule_of(events: Iterable[tuple[RiskLevel, float]], since: float = 0.0) -> RiskSchedule:
    """The schedule of these (level, when) events, counting only those after `since` (the
    last reset)."""
    high = medium = 0.0
    for level, at in events:
        if at <= since:
            continue
        if level == "high":
            high = max(high, at + WINDOW)
        if level in ("high", "medium"):
            medium = max(medium, at + WINDOW)
    return RiskSchedule(high, medium)
