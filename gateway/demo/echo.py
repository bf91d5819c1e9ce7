"""The demo upstream for `gateway demo`: it shows the request and the identity it received.

A plain ASGI app, served only by the demo. Any HTTP path answers a small self-contained HTML page
(method, path, `Cf-Access-Authenticated-User-Email`, the claims of `Cf-Access-Jwt-Assertion`
decoded WITHOUT verifying the signature, every request header, a "Sign out" link), or with
`Accept: application/json` the same data as JSON:
`{"method", "path", "query", "headers", "email", "body_bytes", "unverified_claims"}`. The request
body is read and counted. WebSocket connections echo every message back, so the demo can show
upgrades going through the gateway. A real origin must verify the assertion (against the
gateway's `/cdn-cgi/access/certs`) before trusting any of it.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

EMAIL_HEADER = "cf-access-authenticated-user-email"
ASSERTION_HEADER = "cf-access-jwt-assertion"
LOGOUT_PATH = "/cdn-cgi/access/logout"

_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem;
       color: #1d1d21; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .25rem .5rem;
         border-bottom: 1px solid #ddd; overflow-wrap: anywhere; }
th { width: 16rem; font-weight: 600; }
pre { background: #f4f5f7; padding: 1rem; overflow-x: auto; }
.warn { background: #fff4ce; border: 1px solid #e0c36b; padding: .5rem .75rem; }
"""


def create_echo_app() -> ASGIApp:
    """The demo upstream as an ASGI app (HTTP, WebSocket and lifespan scopes)."""
    return _echo


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await _echo_http(scope, receive, send)
    elif scope["type"] == "websocket":
        await _echo_websocket(receive, send)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def _echo_http(scope: Scope, receive: Receive, send: Send) -> None:
    body_bytes = 0
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body_bytes += len(message.get("body", b""))
        more_body = message.get("more_body", False)
    headers = [
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
    ]
    joined = _header_dict(headers)
    assertion = joined.get(ASSERTION_HEADER)
    data = {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode("latin-1"),
        "headers": joined,
        "email": joined.get(EMAIL_HEADER),
        "body_bytes": body_bytes,
        "unverified_claims": _unverified_claims(assertion) if assertion is not None else None,
    }
    if "application/json" in joined.get("accept", "").lower():
        content_type = "application/json"
        body = json.dumps(data, indent=2).encode()
    else:
        content_type = "text/html; charset=utf-8"
        body = _render_html(data, headers, has_assertion=assertion is not None).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"vary", b"Accept"),
                (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def _header_dict(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; a repeated header's values joined as HTTP would (cookies with "; ")."""
    joined: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        if name in joined:
            separator = "; " if name == "cookie" else ", "
            joined[name] = joined[name] + separator + value
        else:
            joined[name] = value
    return joined


def _unverified_claims(token: str) -> dict[str, object] | None:
    """The payload of a compact JWS, decoded WITHOUT checking its signature (display only)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:  # binascii.Error, UnicodeDecodeError and JSONDecodeError alike
        return None
    return claims if isinstance(claims, dict) else None


def _render_html(
    data: dict[str, object], headers: list[tuple[str, str]], *, has_assertion: bool
) -> str:
    e = html.escape
    email = data["email"]
    query = data["query"]
    target = f"{data['path']}?{query}" if query else str(data["path"])
    claims = data["unverified_claims"]
    if claims is not None:
        claims_html = f"<pre>{e(json.dumps(claims, indent=2, sort_keys=True))}</pre>"
    elif has_assertion:
        claims_html = "<p>The header is present but is not a decodable JWT.</p>"
    else:
        claims_html = "<p>No <code>Cf-Access-Jwt-Assertion</code> header was received.</p>"
    header_rows = "\n".join(
        f"<tr><th>{e(name)}</th><td>{e(value)}</td></tr>" for name, value in headers
    )
    greeting = f"Hello, {e(str(email))}" if email is not None else "No identity received"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Demo upstream</title>
<style>{_STYLE}</style>
</head>
<body>
<p><a href="{e(LOGOUT_PATH)}">Sign out</a></p>
<h1>{greeting}</h1>
<p>This is the demo upstream of <code>gateway demo</code>: it shows what the gateway sent it.</p>
<table>
<tr><th>Method</th><td>{e(str(data["method"]))}</td></tr>
<tr><th>Path</th><td>{e(target)}</td></tr>
<tr><th>Cf-Access-Authenticated-User-Email</th><td>{e(str(email or "(none)"))}</td></tr>
<tr><th>Body</th><td>{e(str(data["body_bytes"]))} bytes</td></tr>
</table>
<h2>Cf-Access-Jwt-Assertion claims</h2>
<p class="warn">Decoded only, NOT verified: this page does not check the signature. A real
application must verify the token with the gateway's <code>/cdn-cgi/access/certs</code> keys.</p>
{claims_html}
<h2>Request headers</h2>
<table>
{header_rows}
</table>
</body>
</html>
"""


async def _echo_websocket(receive: Receive, send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
