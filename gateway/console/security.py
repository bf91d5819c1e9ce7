"""The console's defences of its forms and pages: CSRF tokens, the Origin check, headers.

CSRF (SPEC 9: "every form carries a CSRF token and is refused from another origin"): every form
has a hidden `csrf_token`, an HMAC of the console session's id under the cookie key, so it is
this session's and no other's, and nobody without the session's cookie can compute it. A POST
is accepted only when that token matches (any of the cookie keys, so a key rotation signs no
form out) AND the request comes from the gateway's own origin: `Origin`, else `Referer`; a POST
with neither is refused (every browser that runs the console sends one of them).

Headers: a Content-Security-Policy without `unsafe-inline` (scripts and styles only from the
console's static files, no inline handlers), `X-Frame-Options: DENY`, `no-store`: on every
console response, errors and static files included.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

CSRF_FIELD = "csrf_token"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def csrf_token(keys: tuple[str, ...], session_id: str) -> str:
    """The CSRF token of the session `session_id` (the first cookie key makes it)."""
    return _mac(keys[0], session_id)


def csrf_valid(keys: tuple[str, ...], session_id: str, token: str) -> bool:
    """Whether `token` is this session's CSRF token under any of the cookie keys."""
    return bool(token) and any(hmac.compare_digest(_mac(key, session_id), token) for key in keys)


def _mac(key: str, session_id: str) -> str:
    message = f"gateway.console.csrf:{session_id}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, lowercased; "" when it has none."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    if not parts.scheme or not parts.hostname:
        return ""
    default = {"https": 443, "http": 80}.get(parts.scheme.lower())
    suffix = f":{port}" if port is not None and port != default else ""
    return f"{parts.scheme.lower()}://{parts.hostname.lower()}{suffix}"


def same_origin(public_url: str, origin: str | None, referer: str | None) -> bool:
    """Whether a POST comes from the gateway's own pages: its `Origin` (else its `Referer`)
    is `public_url`'s origin. Neither header, or `Origin: null`: refused."""
    sent = origin if origin is not None else referer
    if not sent:
        return False
    return origin_of(sent) == origin_of(public_url) != ""
