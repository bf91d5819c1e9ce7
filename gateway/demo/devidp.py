"""Development identity provider: an Okta-like OIDC provider for `gateway demo` ONLY.

    !!! DEVELOPMENT ONLY !!!  `gateway serve` never creates, mounts or proxies this app; only
    `gateway demo` does. Users, passwords, codes and tokens live in memory, passwords are kept
    in plain text and printed by the demo, and anyone who reaches this app and has seen those
    passwords can sign in as a demo user. It listens on localhost unless `gateway demo --host`
    says otherwise (a throw-away VM or container; the demo then warns); never point a real
    deployment at it.

It reproduces the parts of Okta's *org* authorization server that the gateway depends on
(see OKTA.md), with Okta's URL layout under the issuer: discovery at
`/.well-known/openid-configuration`; `/oauth2/v1/authorize` (authorization-code flow, `state`
required, PKCE S256 only, an unregistered `redirect_uri` gets an error page and never a redirect);
`/oauth2/v1/token` (`client_secret_basic` only, single-use codes that live 300 s); RS256 ID tokens
with a `kid` from `/oauth2/v1/keys`; `/oauth2/v1/userinfo`; and the Groups API
`GET /api/v1/users/{id}/groups` behind `Authorization: SSWS <token>`, paged with `Link` headers.
Like Okta, `/token` refuses a `groups` scope for a user in more than 100 groups, so the gateway's
Groups-API fallback can be exercised. `prompt=none` is answered from a short IdP session cookie;
interactive requests always show the login form so the demo can switch users.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import parse_qsl, quote, unquote_plus, urlencode, urlsplit

import jinja2
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CODE_TTL = 300  # OKTA.md: authorization codes live 300 s
TOKEN_TTL = 3600  # access and ID tokens
SESSION_TTL = 2 * 3600  # Okta's default global session lifetime
MAX_ENTRIES = 10_000  # per in-memory map: the dev IdP stays bounded however it is driven
GROUPS_CLAIM_LIMIT = 100  # OKTA.md: more matching groups and the token request fails
GROUPS_PAGE_LIMIT = 200  # Groups API page size (default and maximum)
MAX_FORM_BYTES = 64 * 1024
SUPPORTED_SCOPES = ("openid", "profile", "email", "groups")
CLAIMS_SUPPORTED = tuple(
    "iss sub aud iat exp auth_time amr nonce jti ver idp name given_name family_name "
    "preferred_username email email_verified groups".split()
)
SESSION_COOKIE = "devidp_session"

# the /authorize parameters the login form carries back when it is posted
_CARRIED_PARAMS = tuple(
    "client_id redirect_uri response_type response_mode scope state nonce code_challenge "
    "code_challenge_method".split()
)
_TOO_MANY_GROUPS = (
    "The groups claim matched too many groups and must be configured to match fewer groups."
)
_STATE = re.compile(r"[A-Za-z0-9,._-]+")  # OKTA.md: the characters Okta allows in `state`
_PKCE_VALUE = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 4.1 (verifier) and 4.2
_ID_ALPHABET = string.ascii_letters + string.digits
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_TOKEN_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 5.1

_T = TypeVar("_T")


def _okta_id(prefix: str) -> str:
    """An id shaped like Okta's: a 3-character type prefix ("00u", "00g"...) and 17 more."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(17))


@dataclass(frozen=True, slots=True)
class DevUser:
    """A user of the development IdP; `sub` is an Okta-style user id ("00u...")."""

    sub: str
    login: str
    email: str
    name: str
    password: str
    groups: tuple[str, ...] = ()

    @classmethod
    def generate(cls, email: str, name: str, groups: Iterable[str] = ()) -> DevUser:
        """A user with a fresh Okta-style id and random password; the login is the email."""
        return cls(
            sub=_okta_id("00u"),
            login=email,
            email=email,
            name=name,
            password=secrets.token_urlsafe(12),
            groups=tuple(groups),
        )


def demo_users() -> list[DevUser]:
    """The demo's two users, each with a fresh random password (the demo prints them)."""
    return [
        DevUser.generate("alice@example.com", "Alice Example", ("Engineering", "Everyone")),
        DevUser.generate("bob@example.com", "Bob Example", ("Sales", "Everyone")),
    ]


class _ExpiringMap(Generic[_T]):
    """Key -> value, every entry with the same TTL, at most MAX_ENTRIES entries.

    One TTL per map makes insertion order expiry order, so pruning only looks at the front.
    """

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._clock = clock
        self._items: dict[str, tuple[float, _T]] = {}

    def put(self, key: str, value: _T) -> None:
        now = self._clock()
        while self._items:
            oldest, (expires, _) = next(iter(self._items.items()))
            if expires > now and len(self._items) < MAX_ENTRIES:
                break
            del self._items[oldest]
        self._items[key] = (now + self._ttl, value)

    def get(self, key: str) -> _T | None:
        entry = self._items.get(key)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def pop(self, key: str) -> _T | None:
        value = self.get(key)
        self._items.pop(key, None)
        return value


@dataclass(frozen=True, slots=True)
class _AuthorizeRequest:
    """A validated /authorize request; `params` are what the login form carries back."""

    redirect_uri: str
    state: str
    scopes: tuple[str, ...]
    nonce: str | None
    code_challenge: str | None
    prompt: str | None
    params: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class _Grant:
    """What an authorization code or access token stands for."""

    user: DevUser
    scopes: tuple[str, ...]
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None
    auth_time: int


@dataclass(frozen=True, slots=True)
class _IdPSession:
    user: DevUser
    auth_time: int


def create_dev_idp(
    *,
    issuer: str,
    client_id: str,
    client_secret: str,
    redirect_uris: Sequence[str],
    users: Sequence[DevUser],
    api_token: str,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The development IdP as an ASGI app, served at `issuer` (an origin, e.g.
    "http://localhost:8001"). Only `gateway demo` may call this; see the module docstring.
    """
    parts = urlsplit(issuer)
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or issuer != (f"{parts.scheme}://{parts.netloc}")
    ):
        raise ValueError(f"issuer must be an origin such as http://localhost:8001: {issuer!r}")
    logins = [user.login.casefold() for user in users]
    if len(set(logins)) != len(logins) or len({user.sub for user in users}) != len(users):
        raise ValueError("dev IdP users must have distinct ids and logins")
    idp = _DevIdP(
        issuer=issuer,
        client_id=client_id,
        client_secret=client_secret,
        redirect_uris=tuple(redirect_uris),
        users=tuple(users),
        api_token=api_token,
        clock=clock,
    )
    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", idp.discovery),
            Route("/oauth2/v1/authorize", idp.authorize, methods=["GET", "POST"]),
            Route("/oauth2/v1/token", idp.token, methods=["POST"]),
            Route("/oauth2/v1/keys", idp.keys),
            Route("/oauth2/v1/userinfo", idp.userinfo, methods=["GET", "POST"]),
            Route("/api/v1/users/{user_id}/groups", idp.user_groups),
        ]
    )


class _DevIdP:
    """The endpoints and their in-memory state."""

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        client_secret: str,
        redirect_uris: tuple[str, ...],
        users: tuple[DevUser, ...],
        api_token: str,
        clock: Callable[[], float],
    ) -> None:
        self._issuer = issuer
        self._client_id = client_id
        self._client_secret = client_secret
        self._redirect_uris = redirect_uris
        self._users = users
        self._api_token = api_token
        self._clock = clock
        self._org_id = _okta_id("00o")  # the `idp` claim: Okta puts its org id there
        self._key = RSAKey.generate_key(
            2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True
        )
        self._group_ids = {name: _okta_id("00g") for user in users for name in user.groups}
        self._codes: _ExpiringMap[_Grant] = _ExpiringMap(CODE_TTL, clock)
        self._redeemed: _ExpiringMap[str] = _ExpiringMap(CODE_TTL, clock)  # code -> its token
        self._tokens: _ExpiringMap[_Grant] = _ExpiringMap(TOKEN_TTL, clock)
        self._sessions: _ExpiringMap[_IdPSession] = _ExpiringMap(SESSION_TTL, clock)
        self._templates = jinja2.Environment(
            loader=jinja2.PackageLoader("gateway", "templates"),
            autoescape=jinja2.select_autoescape(),
        )

    def _url(self, path: str) -> str:
        # OKTA.md: the org server's endpoints sit under /oauth2/v1 while its issuer is the origin
        return self._issuer + path

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self._issuer,
                "authorization_endpoint": self._url("/oauth2/v1/authorize"),
                "token_endpoint": self._url("/oauth2/v1/token"),
                "userinfo_endpoint": self._url("/oauth2/v1/userinfo"),
                "jwks_uri": self._url("/oauth2/v1/keys"),
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": ["authorization_code"],
                "subject_types_supported": ["public"],
                "scopes_supported": list(SUPPORTED_SCOPES),
                "claims_supported": list(CLAIMS_SUPPORTED),
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            }
        )

    async def keys(self, request: Request) -> Response:
        return JSONResponse({"keys": [self._key.as_dict(private=False)]})

    # --- /authorize -------------------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        if request.method == "POST":
            params = await _read_form(request)
        else:
            params = _single_valued(request.query_params.multi_items())
        if params is None:
            return self._page(fatal="The request repeats a parameter or is not a form.", status=400)
        checked = self._check_authorize(params)
        if isinstance(checked, Response):
            return checked
        if request.method == "POST":
            return self._sign_in(checked, params.get("username", ""), params.get("password", ""))
        if checked.prompt == "none":
            session = self._sessions.get(request.cookies.get(SESSION_COOKIE, ""))
            if session is None:
                return self._redirect_error(
                    checked.redirect_uri,
                    checked.state,
                    "login_required",
                    "The client specified not to prompt, but the user is not logged in.",
                )
            return self._issue_code(checked, session.user, session.auth_time)
        return self._page(authorize=checked)

    def _check_authorize(self, params: Mapping[str, str]) -> _AuthorizeRequest | Response:
        """Validate like Okta: client and redirect URI problems get a page of their own (the
        redirect URI cannot be trusted), everything else goes back on the redirect."""
        if params.get("client_id") != self._client_id:
            return self._page(fatal="Invalid value for 'client_id' parameter.", status=400)
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in self._redirect_uris:  # exact match, as Okta does
            return self._page(
                fatal="The 'redirect_uri' parameter must be a Login redirect URI in the client "
                f"app settings: {redirect_uri}",
                status=400,
            )
        state = params.get("state", "")
        if not _STATE.fullmatch(state):
            return self._redirect_error(
                redirect_uri,
                None,
                "invalid_request",
                "The 'state' parameter is required and may only contain letters, digits, "
                "comma, period, underscore and hyphen.",
            )

        def fail(error: str, description: str) -> Response:
            return self._redirect_error(redirect_uri, state, error, description)

        if params.get("response_type") != "code":
            return fail(
                "unsupported_response_type",
                "The response type is not supported by the authorization server. "
                "Configured response types: [code].",
            )
        if params.get("response_mode", "query") != "query":
            return fail(
                "unsupported_response_mode",
                "The response mode is not supported by the authorization server. "
                "Configured response modes: [query].",
            )
        scopes = tuple(dict.fromkeys(params.get("scope", "").split()))
        if "openid" not in scopes:
            return fail(
                "invalid_scope",
                "The authentication request has an invalid 'scope' parameter: "
                "'openid' is required.",
            )
        if not set(scopes) <= set(SUPPORTED_SCOPES):
            return fail(
                "invalid_scope",
                "One or more scopes are not configured for the authorization server resource.",
            )
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if challenge is None and method is not None:
            return fail(
                "invalid_request", "'code_challenge_method' was sent without a 'code_challenge'."
            )
        if challenge is not None and method != "S256":
            return fail(
                "invalid_request",
                "PKCE code challenge method is not supported. "
                "Supported code challenge methods: [S256].",
            )
        if challenge is not None and not _PKCE_VALUE.fullmatch(challenge):
            return fail("invalid_request", "PKCE code challenge is malformed.")
        return _AuthorizeRequest(
            redirect_uri=redirect_uri,
            state=state,
            scopes=scopes,
            nonce=params.get("nonce"),
            code_challenge=challenge,
            prompt=params.get("prompt"),
            params=tuple((name, params[name]) for name in _CARRIED_PARAMS if name in params),
        )

    def _sign_in(self, checked: _AuthorizeRequest, username: str, password: str) -> Response:
        wanted = username.casefold()
        user = next(
            (u for u in self._users if wanted in (u.login.casefold(), u.email.casefold())), None
        )
        if user is None or not hmac.compare_digest(password.encode(), user.password.encode()):
            return self._page(
                authorize=checked,
                username=username,
                status=401,
                error="Unable to sign in: wrong username or password.",
            )
        auth_time = int(self._clock())
        response = self._issue_code(checked, user, auth_time)
        session_id = secrets.token_urlsafe(32)
        self._sessions.put(session_id, _IdPSession(user, auth_time))
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            max_age=SESSION_TTL,
            path="/oauth2/v1/",
            secure=self._issuer.startswith("https:"),
            httponly=True,
            samesite="lax",
        )
        return response

    def _issue_code(self, checked: _AuthorizeRequest, user: DevUser, auth_time: int) -> Response:
        code = secrets.token_urlsafe(32)
        grant = _Grant(
            user,
            checked.scopes,
            checked.redirect_uri,
            checked.nonce,
            checked.code_challenge,
            auth_time,
        )
        self._codes.put(code, grant)
        return _redirect(checked.redirect_uri, {"code": code, "state": checked.state})

    def _redirect_error(
        self, redirect_uri: str, state: str | None, error: str, description: str
    ) -> Response:
        params = {"error": error, "error_description": description}
        if state is not None:
            params["state"] = state
        return _redirect(redirect_uri, params)

    def _page(
        self,
        *,
        authorize: _AuthorizeRequest | None = None,
        fatal: str = "",
        error: str = "",
        username: str = "",
        status: int = 200,
    ) -> Response:
        html = self._templates.get_template("devidp_login.html").render(
            fatal=fatal,
            error=error,
            username=username,
            params=authorize.params if authorize is not None else (),
            redirect_uri=authorize.redirect_uri if authorize is not None else "",
            issuer=self._issuer,
        )
        return HTMLResponse(html, status_code=status, headers=_PAGE_HEADERS)

    # --- /token -----------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        form = await _read_form(request)
        if form is None:
            return _token_error(
                400,
                "invalid_request",
                "The request must be a form with each parameter at most once.",
            )
        header = request.headers.get("authorization")
        if header is not None and ("client_secret" in form or "client_assertion" in form):
            return _token_error(
                400,
                "invalid_request",
                "Cannot supply multiple client credentials. Use one of the following: "
                "credentials in the Authorization header, credentials in the post body, "
                "or a client_assertion in the post body.",
            )
        credentials = _basic_credentials(header)
        if credentials is None or not self._client_authenticates(*credentials):
            # RFC 6749 5.2: a 401 for a client that tried the Authorization header names the scheme
            return _token_error(
                401,
                "invalid_client",
                "Client authentication failed. "
                "Either the client or the client credentials are invalid.",
                {"WWW-Authenticate": 'Basic realm="dev-idp"'},
            )
        if form.get("client_id", self._client_id) != self._client_id:
            return _token_error(
                400, "invalid_request", "'client_id' does not match the authenticated client."
            )
        if form.get("grant_type") != "authorization_code":
            return _token_error(
                400,
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization "
                "server. Configured grant types: [authorization_code].",
            )
        code = form.get("code", "")
        # single use: the code is gone whatever happens next. There is one registered client,
        # so client authentication above is what binds the code to it.
        grant = self._codes.pop(code)
        if grant is None:
            # RFC 6749 4.1.2: a replayed code revokes what it was exchanged for
            issued = self._redeemed.pop(code)
            if issued is not None:
                self._tokens.pop(issued)
            return _token_error(
                400, "invalid_grant", "The authorization code is invalid or has expired."
            )
        if form.get("redirect_uri") != grant.redirect_uri:
            return _token_error(
                400,
                "invalid_grant",
                "The 'redirect_uri' does not match the redirection URI used in the "
                "authorization request.",
            )
        verifier = form.get("code_verifier")
        if grant.code_challenge is None and verifier is not None:
            return _token_error(
                400,
                "invalid_grant",
                "A 'code_verifier' was sent but the authorization request had no 'code_challenge'.",
            )
        if grant.code_challenge is not None and not _pkce_verifies(verifier, grant.code_challenge):
            return _token_error(400, "invalid_grant", "PKCE verification failed.")
        if "groups" in grant.scopes and len(grant.user.groups) > GROUPS_CLAIM_LIMIT:
            return _token_error(400, "server_error", _TOO_MANY_GROUPS)
        access_token = secrets.token_urlsafe(32)
        self._tokens.put(access_token, grant)
        self._redeemed.put(code, access_token)
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_TTL,
                "access_token": access_token,
                "scope": " ".join(grant.scopes),
                "id_token": self._id_token(grant),
            },
            headers=_TOKEN_HEADERS,
        )

    def _client_authenticates(self, client_id: str, client_secret: str) -> bool:
        # RFC 6749 2.3.1 form-urlencodes both parts first, but Authlib and httpx send them raw:
        # accept either spelling
        for candidate_id, candidate_secret in (
            (client_id, client_secret),
            (unquote_plus(client_id), unquote_plus(client_secret)),
        ):
            id_ok = hmac.compare_digest(candidate_id.encode(), self._client_id.encode())
            secret_ok = hmac.compare_digest(candidate_secret.encode(), self._client_secret.encode())
            if id_ok and secret_ok:
                return True
        return False

    def _id_token(self, grant: _Grant) -> str:
        now = int(self._clock())
        claims: dict[str, object] = {
            "sub": grant.user.sub,
            "ver": 1,
            "iss": self._issuer,
            "aud": self._client_id,
            "iat": now,
            "exp": now + TOKEN_TTL,
            "jti": "ID." + secrets.token_urlsafe(32),
            "amr": ["pwd"],
            "idp": self._org_id,
            "auth_time": grant.auth_time,
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        claims.update(_scope_claims(grant.user, grant.scopes))
        # Okta's header is exactly {"kid", "alg"}: no "typ"
        return jwt.encode(
            {"alg": "RS256", "kid": self._key.kid},
            claims,
            self._key,
            algorithms=["RS256"],
            default_type=None,
        )

    # --- /userinfo --------------------------------------------------------------------------

    async def userinfo(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        grant = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if grant is None:
            description = "The access token is invalid."
            challenge = f'Bearer error="invalid_token", error_description="{description}"'
            return JSONResponse(
                {"error": "invalid_token", "error_description": description},
                status_code=401,
                headers={"WWW-Authenticate": challenge},
            )
        return JSONResponse(
            {"sub": grant.user.sub, **_scope_claims(grant.user, grant.scopes)},
            headers=_TOKEN_HEADERS,
        )

    # --- Groups API -------------------------------------------------------------------------

    async def user_groups(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "SSWS" or not hmac.compare_digest(
            token.strip().encode(), self._api_token.encode()
        ):
            return _okta_error(401, "E0000011", "Invalid token provided")
        user_id: str = request.path_params["user_id"]
        user = next((u for u in self._users if u.sub == user_id), None)
        if user is None:
            return _okta_error(404, "E0000007", f"Not found: Resource not found: {user_id} (User)")
        raw_limit = request.query_params.get("limit")
        try:
            limit = GROUPS_PAGE_LIMIT if raw_limit is None else int(raw_limit)
        except ValueError:
            limit = 0
        limit = min(limit, GROUPS_PAGE_LIMIT)
        if limit < 1:
            return _okta_error(400, "E0000001", "Api validation failed: limit")
        ids = [self._group_ids[name] for name in user.groups]
        after = request.query_params.get("after")
        if after is None:
            start = 0
        elif after in ids:
            start = ids.index(after) + 1
        else:
            return _okta_error(400, "E0000001", "Api validation failed: after")
        page = user.groups[start : start + limit]
        response = JSONResponse([self._group_item(name) for name in page])
        base = self._url(f"/api/v1/users/{quote(user_id)}/groups?")
        this_page = {"limit": limit} if after is None else {"limit": limit, "after": after}
        # Okta sends one Link header per relation; clients follow rel="next" as given
        response.headers.append("Link", f'<{base}{urlencode(this_page)}>; rel="self"')
        if start + limit < len(ids):
            next_page = {"limit": limit, "after": ids[start + limit - 1]}
            response.headers.append("Link", f'<{base}{urlencode(next_page)}>; rel="next"')
        return response

    def _group_item(self, name: str) -> dict[str, object]:
        built_in = name == "Everyone"
        return {
            "id": self._group_ids[name],
            "type": "BUILT_IN" if built_in else "OKTA_GROUP",
            "profile": {
                "name": name,
                "description": "All users in your organization" if built_in else "",
            },
        }


def _scope_claims(user: DevUser, scopes: Sequence[str]) -> dict[str, object]:
    """The user claims a set of scopes grants, in the ID token and at userinfo alike."""
    claims: dict[str, object] = {}
    if "profile" in scopes:
        given_name, _, family_name = user.name.partition(" ")
        claims.update(
            name=user.name,
            given_name=given_name,
            family_name=family_name,
            preferred_username=user.login,
        )
    if "email" in scopes:
        claims.update(email=user.email, email_verified=True)
    if "groups" in scopes:
        claims["groups"] = list(user.groups)
    return claims


def _pkce_verifies(verifier: str | None, challenge: str) -> bool:
    if verifier is None or not _PKCE_VALUE.fullmatch(verifier):
        return False
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=")  # RFC 7636 4.2, S256
    return hmac.compare_digest(computed, challenge.encode("ascii"))


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, client_secret = decoded.partition(":")
    return (client_id, client_secret) if colon else None


def _single_valued(pairs: Iterable[tuple[str, str]]) -> dict[str, str] | None:
    """Parameters as a dict, or None when one repeats (RFC 6749 3.1: at most once each)."""
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            return None
        params[name] = value
    return params


async def _read_form(request: Request) -> dict[str, str] | None:
    """A urlencoded body as single-valued parameters; None if it is anything else or too big.
    (Parsed here because Starlette's form parser needs python-multipart.)"""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return _single_valued(parse_qsl(text, keep_blank_values=True))


def _redirect(redirect_uri: str, params: Mapping[str, str]) -> Response:
    separator = "&" if urlsplit(redirect_uri).query else "?"
    return RedirectResponse(
        redirect_uri + separator + urlencode(params),
        status_code=302,
        headers={"Cache-Control": "no-store"},
    )


def _token_error(
    status: int, error: str, description: str, headers: Mapping[str, str] | None = None
) -> Response:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={**_TOKEN_HEADERS, **(headers or {})},
    )


def _okta_error(status: int, code: str, summary: str) -> Response:
    """An Okta core API error body (OKTA.md: clients switch on `errorCode` only)."""
    return JSONResponse(
        {
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": "oae" + secrets.token_urlsafe(16),
            "errorCauses": [],
        },
        status_code=status,
    )
