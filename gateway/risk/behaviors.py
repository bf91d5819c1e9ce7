"""The behaviours the gateway scores (SPEC 8), each switched on or off and given a level.

Declared once here: the config loader (`[risk.behaviors.<name>]`), the admin API
(`/api/zt_risk_scoring/behaviors`), its OpenAPI schema and the engine read `BEHAVIORS`. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.risk.changes import RISK_LEVELS, RiskLevel


@dataclass(frozen=True, slots=True)
class BehaviorSetting:
    """What the operator chose for one behaviour."""

    enabled: bool
    risk_level: RiskLevel

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "risk_level": self.risk_level}


@dataclass(frozen=True, slots=True)
class Behavior:
    name: str
    description: str
    default: BehaviorSetting
    threshold: int = 1  # events within `window` that make one behaviour event
    window: float = 0.0  # seconds (0: every occurrence is an event)


BEHAVIORS: dict[str, Behavior] = {
    b.name: b
    for b in (
        Behavior(
            "repeated_denials",
            "10 or more requests denied by policy within 10 minutes",
            BehaviorSetting(True, "medium"),
            threshold=10,
            window=600.0,
        ),
        Behavior(
            "failed_sign_ins",
            "5 or more failed sign-ins within 10 minutes, after the identity provider "
            "proved who the user is",
            BehaviorSetting(True, "medium"),
            threshold=5,
            window=600.0,
        ),
        Behavior(
            "new_network",
            "a sign-in from a network (IPv4 /24, IPv6 /48) not seen for this user in 30 days",
            BehaviorSetting(False, "low"),
        ),
        Behavior(
            "scim_deprovisioned_sign_in",
            "a sign-in attempt by a user whom SCIM deactivated",
            BehaviorSetting(True, "high"),
        ),
    )
}

DEFAULTS: dict[str, BehaviorSetting] = {name: b.default for name, b in BEHAVIORS.items()}


def parse_settings(data: object) -> tuple[dict[str, BehaviorSetting], list[str]]:
    """`{"<name>": {"enabled": bool, "risk_level": "low|medium|high"}, ...}` (the API's
    `behaviors` object, both keys required): the settings it names, and every problem with
    its key path."""
    problems: list[str] = []
    settings: dict[str, BehaviorSetting] = {}
    if not isinstance(data, Mapping):
        return settings, ["behaviors: must be an object"]
    for name, value in data.items():
        path = f"behaviors.{name}"
        if name not in BEHAVIORS:
            problems.append(f"{path}: unknown behavior (known: {', '.join(BEHAVIORS)})")
            continue
        if not isinstance(value, Mapping):
            problems.append(f"{path}: must be an object")
            continue
        problems += [f"{path}.{key}: unknown key" for key in value if key not in _KEYS]
        enabled, level = value.get("enabled"), value.get("risk_level")
        if not isinstance(enabled, bool):
            problems.append(f"{path}.enabled: must be true or false")
        if level not in RISK_LEVELS:
            problems.append(f"{path}.risk_level: must be one of {', '.join(RISK_LEVELS)}")
        if isinstance(enabled, bool) and level in RISK_LEVELS:
            settings[name] = BehaviorSetting(enabled, level)
    return settings, problems


_KEYS = ("enabled", "risk_level")
