"""`/console/settings`: session durations, the app-token signing keys (rotate) and service
tokens (create, with the secret shown once; list; delete), SPEC 9 "Settings".

Session durations are the config file's (`[gateway] session_duration`, each app's and policy's)
and are shown read-only. Every change goes through `services.tokens`, as the admin API's do.
"""

from __future__ import annotations

from starlette.responses import Response

from gateway.admin.serialize import format_duration, service_token_json, signing_key_json
from gateway.console.context import Console, field_errors
from gateway.errors import GatewayError
from gateway.services import tokens as service

PATH = "/console/settings"


async def show(console: Console) -> Response:
    return await _page(console)


async def _page(
    console: Console,
    *,
    status: int = 200,
    created: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    rotated: bool = False,
) -> Response:
    rt = console.rt
    keys = [
        signing_key_json(k, current=k.retired is None) for k in await rt.signing_keys.published()
    ]
    tokens = [service_token_json(t) for t in await rt.service_tokens.all()]
    return console.render(
        "settings.html",
        status,
        title="Settings",
        session_duration=format_duration(rt.settings.gateway.session_duration),
        apps=[(app, format_duration(app.session_duration)) for app in rt.settings.apps],
        keys=keys,
        tokens=tokens,
        created=created,
        errors=errors or {},
        values=values or {"name": "", "duration": service.DEFAULT_DURATION},
        rotated=rotated,
    )


async def rotate_keys(console: Console) -> Response:
    await service.rotate_keys(console.rt, console.actor)
    return await _page(console, rotated=True)


async def create_service_token(console: Console) -> Response:
    form = await console.read_form()
    values = {"name": form.get("name", ""), "duration": form.get("duration", "").strip()}
    body = {"name": values["name"], "duration": values["duration"] or service.DEFAULT_DURATION}
    try:
        token, secret = await service.create_service_token(console.rt, body, console.actor)
    except GatewayError as exc:
        return await _page(console, status=exc.status, errors=field_errors(exc), values=values)
    created = {"name": token.name, "client_id": token.client_id, "client_secret": secret}
    return await _page(console, created=created)


async def delete_service_token(console: Console) -> Response:
    token_id = console.request.path_params["token_id"]
    form = await console.read_form()
    if form.get("confirm") != "yes":
        token = next((t for t in await console.rt.service_tokens.all() if t.id == token_id), None)
        if token is None:
            raise GatewayError("No such service token.", error="not_found", status=404)
        return console.confirm(
            title="Delete this service token?",
            question=f"Delete the service token {token.name}?",
            consequence="Machines that send it are refused from now on, on every instance.",
            button="Delete",
            back=f"{PATH}#service-tokens",
        )
    await service.delete_service_token(console.rt, token_id, console.actor)
    return console.redirect(f"{PATH}#service-tokens")
