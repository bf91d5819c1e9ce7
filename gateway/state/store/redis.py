"""`RedisStore`: the store in Redis (>= 6.2), shared by every gateway instance.

One client with a bounded pool, made once at startup by `RedisStore.from_url`: a plain Redis
(`redis://`, `rediss://`, `unix://`), the master that Sentinel names
(`redis+sentinel://[:password@]host:port[,host:port...]/<service>[/<db>]`), or a Cluster
(`redis+cluster://[user:password@]host:port[,host:port...]`). Every command touches one key
(multi-key work is single-key scripts, or DEL, which the Cluster client splits per slot), so
Cluster takes every operation without hash tags. Every method
turns a Redis failure (refused, timed out, loading, read-only, out of memory, ...) into
`StoreUnavailableError`, so callers fail closed. TTLs go to Redis in whole milliseconds.

GET, the one command on the hot path, goes through a `KeyReader`: by default (`[gateway]
session_reads = "pipelined"`, plain TCP and unix sockets) the lean pipelined GET of `resp.py`;
with `session_reads = "tracked"` (the same sockets) `tracking.py`'s, which keeps a fresh local copy
of the session records it read (Redis client-side caching) and so answers most session reads
without a round trip; or redis-py's own (`RedisPyGet`: `session_reads = "redis-py"`, and always
for TLS, Sentinel and Cluster). All pass `tests/test_resp_wire.py`.
"""

from __future__ import annotations

import builtins
import math
from typing import Protocol, cast
from urllib.parse import unquote

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from gateway.config import SessionReads
from gateway.errors import StoreUnavailableError
from gateway.state.sessions import _SESSION_KEY as SESSION_KEY
from gateway.state.store.resp import Endpoint, PipelinedGet, RespError
from gateway.state.store.tracking import TrackedGet

_TIMEOUT = 2.0  # seconds to connect, and for each command (the default of `from_url`)
_MAX_CONNECTIONS = 50
_POOL_TIMEOUT = 2.0  # seconds to wait for a free pooled connection
_HEALTH_CHECK_INTERVAL = 30  # PING a connection idle this long before reusing it

# Redis 6.2 has no `PEXPIRE ... GT`, so lengthen-only expiry is a script. PTTL answers -2 for a
# missing key and -1 for one without expiry (which must stay without).
_ADD_TO_SET = """
local ttl = tonumber(ARGV[2])
local current = redis.call('PTTL', KEYS[1])
redis.call('SADD', KEYS[1], ARGV[1])
if current == -2 or (current >= 0 and current < ttl) then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
"""

# One key, so a Cluster takes it (a MULTI pipeline is not what redis-py's Cluster client does).
_PUSH_CAPPED = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]))
"""

# A counter that expires ARGV[1] milliseconds after its first count; later counts keep that.
_COUNT = """
local total = redis.call('INCR', KEYS[1])
if total == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return total
"""

# Compare-and-set: ARGV[1] "1" when the key must be absent, else ARGV[2] is the expected value;
# ARGV[3] "1" deletes, else ARGV[4] is stored, with ARGV[5] milliseconds of life ("0": none).
_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[1])
elseif ARGV[5] == '0' then
  redis.call('SET', KEYS[1], ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
end
return 1
"""


def _hosts(url: str) -> tuple[str, str, list[tuple[str, int]], str]:
    """(username, password, [(host, port)...], path) of a URL with a comma-separated host list
    (urllib cannot parse those)."""
    rest = url.split("://", 1)[1]
    netloc, _, path = rest.partition("/")
    credentials, _, hosts = netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    nodes = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        nodes.append((unquote(name or host), int(port) if name else 6379))
    return unquote(username), unquote(password), nodes, path


def _cluster_client(url: str, timeout: float) -> RedisCluster:
    username, password, nodes, _ = _hosts(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        username=username or None,
        password=password or None,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        max_connections=_MAX_CONNECTIONS,
        protocol=2,
    )


def _sentinel_client(url: str, timeout: float) -> tuple[Redis, list[Redis]]:
    _, password, nodes, path = _hosts(url)
    service, _, db = path.partition("/")
    if not service:
        raise ValueError("redis+sentinel:// needs the master's service name as its path")
    sentinel = Sentinel(
        nodes,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        protocol=2,
    )
    master: Redis = sentinel.master_for(
        service,
        db=int(db or 0),
        password=password or None,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        protocol=2,
    )
    return master, list(sentinel.sentinels)


def _fast_reads(url: str, reads: SessionReads, timeout: float) -> KeyReader | None:
    """The tracked or the pipelined GET for plain TCP and unix-socket URLs; TLS (rediss://) and
    `reads = "redis-py"` stay on redis-py (None)."""
    options = parse_url(url)
    if reads == "redis-py" or ("connection_class" in options and "path" not in options):
        return None
    endpoint = Endpoint(
        host=options.get("host", "127.0.0.1"),
        port=int(options.get("port", 6379)),
        unix_path=options.get("path", ""),
        db=int(options.get("db", 0)),
        username=options.get("username") or "",
        password=options.get("password") or "",
    )
    if reads == "tracked":
        # Only session records: they carry their own expiry, checked on every read.
        return TrackedGet(endpoint, kept=SESSION_KEY, timeout=timeout)
    return PipelinedGet(endpoint, timeout=timeout)


# OSError covers socket errors redis-py lets through, and the builtin TimeoutError.
_ERRORS = (redis_errors.RedisError, OSError)


class KeyReader(Protocol):
    """How `RedisStore.get` reads a key: `get` gives the value or None, and raises `RespError`
    on any failure (refused, lost, timed out, an error reply), never a wrong value (the tracked
    reader's copy of a session record is at most `tracking._FRESH` older than Redis's last word
    on its connection); `close` drops the connections it owns."""

    async def get(self, key: str) -> bytes | None: ...

    def close(self) -> None: ...


class RedisPyGet:
    """`KeyReader` on the store's redis-py client (its pool, its timeouts, no retries)."""

    __slots__ = ("_client",)

    def __init__(self, client: Redis | RedisCluster) -> None:
        self._client = client

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._client.get(key)
        except _ERRORS as exc:
            raise RespError(str(exc) or repr(exc)) from exc
        if value is not None and not isinstance(value, bytes):
            raise RespError("unexpected reply to GET")  # as the pipeline: never a non-value
        return value

    def close(self) -> None:
        """Nothing of its own: the client is the store's, closed with it."""


class RedisStore:
    """The `Store` protocol on a `redis.asyncio` client; it owns the client and its pool."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        reads: KeyReader | None = None,
        sentinels: list[Redis] | None = None,
    ) -> None:
        self._client = client
        self._reads = reads if reads is not None else RedisPyGet(client)
        self._sentinels = sentinels or []  # the Sentinel clients that name the master
        self._add_to_set = client.register_script(_ADD_TO_SET)
        self._compare_and_set = client.register_script(_COMPARE_AND_SET)
        self._push_capped = client.register_script(_PUSH_CAPPED)
        self._count = client.register_script(_COUNT)

    @classmethod
    def from_url(
        cls, url: str, *, session_reads: SessionReads = "pipelined", timeout: float = _TIMEOUT
    ) -> RedisStore:
        """A store for a redis://, rediss:// or unix:// URL (or Sentinel, Cluster, above).

        `session_reads` picks the GET (module docstring); `timeout` is seconds to connect and
        for each command.

        Query parameters in the URL (`?max_connections=100`) override the defaults here. There
        are no client-side retries: redis-py's retry policy belongs to the pool, not to a
        command, and a retried GETDEL, SET NX or DEL whose first attempt reached Redis would
        give a wrong answer. The pool replaces connections the server closed (a Redis restart)
        before it hands them out, so those cost no failed call.
        """
        if url.startswith("redis+cluster://"):
            return cls(_cluster_client(url, timeout))
        if url.startswith("redis+sentinel://"):
            master, sentinels = _sentinel_client(url, timeout)
            return cls(master, sentinels=sentinels)
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=_MAX_CONNECTIONS,
            timeout=_POOL_TIMEOUT,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            health_check_interval=_HEALTH_CHECK_INTERVAL,
            retry=Retry(NoBackoff(), retries=0),
            # RESP2: over RESP3, redis-py 8 turns on maintenance notifications, and with them on
            # its pool skips that check: every pooled connection then fails once after a restart.
            protocol=2,
        )
        return cls(Redis.from_pool(pool), _fast_reads(url, session_reads, timeout))

    async def get(self, key: str) -> bytes | None:
        """One GET, through the `KeyReader`: the hot path's one Redis round trip."""
        try:
            return await self._reads.get(key)
        except RespError as exc:
            raise _unavailable("GET", exc) from exc

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        try:
            if ttl is None:
                await self._client.set(key, value)
            else:
                await self._client.set(key, value, px=_milliseconds(ttl))
        except _ERRORS as exc:
            raise _unavailable("SET", exc) from exc

    async def set_if_absent(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        px = None if ttl is None else _milliseconds(ttl)
        try:
            return bool(await self._client.set(key, value, nx=True, px=px))
        except _ERRORS as exc:
            raise _unavailable("SET NX", exc) from exc

    async def take(self, key: str) -> bytes | None:
        try:
            return cast("bytes | None", await self._client.getdel(key))
        except _ERRORS as exc:
            raise _unavailable("GETDEL", exc) from exc

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        try:
            return await self._client.delete(*keys)
        except _ERRORS as exc:
            raise _unavailable("DEL", exc) from exc

    async def add_to_set(self, key: str, member: str, ttl: float) -> None:
        try:
            await self._add_to_set(keys=[key], args=[member, _milliseconds(ttl)])
        except _ERRORS as exc:
            raise _unavailable("EVALSHA add_to_set", exc) from exc

    async def set_members(self, key: str) -> builtins.set[str]:
        try:
            members = cast("set[bytes]", await self._client.smembers(key))
        except _ERRORS as exc:
            raise _unavailable("SMEMBERS", exc) from exc
        return {member.decode() for member in members}

    async def remove_from_set(self, key: str, *members: str) -> None:
        if not members:
            return
        try:
            await self._client.srem(key, *members)
        except _ERRORS as exc:
            raise _unavailable("SREM", exc) from exc

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes | None, ttl: float | None = None
    ) -> bool:
        args = [
            b"1" if expected is None else b"0",
            expected or b"",
            b"1" if value is None else b"0",
            value or b"",
            b"0" if ttl is None else str(_milliseconds(ttl)).encode(),
        ]
        try:
            return bool(await self._compare_and_set(keys=[key], args=args))
        except _ERRORS as exc:
            raise _unavailable("EVALSHA compare_and_set", exc) from exc

    async def push_capped(self, key: str, value: bytes, limit: int) -> None:
        if limit < 1:
            raise ValueError("a capped list keeps at least one item")
        try:
            await self._push_capped(keys=[key], args=[value, limit - 1])
        except _ERRORS as exc:
            raise _unavailable("LPUSH/LTRIM", exc) from exc

    async def list_items(self, key: str, limit: int) -> list[bytes]:
        if limit <= 0:
            return []
        try:
            return cast("list[bytes]", await self._client.lrange(key, 0, limit - 1))
        except _ERRORS as exc:
            raise _unavailable("LRANGE", exc) from exc

    async def count(self, key: str, ttl: float) -> int:
        try:
            return int(await self._count(keys=[key], args=[_milliseconds(ttl)]))
        except _ERRORS as exc:
            raise _unavailable("INCR", exc) from exc

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except _ERRORS as exc:
            raise _unavailable("PING", exc) from exc

    async def close(self) -> None:
        self._reads.close()
        try:
            if isinstance(self._client, RedisCluster):
                await self._client.aclose()
            else:
                await self._client.aclose(close_connection_pool=True)
            for sentinel in self._sentinels:
                await sentinel.aclose(close_connection_pool=True)
        except _ERRORS as exc:
            raise _unavailable("close", exc) from exc


def _milliseconds(ttl: float) -> int:
    """A TTL in whole milliseconds, rounded up (the key lives at least `ttl`), at least 1."""
    return max(1, math.ceil(ttl * 1000))


def _unavailable(command: str, exc: BaseException) -> StoreUnavailableError:
    return StoreUnavailableError(
        "The gateway's store is not answering. Try again in a moment.",
        detail=f"Redis {command} failed: {exc}",
    )
