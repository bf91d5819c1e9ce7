"""`/console/risk`: users' risk levels (SPEC 8): the behaviours that raise them, who is at
risk now, and risk sharing with Okta (the SSF transmitter's integrations and the
`well_known_url` the Okta admin enters as the Security Events Provider).

Every change goes through `services.risk`, as the admin API's `/api/zt_risk_scoring/...` do:
the behaviours form names every behaviour (on or off, its level), an integration is added,
changed or deleted (after a confirmation) with the API's body. A problem comes back next to its
field: the behaviours' key paths (`behaviors.new_network.risk_level`) and the integration's
(`tenant_url`, `reference_id`) name the form's inputs.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from gateway.console.context import Console, field_errors
from gateway.errors import GatewayError
from gateway.risk.behaviors import BEHAVIORS
from gateway.risk.changes import RISK_LEVELS
from gateway.services import risk as service
from gateway.ssf.events import WELL_KNOWN_PATH

BASE = "/console/risk"


async def show(console: Console) -> Response:
    return await _page(console)


async def _page(
    console: Console,
    *,
    errors: dict[str, str] | None = None,
    behaviors: dict[str, dict[str, Any]] | None = None,
    new_integration: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    rt = console.rt
    now = rt.clock()
    if behaviors is None:
        behaviors = {name: s.to_json() for name, s in (await rt.risk.behaviors()).items()}
    integrations = [await service.integration_json(rt, i) for i in await rt.risk_integrations.all()]
    at_risk = [
        {
            "user_id": r.user_uuid,
            "email": r.email,
            "level": r.level_at(now),
            "count": len(r.events),
        }
        for r in await rt.risk.summary()
    ]
    return console.render(
        "risk.html",
        status,
        title="Risk",
        about={name: b.description for name, b in BEHAVIORS.items()},
        behaviors=behaviors,
        levels=[(level, level) for level in RISK_LEVELS],
        at_risk=at_risk,
        integrations=integrations,
        idps=[(idp.id, idp.name) for idp in rt.settings.identity_providers],
        idp_names={idp.id: idp.name for idp in rt.settings.identity_providers},
        well_known_url=rt.settings.gateway.public_url + WELL_KNOWN_PATH,
        new=new_integration or {"tenant_url": "", "reference_id": "", "active": True},
        errors=errors or {},
        notice=_NOTICES.get(console.request.query_params.get("done", ""), ""),
    )


_NOTICES = {
    "behaviors": "Saved: every instance scores with these settings from now on.",
    "added": "Integration added: risk level changes of its users are sent to Okta.",
    "changed": "Integration saved.",
    "deleted": "Integration deleted, with the events that were waiting for it.",
}


async def save_behaviors(console: Console) -> Response:
    form = await console.read_form()
    posted = {
        name: {
            "enabled": form.get(f"behaviors.{name}.enabled") == "true",
            "risk_level": form.get(f"behaviors.{name}.risk_level", ""),
        }
        for name in BEHAVIORS
    }
    try:
        await service.set_behaviors(console.rt, posted, console.actor)
    except GatewayError as exc:
        if exc.status >= 500:
            raise
        return await _page(console, errors=field_errors(exc), behaviors=posted, status=exc.status)
    return console.redirect(f"{BASE}?done=behaviors#behaviors")


def _integration_body(form: dict[str, str], prefix: str = "") -> dict[str, Any]:
    """The API body from the add form, or (`prefix` "<id>.") an integration's own form."""
    return {
        "integration_type": "Okta",
        "tenant_url": form.get(f"{prefix}tenant_url", "").strip(),
        "reference_id": form.get(f"{prefix}reference_id", ""),
        "active": form.get(f"{prefix}active") == "true",
    }


async def add_integration(console: Console) -> Response:
    body = _integration_body(await console.read_form())
    try:
        await service.create_integration(console.rt, body, console.actor)
    except GatewayError as exc:
        if exc.status >= 500:
            raise
        errors = field_errors(exc)
        return await _page(console, errors=errors, new_integration=body, status=exc.status)
    return console.redirect(f"{BASE}?done=added#okta")


async def change_integration(console: Console) -> Response:
    integration_id = console.request.path_params["integration_id"]
    body = _integration_body(await console.read_form(), f"{integration_id}.")
    try:
        await service.replace_integration(console.rt, integration_id, body, console.actor)
    except GatewayError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        errors = {f"{integration_id}.{key}": text for key, text in field_errors(exc).items()}
        return await _page(console, errors=errors, status=exc.status)
    return console.redirect(f"{BASE}?done=changed#okta")


async def delete_integration(console: Console) -> Response:
    """First a confirmation page, then (confirmed) the integration is deleted."""
    rt = console.rt
    integration = await rt.risk_integrations.get(console.request.path_params["integration_id"])
    form = await console.read_form()
    if form.get("confirm") != "yes":
        return console.confirm(
            title="Delete the risk sharing integration?",
            question=f"Stop sending risk level changes to {integration.tenant_url}?",
            consequence="Okta no longer hears of its users' risk levels, and the events still "
            "waiting to be sent are dropped.",
            button="Delete the integration",
            back=f"{BASE}#okta",
        )
    await service.delete_integration(rt, integration.id, console.actor)
    return console.redirect(f"{BASE}?done=deleted#okta")
