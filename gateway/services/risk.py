"""Users' risk levels, the behaviours behind them, and risk sharing with Okta (SPEC 7, 8).

The engine (`gateway/risk/engine.py`) and the integrations (`gateway/ssf/integrations.py`) keep
the state; here are the changes the admin API and the console make to it, each recorded in the
audit log: a behaviour's setting, a user's reset, an integration created, replaced or deleted.
A user is known by their registry record, or by risk events alone (a deactivated user's refused
sign-in); anyone else is a 404. An integration's `reference_id` must name an IdP (422), checked
against the catalog as stored and written under its lock: an IdP an integration names cannot be
deleted (`identity_providers.refuse_if_used`), and this keeps the two from crossing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.admin.serialize import timestamp
from gateway.config import RiskIntegrationBody, parse_risk_integration
from gateway.errors import ConfigError, GatewayError, NotFoundError
from gateway.risk.behaviors import BehaviorSetting, parse_settings
from gateway.risk.engine import UserRisk
from gateway.runtime import Runtime
from gateway.services.identity_providers import KIND as IDPS
from gateway.ssf.events import WELL_KNOWN_PATH
from gateway.ssf.integrations import Integration
from gateway.state.registry import UserRecord


async def set_behaviors(rt: Runtime, behaviors: object, actor: str) -> dict[str, BehaviorSetting]:
    """`{"<name>": {"enabled": bool, "risk_level": ...}}`: the behaviours named change (for
    every instance), the others keep theirs; every behaviour's setting in force comes back."""
    changes, problems = parse_settings(behaviors)
    if problems:
        raise ConfigError(problems)
    settings = await rt.risk.set_behaviors(changes)
    await rt.audit_log.record(actor, "update", "risk_behaviors", "behaviors", ", ".join(changes))
    return settings


async def user(rt: Runtime, user_id: str) -> tuple[UserRisk, UserRecord | None]:
    """The user's risk and registry record (None for a user known by risk events only)."""
    person = await rt.registry.get(user_id)
    risk = await rt.risk.user(user_id)
    if person is None and not risk.events:
        raise NotFoundError(f"No user with id {user_id!r}.")
    return risk, person


async def reset(rt: Runtime, user_id: str, actor: str) -> tuple[UserRisk, UserRecord | None]:
    """Back to low, events cleared; the user's risk as it now is."""
    risk, person = await user(rt, user_id)
    risk = await rt.risk.reset(risk.user_uuid, actor=actor)
    email = person.email if person is not None else risk.email
    await rt.audit_log.record(actor, "reset_risk", "user", risk.user_uuid, email)
    return risk, person


async def integration_json(rt: Runtime, integration: Integration) -> dict[str, Any]:
    """The integration as the API shows it: with `well_known_url` (what the Okta admin enters
    for the Security Events Provider) and its delivery (events waiting, last success, last
    error)."""
    waiting, success, error = await rt.transmitter.outbox.status(integration.id)
    last_error = None
    if error is not None:
        last_error = {
            "at": timestamp(error.at),
            "status": error.status,
            "err": error.err,
            "description": error.description,
        }
    return {
        "id": integration.id,
        "integration_type": "Okta",
        "tenant_url": integration.tenant_url,
        "reference_id": integration.reference_id,
        "active": integration.active,
        "created_at": timestamp(integration.created),
        "well_known_url": rt.settings.gateway.public_url + WELL_KNOWN_PATH,
        "delivery": {
            "pending": waiting,
            "last_success_at": timestamp(success) if success is not None else None,
            "last_error": last_error,
        },
    }


async def _refuse_unknown_idp(rt: Runtime, body: RiskIntegrationBody) -> None:
    """422 unless `reference_id` names an IdP as the catalog stores it now (this instance may
    be a poll behind another's delete). Under `rt.catalog.locked()`, as the write that follows
    must be: an IdP is only deleted under that lock, after checking no integration names it."""
    if not await rt.catalog.has(IDPS, body.reference_id):
        raise GatewayError(
            f"reference_id: no identity provider {body.reference_id!r}",
            error="unprocessable",
            status=422,
        )


async def create_integration(rt: Runtime, body: Mapping[str, Any], actor: str) -> Integration:
    parsed = parse_risk_integration(body)  # ConfigError, one item per problem
    async with rt.catalog.locked():
        await _refuse_unknown_idp(rt, parsed)
        integration = await rt.risk_integrations.create(parsed)
    await rt.audit_log.record(
        actor, "create", "risk_integration", integration.id, integration.tenant_url
    )
    return integration


async def replace_integration(
    rt: Runtime, integration_id: str, body: Mapping[str, Any], actor: str
) -> Integration:
    before = await rt.risk_integrations.get(integration_id)  # 404 before the body is read
    parsed = parse_risk_integration(body)
    async with rt.catalog.locked():
        await _refuse_unknown_idp(rt, parsed)
        integration = await rt.risk_integrations.replace(integration_id, parsed)
    if integration.tenant_url != before.tenant_url:
        # Waiting tokens are addressed (`aud`) to the old org: the new one would refuse them.
        await rt.transmitter.outbox.drop_all(integration_id)
    await rt.audit_log.record(
        actor, "update", "risk_integration", integration.id, integration.tenant_url
    )
    return integration


async def delete_integration(rt: Runtime, integration_id: str, actor: str) -> None:
    """The integration, and the events still waiting for it."""
    integration = await rt.risk_integrations.get(integration_id)
    await rt.risk_integrations.delete(integration_id)
    await rt.transmitter.outbox.forget(integration_id)
    await rt.audit_log.record(
        actor, "delete", "risk_integration", integration_id, integration.tenant_url
    )
