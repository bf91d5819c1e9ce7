"""OpenID Connect sign-in: discovery, JWKS cache, authorize URL, PKCE, code exchange, ID-token
checks, userinfo, and where a user's email, name, groups and kept claims come from.

One `OIDCClient` per identity provider lives for the whole process. The web handlers call
`authorization_request()` to start a sign-in and `sign_in()` on the callback; everything in
between follows SPEC 4 "Sign-in rules", OKTA.md and OpenID Connect Core 1.0. Every failure is a
`SignInError` subclass with a `step` naming what failed and a `hint` for the operator; no token,
code, secret or cookie ever reaches a message or the log. joserfc does the JWS cryptography
behind typed helpers here, so none of its dicts leak out.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, quote_plus, urlencode

import httpx
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from gateway.authn import okta
from gateway.config import IdentityProvider
from gateway.errors import IdPError, SignInError, TokenValidationError

logger = logging.getLogger("gateway.oidc")

DISCOVERY_TTL = 3600.0  # discovery and JWKS are cached this long, then fetched again
JWKS_REFETCH_INTERVAL = 30.0  # at most one unknown-kid refetch per this many seconds
CLOCK_LEEWAY = 60.0  # seconds of clock skew allowed on exp / iat / nbf (SPEC 4: "small leeway")

# OKTA.md: Okta signs ID tokens with RS256 only. Never "none", never HMAC: an HS256 token keyed
# with the client secret could be minted by anyone holding that secret (SPEC 4).
OKTA_ALGORITHMS = frozenset({"RS256"})
OIDC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "ES256", "ES384"})

OKTA_SCOPES = ("openid", "email", "profile", "groups")
DEFAULT_OIDC_SCOPES = ("openid", "email", "profile")

# OKTA.md "Errors": the description Okta uses when a groups claim would exceed 100 groups.
TOO_MANY_GROUPS = "The groups claim matched too many groups"

_AUTH_PARAM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')

PublicKey = RSAKey | ECKey


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The endpoints of one provider, from discovery (Okta) or the configuration (oidc)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str  # "" if none


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """Where to send the browser, and the single-use values to bind to it until the callback."""

    url: str
    state: str
    nonce: str
    code_verifier: str  # "" when PKCE is off


@dataclass(frozen=True, slots=True)
class SignInResult:
    """Who signed in, as established from a validated ID token (and userinfo / the Groups API)."""

    sub: str
    email: str
    name: str
    groups: tuple[str, ...]
    groups_source: Literal["claim", "userinfo", "api", "none"]
    groups_api_pages: int
    groups_note: str
    oidc_fields: dict[str, Any]
    amr: tuple[str, ...]
    id_token_claims: dict[str, Any]


class TooManyGroupsError(IdPError):
    """Okta refused the groups claim: the user is in more than 100 groups matching its filter.

    Raised on the redirect (signin.okta_redirect_error) and at /token always: there is no ID
    token to go on, so with an API token set the handler restarts the authorization once without
    the `groups` scope. At /userinfo only when there is no API token, or when userinfo was needed
    for more than the groups. Never read as "no groups": an exclude rule on a group must not
    silently stop applying.
    """

    error = "server_error"
    status = 502


@dataclass(frozen=True, slots=True)
class _Tokens:
    id_token: str
    access_token: str


@dataclass(frozen=True, slots=True)
class _Groups:
    names: tuple[str, ...]
    source: Literal["claim", "userinfo", "api", "none"]
    api_pages: int = 0
    note: str = ""


class OIDCClient:
    """Signs users in with one identity provider (authorization-code flow, OIDC Core 3.1)."""

    def __init__(
        self,
        idp: IdentityProvider,
        http: httpx.AsyncClient,
        *,
        redirect_uri: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.idp = idp
        self._config = idp.config
        self._http = http
        self._redirect_uri = redirect_uri
        self._clock = clock
        self._sleep = sleep  # waits out the Groups API's rate limit (tests inject a fake)
        self._is_okta = idp.type == "okta"
        self._who = "Okta" if self._is_okta else "the identity provider"
        self._who_start = self._who[:1].upper() + self._who[1:]
        self._algorithms = OKTA_ALGORITHMS if self._is_okta else OIDC_ALGORITHMS
        self._registry = jws.JWSRegistry(
            algorithms=sorted(self._algorithms), strict_check_header=False
        )
        # Only Okta has a Groups API; for the generic type an api_token means nothing.
        self._groups_api = self._is_okta and bool(self._config.api_token)
        self._issuer = (
            okta.expected_issuer(self._config.okta_account, self._config.authorization_server_id)
            if self._is_okta
            else self._config.issuer
        )
        self._discovery_lock = asyncio.Lock()
        self._keys_lock = asyncio.Lock()
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = -math.inf
        self._groups_scope = True
        self._keys: dict[str, PublicKey] = {}
        self._keys_at = -math.inf
        self._last_refetch = -math.inf
        if not self._is_okta:
            self._metadata = ProviderMetadata(
                issuer=self._config.issuer,
                authorization_endpoint=self._config.auth_url,
                token_endpoint=self._config.token_url,
                jwks_uri=self._config.certs_url,
                userinfo_endpoint=self._config.userinfo_url,
            )
            self._metadata_at = math.inf

    # --- discovery ------------------------------------------------------------------------

    async def metadata(self) -> ProviderMetadata:
        """The provider's endpoints; for Okta from discovery, cached for DISCOVERY_TTL."""
        async with self._discovery_lock:
            if self._metadata is None or self._clock() - self._metadata_at >= DISCOVERY_TTL:
                self._metadata = await self._discover()
                self._metadata_at = self._clock()
            return self._metadata

    async def _discover(self) -> ProviderMetadata:
        hint = "check the Okta domain / authorization server ID"
        url = okta.discovery_url(self._config.okta_account, self._config.authorization_server_id)
        response = await self._send("discovery", "GET", url)
        doc = _json_object(response) if response.status_code == 200 else None
        if doc is None:
            raise self._log(
                IdPError(
                    f"Okta's discovery document could not be read (HTTP {response.status_code})",
                    step="discovery",
                    hint=hint,
                )
            )
        # OIDC Discovery 4.3: the issuer in the document must be exactly the one we expect.
        if doc.get("issuer") != self._issuer:
            raise self._log(
                IdPError(
                    f"Okta's discovery document names the issuer {_short(doc.get('issuer'))}, "
                    f"not the expected {self._issuer!r}",
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
                    f"Okta's discovery document lacks {', '.join(missing)}",
                    step="discovery",
                    hint=hint,
                )
            )
        # OKTA.md: a custom authorization server does not know the `groups` scope (its groups
        # come from a claim defined on the server), and Okta rejects the whole authorize request
        # with invalid_scope for an unknown scope. Ask for it only where it is advertised.
        scopes = doc.get("scopes_supported")
        self._groups_scope = not isinstance(scopes, list) or "groups" in scopes
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
        )

    # --- authorize ------------------------------------------------------------------------

    async def authorization_request(
        self, *, with_groups_scope: bool = True, prompt: str | None = None
    ) -> AuthorizationRequest:
        """A fresh authorize URL with its own state, nonce and (if enabled) PKCE verifier."""
        meta = await self.metadata()
        # 256 bits each; token_urlsafe uses only letters, digits, "-" and "_", which is within
        # the characters Okta allows in `state` (OKTA.md "Tokens").
        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        params = {
            "response_type": "code",
            "client_id": self._config.client_id,
            "redirect_uri": self._redirect_uri,
            "scope": " ".join(self._scopes(with_groups_scope)),
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
        return AuthorizationRequest(url=url, state=state, nonce=nonce, code_verifier=code_verifier)

    def _scopes(self, with_groups_scope: bool) -> tuple[str, ...]:
        scopes: tuple[str, ...]
        if self._is_okta:
            scopes = OKTA_SCOPES if self._groups_scope else OKTA_SCOPES[:-1]
        else:
            scopes = self._config.scopes or DEFAULT_OIDC_SCOPES
            if "openid" not in scopes:  # OIDC Core 3.1.2.1: without it there is no ID token
                scopes = ("openid", *scopes)
        return tuple(s for s in scopes if with_groups_scope or s != "groups")

    # --- callback -------------------------------------------------------------------------

    async def sign_in(self, *, code: str, nonce: str, code_verifier: str) -> SignInResult:
        """Exchange the code, validate the ID token, and resolve email, name, groups, claims."""
        meta = await self.metadata()
        tokens = await self._exchange(meta, code, code_verifier)
        claims = await self._validate_id_token(tokens.id_token, nonce)
        sub = str(claims["sub"])

        wanted = (self._config.email_claim_name, "groups", *self._config.claims)
        userinfo: dict[str, Any] = {}
        missing = any(claims.get(name) is None for name in wanted)
        if missing and meta.userinfo_endpoint and tokens.access_token:
            try:
                userinfo = await self._userinfo(meta, tokens.access_token, sub)
            except TooManyGroupsError as exc:
                # The Groups API can stand in for the groups, but not for another claim that
                # only userinfo would have sent (the email, a kept custom claim): dropping that
                # silently could switch a policy rule off. Then the handler restarts without
                # the groups scope instead, as for the error at /token.
                others = any(claims.get(name) is None for name in wanted if name != "groups")
                if not self._groups_api or others:
                    raise self._log(exc) from None
                logger.info(
                    "idp %s: userinfo: too many groups, using the Groups API",
                    self.idp.id,
                    extra={"step": "userinfo", "idp": self.idp.id},
                )

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
                )
            )
        if self.idp.type == "oidc" and lookup("email_verified") in (False, "false"):
            # A generic provider may let anyone claim any address; an unverified one must not
            # satisfy `email` or `email_domain` rules. (Okta's flag is advisory: OKTA.md.)
            raise self._log(
                SignInError(
                    "The identity provider says this email address is not verified",
                    step="email",
                    status=403,
                    hint="verify the address at the identity provider, then sign in again",
                )
            )
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
        if error == "server_error" and description.startswith(TOO_MANY_GROUPS):
            return too_many_groups_error("token")
        reason = _short(description or error or f"HTTP {response.status_code}", quoted=False)
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
        headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        response = await self._send("userinfo", "GET", meta.userinfo_endpoint, headers=headers)
        if response.status_code != 200:
            error, description = _oauth_error(response)
            if error == "server_error" and description.startswith(TOO_MANY_GROUPS):
                raise too_many_groups_error("userinfo")  # logged by sign_in if it is fatal
            reason = _short(description or error or f"HTTP {response.status_code}", quoted=False)
            raise self._log(
                IdPError(
                    f"{self._who_start} refused the userinfo request: {reason}",
                    step="userinfo",
                )
            )
        info = _json_object(response)
        if info is None:
            raise self._log(
                IdPError(
                    f"{self._who_start} answered userinfo with no JSON object", step="userinfo"
                )
            )
        # OIDC Core 5.3.2: a userinfo answer for another sub must not be used.
        if info.get("sub") != sub:
            raise self._log(
                TokenValidationError(
                    "The userinfo answer is about a different user than the ID token (sub differs)",
                    step="userinfo",
                )
            )
        return info

    async def _groups(
        self,
        claims: Mapping[str, Any],
        userinfo: Mapping[str, Any],
        sub: str,
    ) -> _Groups:
        from_claim = self._string_list(claims.get("groups"), "groups", "id_token")
        if from_claim is not None:
            return _Groups(from_claim, "claim")
        from_userinfo = self._string_list(userinfo.get("groups"), "groups", "userinfo")
        if from_userinfo is not None:
            return _Groups(from_userinfo, "userinfo")
        # Reached with the claim missing, or after userinfo's too-many-groups error.
        if self._groups_api:
            names, pages = await okta.fetch_user_groups(
                self._http,
                self._config.okta_account,
                self._config.api_token,
                sub,
                clock=self._clock,
                sleep=self._sleep,
            )
            return _Groups(tuple(names), "api", pages)
        return _Groups((), "none", note=self._no_groups_note())

    def _no_groups_note(self) -> str:
        if not self._is_okta:
            return (
                "The identity provider sent no groups claim (neither in the ID token nor from "
                "userinfo), so this user has no groups here: configure it to send a 'groups' claim."
            )
        if self._config.authorization_server_id:
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
        return (
            f"Okta sent no groups claim, so this user has no groups here. To send groups, {fix}; "
            "or set api_token to read them from the Okta API."
        )

    # --- ID token ---------------------------------------------------------------------------

    async def _validate_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """OIDC Core 3.1.3.7: signature, alg, iss, aud, azp, exp, iat, nonce. Returns the claims."""
        segments = id_token.count(".") + 1
        if segments == 5:
            raise self._log(
                TokenValidationError(
                    "The ID token is encrypted (JWE); the gateway needs a signed ID token",
                    step="id_token",
                    hint="turn off ID token encryption for this app in Okta",
                )
            )
        try:
            if segments != 3:
                raise ValueError("not three segments")
            token = jws.extract_compact(id_token.encode("ascii"), registry=self._registry)
        except (JoseError, ValueError) as exc:
            raise self._log(_invalid("The ID token is not a well-formed signed JWT")) from exc
        header = token.headers()
        alg = self._check_alg(header.get("alg"))
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise self._log(_invalid("The ID token's kid header is not a string"))
        key = await self._signing_key(kid)
        self._verify_signature(token, key, alg)
        try:
            claims: Any = json.loads(token.payload)
        except ValueError as exc:
            raise self._log(_invalid("The ID token's payload is not JSON")) from exc
        if not isinstance(claims, dict):
            raise self._log(_invalid("The ID token's payload is not a JSON object"))
        self._check_claims(claims, nonce)
        return claims

    def _check_alg(self, alg: object) -> str:
        if isinstance(alg, str) and alg in self._algorithms:
            return alg
        allowed = ", ".join(sorted(self._algorithms))
        if not isinstance(alg, str) or alg.lower() == "none":
            reason = "The ID token is unsigned (alg none), which is never accepted"
        elif alg.startswith("HS"):
            reason = (
                f"The ID token is signed with HMAC ({alg}, a shared secret such as the client "
                f"secret), which is never accepted; allowed: {allowed}"
            )
        else:
            reason = f"The ID token's algorithm {_short(alg)} is not allowed; allowed: {allowed}"
        raise self._log(_invalid(reason))

    def _verify_signature(self, token: jws.CompactSignature, key: PublicKey, alg: str) -> None:
        key_alg = key.get("alg")
        if key_alg and key_alg != alg:  # RFC 7517 4.4: a key is used only with its own alg
            raise self._log(_invalid(f"The ID token uses {alg} with a key meant for {key_alg}"))
        try:
            valid = jws.validate_compact(token, key, registry=self._registry)
        except (JoseError, ValueError) as exc:
            raise self._log(
                _invalid(f"The ID token could not be verified with the {alg} key: {exc}")
            ) from exc
        if not valid:
            raise self._log(_invalid("The ID token's signature is invalid"))

    async def _signing_key(self, kid: str | None) -> PublicKey:
        keys, fresh = await self._key_set(refetch=False)
        key = _pick_key(keys, kid)
        if key is None and not fresh:
            # OKTA.md: keys rotate without notice; refetch once on an unknown kid, rate-limited
            # so that tokens with made-up kids cannot make us hammer the JWKS endpoint.
            keys, _ = await self._key_set(refetch=True)
            key = _pick_key(keys, kid)
        if key is None:
            raise self._log(
                _invalid(
                    f"The ID token is signed with a key ({_short(kid or 'no kid')}) that is not in "
                    f"{self._who}'s key set",
                    hint="if keys were just rotated, retry in a minute; otherwise check the "
                    "issuer (Okta domain / authorization server ID)",
                )
            )
        return key

    async def _key_set(self, *, refetch: bool) -> tuple[dict[str, PublicKey], bool]:
        """The cached JWKS, fetched anew when stale or (rate-limited) when `refetch` is asked.

        Returns the keys and whether they were fetched during this call.
        """
        async with self._keys_lock:  # held while fetching: concurrent sign-ins fetch once
            now = self._clock()
            stale = now - self._keys_at >= DISCOVERY_TTL
            may_refetch = refetch and now - self._last_refetch >= JWKS_REFETCH_INTERVAL
            if not (stale or may_refetch):
                return self._keys, False
            if refetch:
                self._last_refetch = now
                logger.info(
                    "idp %s: unknown key id, fetching the key set again",
                    self.idp.id,
                    extra={"step": "jwks", "idp": self.idp.id},
                )
            self._keys = await self._fetch_keys()
            self._keys_at = self._clock()
            return self._keys, True

    async def _fetch_keys(self) -> dict[str, PublicKey]:
        meta = await self.metadata()
        response = await self._send("jwks", "GET", meta.jwks_uri)
        body = _json_object(response) if response.status_code == 200 else None
        entries = body.get("keys") if body else None
        keys: dict[str, PublicKey] = {}
        for entry in entries if isinstance(entries, list) else []:
            key = _import_signing_key(entry)
            if key is not None:
                keys[str(entry.get("kid", ""))] = key
        if not keys:
            raise self._log(
                IdPError(
                    f"{self._who_start}'s key set (JWKS) could not be read or has no usable "
                    f"signing key (HTTP {response.status_code})",
                    step="jwks",
                )
            )
        return keys

    def _check_claims(self, claims: Mapping[str, Any], nonce: str) -> None:
        cid = self._config.client_id
        now = self._clock()
        # OIDC Core 3.1.3.7 step 2: iss must exactly match the issuer.
        if claims.get("iss") != self._issuer:
            raise self._log(
                _invalid(
                    f"The ID token's issuer {_short(claims.get('iss'))} is not the expected "
                    f"{self._issuer!r}",
                    hint="check the Okta domain / authorization server ID",
                )
            )
        # Step 3: aud must contain client_id (a string or an array of strings).
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if cid not in audiences:
            raise self._log(
                _invalid(
                    "The ID token's audience does not include this client ID",
                    hint="check the client ID",
                )
            )
        # Steps 4-5: with several audiences azp is required, and when present it must be us.
        azp = claims.get("azp")
        if len(audiences) > 1 and azp is None:
            raise self._log(
                _invalid("The ID token has several audiences but no azp (authorized party)")
            )
        if azp is not None and azp != cid:
            raise self._log(_invalid("The ID token's azp (authorized party) is not this client ID"))
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise self._log(_invalid("The ID token has no sub (subject)"))
        clock_hint = "check this host's clock (NTP)"
        # Step 9: exp in the future; step 10: iat not in the future; both within the leeway.
        exp = _number(claims.get("exp"))
        if exp is None or now >= exp + CLOCK_LEEWAY:
            raise self._log(_invalid("The ID token has expired (or has no exp)", hint=clock_hint))
        iat = _number(claims.get("iat"))
        if iat is None or iat > now + CLOCK_LEEWAY:
            raise self._log(
                _invalid(
                    "The ID token's issue time (iat) is missing or in the future", hint=clock_hint
                )
            )
        nbf = _number(claims.get("nbf"))
        if "nbf" in claims and (nbf is None or nbf > now + CLOCK_LEEWAY):  # RFC 7519 4.1.5
            raise self._log(_invalid("The ID token is not valid yet (nbf)", hint=clock_hint))
        # Step 11: the nonce sent in the authorize request must come back, unchanged.
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not sent:
            raise self._log(_invalid("The ID token has no nonce"))
        if not nonce or not hmac.compare_digest(sent.encode(), nonce.encode()):
            raise self._log(
                _invalid(
                    "The ID token's nonce does not match this sign-in (a replayed or mixed-up "
                    "sign-in)",
                    hint="start the sign-in again in one browser tab",
                )
            )

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
                    f"Could not connect to {self._who} for the {step} request",
                    step=step,
                    status=503,
                    hint="check the identity provider's URL and this host's outbound network",
                )
            ) from exc

    def _log(self, exc: SignInError) -> SignInError:
        # Descriptions never hold tokens, codes or secrets, so they are safe to log as they are.
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


def _import_signing_key(entry: object) -> PublicKey | None:
    """A JWKS entry as a public key, or None when it is not an RSA/EC signing key.

    RFC 7517 5: keys that are not understood are ignored, not fatal. Symmetric ("oct") keys are
    never taken from a JWKS, so no HMAC verification can be reached through it.
    """
    if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
        return None
    try:
        if entry.get("kty") == "RSA":
            return RSAKey.import_key(entry)
        if entry.get("kty") == "EC":
            return ECKey.import_key(entry)
    except (JoseError, ValueError, TypeError):
        logger.warning("ignoring a malformed key (kid %s) in the key set", _short(entry.get("kid")))
    return None


def _pick_key(keys: Mapping[str, PublicKey], kid: str | None) -> PublicKey | None:
    if kid is None:
        # OIDC Core 10.1: kid may be left out only when the key set has a single key.
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)


def _invalid(description: str, *, hint: str = "") -> TokenValidationError:
    return TokenValidationError(description, step="id_token", hint=hint)


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


def _number(value: object) -> float | None:
    # RFC 7519 2 NumericDate; a JSON true is not a number even though bool is an int in Python.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _display_name(lookup: Callable[[str], Any], email: str) -> str:
    name = lookup("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    parts = [lookup("given_name"), lookup("family_name")]
    joined = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    return joined or email


def _short(value: object, *, quoted: bool = True, limit: int = 120) -> str:
    """A value from the provider, made safe to show: bounded length, repr-quoted by default."""
    text = repr(value) if quoted else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
