"""`/console/`: what is set up, and what to do next (the Okta guide's order)."""

from __future__ import annotations

from starlette.responses import Response

from gateway.console.context import Console


async def show(console: Console) -> Response:
    settings = console.rt.settings
    idps = settings.identity_providers
    steps: list[tuple[str, str]] = []
    if not idps:
        steps.append(("Add a login method (Okta)", "/console/identity-providers/new"))
    else:
        if not any(idp.scim_config.enabled for idp in idps):
            steps.append(
                ("Turn on SCIM provisioning", f"/console/identity-providers/{idps[0].id}#scim")
            )
        if not settings.apps:
            steps.append(("Add an application", "/console/apps"))
    if settings.console.policy is None:
        steps.append(("Admit your administrators with [console.policy] in the config file", ""))
    return console.render(
        "overview.html",
        title="Overview",
        idps=idps,
        apps=settings.apps,
        scim_on=[idp for idp in idps if idp.scim_config.enabled],
        console_policy=settings.console.policy is not None,
        steps=steps,
    )
