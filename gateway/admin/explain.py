"""Would this user get into this app, and why: `GET /api/apps/{app_id}/explain?email=E` and
`gateway explain --config PATH --email E --app ID` (SPEC 1) answer it the same way, here.

The answer comes from the registry's last-seen identity of every person with that email (one per
identity provider they signed in through): `policy.explain` judges each against the app's
policies and says which policy decided and, for a deny, which rule settled it. An `ip` rule
depends on the request, so it is judged against the address given (`ip=`, `--ip`); with none,
`ip` rules do not match. A `user_risk_score` rule is judged against the person's risk level now
(read from the store; explaining never announces a change of it).
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.envelope import envelope
from gateway.authz.policy import Explanation, IPAddress, RequestFacts, explain
from gateway.config import App
from gateway.errors import GatewayError, NotFoundError
from gateway.identity import Identity
from gateway.risk.engine import risk_schedule
from gateway.runtime import Runtime
from gateway.state.registry import Registry


async def explain_email(
    registry: Registry, app: App, email: str, client_ip: IPAddress | None = None
) -> list[Explanation]:
    """The explanation for each last-seen identity with `email` (NotFoundError if none)."""
    records = await registry.by_email(email)
    identities = [Identity.from_record(r.identity) for r in records if r.identity is not None]
    if not identities:
        raise NotFoundError(f"{email!r} has not signed in yet: there is no identity to judge.")
    now = registry.clock()
    explanations = []
    for identity in identities:
        level = (await risk_schedule(registry.store, identity.user_uuid)).level_at(now)
        explanations.append(explain(app, identity, RequestFacts(client_ip, risk_level=level)))
    return explanations


def parse_ip(text: str) -> IPAddress | None:
    """The client address to judge `ip` rules against; "" for none."""
    if not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError as exc:
        raise GatewayError(
            f"ip: {text!r} is not an IP address", error="invalid_query", status=400
        ) from exc


async def explain_app(request: Request, rt: Runtime) -> Response:
    """`GET /api/apps/{app_id}/explain?email=E[&ip=A]`: one explanation per identity."""
    app_id = request.path_params["app_id"]
    app = rt.app_by_id(app_id)
    if app is None:
        raise NotFoundError(f"No app with id {app_id!r}.")
    email = request.query_params.get("email", "").strip()
    if not email:
        raise GatewayError("email: is required", error="invalid_query", status=400)
    client_ip = parse_ip(request.query_params.get("ip", ""))
    explanations = await explain_email(rt.registry, app, email, client_ip)
    return envelope([e.to_json() for e in explanations])
