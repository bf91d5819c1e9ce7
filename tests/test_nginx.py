"""Forward-auth behind a real nginx: `auth_request` to the gateway, as docs/forward-auth.md says.

nginx (Debian's package; `.ci/run` installs it) runs on a free loopback port with the recipe's
snippets read from the docs, so the published configuration is what is tested. The gateway runs
in this process under uvicorn on another port (so respx answers its calls to Okta), with a store
the test shares; the echo upstream sits behind nginx. The browser is httpx with every host
resolved to 127.0.0.1, so cookies stay per host as in a real browser.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import respx
import uvicorn
from fake_okta import FakeOkta
from harness import IDP_ID, EchoUpstream, free_port, settings_doc

from gateway.app import Gateway, create_app
from gateway.authz.service_tokens import ServiceTokens
from gateway.config import parse_settings
from gateway.identity import Identity
from gateway.state.store.memory import MemoryStore

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
)
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx)"
)

DOCS = Path(__file__).parent.parent / "docs" / "forward-auth.md"
DOC_GATEWAY = "127.0.0.1:8000"  # the gateway address in the docs' snippets
TEAM_HOST = "access.example.com"
WIKI_HOST = "wiki.example.com"
ADMIN_ONLY = [{"email": {"email": "root@example.com"}}]


def doc_snippets() -> dict[str, str]:
    """The docs' nginx blocks that start with `# file: <path>`, by path."""
    blocks = re.findall(r"```nginx\n# file: (\S+)\n(.*?)```", DOCS.read_text(), re.S)
    return dict(blocks)


def nginx_conf(tmp: Path, port: int, gateway_port: int, upstream_port: int) -> Path:
    """nginx.conf for the test: the docs' snippets, a team host and one protected app host."""
    snippets = doc_snippets()
    assert len(snippets) == 4, f"docs/forward-auth.md nginx snippets: {sorted(snippets)}"
    assert DOC_GATEWAY in snippets["conf.d/access-gateway.conf"]
    for name, text in snippets.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text.replace(DOC_GATEWAY, f"127.0.0.1:{gateway_port}"))
    temp = tmp / "temp"
    temp.mkdir()
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include conf.d/access-gateway.conf;

    server {{
        listen 127.0.0.1:{port};
        server_name {TEAM_HOST};
        location / {{
            include snippets/access-gateway-proxy.conf;
        }}
    }}

    server {{
        listen 127.0.0.1:{port};
        server_name {WIKI_HOST};
        include snippets/access-gateway-locations.conf;
        location / {{
            include snippets/access-gateway-auth.conf;
            proxy_pass http://127.0.0.1:{upstream_port};
        }}
    }}
}}
""")
    return conf


async def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {log.read_text() if log.exists() else ''}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"nginx is not listening on {port}")


class Loopback(httpx.AsyncBaseTransport):
    """Connects every request to 127.0.0.1 and keeps the URL (so the Host header and the cookie
    jar see the real host names), like an /etc/hosts entry for each of them."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        routed = httpx.Request(
            request.method,
            request.url.copy_with(host="127.0.0.1"),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return await self._inner.handle_async_request(routed)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class Deployment:
    """nginx in front of the app host and the team host, the gateway behind it."""

    port: int
    gateway: Gateway
    okta: FakeOkta
    upstream: EchoUpstream
    service_token: tuple[str, str]  # client id and secret of the token wiki admits

    def url(self, host: str, path: str = "/") -> str:
        return f"http://{host}:{self.port}{path}"

    def browser(self, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=Loopback(),
            headers={"Accept": "text/html,application/xhtml+xml", **headers},
            follow_redirects=False,
            timeout=5.0,
        )

    async def app_session(self, email: str, groups: tuple[str, ...]) -> str:
        """A wiki app session created straight in the shared store; its cookie value."""
        rt = self.gateway.runtime
        assert rt is not None
        identity = Identity(
            id="nonce-" + email,
            user_uuid="uuid-" + email,
            sub="00u-" + email,
            name=email,
            email=email,
            groups=groups,
            idp_id=IDP_ID,
            idp_type="okta",
            iat=int(time.time()),
        )
        _, cookie = await rt.sessions.create(identity, kind="app", duration=3600, app_id="wiki")
        return cookie


@pytest_asyncio.fixture(scope="module")
async def deployment(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    """One nginx and one gateway for the module (each test uses its own browser and sessions);
    the memory store, since the store is not what is tested here."""
    assert NGINX is not None
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    public_url = f"http://{TEAM_HOST}:{port}"
    upstream = EchoUpstream()
    await upstream.start()
    store = MemoryStore()
    ci, ci_secret = await ServiceTokens(store).create("ci")
    doc = settings_doc(upstream.url)
    doc["apps"][1]["policies"].insert(
        0,
        {
            "name": "CI",
            "decision": "non_identity",
            "include": [{"service_token": {"token_id": ci.id}}],
        },
    )
    doc["gateway"].update(
        public_url=public_url, cookie_secure=False, trusted_proxies=["127.0.0.1/32"]
    )
    doc["apps"].append(
        {
            "id": "wiki-admin",
            "name": "Wiki admin",
            "domain": f"{WIKI_HOST}/admin",
            "upstream": upstream.url,
            "policies": [{"name": "Root", "decision": "allow", "include": ADMIN_ONLY}],
        }
    )
    gateway = create_app(parse_settings(doc), store=store)
    server = uvicorn.Server(
        uvicorn.Config(gateway, host="127.0.0.1", port=0, log_level="warning", proxy_headers=False)
    )
    nginx: subprocess.Popen[bytes] | None = None
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()  # the browser's requests to nginx
        okta = FakeOkta(router, redirect_uri=f"{public_url}/cdn-cgi/access/callback")
        okta.add_user("00ualice", "alice@example.com", "Alice Example", ["Engineering"])
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                assert not serving.done(), "the gateway did not start"
                await asyncio.sleep(0.01)
            gateway_port = server.servers[0].sockets[0].getsockname()[1]
            conf = nginx_conf(tmp, port, gateway_port, upstream.port)
            log = tmp / "error.log"
            nginx = subprocess.Popen(
                [NGINX, "-p", str(tmp), "-e", str(log), "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await wait_for_port(port, nginx, log)
            yield Deployment(port, gateway, okta, upstream, (ci.client_id, ci_secret))
        finally:
            if nginx is not None:
                nginx.send_signal(signal.SIGTERM)
                try:
                    nginx.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    nginx.kill()
                    nginx.wait()
            server.should_exit = True
            await serving
            await upstream.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream(deployment: Deployment) -> None:
    """Each test counts only the requests it made reach the upstream."""
    deployment.upstream.requests.clear()


def cookie_named(response: httpx.Response, name: str) -> str | None:
    return next(
        (h for h in response.headers.get_list("set-cookie") if h.startswith(name + "=")), None
    )


# --- the tests ------------------------------------------------------------------------------


async def test_unauthenticated_browser_is_redirected_to_sign_in_with_the_binding_cookie(
    deployment: Deployment,
) -> None:
    async with deployment.browser() as browser:
        response = await browser.get(deployment.url(WIKI_HOST, "/docs/page?x=1"))
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(
        f"http://{TEAM_HOST}:{deployment.port}/cdn-cgi/access/login/{WIKI_HOST}?kid="
    )
    assert "redirect_url=%2Fdocs%2Fpage%3Fx%3D1" in location
    binding = cookie_named(response, "CF_AppSession")
    assert binding is not None and "HttpOnly" in binding
    assert deployment.upstream.requests == []


async def test_unauthenticated_non_browser_gets_401_as_in_proxy_mode(
    deployment: Deployment,
) -> None:
    async with deployment.browser(Accept="application/json") as client:
        response = await client.get(deployment.url(WIKI_HOST, "/api/data"))
    assert response.status_code == 401
    assert "location" not in response.headers
    assert cookie_named(response, "CF_AppSession") is None
    assert deployment.upstream.requests == []


async def test_a_sign_in_through_nginx_reaches_the_upstream_with_the_identity(
    deployment: Deployment,
) -> None:
    async with deployment.browser() as browser:
        to_login = await browser.get(deployment.url(WIKI_HOST, "/docs/page?x=1"))
        to_okta = await browser.get(to_login.headers["location"])  # team host, via nginx
        assert to_okta.status_code == 302, to_okta.text
        callback = deployment.okta.authorize(to_okta.headers["location"], "00ualice")
        to_app = await browser.get(callback)
        assert to_app.status_code == 302, to_app.text
        authorized = to_app.headers["location"]
        assert authorized.startswith(deployment.url(WIKI_HOST, "/cdn-cgi/access/authorized?"))
        done = await browser.get(authorized)  # the app host's leg, passed through by nginx
        assert done.status_code == 302, done.text
        assert done.headers["location"] == "/docs/page?x=1"
        assert cookie_named(done, "CF_Authorization") is not None
        browser.cookies.set("theme", "dark", domain=WIKI_HOST)  # the app's own cookie
        page = await browser.get(
            deployment.url(WIKI_HOST, "/docs/page?x=1"),
            headers={"Cf-Access-Authenticated-User-Email": "mallory@example.com"},
        )
    assert page.status_code == 200, page.text
    seen = page.json()
    assert seen["path_qs"] == "/docs/page?x=1"
    headers = seen["headers"]
    assert headers["cf-access-authenticated-user-email"] == "alice@example.com"
    assert headers["cf-access-jwt-assertion"].count(".") == 2
    assert headers["cookie"] == "theme=dark"  # never the gateway's session cookie
    assert len(deployment.upstream.requests) == 1


async def test_signed_in_but_denied_is_403_and_never_reaches_the_upstream(
    deployment: Deployment,
) -> None:
    cookie = await deployment.app_session("bob@example.com", ("Sales", "Everyone"))
    async with deployment.browser() as browser:
        browser.cookies.set("CF_Authorization", cookie, domain=WIKI_HOST)
        denied = await browser.get(deployment.url(WIKI_HOST, "/docs"))
    assert denied.status_code == 403
    assert deployment.upstream.requests == []


async def test_a_path_app_on_the_same_host_decides_by_its_own_policy(
    deployment: Deployment,
) -> None:
    cookie = await deployment.app_session("alice@example.com", ("Engineering",))
    async with deployment.browser() as browser:
        browser.cookies.set("CF_Authorization", cookie, domain=WIKI_HOST)
        assert (await browser.get(deployment.url(WIKI_HOST, "/docs"))).status_code == 200
        assert (await browser.get(deployment.url(WIKI_HOST, "/%61dmin/x"))).status_code == 403
    assert [r["path_qs"] for r in deployment.upstream.requests] == ["/docs"]


async def test_the_check_itself_is_not_reachable_through_nginx(deployment: Deployment) -> None:
    cookie = await deployment.app_session("alice@example.com", ("Engineering",))
    async with deployment.browser() as browser:
        browser.cookies.set("CF_Authorization", cookie, domain=WIKI_HOST)
        response = await browser.get(
            deployment.url(WIKI_HOST, "/cdn-cgi/access/authz"),
            headers={"X-Forwarded-Host": "other.example.com", "X-Forwarded-Uri": "/"},
        )
    assert response.status_code == 404
    assert "cf-access-jwt-assertion" not in response.headers


async def test_a_post_is_checked_and_reaches_the_upstream_with_its_body(
    deployment: Deployment,
) -> None:
    cookie = await deployment.app_session("alice@example.com", ("Engineering",))
    async with deployment.browser() as browser:
        browser.cookies.set("CF_Authorization", cookie, domain=WIKI_HOST)
        response = await browser.post(deployment.url(WIKI_HOST, "/docs/edit"), content=b"x" * 5000)
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["headers"]["content-length"] == "5000"
    assert seen["headers"]["cf-access-authenticated-user-email"] == "alice@example.com"


async def test_a_service_token_gets_through_without_identity_and_its_secret_stays_behind(
    deployment: Deployment,
) -> None:
    client_id, secret = deployment.service_token
    async with deployment.browser(Accept="application/json") as client:
        response = await client.get(
            deployment.url(WIKI_HOST, "/api/run"),
            headers={
                "CF-Access-Client-Id": client_id,
                "CF-Access-Client-Secret": secret,
                "Cf-Access-Authenticated-User-Email": "mallory@example.com",
                "Cf-Access-Jwt-Assertion": "forged",
            },
        )
        wrong = await client.get(
            deployment.url(WIKI_HOST, "/api/run"),
            headers={"CF-Access-Client-Id": client_id, "CF-Access-Client-Secret": "0" * 64},
        )
    assert response.status_code == 200, response.text
    seen = response.json()["headers"]
    # The secret stays behind; no user rides along, only the app token naming the token.
    assert [name for name in seen if name.startswith("cf-access-")] == ["cf-access-jwt-assertion"]
    assert wrong.status_code == 401
    assert len(deployment.upstream.requests) == 1


@pytest.mark.parametrize(
    ("before", "after", "upstream_sees"),
    [("", "", None), ("a=1; ", "", "a=1"), ("", "; b=2", "b=2"), ("a=1; ", "; b=2", "a=1; b=2")],
)
async def test_the_upstream_never_sees_the_session_cookie(
    deployment: Deployment, before: str, after: str, upstream_sees: str | None
) -> None:
    session = await deployment.app_session("alice@example.com", ("Engineering",))
    async with deployment.browser() as browser:
        response = await browser.get(
            deployment.url(WIKI_HOST, "/docs"),
            headers={"Cookie": f"{before}CF_Authorization={session}{after}"},
        )
    assert response.status_code == 200, response.text
    assert response.json()["headers"].get("cookie") == upstream_sees
