"""The generic OpenID Connect provider (`type = "oidc"`): endpoints and scopes as configured.

Nothing is discovered: the issuer, authorize, token, JWKS and userinfo URLs come from the
configuration, and the scopes too (default `openid email profile`). Everything else is the
OIDC core's (`oidc.py`), with no exception for this type: the signing algorithms of
`OIDC_ALGORITHMS` (`id_token.py`), and an email the provider calls unverified refused. A generic
provider has no Groups API, so a user whose tokens carry no groups claim has no groups.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from gateway.authn.providers.oidc import OIDCProvider, ProviderMetadata
from gateway.config import IdentityProvider, OIDCConfig

DEFAULT_SCOPES = ("openid", "email", "profile")


class GenericOIDCProvider(OIDCProvider):
    """Signs users in with any OpenID Connect provider whose endpoints are configured."""

    def __init__(
        self,
        idp: IdentityProvider,
        http: httpx.AsyncClient,
        *,
        redirect_uri: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        config = idp.config
        if not isinstance(config, OIDCConfig):
            raise TypeError(f"identity provider {idp.id!r} is not of type oidc")
        super().__init__(
            idp, config, http, issuer=config.issuer, redirect_uri=redirect_uri, clock=clock
        )
        self._scopes_asked = config.scopes or DEFAULT_SCOPES
        if "openid" not in self._scopes_asked:  # OIDC Core 3.1.2.1: no ID token without it
            self._scopes_asked = ("openid", *self._scopes_asked)
        self._endpoints = ProviderMetadata(
            issuer=config.issuer,
            authorization_endpoint=config.auth_url,
            token_endpoint=config.token_url,
            jwks_uri=config.certs_url,
            userinfo_endpoint=config.userinfo_url,
        )

    async def metadata(self) -> ProviderMetadata:
        return self._endpoints

    def _scopes(self, meta: ProviderMetadata) -> tuple[str, ...]:
        return self._scopes_asked
