"""`/console/logs`: what happened, newest first: sign-ins and access decisions, SCIM
provisioning, and the audit of every change made through the console or the admin API.

Each log is read through the same functions as `/api/logs/*` (`services/logs.py`) and shown
bounded (`SHOWN` entries each); `?identity_provider_id=<id>` narrows the SCIM log to one login
method (the "View logs" link of a login method's SCIM panel).
"""

from __future__ import annotations

from starlette.responses import Response

from gateway.console.context import Console
from gateway.services import logs

SHOWN = 50  # entries of each log on the page


async def show(console: Console) -> Response:
    rt = console.rt
    idp_id = console.request.query_params.get("identity_provider_id") or None
    idp = rt.settings.idp(idp_id) if idp_id is not None else None
    return console.render(
        "logs.html",
        title="Logs",
        shown=SHOWN,
        access=await logs.access_entries(rt, SHOWN),
        provisioning=await logs.provisioning_entries(rt, idp_id, SHOWN),
        audit=await logs.audit_entries(rt, SHOWN),
        idp_id=idp_id,
        idp_name=idp.name if idp is not None else idp_id,
        app_names={app.id: app.name for app in rt.settings.apps},
        idp_names={i.id: i.name for i in rt.settings.identity_providers},
    )
