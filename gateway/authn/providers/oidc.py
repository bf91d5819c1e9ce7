"""The OpenID Connect core the OIDC providers share: discovery, authorize URL, PKCE, code
exchange, userinfo, and where a user's email, name, groups and kept claims come from. The
provider's signing keys are a `KeyCache` (`jwks.py`) and its ID tokens are checked by an
`IDTokenValidator` (`id_token.py`), both built here from the provider's settings.

`OIDCProvider` is the `Provider` of the authorization-code flow (OIDC Core 3.1); a subclass says
what differs at its IdP: where the endpoints come from (`metadata`), the scopes, the signing
algorithms, how it words a refusal it gives for its own reasons (`_refusal`), where groups come
from when no claim has them, and what to check when a step fails. `okta.py` and `generic.py` are
the two. Everything follows SPEC 4 "Sign-in rules", OKTA.md and OpenID Connect Core 1.0. Every
failure is a `SignInError` subclass with a `step` naming what failed and a `hint` for the
operator; no token, code, secret or cookie ever reaches a message or the log.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus, urlencode

import httpx

from gateway.authn.providers import GroupsSource, SignInRequest, SignInResult, shorten
from gateway.authn.providers.id_token import OIDC_ALGORITHMS, IDTokenValidator
from gateway.authn.providers.jwks import KeyCache, PublicKey, signing_keys
from gateway.config import ClientConfig, IdentityProvider
from gateway.errors import IdPError, SignInError, TokenValidationError

logger = logging.getLogger("gateway.oidc")

DISCOVERY_TTL = 3600.0  # discovery and JWKS are cached this long, then fetched again

# The single-use values of an authorization request, kept in `SignInRequest.pending`.
NONCE = "nonce"
CODE_VERIFIER = "code_verifier"

_AUTH_PARAM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The endpoints of one provider, from discovery or the configuration."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str  # "" if none
    scopes_supported: tuple[str, ...] | None = None  # None: not advertised


@dataclass(frozen=True, slots=True)
class Groups:
    """A user's groups and where they came from."""

    names: tuple[str, ...]
    source: GroupsSource
    api_pages: int = 0
    note: str = ""


@dataclass(frozen=True, slots=True)
class _Tokens:
    id_token: str
    access_token: str


class OIDCProvider:
    """Signs users in with one OpenID Connect identity provider (authorization-code flow).

    Not used alone: a subclass gives `_scopes` and, unless it discovers its endpoints at
    `discovery_url`, `metadata`.
    """

    who: ClassVar[str] = "the identity provider"  # how messages name the IdP
    where: ClassVar[str] = "at the identity provider"  # where an operator looks
    issuer_hint: ClassVar[str] = "check the issuer"
    algorithms: ClassVar[frozenset[str]] = OIDC_ALGORITHMS

    def __init__(
        self,
        idp: IdentityProvider,
        config: ClientConfig,
        http: httpx.AsyncClient,
        *,
        issuer: str,
        redirect_uri: str,
        clock: Callable[[], float] = time.time,
        discovery_url: str = "",
    ) -> None:
        self.idp = idp
        self._config = config
        self._http = http
        self._issuer = issuer
        self._redirect_uri = redirect_uri
        self._clock = clock
        self._discovery_url = discovery_url
        self._who_start = self.who[:1].upper() + self.who[1:]
        self._discovery_lock = asyncio.Lock()
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = -math.inf
        self._id_tokens = IDTokenValidator(
            client_id=config.client_id,
            issuer=issuer,
            algorithms=self.algorithms,
            keys=KeyCache(self._fetch_keys, clock, idp.id, max_age=DISCOVERY_TTL),
            clock=clock,
            log=self._log,
            who=self.who,
            issuer_hint=self.issuer_hint,
        )

    # --- what a subclass gives ------------------------------------------------------------

    def _scopes(self, meta: ProviderMetadata) -> tuple[str, ...]:
        """The scopes of a sign-in; "openid" among them."""
        raise NotImplementedError

    def _refusal(self, step: str, error: str, description: str) -> IdPError | None:
        """An OAuth error answer (on the redirect, from /token or /userinfo) that this IdP gives
        for a reason of its own, as the error to raise; None reads it the generic way."""
        return None

    def _can_do_without_userinfo(self, exc: SignInError, only_groups_missing: bool) -> bool:
        """Whether the sign-in may go on after userinfo failed with `exc`."""
        return False

    async def _groups_elsewhere(self, sub: str) -> Groups:
        """The groups when neither the ID token nor userinfo has a groups claim."""
        return Groups(
            (),
            "none",
            note="The identity provider sent no groups claim (neither in the ID token nor from "
            "userinfo), so this user has no groups here: configure it to send a 'groups' claim.",
        )

    def _check_email_verified(self, lookup: Callable[[str], Any]) -> None:
        """OIDC Core 5.1: an address the provider calls unverified is not the user's.

        A provider may let anyone claim any address; an unverified one must not satisfy `email`
        or `email_domain` rules.
        """
        if lookup("email_verified") in (False, "false"):
            raise self._log(
                SignInError(
                    "The identity provider says this email address is not verified",
                    step="email",
                    status=403,
                    hint="verify the address at the identity provider, then sign in again",
                )
            )

    def checks(self, step: str, redirect_uri: str) -> list[str]:
        """What to check at the IdP when `step` failed (the test page's list)."""
        where = self.where
        if step == "authorize":
            return [
                f"The app's sign-in redirect URIs {where} must include exactly {redirect_uri}.",
                f"The user is assigned to the app {where}.",
                "The app allows the Authorization Code grant and the scopes openid, email and "
                "profile (and groups).",
            ]
        if step == "token":
            return [
                f"The client ID ({self._config.client_id}) and client secret must be the app's "
                "(General > Client Credentials), with client authentication 'Client secret' "
                "(sent as HTTP Basic).",
                f"The app's sign-in redirect URI must be exactly {redirect_uri}.",
                "pkce_enabled must match the app's 'Require PKCE' setting.",
            ]
        if step in ("userinfo", "email"):
            return [
                f"The app is granted the openid, email and profile scopes {where}, and the user "
                f"has an email address (email_claim_name = {self._config.email_claim_name}).",
            ]
        return [f"The identity provider's settings {where} and this host's network access to it."]

    # --- discovery ------------------------------------------------------------------------

    async def metadata(self) -> ProviderMetadata:
        """The provider's endpoints from discovery, cached for DISCOVERY_TTL."""
        async with self._discovery_lock:
            if self._metadata is None or self._clock() - self._metadata_at >= DISCOVERY_TTL:
                self._metadata = await self._discover()
                self._metadata_at = self._clock()
            return self._metadata

    async def _discover(self) -> ProviderMetadata:
        hint = self.issuer_hint
        response = await self._send("discovery", "GET", self._discovery_url)
        doc = _json_object(response) if response.status_code == 200 else None
        if doc is None:
            raise self._log(
                IdPError(
                    f"{self._who_start}'s discovery document could not be read "
                    f"(HTTP {response.status_code})",
                    step="discovery",
                    hint=hint,
                )
            )
        # OIDC Discovery 4.3: the issuer in the document must be exactly the one we expect.
        if doc.get("issuer") != self._issuer:
            raise self._log(
                IdPError(
                    f"{self._who_start}'s discovery document names the issuer "
                    f"{shorten(doc.get('issuer'))}, not the expected {self._issuer!r}",
                    step="discovery",
                    hint=hint,
                )
            )
        endpoints = {
            name: doc.get(name) for name in ("authorization_endpoint", "token_endpoint", "jwks_uri")
        }
        missing = [name for name, value in endpoints.items() if not isinstance(value, str)]
        if missing:
            raise self._log(
                IdPError(
                    f"{self._who_start}'s discovery document lacks {', '.join(missing)}",
                    step="discovery",
                    hint=hint,
                )
            )
        scopes = doc.get("scopes_supported")
        userinfo = doc.get("userinfo_endpoint")
        logger.info(
            "idp %s: discovery ok, issuer %s",
            self.idp.id,
            self._issuer,
            extra={"step": "discovery", "idp": self.idp.id},
        )
        return ProviderMetadata(
            issuer=self._issuer,
            authorization_endpoint=str(endpoints["authorization_endpoint"]),
            token_endpoint=str(endpoints["token_endpoint"]),
            jwks_uri=str(endpoints["jwks_uri"]),
            userinfo_endpoint=userinfo if isinstance(userinfo, str) else "",
            scopes_supported=(
                tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else None
            ),
        )

    # --- authorize ------------------------------------------------------------------------

    async def begin(self) -> SignInRequest:
        """A fresh authorize URL with its own state, nonce and (if enabled) PKCE verifier."""
        meta = await self.metadata()
        return self._authorization_request(meta, self._scopes(meta))

    def _authorization_request(
        self,
        meta: ProviderMetadata,
        scopes: tuple[str, ...],
        *,
        prompt: str = "",
        marks: Mapping[str, str] | None = None,
    ) -> SignInRequest:
        """The request for `scopes`; `marks` are kept with its nonce and verifier."""
        # 256 bits each; token_urlsafe uses only letters, digits, "-" and "_", which is within
        # the characters Okta allows in `state` (OKTA.md "Tokens").
        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        params = {
            "response_type": "code",
            "client_id": self._config.client_id,
            "redirect_uri": self._redirect_uri,
            "scope": " ".join(scopes),
            "state": state,
            "nonce": nonce,
        }
        code_verifier = ""
        if self._config.pkce_enabled:
            # RFC 7636 4.1-4.2: 43-128 unreserved characters; S256 is the only method Okta takes.
            code_verifier = secrets.token_urlsafe(64)
            params["code_challenge"] = _pkce_challenge(code_verifier)
            params["code_challenge_method"] = "S256"
        if prompt:
            params["prompt"] = prompt
        endpoint = meta.authorization_endpoint
        # OIDC Core 3.1.2.1: the endpoint may already carry a query component; keep it.
        separator = "&" if "?" in endpoint else "?"
        url = endpoint + separator + urlencode(params, quote_via=quote)
        pending = {**(marks or {}), NONCE: nonce, CODE_VERIFIER: code_verifier}
        return SignInRequest(url=url, state=state, pending=pending)

    # --- callback -------------------------------------------------------------------------

    async def finish(
        self, answer: Mapping[str, str], pending: Mapping[str, str]
    ) -> SignInResult | SignInRequest:
        return await self._sign_in(answer, pending)

    async def _sign_in(self, answer: Mapping[str, str], pending: Mapping[str, str]) -> SignInResult:
        """The answer on the redirect URI: the code exchanged, the ID token validated, and the
        email, name, groups and claims resolved."""
        if answer.get("error"):
            raise self._redirect_error(answer["error"], answer.get("error_description", ""))
        code = answer.get("code")
        if not code:
            raise SignInError("The sign-in answer has no authorization code.", step="authorize")
        meta = await self.metadata()
        tokens = await self._exchange(meta, code, pending.get(CODE_VERIFIER, ""))
        claims = await self._id_tokens.validate(tokens.id_token, pending.get(NONCE, ""))
        sub = str(claims["sub"])

        wanted = (self._config.email_claim_name, "groups", *self._config.claims)
        userinfo: dict[str, Any] = {}
        missing = any(claims.get(name) is None for name in wanted)
        if missing and meta.userinfo_endpoint and tokens.access_token:
            try:
                userinfo = await self._userinfo(meta, tokens.access_token, sub)
            except SignInError as exc:
                others = any(claims.get(name) is None for name in wanted if name != "groups")
                if not self._can_do_without_userinfo(exc, not others):
                    raise self._log(exc) from None

        def lookup(name: str) -> Any:
            # The ID token wins; userinfo (same sub, checked) fills in what it lacks.
            value = claims.get(name)
            return userinfo.get(name) if value is None else value

        email = lookup(self._config.email_claim_name)
        if not isinstance(email, str) or not email:
            raise self._log(
                SignInError(
                    "The identity provider did not send an email address",
                    step="email",
                    status=400,
                    hint=f"the ID token and userinfo have no {self._config.email_claim_name!r} "
                    "claim: grant the email scope to the app and give the user an email "
                    "(or fix email_claim_name)",
                    subject=sub,
                )
            )
        try:
            self._check_email_verified(lookup)
        except SignInError as exc:  # the IdP proved who this is: it counts for them
            exc.subject, exc.subject_email = sub, email
            raise
        groups = await self._groups(claims, userinfo, sub)
        amr = self._string_list(claims.get("amr"), "amr", "id_token") or ()
        oidc_fields = {
            name: value
            for name in self._config.claims
            if isinstance(value := lookup(name), str | int | float | bool | list)
        }
        logger.info(
            "idp %s: sign-in ok for sub %s, %d groups from %s",
            self.idp.id,
            sub,
            len(groups.names),
            groups.source,
            extra={
                "step": "identity",
                "idp": self.idp.id,
                "groups": len(groups.names),
                "groups_source": groups.source,
                "groups_api_pages": groups.api_pages,
            },
        )
        return SignInResult(
            sub=sub,
            email=email,
            name=_display_name(lookup, email),
            groups=groups.names,
            groups_source=groups.source,
            groups_api_pages=groups.api_pages,
            groups_note=groups.note,
            oidc_fields=oidc_fields,
            amr=amr,
            id_token_claims=dict(claims),
        )

    def _redirect_error(self, error: str, description: str) -> IdPError:
        """The error the IdP sent back on the redirect URI (RFC 6749 4.1.2.1; OKTA.md)."""
        special = self._refusal("authorize", error, description)
        if special is not None:
            return special
        status = 403 if error == "access_denied" else 400 if error.startswith("invalid") else 502
        hint = {
            "access_denied": "is the user assigned to the Okta application?",
            "invalid_scope": "the scopes the Okta application allows",
            "unauthorized_client": "the grant types enabled on the Okta application",
        }.get(error, "")
        reason = description or error
        return IdPError(
            f"The identity provider refused the sign-in: {reason}",
            error=error,
            status=status,
            step="authorize",
            hint=hint,
        )

    async def _exchange(self, meta: ProviderMetadata, code: str, code_verifier: str) -> _Tokens:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self._redirect_uri,
        }
        if self._config.pkce_enabled:
            form["code_verifier"] = code_verifier
        # RFC 6749 2.3.1: client_secret_basic, each part form-urlencoded before base64. Only in
        # the header: Okta answers 400 when credentials are in both header and body (OKTA.md).
        credentials = (
            f"{quote_plus(self._config.client_id)}:{quote_plus(self._config.client_secret)}"
        )
        headers = {
            "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode("ascii"),
            "Accept": "application/json",
        }
        response = await self._send(
            "token", "POST", meta.token_endpoint, headers=headers, form=form
        )
        if response.status_code != 200:
            raise self._log(self._token_error(response))
        body = _json_object(response)
        id_token = body.get("id_token") if body else None
        if not isinstance(id_token, str) or not id_token:
            raise self._log(
                IdPError(
                    f"{self._who_start} answered the code exchange without an ID token",
                    step="token",
                    hint="the app must be an OpenID Connect app and be granted the openid scope",
                )
            )
        access_token = body.get("access_token") if body else None
        return _Tokens(id_token, access_token if isinstance(access_token, str) else "")

    def _token_error(self, response: httpx.Response) -> IdPError:
        error, description = _oauth_error(response)
        special = self._refusal("token", error, description)
        if special is not None:
            return special
        reason = shorten(description or error or f"HTTP {response.status_code}", quoted=False)
        message = f"{self._who_start} refused the code exchange: {reason}"
        if response.status_code == 429:
            return IdPError(f"{self._who_start} rate-limited the code exchange", step="token")
        if error == "invalid_client":
            return IdPError(message, step="token", hint="check the client ID and secret")
        if error == "access_denied":  # e.g. "User is not assigned to the client application."
            return IdPError(
                message, step="token", status=403, hint="assign the user to the app in Okta"
            )
        if error == "invalid_grant":  # code expired or reused, or PKCE verification failed
            return IdPError(
                message,
                step="token",
                status=400,
                hint="start the sign-in again; if it keeps failing check the redirect URI and "
                "that pkce_enabled matches the app",
            )
        return IdPError(message, step="token")

    async def _userinfo(
        self, meta: ProviderMetadata, access_token: str, sub: str
    ) -> dict[str, Any]:
        """The userinfo answer; a failure is raised unlogged (the caller decides if it is one)."""
        headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        response = await self._send("userinfo", "GET", meta.userinfo_endpoint, headers=headers)
        if response.status_code != 200:
            error, description = _oauth_error(response)
            special = self._refusal("userinfo", error, description)
            if special is not None:
                raise special
            reason = shorten(description or error or f"HTTP {response.status_code}", quoted=False)
            raise IdPError(
                f"{self._who_start} refused the userinfo request: {reason}", step="userinfo"
            )
        info = _json_object(response)
        if info is None:
            raise IdPError(
                f"{self._who_start} answered userinfo with no JSON object", step="userinfo"
            )
        # OIDC Core 5.3.2: a userinfo answer for another sub must not be used.
        if info.get("sub") != sub:
            raise TokenValidationError(
                "The userinfo answer is about a different user than the ID token (sub differs)",
                step="userinfo",
            )
        return info

    async def _groups(
        self,
        claims: Mapping[str, Any],
        userinfo: Mapping[str, Any],
        sub: str,
    ) -> Groups:
        from_claim = self._string_list(claims.get("groups"), "groups", "id_token")
        if from_claim is not None:
            return Groups(from_claim, "claim")
        from_userinfo = self._string_list(userinfo.get("groups"), "groups", "userinfo")
        if from_userinfo is not None:
            return Groups(from_userinfo, "userinfo")
        # Reached with the claim missing, or when userinfo's failure was let go.
        return await self._groups_elsewhere(sub)

    # --- signing keys -----------------------------------------------------------------------

    async def _fetch_keys(self) -> dict[str, PublicKey]:
        """The signing keys at jwks_uri, for the key cache; fails when there are none."""
        meta = await self.metadata()
        response = await self._send("jwks", "GET", meta.jwks_uri)
        body = _json_object(response) if response.status_code == 200 else None
        keys = signing_keys(body.get("keys") if body else None)
        if not keys:
            raise self._log(
                IdPError(
                    f"{self._who_start}'s key set (JWKS) could not be read or has no usable "
                    f"signing key (HTTP {response.status_code})",
                    step="jwks",
                )
            )
        return keys

    # --- plumbing ---------------------------------------------------------------------------

    def _string_list(self, value: object, claim: str, step: str) -> tuple[str, ...] | None:
        """A claim that must be an array of strings: None when absent. Malformed fails closed:
        a misread groups or amr claim could silently switch an exclude or require rule off."""
        if value is None:
            return None
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise self._log(
            TokenValidationError(f"The {claim} claim is not a list of strings", step=step)
        )

    async def _send(
        self,
        step: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        request = self._http.build_request(method, url, headers=headers, data=form)
        try:
            return await self._http.send(request)
        except httpx.TimeoutException as exc:
            raise self._log(
                IdPError(
                    f"{self._who_start} did not answer the {step} request in time",
                    step=step,
                    status=504,
                    hint="check that this host can reach the identity provider",
                )
            ) from exc
        except httpx.TransportError as exc:
            raise self._log(
                IdPError(
                    f"Could not connect to {self.who} for the {step} request",
                    step=step,
                    status=503,
                    hint="check the identity provider's URL and this host's outbound network",
                )
            ) from exc

    def _log(self, exc: SignInError) -> SignInError:
        # Descriptions never hold tokens, codes or secrets, so they are safe to log as they are.
        if exc.logged:  # e.g. a connection failure `_send` logged, raised on by its caller
            return exc
        exc.logged = True
        logger.warning(
            "idp %s: sign-in failed at %s: %s (%s, %d)",
            self.idp.id,
            exc.step,
            exc.description,
            exc.error,
            exc.status,
            extra={"step": exc.step, "idp": self.idp.id, "error": exc.error, "status": exc.status},
        )
        return exc


def _pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _oauth_error(response: httpx.Response) -> tuple[str, str]:
    """`error` and `error_description` from a JSON body (RFC 6749 5.2) or, for a protected
    resource such as userinfo, from the `WWW-Authenticate` header (RFC 6750 3)."""
    body = _json_object(response) or {}
    if "error" not in body:
        body = dict(_AUTH_PARAM.findall(response.headers.get("www-authenticate", "")))
    error, description = body.get("error"), body.get("error_description")
    return (
        error if isinstance(error, str) else "",
        description if isinstance(description, str) else "",
    )


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body: Any = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _display_name(lookup: Callable[[str], Any], email: str) -> str:
    name = lookup("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    parts = [lookup("given_name"), lookup("family_name")]
    joined = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    return joined or email
