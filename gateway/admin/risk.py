"""`/api/zt_risk_scoring/...`: users' risk levels and the behaviours behind them (SPEC 7, 8), in
Cloudflare's `zt_risk_scoring` shapes. `user_id` is the identity's `user_uuid` (a registry
record); the engine (`gateway/risk/engine.py`) does the work.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.envelope import envelope, read_json
from gateway.errors import ConfigError
from gateway.risk.behaviors import BEHAVIORS, BehaviorSetting, parse_settings
from gateway.risk.engine import UserRisk
from gateway.runtime import Runtime
from gateway.services import ADMIN_API
from gateway.services import risk as service
from gateway.state.registry import UserRecord


def _time(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _behaviors(settings: dict[str, BehaviorSetting], *, described: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, setting in settings.items():
        about = {"name": name, "description": BEHAVIORS[name].description} if described else {}
        out[name] = {**about, **setting.to_json()}
    return {"behaviors": out}


async def get_behaviors(request: Request, rt: Runtime) -> Response:
    return envelope(_behaviors(await rt.risk.behaviors(), described=True))


async def put_behaviors(request: Request, rt: Runtime) -> Response:
    """`{"behaviors": {"<name>": {"enabled": bool, "risk_level": ...}}}`: the behaviours named
    change (for every instance), the others keep theirs; all of them come back."""
    body = await read_json(request)
    problems = [f"{key}: unknown key" for key in body if key != "behaviors"]
    if "behaviors" not in body:
        problems.append("behaviors: is required")
    if problems:
        _, found = parse_settings(body.get("behaviors", {}))
        raise ConfigError(problems + found)
    settings = await service.set_behaviors(rt, body["behaviors"], ADMIN_API)
    return envelope(_behaviors(settings, described=False))


def user_risk_json(risk: UserRisk, person: UserRecord | None, now: float) -> dict[str, Any]:
    """One user's level and events, newest first (Cloudflare's `RiskScoringGetResponse`)."""
    return {
        "email": person.email if person is not None else risk.email,
        "name": person.name if person is not None else risk.name,
        "risk_level": risk.level_at(now),
        "last_reset_time": _time(risk.reset_at) if risk.reset_at else None,
        "events": [
            {
                "id": event.id,
                "name": event.name,
                "risk_level": event.risk_level,
                "timestamp": _time(event.at),
                "event_details": dict(event.details),
            }
            for event in risk.events
        ],
    }


async def summary(request: Request, rt: Runtime) -> Response:
    """Every user with risk events kept: their level now and their events."""
    now = rt.clock()
    users = [
        {
            "user_id": risk.user_uuid,
            "email": risk.email,
            "name": risk.name,
            "event_count": len(risk.events),
            "last_event": _time(risk.events[0].at),
            "max_risk_level": risk.level_at(now),
        }
        for risk in await rt.risk.summary()
    ]
    return envelope({"users": users})


async def get_user(request: Request, rt: Runtime) -> Response:
    risk, person = await service.user(rt, request.path_params["user_id"])
    return envelope(user_risk_json(risk, person, rt.clock()))


async def reset_user(request: Request, rt: Runtime) -> Response:
    """Back to low, events cleared; the result is the user's risk as it now is."""
    risk, person = await service.reset(rt, request.path_params["user_id"], ADMIN_API)
    return envelope(user_risk_json(risk, person, rt.clock()))
