"""The admin API (SPEC 7): Cloudflare Access's objects and envelope under `/api` on the team host.

`OPERATIONS` is the whole API, one line per method and path; `openapi.py` describes exactly
these (a test holds the two together) with the object schemas of `schemas.py`. `api.py` checks
the admin token and turns every outcome into an envelope; `auth.py` is the token check;
`envelope.py` the wire format; `serialize.py` maps objects to JSON and back; one module per
resource holds its handlers (`identity_providers`, `apps`, `tokens`, `users`, `integrations`:
risk sharing with Okta), and `explain` answers whether a user would get into an app, and why.
"""

from __future__ import annotations

from gateway.admin import (
    apps,
    explain,
    identity_providers,
    integrations,
    openapi,
    risk,
    tokens,
    users,
)
from gateway.admin.api import Operation

OPERATIONS: list[Operation] = [
    Operation("GET", "/openapi.json", openapi.document, public=True),
    Operation("GET", "/identity_providers", identity_providers.list_identity_providers),
    Operation("POST", "/identity_providers", identity_providers.create_identity_provider),
    Operation("GET", "/identity_providers/{idp_id}", identity_providers.get_identity_provider),
    Operation("PUT", "/identity_providers/{idp_id}", identity_providers.replace_identity_provider),
    Operation(
        "DELETE", "/identity_providers/{idp_id}", identity_providers.delete_identity_provider
    ),
    Operation(
        "POST",
        "/identity_providers/{idp_id}/refresh_scim_secret",
        identity_providers.refresh_scim_secret,
    ),
    Operation("GET", "/identity_providers/{idp_id}/scim/users", identity_providers.scim_users),
    Operation("GET", "/identity_providers/{idp_id}/scim/groups", identity_providers.scim_groups),
    Operation("GET", "/apps", apps.list_apps),
    Operation("POST", "/apps", apps.create_app),
    Operation("GET", "/apps/{app_id}", apps.get_app),
    Operation("PUT", "/apps/{app_id}", apps.replace_app),
    Operation("DELETE", "/apps/{app_id}", apps.delete_app),
    Operation("POST", "/apps/{app_id}/revoke_tokens", apps.revoke_tokens),
    Operation("GET", "/apps/{app_id}/explain", explain.explain_app),
    Operation("GET", "/users", users.list_users),
    Operation("GET", "/users/{user_id}/last_seen_identity", users.last_seen_identity),
    Operation("GET", "/users/{user_id}/active_sessions", users.active_sessions),
    Operation("POST", "/revoke_user", users.revoke_user),
    Operation("GET", "/service_tokens", tokens.list_service_tokens),
    Operation("POST", "/service_tokens", tokens.create_service_token),
    Operation("DELETE", "/service_tokens/{token_id}", tokens.delete_service_token),
    Operation("GET", "/keys", tokens.list_keys),
    Operation("POST", "/keys/rotate", tokens.rotate_keys),
    # Before any `/zt_risk_scoring/{user_id}` route, which "integrations" would match too.
    Operation("GET", "/zt_risk_scoring/integrations", integrations.list_integrations),
    Operation("POST", "/zt_risk_scoring/integrations", integrations.create_integration),
    Operation(
        "GET", "/zt_risk_scoring/integrations/{integration_id}", integrations.get_integration
    ),
    Operation(
        "PUT", "/zt_risk_scoring/integrations/{integration_id}", integrations.replace_integration
    ),
    Operation(
        "DELETE", "/zt_risk_scoring/integrations/{integration_id}", integrations.delete_integration
    ),
    Operation("GET", "/logs/scim", users.scim_log),
    Operation("GET", "/logs/access", users.access_log_entries),
    Operation("GET", "/logs/audit", users.audit_log_entries),
    # The fixed paths before `{user_id}`, which would take them as an id.
    Operation("GET", "/zt_risk_scoring/behaviors", risk.get_behaviors),
    Operation("PUT", "/zt_risk_scoring/behaviors", risk.put_behaviors),
    Operation("GET", "/zt_risk_scoring/summary", risk.summary),
    Operation("GET", "/zt_risk_scoring/{user_id}", risk.get_user),
    Operation("POST", "/zt_risk_scoring/{user_id}/reset", risk.reset_user),
]
