"""Which application a request is for: host and path matching with Cloudflare's rules.

An app's `domain` is `host[/path]`. A `*` stands for part or all of one host label or one path
segment (one `*` per label or segment): `*.example.com` covers exactly one subdomain level and not
the apex. A trailing `/*` covers every path below and not the path itself (`example.com/alpha/*`
covers `/alpha/` and `/alpha/x`, not `/alpha`); a path without it covers itself and everything
below. The most specific
match wins (more literal host labels, then more path segments), with no inheritance. A port in the
Host header is ignored; hosts and paths compare case-insensitively, and "." / ".." path segments
are resolved before matching.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.config import App

_LABEL = r"[a-z0-9_-]+"  # what a `*` may stand for in a host label: never ":", "%", "?", "@"
_SEGMENT = r"[^/]+"
# A Host header: DNS-style name (a trailing dot allowed) or a bracketed IPv6 literal, then an
# optional port. Anything else is refused: a host that is routed one way must not reach the
# upstream (or a redirect) spelled another way.
_HOST = re.compile(
    r"((?:[a-z0-9_-]+\.)*[a-z0-9_-]+)\.?(?::\d{1,5})?\Z|(\[[0-9a-f:.]+\])(?::\d{1,5})?\Z"
)


def _part_pattern(part: str, wildcard: str) -> re.Pattern[str]:
    literal, star, rest = part.partition("*")
    if not star:
        return re.compile(re.escape(part) + r"\Z")
    return re.compile(re.escape(literal) + wildcard + re.escape(rest) + r"\Z")


@dataclass(frozen=True, slots=True)
class _Route:
    app: App
    host_parts: tuple[re.Pattern[str], ...]
    path_parts: tuple[re.Pattern[str], ...]
    subpaths_only: bool  # the domain ends in "/*"
    specificity: tuple[int, int, int, int]

    def matches(self, host_labels: list[str], segments: list[str]) -> bool:
        if len(host_labels) != len(self.host_parts):
            return False
        if not all(p.match(label) for p, label in zip(self.host_parts, host_labels, strict=True)):
            return False
        n = len(self.path_parts)
        if len(segments) < n or (self.subpaths_only and len(segments) == n):
            return False
        return all(p.match(s) for p, s in zip(self.path_parts, segments[:n], strict=True))


def _segments(path: str) -> list[str]:
    """The path's segments with "." and ".." resolved (RFC 3986 5.2.4), as the upstream will
    read them: "/beta/../alpha" must be matched as "/alpha", not against the "/beta" app.
    Path parameters are dropped ("/admin;x" is "/admin" to Tomcat and Spring). A trailing slash
    below the root is an empty last segment: "/admin/" is the index page under "/admin", which
    "example.com/admin/*" covers."""
    segments: list[str] = []
    for raw in path.split("/"):
        segment = raw.split(";", 1)[0]
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    if segments and path.endswith("/"):
        segments.append("")
    return segments


def _route(app: App) -> _Route:
    host, _, path = app.domain.lower().partition("/")
    host_labels = host.split(".")
    segments = [s for s in path.split("/") if s]
    subpaths_only = bool(segments) and segments[-1] == "*"
    if subpaths_only:
        segments = segments[:-1]
    literal_labels = sum("*" not in label for label in host_labels)
    literal_segments = sum("*" not in s for s in segments)
    return _Route(
        app=app,
        host_parts=tuple(_part_pattern(label, _LABEL) for label in host_labels),
        path_parts=tuple(_part_pattern(s, _SEGMENT) for s in segments),
        subpaths_only=subpaths_only,
        # Last, as a tie-break: "app-*.example.com" is more specific than "*.example.com".
        specificity=(
            literal_labels,
            len(segments) + subpaths_only,
            literal_segments,
            len(host) - host.count("*"),
        ),
    )


def split_host(host_header: str) -> str:
    """The host name of a Host header value, lower-case, without a port; "" if it is not a
    valid host[:port] (the caller refuses the request)."""
    match = _HOST.match(host_header.strip().lower())
    if match is None:
        return ""
    return match.group(1) or match.group(2)


def is_ambiguous_path(path: str) -> bool:
    """A decoded path with "." or ".." segments (with path parameters too: "..;x" is ".." to
    Tomcat and a name to most others) or a backslash. Browsers never send these; upstreams
    disagree on how to read them, so such a request could be judged against one app's policy
    and served as another's path. Refused rather than guessed at."""
    if "\\" in path:
        return True
    return any(segment.split(";", 1)[0] in (".", "..") for segment in path.split("/"))


# RFC 9112 3.2.1 origin-form: an absolute path, then the query, as printable ASCII. No "#":
# a fragment is never sent (RFC 9110 7.1) and means nothing in a WebSocket URI (RFC 6455 3).
_ORIGIN_FORM_PATH = re.compile(rb"/[\x21-\x22\x24-\x7e]*\Z")
_ORIGIN_FORM_QUERY = re.compile(rb"[\x21-\x22\x24-\x7e]*\Z")


def is_origin_form(raw_path: bytes, query: bytes) -> bool:
    """A request target (as the server split it: raw path, query) in origin-form. Anything
    else, an absolute-form or `*` target, a "#" or a byte outside printable ASCII, could be
    matched to one app as written and reach the upstream as another path once a client library
    rebuilds it (`/admin#` is the segment "admin#" here and `/admin` there): refused. Uvicorn's
    HTTP parser reduces an HTTP target to its path itself; its WebSocket handshake leaves the
    target as the client wrote it, so the gateway checks it."""
    return bool(_ORIGIN_FORM_PATH.match(raw_path) and _ORIGIN_FORM_QUERY.match(query))


class AppDirectory:
    """Finds the app for a (host, path); built once per configuration."""

    def __init__(self, apps: Iterable[App]):
        routes = sorted((_route(app) for app in apps), key=lambda r: r.specificity, reverse=True)
        self._routes = routes
        self._exact_host: dict[str, list[_Route]] = {}
        self._wild: list[_Route] = []
        for route in routes:
            host = route.app.domain.lower().partition("/")[0]
            if "*" in host:
                self._wild.append(route)
            else:
                self._exact_host.setdefault(host, []).append(route)

    def match(self, host: str, path: str) -> App | None:
        """The most specific app covering this host (no port) and path."""
        # Both compare case-insensitively: the config stores `domain` (path included) in lower
        # case, so a request for "/Admin" must still find the "example.com/admin" app.
        host = host.lower()
        labels = host.split(".")
        segments = _segments(path.lower())
        for route in self._exact_host.get(host, ()):
            if route.matches(labels, segments):
                return route.app
        for route in self._wild:
            if route.matches(labels, segments):
                return route.app
        return None

    def hosts(self) -> set[str]:
        """Every literal app host (for `returnTo` checks)."""
        return set(self._exact_host)

    def find_by_aud(self, aud: str) -> App | None:
        return next((r.app for r in self._routes if r.app.aud == aud), None)
