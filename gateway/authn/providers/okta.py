"""The Okta provider (`type = "okta"`): what Okta does differently from OpenID Connect at large.

Endpoints come from discovery on the org or a custom authorization server (`okta_api` has the
URL rules); ID tokens are RS256; the `groups` scope is asked for where the server advertises it;
`email_verified` is advisory (OKTA.md). Groups past Okta's 100-group claim limit: Okta refuses
the claim with `server_error` "The groups claim matched too many groups" on the redirect, at
/token or at /userinfo, and that is never read as "no groups" (SPEC 4). With an API token the
sign-in restarts once, silently (`prompt=none`: the user already has an Okta session), without
the `groups` scope, and the groups come from the Okta Groups API, which also stands in when the
claim is simply missing. Without a token the refusal fails the sign-in naming both fixes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from gateway.authn.providers import SignInRequest, SignInResult, okta_api
from gateway.authn.providers.jwks import KeyCache, PublicKey
from gateway.authn.providers.oidc import DISCOVERY_TTL, Groups, OIDCProvider, ProviderMetadata
from gateway.config import IdentityProvider, OktaConfig
from gateway.errors import IdPError, SignInError

logger = logging.getLogger("gateway.okta")

# OKTA.md: Okta signs ID tokens with RS256 only.
OKTA_ALGORITHMS = frozenset({"RS256"})
OKTA_SCOPES = ("openid", "email", "profile", "groups")

# OKTA.md "Errors": the description Okta uses when a groups claim would exceed 100 groups.
TOO_MANY_GROUPS = "The groups claim matched too many groups"

# Kept with a sign-in restarted without the groups scope: a second refusal must not restart it.
_WITHOUT_GROUPS_SCOPE = "without_groups_scope"


class TooManyGroupsError(IdPError):
    """Okta refused the groups claim: the user is in more than 100 groups matching its filter.

    Raised on the redirect and at /token always: there is no ID token to go on, so with an API
    token the provider restarts the authorization once without the `groups` scope. At /userinfo
    only when there is no API token, or when userinfo was needed for more than the groups.
    Never read as "no groups": an exclude rule on a group must not silently stop applying.
    """

    error = "server_error"
    status = 502


class OktaProvider(OIDCProvider):
    """Signs users in with an Okta org or custom authorization server."""

    who = "Okta"
    where = "in Okta"
    issuer_hint = "check the Okta domain / authorization server ID"
    algorithms = OKTA_ALGORITHMS

    def __init__(
        self,
        idp: IdentityProvider,
        http: httpx.AsyncClient,
        *,
        redirect_uri: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not isinstance(idp.config, OktaConfig):
            raise TypeError(f"identity provider {idp.id!r} is not of type okta")
        self._okta = idp.config
        self._sleep = sleep  # waits out the Groups API's rate limit (tests inject a fake)
        server = self._okta.authorization_server_id
        super().__init__(
            idp,
            self._okta,
            http,
            issuer=okta_api.expected_issuer(self._okta.okta_account, server),
            discovery_url=okta_api.discovery_url(self._okta.okta_account, server),
            redirect_uri=redirect_uri,
            clock=clock,
        )
        # The org's own keys sign its Universal Logout requests; a custom authorization server
        # signs ID tokens with keys of its own, so the org's are a second cache then.
        self.org_keys = (
            KeyCache(self._fetch_org_keys, clock, idp.id, max_age=DISCOVERY_TTL)
            if server
            else self.keys
        )

    @property
    def org(self) -> str:
        """The Okta org URL: the issuer of its Universal Logout requests."""
        return okta_api.expected_issuer(self._okta.okta_account, "")

    async def _fetch_org_keys(self) -> dict[str, PublicKey]:
        return await self._fetch_keys_at(okta_api.org_keys_url(self._okta.okta_account))

    def _scopes(self, meta: ProviderMetadata) -> tuple[str, ...]:
        # OKTA.md: a custom authorization server does not know the `groups` scope (its groups
        # come from a claim defined on the server), and Okta rejects the whole authorize request
        # with invalid_scope for an unknown scope. Ask for it only where it is advertised.
        supported = meta.scopes_supported
        return OKTA_SCOPES if supported is None or "groups" in supported else OKTA_SCOPES[:-1]

    async def finish(
        self, answer: Mapping[str, str], pending: Mapping[str, str]
    ) -> SignInResult | SignInRequest:
        """The sign-in; or, when Okta refused a groups claim over 100 groups and an API token is
        set, the one restart without the `groups` scope (SPEC 4)."""
        restarted = _WITHOUT_GROUPS_SCOPE in pending
        try:
            result = await self._sign_in(answer, pending)
        except TooManyGroupsError as exc:
            if not self._okta.api_token:
                raise
            if restarted:
                # Refused again without the groups scope: restarting once more would loop.
                raise too_many_groups_error(exc.step, restarted=True) from exc
            logger.info(
                "groups claim over Okta's limit: restarting without it idp=%s",
                self.idp.id,
                extra={"step": "restart", "idp": self.idp.id},
            )
            meta = await self.metadata()
            scopes = tuple(s for s in self._scopes(meta) if s != "groups")
            return self._authorization_request(
                meta, scopes, prompt="none", marks={_WITHOUT_GROUPS_SCOPE: "1"}
            )
        return dataclasses.replace(result, restarted=True) if restarted else result

    def _refusal(self, step: str, error: str, description: str) -> IdPError | None:
        if error == "server_error" and description.startswith(TOO_MANY_GROUPS):
            return too_many_groups_error(step)
        return None

    def _can_do_without_userinfo(self, exc: SignInError, only_groups_missing: bool) -> bool:
        # The Groups API can stand in for the groups, but not for another claim that only
        # userinfo would have sent (the email, a kept custom claim): dropping that silently
        # could switch a policy rule off. Then `finish` restarts without the groups scope
        # instead, as for the refusal at /token.
        if isinstance(exc, TooManyGroupsError) and self._okta.api_token and only_groups_missing:
            logger.info(
                "idp %s: userinfo: too many groups, using the Groups API",
                self.idp.id,
                extra={"step": "userinfo", "idp": self.idp.id},
            )
            return True
        return False

    async def _groups_elsewhere(self, sub: str) -> Groups:
        if self._okta.api_token:
            names, pages = await okta_api.fetch_user_groups(
                self._http,
                self._okta.okta_account,
                self._okta.api_token,
                sub,
                clock=self._clock,
                sleep=self._sleep,
            )
            return Groups(tuple(names), "api", pages)
        if self._okta.authorization_server_id:
            fix = (
                "add a Groups claim on the custom authorization server (Security > API > "
                "Authorization Servers > Claims: name 'groups', include in the ID token, "
                "filter 'Matches regex' .*)"
            )
        else:
            fix = (
                "set the Groups claim on the Okta app's Sign On tab (name 'groups', filter "
                "'Matches regex' .*)"
            )
        note = (
            f"Okta sent no groups claim, so this user has no groups here. To send groups, {fix}; "
            "or set api_token to read them from the Okta API."
        )
        return Groups((), "none", note=note)

    def _check_email_verified(self, lookup: Callable[[str], Any]) -> None:
        # OKTA.md: Okta's email_verified is advisory (admin-made users are often unverified);
        # Okta vouches for the address of its own users.
        return

    def checks(self, step: str, redirect_uri: str) -> list[str]:
        config = self._okta
        if step in ("discovery", "jwks", "id_token"):
            server = config.authorization_server_id
            checks = [
                f"The Okta domain (okta_account = {config.okta_account}): your org's URL, such "
                "as https://dev-123456.okta.com, with no path.",
                f"The authorization server ID ({server}): it must exist and be active (Security "
                "> API > Authorization Servers); leave it empty for the org authorization server."
                if server
                else "The authorization server ID: empty means the org authorization server; set "
                "it ('default' or 'aus...') if the app uses a custom authorization server.",
                f"The gateway reads {self._discovery_url} and expects the issuer {self._issuer}.",
            ]
            if step == "id_token":
                checks += [
                    f"The client ID ({config.client_id}): the ID token's audience must include it.",
                    "This host's clock (NTP), and that ID token encryption is off for the app.",
                ]
            return checks
        if step == "groups":
            return [
                "api_token must be an active Okta API token (Security > API > Tokens).",
                "The admin who created the token needs at least the Read-only Administrator role.",
                "The token's rate limit is shared with other integrations using it.",
            ]
        return super().checks(step, redirect_uri)


def too_many_groups_error(step: str, *, restarted: bool = False) -> TooManyGroupsError:
    """Okta's refusal of a groups claim over 100 groups, with both fixes (SPEC 4).

    `restarted`: Okta refused again after the one restart without the `groups` scope, so the
    claim does not depend on that scope and the API token alone cannot get around it.
    """
    if restarted:
        return TooManyGroupsError(
            "Okta refused the groups claim again when the gateway signed in without the groups "
            "scope: the user is in more than 100 groups that match the groups claim filter, and "
            "Okta sends that claim whatever the scopes",
            step=step,
            hint="Okta puts at most 100 groups in a claim. api_token is set, but the groups "
            "claim does not depend on the 'groups' scope (a Groups claim on a custom "
            "authorization server included in any scope). Either narrow the groups claim filter "
            "in Okta so it matches fewer groups, or include the claim only in a 'groups' scope "
            "so the gateway can leave it out and read every group from the Okta API",
        )
    return TooManyGroupsError(
        "Okta refused to send the groups claim: the user is in more than 100 groups that match "
        "the app's groups claim filter",
        step=step,
        hint="Okta puts at most 100 groups in a claim. Either set api_token on this identity "
        "provider (a read-only Okta API token; the gateway then reads every group from the "
        "Okta API), or narrow the groups claim filter in Okta so it matches fewer groups",
    )
