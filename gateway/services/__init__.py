"""The service layer: every change to the gateway's objects, for the admin API and the console.

One code path (SPEC 9: "the console and the admin API use the same validation and storage"):
plain functions taking the parsed input (the admin API's JSON body, or the same object built by
a console form) and an `actor`, the name the audit log gives the change ("admin-api", a console
user's email, "console-link"). Each validates with the config file's rules (`ConfigError` lists
every problem with its key path), refuses with the existing `GatewayError`s (404, 409, 422,
read-only), stores through the catalog or the store (so every instance serves the change), applies
it on this instance at once (`commit`), and records it in the audit log (`state/audit_log.py`).
The admin API renders the outcome as Cloudflare's envelope, the console as a page.

    identity_providers  create, replace, delete an IdP; regenerate its SCIM secret
    apps                create, replace, delete an app; revoke its sessions
    tokens              service tokens (create, delete) and the app-token signing keys (rotate)
    users               revoke a user's sessions
    risk                risk behaviours, a user's risk reset, risk sharing with Okta (SSF)
    logs                the access, audit and provisioning logs, for reading
"""

from __future__ import annotations

from collections.abc import Awaitable

from gateway.config import Settings
from gateway.errors import ConfigError, ConflictError
from gateway.runtime import Runtime

ADMIN_API = "admin-api"  # the actor of every change made through the admin API


async def commit(rt: Runtime, change: Awaitable[Settings]) -> None:
    """Await a catalog change and serve its result on this instance at once (the others
    pick it up within the catalog's poll interval)."""
    try:
        settings = await change
    except ConfigError as exc:
        # The object was valid on its own and against the settings this instance serves, but
        # not against the catalog as stored: another change got there first.
        raise ConflictError("; ".join(exc.problems)) from exc
    rt.apply(settings)
