"""The development IdP (gateway/devidp.py), driven in-process like the gateway drives Okta."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

import httpx
import pytest
from clock import FakeClock
from joserfc import jwt
from joserfc.jwk import KeySet

from gateway.demo.devidp import DevUser, create_dev_idp, demo_users

ISSUER = "http://localhost:8001"
CLIENT_ID = "0oadevclient"
CLIENT_SECRET = "dev-client-secret"
REDIRECT_URI = "http://localhost:8000/cdn-cgi/access/callback"
API_TOKEN = "00dev-api-token"
SCOPE = "openid email profile groups"


class FormParser(HTMLParser):
    """Collects the <input name=... value=...> fields of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "input" and attributes.get("name"):
            self.fields[str(attributes["name"])] = attributes.get("value") or ""


def form_fields(page: str) -> dict[str, str]:
    parser = FormParser()
    parser.feed(page)
    return parser.fields


@pytest.fixture
def alice() -> DevUser:
    return DevUser.generate("alice@example.com", "Alice Example", ("Engineering", "Everyone"))


@pytest.fixture
def crowded() -> DevUser:
    groups = [f"Team {n:03d}" for n in range(249)] + ["Everyone"]
    return DevUser.generate("carol@example.com", "Carol Crowded", groups)


@pytest.fixture
async def client(
    alice: DevUser, crowded: DevUser, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_dev_idp(
        issuer=ISSUER,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[REDIRECT_URI],
        users=[alice, crowded],
        api_token=API_TOKEN,
        clock=clock,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=ISSUER) as c:
        yield c


def authorize_params(**overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": SCOPE,
        "state": "st-1.2_3",
        "nonce": "n-0S6_WzA2Mj",
        **overrides,
    }
    return {name: value for name, value in params.items() if value is not None}


async def sign_in(
    client: httpx.AsyncClient, user: DevUser, password: str | None = None, **overrides: str | None
) -> httpx.Response:
    """GET the login form, then post it back as a browser would."""
    page = await client.get("/oauth2/v1/authorize", params=authorize_params(**overrides))
    assert page.status_code == 200, page.text
    fields = form_fields(page.text)
    fields.update(username=user.login, password=user.password if password is None else password)
    return await client.post("/oauth2/v1/authorize", data=fields)


def redirect_query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


async def code_for(client: httpx.AsyncClient, user: DevUser, **overrides: str | None) -> str:
    query = redirect_query(await sign_in(client, user, **overrides))
    assert query["state"] == "st-1.2_3"
    return query["code"]


async def exchange(
    client: httpx.AsyncClient, code: str, secret: str = CLIENT_SECRET, **extra: str
) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    return await client.post("/oauth2/v1/token", data={**data, **extra}, auth=(CLIENT_ID, secret))


async def verified_claims(client: httpx.AsyncClient, id_token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set((await client.get("/oauth2/v1/keys")).json())
    token = jwt.decode(id_token, keys, algorithms=["RS256"])
    assert token.header == {"alg": "RS256", "kid": keys.keys[0].kid}
    return token.claims


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


async def test_discovery_is_okta_org_server_shaped(client: httpx.AsyncClient) -> None:
    document = (await client.get("/.well-known/openid-configuration")).json()
    assert document["issuer"] == ISSUER
    assert document["authorization_endpoint"] == f"{ISSUER}/oauth2/v1/authorize"
    assert document["token_endpoint"] == f"{ISSUER}/oauth2/v1/token"
    assert document["jwks_uri"] == f"{ISSUER}/oauth2/v1/keys"
    assert document["userinfo_endpoint"] == f"{ISSUER}/oauth2/v1/userinfo"
    assert {"openid", "email", "profile", "groups"} <= set(document["scopes_supported"])
    assert document["response_types_supported"] == ["code"]
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["token_endpoint_auth_methods_supported"] == ["client_secret_basic"]


async def test_jwks_has_only_the_public_key(client: httpx.AsyncClient) -> None:
    (key,) = (await client.get("/oauth2/v1/keys")).json()["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig" and key["kid"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


async def test_login_form_carries_the_request(client: httpx.AsyncClient) -> None:
    page = await client.get("/oauth2/v1/authorize", params=authorize_params())
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    fields = form_fields(page.text)
    assert {name: fields[name] for name in authorize_params()} == authorize_params()
    assert fields["username"] == "" and fields["password"] == ""


async def test_full_code_flow(client: httpx.AsyncClient, alice: DevUser, clock: FakeClock) -> None:
    code = await code_for(client, alice)
    clock.advance(5)
    response = await exchange(client, code)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"token_type", "expires_in", "access_token", "scope", "id_token"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == SCOPE

    claims = await verified_claims(client, body["id_token"])
    now = int(clock.now)
    assert claims["iss"] == ISSUER
    assert claims["sub"] == alice.sub and alice.sub.startswith("00u") and len(alice.sub) == 20
    assert claims["aud"] == CLIENT_ID
    assert claims["iat"] == now and claims["exp"] == now + 3600
    assert claims["auth_time"] == now - 5
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["amr"] == ["pwd"] and claims["ver"] == 1
    assert claims["idp"].startswith("00o") and claims["jti"]
    assert claims["email"] == "alice@example.com" and claims["email_verified"] is True
    assert claims["name"] == "Alice Example"
    assert (claims["given_name"], claims["family_name"]) == ("Alice", "Example")
    assert claims["preferred_username"] == "alice@example.com"
    assert claims["groups"] == ["Engineering", "Everyone"]


async def test_claims_follow_scopes(client: httpx.AsyncClient, alice: DevUser) -> None:
    code = await code_for(client, alice, scope="openid email", nonce=None)
    body = (await exchange(client, code)).json()
    claims = await verified_claims(client, body["id_token"])
    assert body["scope"] == "openid email"
    assert claims["email"] == alice.email
    assert not {"groups", "name", "preferred_username", "nonce"} & set(claims)


async def test_login_accepts_the_email_case_insensitively(
    client: httpx.AsyncClient, alice: DevUser
) -> None:
    page = await client.get("/oauth2/v1/authorize", params=authorize_params())
    fields = {**form_fields(page.text), "username": "ALICE@example.com", "password": alice.password}
    assert "code" in redirect_query(await client.post("/oauth2/v1/authorize", data=fields))


async def test_pkce_right_verifier(client: httpx.AsyncClient, alice: DevUser) -> None:
    verifier = secrets.token_urlsafe(48)
    code = await code_for(
        client, alice, code_challenge=s256(verifier), code_challenge_method="S256"
    )
    response = await exchange(client, code, code_verifier=verifier)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("verifier", [None, "x" * 43, "short"])
async def test_pkce_wrong_or_missing_verifier(
    client: httpx.AsyncClient, alice: DevUser, verifier: str | None
) -> None:
    challenge = s256(secrets.token_urlsafe(48))
    code = await code_for(client, alice, code_challenge=challenge, code_challenge_method="S256")
    extra = {} if verifier is None else {"code_verifier": verifier}
    response = await exchange(client, code, **extra)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_verifier_without_challenge_is_rejected(
    client: httpx.AsyncClient, alice: DevUser
) -> None:
    code = await code_for(client, alice)
    response = await exchange(client, code, code_verifier=secrets.token_urlsafe(48))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_pkce_plain_method_goes_back_on_the_redirect(client: httpx.AsyncClient) -> None:
    params = authorize_params(code_challenge="a" * 43, code_challenge_method="plain")
    query = redirect_query(await client.get("/oauth2/v1/authorize", params=params))
    assert query["error"] == "invalid_request" and query["state"] == "st-1.2_3"


async def test_code_replay_is_rejected_and_revokes_the_token(
    client: httpx.AsyncClient, alice: DevUser
) -> None:
    code = await code_for(client, alice)
    first = await exchange(client, code)
    assert first.status_code == 200
    access_token = first.json()["access_token"]
    replay = await exchange(client, code)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    userinfo = await client.get(
        "/oauth2/v1/userinfo", headers={"Authorization": f"Bearer {access_token}"}
    )
    assert userinfo.status_code == 401


async def test_code_expires_after_300_seconds(
    client: httpx.AsyncClient, alice: DevUser, clock: FakeClock
) -> None:
    code = await code_for(client, alice)
    clock.advance(300)
    response = await exchange(client, code)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_pending_codes_are_bounded(
    client: httpx.AsyncClient, alice: DevUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.demo.devidp.MAX_ENTRIES", 2)
    oldest, *newest = [await code_for(client, alice) for _ in range(3)]
    assert (await exchange(client, oldest)).status_code == 400  # evicted
    for code in newest:
        assert (await exchange(client, code)).status_code == 200


async def test_code_is_bound_to_the_redirect_uri(client: httpx.AsyncClient, alice: DevUser) -> None:
    code = await code_for(client, alice)
    response = await exchange(client, code, redirect_uri="http://localhost:8000/elsewhere")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert (await exchange(client, code)).status_code == 400  # and the code is spent


async def test_wrong_password_shows_the_form_again(
    client: httpx.AsyncClient, alice: DevUser
) -> None:
    response = await sign_in(client, alice, password="not-the-password")
    assert response.status_code == 401
    assert "wrong username or password" in response.text
    fields = form_fields(response.text)
    assert fields["username"] == alice.login and fields["password"] == ""
    assert fields["state"] == "st-1.2_3"
    unknown = await client.post(
        "/oauth2/v1/authorize", data={**fields, "username": "eve@example.com", "password": "x"}
    )
    assert unknown.status_code == 401


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/callback",
        REDIRECT_URI + "/",
        REDIRECT_URI + "?next=/",
        "http://LOCALHOST:8000/cdn-cgi/access/callback",
        None,
    ],
)
async def test_unregistered_redirect_uri_never_redirects(
    client: httpx.AsyncClient, alice: DevUser, redirect_uri: str | None
) -> None:
    params = authorize_params(redirect_uri=redirect_uri)
    page = await client.get("/oauth2/v1/authorize", params=params)
    assert page.status_code == 400
    assert "location" not in page.headers
    assert "Login redirect URI" in page.text
    posted = await client.post(
        "/oauth2/v1/authorize",
        data={**params, "username": alice.login, "password": alice.password},
    )
    assert posted.status_code == 400 and "location" not in posted.headers


async def test_unknown_client_id_never_redirects(client: httpx.AsyncClient) -> None:
    page = await client.get("/oauth2/v1/authorize", params=authorize_params(client_id="0oaother"))
    assert page.status_code == 400 and "location" not in page.headers


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"scope": "openid email offline_access"}, "invalid_scope"),
        ({"scope": "email profile"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_mode": "form_post"}, "unsupported_response_mode"),
        ({"code_challenge_method": "S256"}, "invalid_request"),
    ],
)
async def test_request_errors_go_back_on_the_redirect(
    client: httpx.AsyncClient, overrides: dict[str, str], error: str
) -> None:
    response = await client.get("/oauth2/v1/authorize", params=authorize_params(**overrides))
    query = redirect_query(response)
    assert query["error"] == error and query["error_description"]
    assert query["state"] == "st-1.2_3"
    assert "code" not in query


@pytest.mark.parametrize("state", [None, "has space", "a/b"])
async def test_state_is_required_and_restricted(
    client: httpx.AsyncClient, state: str | None
) -> None:
    query = redirect_query(
        await client.get("/oauth2/v1/authorize", params=authorize_params(state=state))
    )
    assert query["error"] == "invalid_request" and "state" not in query


async def test_prompt_none_uses_the_idp_session(client: httpx.AsyncClient, alice: DevUser) -> None:
    silent = authorize_params(prompt="none", scope="openid email profile")
    query = redirect_query(await client.get("/oauth2/v1/authorize", params=silent))
    assert query["error"] == "login_required" and query["state"] == "st-1.2_3"

    await code_for(client, alice)  # signs in: the client now holds the IdP session cookie
    query = redirect_query(await client.get("/oauth2/v1/authorize", params=silent))
    body = (await exchange(client, query["code"])).json()
    claims = await verified_claims(client, body["id_token"])
    assert claims["sub"] == alice.sub and "groups" not in claims


async def test_bad_client_credentials_are_401(client: httpx.AsyncClient, alice: DevUser) -> None:
    code = await code_for(client, alice)
    response = await exchange(client, code, secret="wrong-secret")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")
    assert (await exchange(client, code)).status_code == 200  # a failed client spends no code


@pytest.mark.parametrize("encode", [False, True])
async def test_basic_auth_secret_raw_or_form_encoded(alice: DevUser, encode: bool) -> None:
    secret = "s%e+c:r/et ü"
    app = create_dev_idp(
        issuer=ISSUER,
        client_id=CLIENT_ID,
        client_secret=secret,
        redirect_uris=[REDIRECT_URI],
        users=[alice],
        api_token=API_TOKEN,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=ISSUER) as c:
        code = await code_for(c, alice)
        sent = quote_plus(secret) if encode else secret  # RFC 6749 2.3.1, or raw like Authlib
        basic = base64.b64encode(f"{CLIENT_ID}:{sent}".encode()).decode()
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
        response = await c.post(
            "/oauth2/v1/token", data=data, headers={"Authorization": f"Basic {basic}"}
        )
    assert response.status_code == 200, response.text


async def test_client_secret_post_is_not_accepted(
    client: httpx.AsyncClient, alice: DevUser
) -> None:
    code = await code_for(client, alice)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    response = await client.post("/oauth2/v1/token", data=data)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_credentials_in_header_and_body_are_400(
    client: httpx.AsyncClient, alice: DevUser
) -> None:
    code = await code_for(client, alice)
    response = await exchange(client, code, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_other_grant_types_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/oauth2/v1/token", data={"grant_type": "password"}, auth=(CLIENT_ID, CLIENT_SECRET)
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


async def test_too_many_groups_fails_at_the_token_endpoint(
    client: httpx.AsyncClient, crowded: DevUser
) -> None:
    response = await exchange(client, await code_for(client, crowded))
    assert response.status_code == 400
    assert response.json() == {
        "error": "server_error",
        "error_description": "The groups claim matched too many groups and must be configured "
        "to match fewer groups.",
    }
    without_groups = await code_for(client, crowded, scope="openid email profile")
    assert (await exchange(client, without_groups)).status_code == 200


async def test_userinfo(client: httpx.AsyncClient, alice: DevUser, clock: FakeClock) -> None:
    access_token = (await exchange(client, await code_for(client, alice))).json()["access_token"]
    bearer = {"Authorization": f"Bearer {access_token}"}
    response = await client.get("/oauth2/v1/userinfo", headers=bearer)
    assert response.status_code == 200
    info = response.json()
    assert info["sub"] == alice.sub
    assert info["email"] == alice.email and info["name"] == alice.name
    assert info["groups"] == ["Engineering", "Everyone"]

    clock.advance(3600)
    assert (await client.get("/oauth2/v1/userinfo", headers=bearer)).status_code == 401


@pytest.mark.parametrize("authorization", [None, "Bearer nope", "Basic Zm9vOmJhcg=="])
async def test_userinfo_rejects_bad_tokens(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.get("/oauth2/v1/userinfo", headers=headers)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_groups_api_pages_with_link_headers(
    client: httpx.AsyncClient, crowded: DevUser, alice: DevUser
) -> None:
    headers = {"Authorization": f"SSWS {API_TOKEN}"}
    url: str | None = f"{ISSUER}/api/v1/users/{crowded.sub}/groups"
    pages: list[list[dict[str, Any]]] = []
    while url is not None:
        response = await client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        assert response.links["self"]["url"].startswith(ISSUER)
        pages.append(response.json())
        url = response.links.get("next", {}).get("url")
    assert [len(page) for page in pages] == [200, 50]
    items = [item for page in pages for item in page]
    assert [item["profile"]["name"] for item in items] == list(crowded.groups)
    assert len({item["id"] for item in items}) == 250
    assert all(item["id"].startswith("00g") and len(item["id"]) == 20 for item in items)
    everyone = items[-1]
    assert everyone["type"] == "BUILT_IN" and everyone["profile"]["name"] == "Everyone"
    assert {item["type"] for item in items[:-1]} == {"OKTA_GROUP"}
    assert set(everyone["profile"]) == {"name", "description"}

    small = await client.get(f"/api/v1/users/{alice.sub}/groups", headers=headers)
    assert [item["profile"]["name"] for item in small.json()] == ["Engineering", "Everyone"]
    assert small.json()[1]["id"] == everyone["id"]  # one group, one id, whoever is in it
    assert "next" not in small.links


async def test_groups_api_honours_limit(client: httpx.AsyncClient, crowded: DevUser) -> None:
    response = await client.get(
        f"/api/v1/users/{crowded.sub}/groups",
        params={"limit": "100"},
        headers={"Authorization": f"SSWS {API_TOKEN}"},
    )
    assert len(response.json()) == 100
    assert "limit=100" in response.links["next"]["url"]


@pytest.mark.parametrize("authorization", [None, "SSWS wrong", f"Bearer {API_TOKEN}"])
async def test_groups_api_rejects_bad_tokens(
    client: httpx.AsyncClient, alice: DevUser, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.get(f"/api/v1/users/{alice.sub}/groups", headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["errorCode"] == "E0000011"
    assert body["errorSummary"] == "Invalid token provided"
    assert {"errorLink", "errorId", "errorCauses"} <= set(body)


async def test_groups_api_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/v1/users/00unobody000000000000/groups", headers={"Authorization": f"SSWS {API_TOKEN}"}
    )
    assert response.status_code == 404
    assert response.json()["errorCode"] == "E0000007"


def test_demo_users_have_fresh_passwords() -> None:
    first, second = demo_users(), demo_users()
    assert [(u.email, u.groups) for u in first] == [
        ("alice@example.com", ("Engineering", "Everyone")),
        ("bob@example.com", ("Sales", "Everyone")),
    ]
    assert all(u.sub.startswith("00u") and len(u.password) >= 16 for u in first)
    assert {u.password for u in first}.isdisjoint({u.password for u in second})


def test_issuer_must_be_an_origin() -> None:
    with pytest.raises(ValueError, match="origin"):
        create_dev_idp(
            issuer="http://localhost:8001/oauth2/default",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uris=[REDIRECT_URI],
            users=[],
            api_token=API_TOKEN,
        )
