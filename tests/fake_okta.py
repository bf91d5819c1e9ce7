"""A fake Okta org on respx routes, for unit and end-to-end sign-in tests.

`FakeOkta` answers what the gateway asks of Okta over HTTP (discovery, JWKS, /token, /userinfo,
the Groups API) the way OKTA.md says Okta does, and plays the browser leg with `authorize()`.
A test drives a sign-in like this:

    with respx.mock(assert_all_called=False) as router:
        okta = FakeOkta(router, authorization_server_id="default", clock=clock)
        okta.add_user("00u1", "alice@example.com", "Alice Example", ["Engineering"])
        request = await provider.begin()                       # or GET the gateway's login URL
        callback = okta.authorize(request.url, "00u1")         # the redirect Okta would send
        ...                                                    # GET callback on the gateway

Knobs are plain attributes (`id_token_claims`, `id_token_signer`, `groups_claim`, ...) and a
few methods (`rotate_keys`, `answer`, `rate_limit`); `routes[...]` are the respx routes, for
call counts and the requests the gateway sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote, unquote_plus, urlencode, urlsplit

import httpx
import respx
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey

from gateway.config import IdentityProvider, OktaConfig

Endpoint = Literal["discovery", "jwks", "org_jwks", "token", "userinfo", "groups"]
Signer = Literal["jwks", "foreign_key", "none", "client_secret", "jwe"]
GroupsClaim = Literal["id_token", "userinfo", "none"]
SigningKey = RSAKey | ECKey
Answer = Callable[[httpx.Request], httpx.Response]

BASE = "https://dev-123.okta.com"
CLIENT_ID = "0oaclient"
CLIENT_SECRET = "s3cret"
API_TOKEN = "00okta-api-token"
REDIRECT_URI = "https://access.example.com/cdn-cgi/access/callback"
TOO_MANY_GROUPS = (
    "The groups claim matched too many groups and must be configured to match fewer groups."
)
_OKTA_STATE = re.compile(r"^[A-Za-z0-9,._-]+$")  # OKTA.md: the characters Okta allows in state
_KEY_POOL: dict[str, list[SigningKey]] = {}
_BASE_SCOPES = ("openid", "profile", "email", "address", "phone", "offline_access")


@dataclass
class FakeUser:
    sub: str
    email: str
    name: str
    groups: list[str]
    claims: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Grant:
    user: FakeUser
    scopes: set[str]
    nonce: str
    redirect_uri: str
    challenge: str
    issued_at: float


class FakeOkta:
    """One Okta org with one OIDC app, on either the org or a custom authorization server.

    Knobs (plain attributes; set them before the step they affect):
    - `id_token_claims`: claims merged into every ID token; a `None` value removes the claim.
    - `id_token_header`: the same for the JOSE header (e.g. `{"kid": "unknown"}`).
    - `id_token_signer`: "jwks" (the current JWKS key), "foreign_key" (a key not in the JWKS,
      with the current kid: a bad signature), "none" (alg none, no signature), "client_secret"
      (HS256 keyed with the client secret), "jwe" (a 5-part encrypted token).
    - `userinfo_claims`: merged into every userinfo answer; `None` removes.
    - `groups_claim`: where the app's groups claim goes, "id_token" (and userinfo), "userinfo"
      only, or "none". On the org server it needs the `groups` scope; a custom server has it as
      a claim (its `scopes_supported` lacks `groups`, and an unknown scope is `invalid_scope`).
    - `group_limit`: above this many groups Okta refuses the claim with the too-many-groups
      `server_error`, at /token ("id_token") or /userinfo ("userinfo"). Okta's is 100.
    """

    def __init__(
        self,
        router: respx.MockRouter,
        *,
        base: str = BASE,
        authorization_server_id: str | None = None,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        redirect_uri: str = REDIRECT_URI,
        api_token: str = API_TOKEN,
        groups_page_size: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base = base
        self.authorization_server_id = authorization_server_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.api_token = api_token
        self.groups_page_size = groups_page_size
        self.clock = clock

        self.issuer = (
            f"{base}/oauth2/{authorization_server_id}" if authorization_server_id else base
        )
        endpoints = f"{self.issuer}/v1" if authorization_server_id else f"{base}/oauth2/v1"
        self.discovery_url = f"{self.issuer}/.well-known/openid-configuration"
        self.authorization_endpoint = f"{endpoints}/authorize"
        self.token_endpoint = f"{endpoints}/token"
        self.userinfo_endpoint = f"{endpoints}/userinfo"
        self.jwks_uri = f"{endpoints}/keys"
        self.scopes_supported = (*_BASE_SCOPES, *(() if authorization_server_id else ("groups",)))

        self.id_token_claims: dict[str, Any] = {}
        self.id_token_header: dict[str, Any] = {}
        self.id_token_signer: Signer = "jwks"
        self.userinfo_claims: dict[str, Any] = {}
        self.groups_claim: GroupsClaim = "id_token"
        self.group_limit = 100
        self.authorize_params: list[dict[str, str]] = []  # every authorize request, in order

        self._users: dict[str, FakeUser] = {}
        self._keys: list[tuple[str, str, SigningKey]] = []  # (kid, alg, key), last one signs
        self._foreign: SigningKey | None = None
        self._codes: dict[str, _Grant] = {}
        self._access_tokens: dict[str, _Grant] = {}
        self._answers: dict[Endpoint, list[tuple[Answer, int | None]]] = {}
        self.rotate_keys()
        # The org authorization server's own key, which signs Universal Logout requests; on
        # the org server it is the ID tokens' key set itself.
        self._org_key = (
            ("org-" + secrets.token_hex(4), "RS256", _new_key("RS256", self._taken_keys()))
            if authorization_server_id
            else None
        )

        def url(exact: str) -> str:
            return rf"^{re.escape(exact)}(\?.*)?$"

        groups = rf"^{re.escape(base)}/api/v1/users/[^/?]+/groups(\?.*)?$"
        self.routes: dict[Endpoint, respx.Route] = {
            "discovery": router.get(url__regex=url(self.discovery_url)),
            "jwks": router.get(url__regex=url(self.jwks_uri)),
            "token": router.post(url__regex=url(self.token_endpoint)),
            "userinfo": router.get(url__regex=url(self.userinfo_endpoint)),
            "groups": router.get(url__regex=groups),
        }
        if self._org_key is not None:
            self.routes["org_jwks"] = router.get(url__regex=url(f"{base}/oauth2/v1/keys"))
        handlers: dict[Endpoint, Answer] = {
            "discovery": lambda _: httpx.Response(200, json=self.discovery_document()),
            "jwks": lambda _: httpx.Response(200, json=self.jwks()),
            "token": self._token,
            "userinfo": self._userinfo,
            "groups": self._groups,
            "org_jwks": lambda _: httpx.Response(200, json=self._key_set([self._org_key])),
        }
        for name, route in self.routes.items():
            route.mock(side_effect=self._dispatch(name, handlers[name]))

    # --- setup ------------------------------------------------------------------------------

    def add_user(
        self,
        sub: str,
        email: str,
        name: str,
        groups: list[str] | tuple[str, ...] = (),
        **claims: Any,
    ) -> FakeUser:
        """A user who can sign in; `claims` are extra claims in the ID token and userinfo."""
        user = FakeUser(sub, email, name, list(groups), dict(claims))
        self._users[sub] = user
        return user

    def identity_provider(self, idp_id: str = "okta-idp", **config: Any) -> IdentityProvider:
        """An okta-type `IdentityProvider` for this fake; `config` sets other OktaConfig fields."""
        return IdentityProvider(
            id=idp_id,
            name="Fake Okta",
            config=OktaConfig(
                **{
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                    "okta_account": self.base,
                    "authorization_server_id": self.authorization_server_id or "",
                    **config,
                }
            ),
        )

    def rotate_keys(self, *, alg: str = "RS256", keep_old: bool = True) -> str:
        """Start signing with a new key for `alg` (RS*/PS* RSA, ES256/ES384 EC); returns its kid.

        The old keys stay in the JWKS unless `keep_old` is false (OKTA.md: 2-3 keys published).
        """
        kid = "kid-" + secrets.token_hex(4)
        key = _new_key(alg, self._taken_keys())
        self._keys = [*self._keys, (kid, alg, key)] if keep_old else [(kid, alg, key)]
        return kid

    def _taken_keys(self) -> list[SigningKey]:
        return [key for _, _, key in self._keys] + ([self._foreign] if self._foreign else [])

    def answer(
        self,
        endpoint: Endpoint,
        response: httpx.Response | type[httpx.TransportError],
        *,
        times: int | None = None,
    ) -> None:
        """Make `endpoint` answer `response` (or raise that httpx error, e.g. `httpx.ReadTimeout`
        or `httpx.ConnectError`) for the next `times` requests, or for good when None."""

        def respond(request: httpx.Request) -> httpx.Response:
            if isinstance(response, httpx.Response):
                return httpx.Response(
                    response.status_code, headers=response.headers, content=response.content
                )
            raise response("fake okta: simulated failure", request=request)

        self._answers.setdefault(endpoint, []).append((respond, times))

    def rate_limit(self, *, times: int | None, reset_after: float = 5.0) -> None:
        """Groups API: the next `times` requests (None: all) get 429 with `X-Rate-Limit-Reset`
        `reset_after` seconds from the fake's clock."""

        def respond(_: httpx.Request) -> httpx.Response:
            reset = int(self.clock() + reset_after)
            return httpx.Response(
                429,
                headers={
                    "X-Rate-Limit-Limit": "600",
                    "X-Rate-Limit-Remaining": "0",
                    "X-Rate-Limit-Reset": str(reset),
                },
                json=self._api_error_body(
                    "E0000047", "API call exceeded rate limit due to too many requests."
                ),
            )

        self._answers.setdefault("groups", []).append((respond, times))

    @staticmethod
    def oauth_error(status: int, error: str, description: str = "") -> httpx.Response:
        """An OAuth error answer as Okta sends from /token (RFC 6749 5.2)."""
        return httpx.Response(status, json={"error": error, "error_description": description})

    @staticmethod
    def api_error(status: int, code: str, summary: str) -> httpx.Response:
        """An Okta management API error answer (OKTA.md "Groups API")."""
        return httpx.Response(status, json=FakeOkta._api_error_body(code, summary))

    @staticmethod
    def _api_error_body(code: str, summary: str) -> dict[str, Any]:
        return {
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": "oae" + secrets.token_hex(8),
            "errorCauses": [],
        }

    # --- documents --------------------------------------------------------------------------

    def discovery_document(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "userinfo_endpoint": self.userinfo_endpoint,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": list(self.scopes_supported),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
        }

    def jwks(self) -> dict[str, Any]:
        return self._key_set(self._keys)

    @staticmethod
    def _key_set(signing_keys: list[Any]) -> dict[str, Any]:
        keys = []
        for kid, alg, key in signing_keys:
            public = dict(key.as_dict(private=False))
            public.update({"kid": kid, "alg": alg, "use": "sig"})
            keys.append(public)
        return {"keys": keys}

    # --- the browser leg --------------------------------------------------------------------

    def authorize(self, authorize_url: str, sub: str) -> str:
        """Sign `sub` in at Okta's authorize endpoint; return the callback URL Okta redirects to.

        Raises ValueError where real Okta would show its own error page and never come back (an
        unknown client or an unregistered redirect_uri); other problems come back on the
        redirect as `error` / `error_description`, as Okta does.
        """
        params = self._authorize_params(authorize_url)
        state = params.get("state", "")
        if sub not in self._users:
            raise ValueError(f"fake okta: no user {sub!r}")
        if params.get("response_type") != "code":
            return self._callback(state, error="unsupported_response_type")
        if not _OKTA_STATE.match(state):
            return self._callback(state, error="invalid_request", description="Invalid state")
        scopes = set(params.get("scope", "").split())
        if "openid" not in scopes or not scopes <= set(self.scopes_supported):
            return self._callback(
                state,
                error="invalid_scope",
                description="One or more scopes are not configured for the authorization "
                "server resource.",
            )
        challenge = params.get("code_challenge", "")
        if challenge and params.get("code_challenge_method") != "S256":
            return self._callback(
                state, error="invalid_request", description="Only S256 code challenges"
            )
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Grant(
            user=self._users[sub],
            scopes=scopes,
            nonce=params.get("nonce", ""),
            redirect_uri=params["redirect_uri"],
            challenge=challenge,
            issued_at=self.clock(),
        )
        return self._callback(state, code=code)

    def authorize_error(self, authorize_url: str, error: str, description: str = "") -> str:
        """The callback URL for an authorize request that Okta answers with an error, e.g.
        `access_denied` or the too-many-groups `server_error`."""
        params = self._authorize_params(authorize_url)
        return self._callback(params.get("state", ""), error=error, description=description)

    def _authorize_params(self, authorize_url: str) -> dict[str, str]:
        parts = urlsplit(authorize_url)
        if f"{parts.scheme}://{parts.netloc}{parts.path}" != self.authorization_endpoint:
            raise ValueError(f"fake okta: not the authorize endpoint: {authorize_url}")
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.authorize_params.append(params)
        if params.get("client_id") != self.client_id:
            raise ValueError("fake okta: unknown client_id (Okta shows its own error page)")
        if params.get("redirect_uri") != self.redirect_uri:
            raise ValueError("fake okta: redirect_uri not registered (Okta shows its own page)")
        return params

    def _callback(
        self, state: str, *, code: str = "", error: str = "", description: str = ""
    ) -> str:
        params = {"code": code} if code else {"error": error, "error_description": description}
        if state:
            params["state"] = state
        return f"{self.redirect_uri}?{urlencode(params)}"

    # --- endpoints --------------------------------------------------------------------------

    def _dispatch(self, endpoint: Endpoint, handler: Answer) -> Answer:
        def respond(request: httpx.Request) -> httpx.Response:
            queue = self._answers.get(endpoint, [])
            if queue:
                answer, times = queue[0]
                if times is not None:
                    if times <= 1:
                        queue.pop(0)
                    else:
                        queue[0] = (answer, times - 1)
                return answer(request)
            return handler(request)

        return respond

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode(), keep_blank_values=True))
        basic = request.headers.get("authorization", "")
        if "client_secret" in form or "client_assertion" in form:
            # OKTA.md: credentials in the body as well as the header is a 400.
            return self.oauth_error(
                400, "invalid_request", "Cannot supply multiple client credentials."
            )
        if not self._client_authenticated(basic):
            return self.oauth_error(401, "invalid_client", "Client authentication failed.")
        if form.get("grant_type") != "authorization_code":
            return self.oauth_error(400, "unsupported_grant_type", "Unsupported grant type.")
        grant = self._codes.pop(form.get("code", ""), None)  # single use
        if grant is None or self.clock() - grant.issued_at > 300:  # OKTA.md: codes live 300 s
            return self.oauth_error(
                400, "invalid_grant", "The authorization code is invalid or has expired."
            )
        if form.get("redirect_uri") != grant.redirect_uri:
            return self.oauth_error(
                400,
                "invalid_grant",
                "The 'redirect_uri' does not match the redirection URI used in the "
                "authorization request.",
            )
        verifier = form.get("code_verifier")
        if grant.challenge and (not verifier or _s256(verifier) != grant.challenge):
            return self.oauth_error(400, "invalid_grant", "PKCE verification failed.")
        if not grant.challenge and verifier is not None:
            return self.oauth_error(
                400, "invalid_request", "PKCE code verifier specified but not used."
            )
        if self._too_many_groups(grant, "id_token"):
            return self.oauth_error(400, "server_error", TOO_MANY_GROUPS)
        access_token = secrets.token_urlsafe(32)
        self._access_tokens[access_token] = grant
        return httpx.Response(
            200,
            json={
                "token_type": "Bearer",
                "expires_in": 3600,
                "access_token": access_token,
                "scope": " ".join(sorted(grant.scopes)),
                "id_token": self._id_token(grant),
            },
        )

    def _client_authenticated(self, authorization: str) -> bool:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except ValueError:
            return False
        client_id, _, secret = decoded.partition(":")
        # RFC 6749 2.3.1: both parts are form-urlencoded before base64.
        return (unquote_plus(client_id), unquote_plus(secret)) == (
            self.client_id,
            self.client_secret,
        )

    def _userinfo(self, request: httpx.Request) -> httpx.Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        grant = self._access_tokens.get(token) if scheme == "Bearer" else None
        if grant is None:
            return httpx.Response(
                401,
                headers={
                    "WWW-Authenticate": 'Bearer error="invalid_token", '
                    'error_description="The access token is invalid."'
                },
            )
        if self._too_many_groups(grant, "userinfo"):
            return self.oauth_error(400, "server_error", TOO_MANY_GROUPS)
        claims = {"sub": grant.user.sub, **self._user_claims(grant, "userinfo")}
        return httpx.Response(200, json=_merged(claims, self.userinfo_claims))

    def _groups(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"SSWS {self.api_token}":
            return self.api_error(401, "E0000011", "Invalid token provided")
        match = re.search(r"/api/v1/users/([^/?]+)/groups", request.url.path)
        user_id = unquote(match.group(1)) if match else ""
        user = self._users.get(user_id)
        if user is None:
            return self.api_error(
                404, "E0000007", f"Not found: Resource not found: {user_id} (User)"
            )
        items = [
            {
                "id": f"00g{index:06d}",
                "type": "BUILT_IN" if name == "Everyone" else "OKTA_GROUP",
                "profile": {"name": name, "description": ""},
            }
            for index, name in enumerate(user.groups)
        ]
        after = request.url.params.get("after")
        start = next((i + 1 for i, item in enumerate(items) if item["id"] == after), 0)
        page = items[start : start + self.groups_page_size]
        here = f"{self.base}/api/v1/users/{quote(user_id, safe='')}/groups"
        links = [("Link", f'<{here}?limit={self.groups_page_size}>; rel="self"')]
        if start + self.groups_page_size < len(items):
            cursor = page[-1]["id"]
            links.append(
                ("Link", f'<{here}?after={cursor}&limit={self.groups_page_size}>; rel="next"')
            )
        reset = str(int(self.clock()) + 60)
        headers = [*links, ("X-Rate-Limit-Limit", "600"), ("X-Rate-Limit-Reset", reset)]
        return httpx.Response(200, headers=headers, json=page)

    # --- tokens -----------------------------------------------------------------------------

    def _user_claims(self, grant: _Grant, where: Literal["id_token", "userinfo"]) -> dict[str, Any]:
        user = grant.user
        claims: dict[str, Any] = {}
        if "profile" in grant.scopes:
            given, _, family = user.name.partition(" ")
            claims.update(
                name=user.name,
                given_name=given,
                family_name=family,
                preferred_username=user.email,
                locale="en-US",
            )
        if "email" in grant.scopes:
            claims.update(email=user.email, email_verified=True)
        if self._groups_claim_in(grant, where):
            claims["groups"] = list(user.groups)
        claims.update(user.claims)
        return claims

    def _groups_claim_in(self, grant: _Grant, where: Literal["id_token", "userinfo"]) -> bool:
        if self.groups_claim == "none" or (where == "id_token" and self.groups_claim != where):
            return False
        # OKTA.md: the org server issues the app's groups claim only for the `groups` scope; a
        # custom server's Groups claim is defined on the server, scope or not.
        return self.authorization_server_id is not None or "groups" in grant.scopes

    def _too_many_groups(self, grant: _Grant, where: Literal["id_token", "userinfo"]) -> bool:
        return self._groups_claim_in(grant, where) and len(grant.user.groups) > self.group_limit

    def _id_token(self, grant: _Grant) -> str:
        now = int(self.clock())
        claims = {
            "ver": 1,
            "iss": self.issuer,
            "sub": grant.user.sub,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 3600,
            "auth_time": now,
            "jti": "ID." + secrets.token_urlsafe(16),
            "amr": ["pwd"],
            "idp": "00oidp",
            "nonce": grant.nonce,
            **self._user_claims(grant, "id_token"),
        }
        return self.sign(
            _merged(claims, self.id_token_claims), self.id_token_header, self.id_token_signer
        )

    def sign(
        self,
        claims: dict[str, Any],
        header: dict[str, Any] | None = None,
        signer: Signer = "jwks",
        *,
        org: bool = False,
    ) -> str:
        """A JWT of `claims` signed the way `signer` says (see `id_token_signer`) with the
        current key (`org`: the org authorization server's); `header` is merged into the JOSE
        header."""
        kid, alg, key = self._org_key if org and self._org_key else self._keys[-1]
        header = _merged({"kid": kid, "alg": alg}, header or {})
        payload = json.dumps(claims).encode()
        if signer in ("jwks", "foreign_key"):
            if signer == "foreign_key":
                self._foreign = self._foreign or _new_key(alg, self._taken_keys())
                key = self._foreign
            registry = jws.JWSRegistry(algorithms=[header["alg"]], strict_check_header=False)
            return jws.serialize_compact(header, payload, key, registry=registry)
        if signer == "jwe":
            header = {"alg": "RSA-OAEP", "enc": "A256GCM", "kid": kid}
            return ".".join([_b64(json.dumps(header).encode())] + [_b64(b"opaque")] * 4)
        # Hand-made, because joserfc rightly refuses to produce these two.
        header["alg"] = "none" if signer == "none" else "HS256"
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(payload)}"
        if signer == "none":
            return signing_input + "."
        mac = hmac.new(self.client_secret.encode(), signing_input.encode(), hashlib.sha256)
        return f"{signing_input}.{_b64(mac.digest())}"

    def universal_logout_token(
        self, audience: str, *, signer: Signer = "jwks", **claims: Any
    ) -> str:
        """The bearer JWT Okta sends to a Global Token Revocation endpoint (OKTA.md "Universal
        Logout"): signed by the org's keys, `iss` the org, `aud` the endpoint's URL; `claims`
        override (a `None` value removes one)."""
        now = int(self.clock())
        base = {
            "iss": self.base,
            "aud": audience,
            "iat": now,
            "exp": now + 300,
            "jti": "GTR." + secrets.token_urlsafe(16),
        }
        return self.sign(_merged(base, claims), signer=signer, org=True)

    def logout_token(
        self, *, signer: Signer = "jwks", typ: str = "logout+jwt", **claims: Any
    ) -> str:
        """An OpenID Connect Back-Channel Logout 1.0 logout token (section 2.4) from this
        provider for its client; `claims` override (a `None` value removes one)."""
        now = int(self.clock())
        base = {
            "iss": self.issuer,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 120,
            "jti": "LT." + secrets.token_urlsafe(16),
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }
        return self.sign(_merged(base, claims), {"typ": typ}, signer)


def _new_key(alg: str, taken: list[SigningKey]) -> SigningKey:
    """A key for `alg` that is none of `taken`. Keys are shared between fakes (each fake gives
    them its own kids), because generating an RSA key costs about 0.1 s per test."""
    kind = alg if alg in ("ES256", "ES384") else "RSA"
    pool = _KEY_POOL.setdefault(kind, [])
    for pooled in pool:
        if all(pooled is not other for other in taken):
            return pooled
    key: SigningKey
    if kind == "RSA":
        key = RSAKey.generate_key(2048)
    else:
        key = ECKey.generate_key("P-384" if kind == "ES384" else "P-256")
    pool.append(key)
    return key


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = {**base, **overrides}
    return {name: value for name, value in merged.items() if value is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _s256(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode()).digest())
