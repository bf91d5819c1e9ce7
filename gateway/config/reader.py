"""The config loader's table reader: `Reader` reads one table of a TOML file or of an admin API
JSON body, tracking its key path, the keys it used and every problem found, so that everything
wrong is reported at once with its key path (`apps[1].policies[0].include[2]: ...`). Its typed
getters (strings, URLs, durations, networks, nested tables...) are shared by every part of the
configuration (`gateway/config/__init__.py`, `idps.py`) and by the rules' parsing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from gateway.authz.rules import Network

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_IDENTIFIER = re.compile(r"[A-Za-z0-9._-]{1,64}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_MAX_DURATION = 87600 * 3600.0
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Go-style durations as Cloudflare writes them: "24h", "30m", "1h30m", "90s"."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"invalid duration {text!r} (use e.g. '24h', '30m', '1h30m')")
    return total


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a URL's hostname, lower case, IPv6 without brackets) is this machine:
    `localhost`, 127.0.0.0/8 or ::1. A name ending in ".localhost" is not: the gateway resolves
    it like any other, and a resolver may send it anywhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_secure_url(url: str) -> bool:
    """Whether `url` is https, or plain http to a loopback host (a local test): the only URLs a
    sign-in, what the gateway trusts, or what it tells of users may travel over."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(host))


T = TypeVar("T")


class Reader:
    """Reads one table, tracking its key path, the keys it used and every problem found.

    `plain_http_hosts`: hosts besides the loopback ones whose plain-http URLs `url(...,
    secure=True)` takes. Only `gateway demo` names one (its development IdP, reached over the
    network when it listens there); no configuration key can.
    """

    def __init__(
        self,
        data: Any,
        path: str,
        problems: list[str],
        env: Mapping[str, str],
        *,
        plain_http_hosts: frozenset[str] = frozenset(),
    ):
        self.path = path
        self.problems = problems
        self.env = env
        self.plain_http_hosts = plain_http_hosts
        self.data: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        if not isinstance(data, Mapping):
            self.problem("", "must be a table")
        self.known: set[str] = set()

    def key_path(self, key: str) -> str:
        if not key:
            return self.path or "<root>"
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.key_path(key)}: {message}")

    def raw(self, key: str) -> Any:
        self.known.add(key)
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return key in self.data

    def _typed(self, key: str, kinds: type | tuple[type, ...], what: str, default: T) -> Any:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) and bool not in (
            kinds if isinstance(kinds, tuple) else (kinds,)
        ):
            self.problem(key, f"must be {what}")
            return default
        if not isinstance(value, kinds):
            self.problem(key, f"must be {what}")
            return default
        return value

    def string(self, key: str, default: str = "", *, required: bool = False) -> str:
        if required and self.raw(key) in (None, ""):
            self.problem(key, "is required")
            return default
        return self._secret(key, self._typed(key, str, "a string", default))

    def identifier(self, key: str) -> str:
        """A required id. Ids end up in store keys, URLs and user uuids (`<idp>:<sub>`), so only
        letters, digits, ".", "_" and "-": one id can never read as another with a suffix."""
        value = self.string(key, required=True)
        if value and not _IDENTIFIER.fullmatch(value):
            self.problem(key, 'must be 1 to 64 letters, digits, ".", "_" or "-"')
        return value

    def _secret(self, key: str, value: str) -> str:
        match = _ENV_REF.match(value)
        if not match:
            return value
        name = match.group(1)
        if name not in self.env:
            self.problem(key, f"environment variable {name} is not set")
            return ""
        if not self.env[name]:
            # Set but empty is a deployment mistake, never a choice: an empty client secret or
            # admin token would otherwise pass as if given (leave an optional key out instead).
            self.problem(key, f"environment variable {name} is empty")
            return ""
        return self.env[name]

    def count(self, key: str, default: int) -> int:
        """A positive whole number."""
        value = self._typed(key, int, "a whole number", default)
        if value < 1:
            self.problem(key, "must be at least 1")
            return default
        return int(value)

    def boolean(self, key: str, default: bool) -> bool:
        return bool(self._typed(key, bool, "true or false", default))

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(key, "must be a list of strings")
            return ()
        return tuple(self._secret(key, v) for v in value)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.string(key, default)
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            self.problem(key, f"must be one of {allowed}, not {value!r}")
            return default
        return value

    def duration(self, key: str, default: float | None) -> float | None:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(key, "must be a duration such as '24h'")
            return default
        try:
            seconds = parse_duration(value) if isinstance(value, str) else float(value)
        except ValueError as exc:
            self.problem(key, str(exc))
            return default
        if not 0 < seconds <= _MAX_DURATION:
            self.problem(key, "must be positive and at most 87600h (ten years)")
            return default
        return seconds

    def url(
        self, key: str, *, required: bool = False, exact: bool = False, secure: bool = False
    ) -> str:
        """An absolute http(s) URL; a trailing "/" is dropped unless `exact` (an issuer is
        compared to the ID token's `iss` character for character). `secure`: `is_secure_url`
        (or plain http to one of `plain_http_hosts`)."""
        value = self.string(key, required=required)
        if value:
            try:
                parts = urlsplit(value)
                parts.port  # noqa: B018 - raises for a port out of 0-65535 or not a number
                valid = parts.scheme in ("https", "http") and bool(parts.hostname)
            except ValueError:  # e.g. "http://[::1" or "http://h:99999": urlsplit refuses it
                valid = False
            if not valid:
                self.problem(key, "must be an absolute https or http URL")
            elif (
                secure and not is_secure_url(value) and parts.hostname not in self.plain_http_hosts
            ):
                self.problem(key, "must be an https URL")
        return value if exact else value.rstrip("/")

    def network(self, key: str, text: str) -> Network | None:
        """An IP address or CIDR (host bits allowed: "192.0.2.7/24" is 192.0.2.0/24)."""
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            self.problem(key, f"invalid IP address or CIDR {text!r}")
            return None

    def table(self, key: str) -> Reader:
        value = self.raw(key)
        return self._child({} if value is None else value, self.key_path(key))

    def tables(self, key: str) -> list[Reader]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(key, "must be a list of tables")
            return []
        return [self._child(item, f"{self.key_path(key)}[{i}]") for i, item in enumerate(value)]

    def _child(self, data: Any, path: str) -> Reader:
        return Reader(data, path, self.problems, self.env, plain_http_hosts=self.plain_http_hosts)

    def finish(self) -> None:
        """Report every key of this table that nothing read: a typo must not pass silently."""
        for key in self.data:
            if key not in self.known:
                self.problem(key, "unknown key")
