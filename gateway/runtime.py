"""The per-process runtime: settings plus every long-lived resource built from them.

Created in the app's lifespan (clients and pools are made once, never per request) and handed to
the guard and the views.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field

import httpx
from starlette.responses import PlainTextResponse, Response

from gateway.authn.providers import Provider
from gateway.authn.providers.generic import GenericOIDCProvider
from gateway.authn.providers.okta import OktaProvider
from gateway.authz.app_tokens import AppTokens, SigningKeys
from gateway.authz.routing import AppDirectory
from gateway.authz.service_tokens import ServiceTokens
from gateway.config import App, IdentityProvider, Settings
from gateway.errors import GatewayError, RateLimitedError
from gateway.identity import Identity
from gateway.ops.metrics import Metrics
from gateway.proxy.forwarding import Upstreams
from gateway.risk.changes import LevelChangeListener
from gateway.risk.engine import RiskEngine
from gateway.scim.secret import ScimSecrets
from gateway.ssf.integrations import Integrations
from gateway.ssf.outbox import Outbox
from gateway.ssf.transmitter import Transmitter
from gateway.state.access_log import AccessLog
from gateway.state.audit_log import AuditLog
from gateway.state.catalog import Catalog
from gateway.state.provisioning_log import ProvisioningLog
from gateway.state.registry import Registry
from gateway.state.sessions import CookieSigner, SessionManager
from gateway.state.store import Clock, Store
from gateway.web.pages import Pages

log = logging.getLogger("gateway")

CALLBACK_PATH = "/cdn-cgi/access/callback"


@dataclass
class Runtime:
    """Everything a request handler needs, created once per process."""

    settings: Settings
    store: Store
    http: httpx.AsyncClient
    upstreams: Upstreams
    clock: Clock
    pages: Pages = field(init=False)
    metrics: Metrics = field(default_factory=Metrics)
    directory: AppDirectory = field(init=False)
    sessions: SessionManager = field(init=False)
    bindings: CookieSigner = field(init=False)
    providers: dict[str, Provider] = field(init=False)
    catalog: Catalog = field(init=False)
    signing_keys: SigningKeys = field(init=False)
    app_tokens: AppTokens = field(init=False)
    service_tokens: ServiceTokens = field(init=False)
    registry: Registry = field(init=False)
    provisioning_log: ProvisioningLog = field(init=False)
    access_log: AccessLog = field(init=False)
    audit_log: AuditLog = field(init=False)
    scim_secrets: ScimSecrets = field(init=False)
    ssf_keys: SigningKeys = field(init=False)
    risk_integrations: Integrations = field(init=False)
    transmitter: Transmitter = field(init=False)
    risk: RiskEngine = field(init=False)
    # Told of every change of a user's risk level (the SSF transmitter registers here).
    risk_listeners: list[LevelChangeListener] = field(default_factory=list)

    def __post_init__(self) -> None:
        keys = self.settings.gateway.cookie_secret
        self.pages = Pages.for_settings(self.settings.gateway)
        self.sessions = SessionManager(
            self.store, CookieSigner(keys, "gateway.session"), self.clock, observer=self.metrics
        )
        self.bindings = CookieSigner(keys, "gateway.binding")
        self.service_tokens = ServiceTokens(self.store, self.clock)
        self.registry = Registry(self.store, self.clock)
        self.provisioning_log = ProvisioningLog(self.store, self.clock)
        self.access_log = AccessLog(self.store, self.clock)
        self.audit_log = AuditLog(self.store, self.clock)
        self.scim_secrets = ScimSecrets(self.store)
        self.signing_keys = SigningKeys(self.store, self.clock)
        self.app_tokens = AppTokens(
            self.signing_keys, self.sessions, self.settings.gateway.public_url, self.clock
        )
        self.catalog = Catalog(self.store, self.settings)
        self.ssf_keys = SigningKeys(self.store, self.clock, name="ssf:signing_keys", purpose="SSF")
        self.risk_integrations = Integrations(self.store, self.clock)
        self.transmitter = Transmitter(
            self.risk_integrations,
            Outbox(self.store),
            self.ssf_keys,
            self.http,
            self.metrics,
            self.clock,
            issuer=self.settings.gateway.public_url,
        )
        self.risk_listeners.append(self.transmitter)
        self.risk = RiskEngine(
            self.store,
            self.sessions,
            self.registry,
            lambda: self.settings.risk.behaviors,
            self.clock,
            listeners=self.risk_listeners,
        )
        self.sessions.risk = self.risk  # new sessions start with their user's risk level
        self.providers = {}
        self.apply(self.settings)

    def apply(self, settings: Settings) -> None:
        """Serve these identity providers and apps from now on (the catalog changed).

        An unchanged IdP keeps its provider, with its discovery and JWKS caches; the app
        directory is rebuilt and swapped in one assignment, so a request sees old or new.
        """
        redirect_uri = settings.gateway.public_url + CALLBACK_PATH
        self.providers = {
            idp.id: (
                self.providers[idp.id]
                if idp.id in self.providers and self.providers[idp.id].idp == idp
                else self._provider(idp, redirect_uri)
            )
            for idp in settings.identity_providers
        }
        self.directory = AppDirectory(settings.apps)
        self.settings = settings

    def _provider(self, idp: IdentityProvider, redirect_uri: str) -> Provider:
        """The provider for the IdP's type."""
        match idp.type:
            case "okta":
                return OktaProvider(idp, self.http, redirect_uri=redirect_uri, clock=self.clock)
            case "oidc":
                return GenericOIDCProvider(
                    idp, self.http, redirect_uri=redirect_uri, clock=self.clock
                )

    @property
    def team_host(self) -> str:
        return self.settings.gateway.team_host

    def app_by_id(self, app_id: str) -> App | None:
        return next((a for a in self.settings.apps if a.id == app_id), None)

    def idps_for(self, app: App) -> list[IdentityProvider]:
        """The IdPs a user may sign in to this app with (all of them unless restricted)."""
        allowed = app.allowed_idps
        return [i for i in self.settings.identity_providers if not allowed or i.id in allowed]

    def accepts_sign_in(self, identity: Identity, app: App | None = None) -> bool:
        """Whether a session's sign-in still counts: its IdP is still served (deleting an IdP
        ends the sessions it gave) and, for `app`, is one of the app's `allowed_idps`."""
        if identity.idp_id not in self.providers:
            return False
        return app is None or not app.allowed_idps or identity.idp_id in app.allowed_idps

    def is_known_host(self, host: str) -> bool:
        """The team host or a host some app is served on (for `returnTo`)."""
        return (
            host == self.team_host
            or self.directory.match(host, "/") is not None
            or any(a.host == host for a in self.settings.apps)
        )


def reference_id() -> str:
    """A short id that ties an error page to its log line."""
    return secrets.token_hex(6)


def error_page(rt: Runtime, exc: GatewayError, *, browser: bool = True) -> Response:
    """The HTML page for a gateway error (plain text for a client that is not a browser),
    logged with the same reference id."""
    ref = reference_id()
    step = getattr(exc, "step", "")
    hint = getattr(exc, "hint", "")  # what the operator should check: the log has it too
    log.warning(
        "request failed ref=%s error=%s status=%d step=%s: %r",
        ref,
        exc.error,
        exc.status,
        step,
        str(exc),
        extra={"ref": ref, "error": exc.error, "status": exc.status, "step": step, "hint": hint},
    )
    if browser:
        response: Response = rt.pages.gateway_error(exc, ref)
    else:
        response = PlainTextResponse(
            f"{exc.description} (reference {ref})",
            status_code=exc.status,
            headers={"Cache-Control": "no-store"},
        )
    if isinstance(exc, RateLimitedError):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response
