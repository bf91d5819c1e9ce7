"""The store's GET on the wire: the pipelined one (`resp.py`) and redis-py's, against a real
redis-server and against `FakeRedis`, a RESP server written here that records the exact bytes it
is sent and answers each key as scripted (a value, nil, an error, late, or by hanging up).

What holds for both `[gateway] session_reads` settings is tested through `RedisStore.get`, the
one caller: a failure is `StoreUnavailableError`, never a stale or someone else's value, and the
next call reconnects. What only the pipeline does (the bytes it writes, pipelining, the
handshake) is tested on `PipelinedGet` itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import redis
from redis_server import free_port

from gateway.config import SessionReads
from gateway.errors import StoreUnavailableError
from gateway.state.store.redis import RedisStore
from gateway.state.store.resp import Endpoint, PipelinedGet, RespError
from gateway.state.store.tracking import TrackedGet

TIMEOUT = 0.3  # seconds the readers here wait for Redis
READS: list[SessionReads] = ["tracked", "pipelined", "redis-py"]

Writer = asyncio.StreamWriter
Script = bytes | Callable[[Writer], Awaitable[None]]  # the reply's bytes, or what to do instead


@dataclass
class FakeRedis:
    """Answers GET from `replies` (nil when absent), anything else +OK (PING: +PONG).

    `received[n]` is every byte connection n (from 0) sent; `commands`, each command's words
    with its connection. With `batch` > 0 a connection answers nothing until that many of its
    commands are in; with `mute`, nothing at all.
    """

    url: str = ""
    port: int = 0
    replies: dict[bytes, Script] = field(default_factory=dict)
    received: list[bytearray] = field(default_factory=list)
    commands: list[tuple[int, list[bytes]]] = field(default_factory=list)
    closed: list[asyncio.Event] = field(default_factory=list)  # the client closed connection n
    batch: int = 0
    mute: bool = False
    refuse: dict[bytes, bytes] = field(default_factory=dict)  # a command's name: its error reply
    _writers: list[Writer] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        number = len(self.received)
        self.received.append(bytearray())
        self.closed.append(asyncio.Event())
        self._writers.append(writer)
        pending: list[list[bytes]] = []
        try:
            while True:
                words = await self._command(reader, number)
                self.commands.append((number, words))
                pending.append(words)
                if self.mute or len(pending) < self.batch:
                    continue
                for words in pending:
                    if not await self._answer(words, writer):
                        return
                pending.clear()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed[number].set()
        finally:
            writer.close()

    async def _command(self, reader: asyncio.StreamReader, number: int) -> list[bytes]:
        async def line() -> bytes:
            data = await reader.readuntil(b"\r\n")
            self.received[number] += data
            return data[:-2]

        words = []
        for _ in range(int((await line())[1:])):
            size = int((await line())[1:])
            data = await reader.readexactly(size + 2)
            self.received[number] += data
            words.append(data[:-2])
        return words

    async def _answer(self, words: list[bytes], writer: Writer) -> bool:
        """Whether the connection stays open."""
        name = words[0].upper()
        if name in self.refuse:
            writer.write(self.refuse[name])
            return True
        if name != b"GET":
            writer.write(b"+PONG\r\n" if name == b"PING" else b"+OK\r\n")
            return True
        script = self.replies.get(words[1], b"$-1\r\n")
        if isinstance(script, bytes):
            writer.write(script)
        else:
            await script(writer)
        await writer.drain()
        return not writer.is_closing()

    def close(self) -> None:
        for writer in self._writers:
            writer.close()


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


async def hang_up(writer: Writer) -> None:
    writer.close()


def late(value: bytes, after: asyncio.Event) -> Callable[[Writer], Awaitable[None]]:
    """The reply, once `after` is set: too late for a caller who waits TIMEOUT."""

    async def answer(writer: Writer) -> None:
        await after.wait()
        writer.write(bulk(value))

    return answer


@pytest.fixture
async def fake() -> AsyncIterator[FakeRedis]:
    server = FakeRedis()
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    server.port = listening.sockets[0].getsockname()[1]
    server.url = f"redis://127.0.0.1:{server.port}/0"
    yield server
    server.close()
    listening.close()


@pytest.fixture(params=READS)
def reads(request: pytest.FixtureRequest) -> SessionReads:
    """The `[gateway] session_reads` setting: each, in turn."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def store_at(reads: SessionReads) -> AsyncIterator[Callable[..., RedisStore]]:
    """Stores for a URL with `reads` (and TIMEOUT unless told), closed after the test."""
    made: list[RedisStore] = []

    def make(url: str, timeout: float = TIMEOUT) -> RedisStore:
        made.append(RedisStore.from_url(url, session_reads=reads, timeout=timeout))
        return made[-1]

    yield make
    for store in made:
        await store.close()


# -- both settings, against a real Redis and against the fake


@pytest.fixture(params=["redis-server", "fake"])
def server(request: pytest.FixtureRequest) -> Callable[[dict[bytes, bytes]], str]:
    """Something that serves these keys (as values stored, or as scripted replies); its URL."""
    if request.param == "fake":
        fake: FakeRedis = request.getfixturevalue("fake")

        def scripted(values: dict[bytes, bytes]) -> str:
            fake.replies.update({key: bulk(value) for key, value in values.items()})
            return fake.url

        return scripted
    url: str = request.getfixturevalue("redis_url")

    def stored(values: dict[bytes, bytes]) -> str:
        with redis.Redis.from_url(url) as client:
            client.mset(values)
        return url

    return stored


async def test_a_value_and_a_nil(
    server: Callable[[dict[bytes, bytes]], str], store_at: Callable[..., RedisStore]
) -> None:
    store = store_at(server({b"session:1": b"\x00record\r\n\xff", b"empty": b""}))
    assert await store.get("session:1") == b"\x00record\r\n\xff"
    assert await store.get("empty") == b""
    assert await store.get("absent") is None


@pytest.mark.parametrize(
    "reply",
    [
        b"-ERR unknown command\r\n",
        b"-NOAUTH Authentication required.\r\n",
        b"-MOVED 3999 127.0.0.1:6381\r\n",
        b"-LOADING Redis is loading the dataset in memory\r\n",
        b":1\r\n",  # not a GET's reply at all
        b"*1\r\n$1\r\nx\r\n",
    ],
    ids=["err", "noauth", "moved", "loading", "integer", "array"],
)
async def test_a_reply_that_is_no_value_is_unavailable(
    fake: FakeRedis, store_at: Callable[..., RedisStore], reply: bytes
) -> None:
    fake.replies[b"k"] = reply
    fake.replies[b"other"] = bulk(b"fine")
    store = store_at(fake.url)
    with pytest.raises(StoreUnavailableError) as caught:
        await store.get("k")
    assert isinstance(caught.value.__cause__, RespError)
    assert await store.get("other") == b"fine"  # and the store still serves


async def test_a_real_error_reply_is_unavailable(
    redis_url: str, store_at: Callable[..., RedisStore]
) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.sadd("a-set", "m")
        client.set("fine", "value")
        # An ACL user that may not GET: Redis answers -NOPERM (after AUTH with a username).
        client.acl_setuser(
            "no-get",
            enabled=True,
            passwords=["+pw"],
            keys=["*"],
            categories=["+@all"],
            commands=["-get"],
        )
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    try:
        store = store_at(redis_url)
        with pytest.raises(StoreUnavailableError, match="WRONGTYPE"):
            await store.get("a-set")
        assert await store.get("fine") == b"value"
        limited = store_at(f"redis://no-get:pw@127.0.0.1:{port}/0")
        with pytest.raises(StoreUnavailableError, match=r"NOPERM|no permissions"):
            await limited.get("fine")
        wrong = store_at(f"redis://no-get:wrong@127.0.0.1:{port}/0")
        with pytest.raises(StoreUnavailableError, match=r"WRONGPASS|invalid username-password"):
            await wrong.get("fine")
    finally:
        with redis.Redis.from_url(redis_url) as client:
            client.acl_deluser("no-get")


async def test_a_lost_connection_fails_what_waits_and_the_next_call_reconnects(
    fake: FakeRedis, store_at: Callable[..., RedisStore]
) -> None:
    never = asyncio.Event()
    fake.replies[b"slow"] = late(b"never seen", never)
    fake.replies[b"k"] = bulk(b"v")
    store = store_at(fake.url, timeout=5.0)
    assert await store.get("k") == b"v"  # connected
    waiting = [asyncio.create_task(store.get("slow")) for _ in range(3)]
    await asyncio.sleep(0.05)
    dialled = len(fake.received)
    fake.close()  # Redis goes away with the GETs in flight: they fail at once, not by timeout
    async with asyncio.timeout(2):
        results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, StoreUnavailableError) for r in results), results
    assert await store.get("k") == b"v"  # dialled again
    assert len(fake.received) > dialled
    never.set()


async def test_a_late_reply_never_answers_the_next_caller(
    fake: FakeRedis, store_at: Callable[..., RedisStore]
) -> None:
    too_late = asyncio.Event()
    fake.replies[b"alice"] = late(b"alice's session", too_late)
    fake.replies[b"bob"] = bulk(b"bob's session")
    store = store_at(fake.url)
    with pytest.raises(StoreUnavailableError):
        await store.get("alice")  # times out
    # Enough callers to land on every connection the store keeps, alice's too if it kept it.
    asking = [asyncio.create_task(store.get("bob")) for _ in range(4)]
    await asyncio.sleep(0.05)
    too_late.set()  # alice's reply arrives now, on the connection it was asked on
    for result in await asyncio.gather(*asking, return_exceptions=True):
        assert result == b"bob's session" or isinstance(result, StoreUnavailableError)
    assert await store.get("bob") == b"bob's session"


async def test_a_cancelled_caller_s_reply_never_answers_the_next_one(
    fake: FakeRedis, store_at: Callable[..., RedisStore]
) -> None:
    answer = asyncio.Event()
    fake.replies[b"alice"] = late(b"alice's session", answer)
    fake.replies[b"bob"] = bulk(b"bob's session")
    store = store_at(fake.url)
    asking = asyncio.create_task(store.get("alice"))
    await asyncio.sleep(0.05)
    asking.cancel()  # the browser went away while its session was being read
    bobs = [asyncio.create_task(store.get("bob")) for _ in range(4)]
    await asyncio.sleep(0.05)
    answer.set()
    assert await asyncio.gather(*bobs) == [b"bob's session"] * 4


async def test_concurrent_callers_each_get_their_own_value(
    server: Callable[[dict[bytes, bytes]], str], store_at: Callable[..., RedisStore]
) -> None:
    values = {f"k{i}".encode(): f"value-{i}".encode() * (i % 5 + 1) for i in range(200)}
    # 201 callers at once open redis-py's whole pool: a loaded machine takes longer than
    # TIMEOUT to accept that many connections, and this test is about values, not time.
    store = store_at(server(values), timeout=5.0)
    keys = [key.decode() for key in values]
    got = await asyncio.gather(*(store.get(key) for key in [*keys, "absent"]))
    assert got == [*values.values(), None]


async def test_nothing_listening_is_unavailable(store_at: Callable[..., RedisStore]) -> None:
    store = store_at(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreUnavailableError):
        await store.get("k")


# -- the pipeline itself: its bytes, its pipelining, its handshake


async def test_the_pipeline_writes_a_get_exactly(fake: FakeRedis) -> None:
    fast = PipelinedGet(Endpoint(port=fake.port), size=1, timeout=TIMEOUT)
    try:
        assert await fast.get("sessión:1") is None
    finally:
        fast.close()
    key = "sessión:1".encode()
    assert bytes(fake.received[0]) == b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key)


async def test_the_handshake_authenticates_and_selects(fake: FakeRedis) -> None:
    endpoint = Endpoint(port=fake.port, db=3, username="gw", password="p@ss")
    fast = PipelinedGet(endpoint, size=1, timeout=TIMEOUT)
    try:
        await fast.get("k")
    finally:
        fast.close()
    assert [words for _, words in fake.commands] == [
        [b"AUTH", b"gw", b"p@ss"],
        [b"SELECT", b"3"],
        [b"GET", b"k"],
    ]


async def test_gets_are_pipelined_and_answered_in_order(fake: FakeRedis) -> None:
    fake.replies.update({f"k{i}".encode(): bulk(b"v%d" % i) for i in range(50)})
    fake.batch = 25  # answers only once each connection's 25 are in: no GET waits for another
    fast = PipelinedGet(Endpoint(port=fake.port), size=2, timeout=2.0)
    try:
        got = await asyncio.gather(*(fast.get(f"k{i}") for i in range(50)))
    finally:
        fast.close()
    assert got == [b"v%d" % i for i in range(50)]
    assert len(fake.received) == 2
    # Round robin over the two connections, each in the order the callers asked.
    for number in (0, 1):
        on_it = [words[1] for n, words in fake.commands if n == number]
        assert on_it == [f"k{i}".encode() for i in range(number, 50, 2)]


async def test_a_reply_split_at_every_byte_is_whole(fake: FakeRedis) -> None:
    value = b"a\r\nvalue $3\r\n with RESP in it"

    async def drip(writer: Writer) -> None:
        for byte in bulk(value):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0)

    fake.replies[b"k"] = drip
    fast = PipelinedGet(Endpoint(port=fake.port), size=1, timeout=2.0)
    try:
        assert await fast.get("k") == value
    finally:
        fast.close()


async def test_a_reply_nobody_asked_for_drops_the_connection(fake: FakeRedis) -> None:
    fake.replies[b"k"] = bulk(b"v") + bulk(b"unasked")
    fast = PipelinedGet(Endpoint(port=fake.port), size=1, timeout=TIMEOUT)
    try:
        assert await fast.get("k") == b"v"
        async with asyncio.timeout(2):
            await fake.closed[0].wait()  # out of step: its later replies could be anyone's
        assert await fast.get("k") == b"v"
    finally:
        fast.close()
    assert len(fake.received) == 2


async def test_a_handshake_that_is_never_answered_leaves_no_connection_open(
    fake: FakeRedis,
) -> None:
    fake.mute = True
    fast = PipelinedGet(Endpoint(port=fake.port, password="pw"), size=1, timeout=TIMEOUT)
    try:
        with pytest.raises(RespError, match="cannot connect"):
            await fast.get("k")
        async with asyncio.timeout(2):
            await fake.closed[0].wait()  # it used to stay open, one per failed request
    finally:
        fast.close()


# -- tracked reads from a Redis that will not track


@pytest.mark.parametrize(
    "refused",
    [
        {b"HELLO": b"-ERR unknown command 'HELLO', with args beginning with: '3' \r\n"},
        {b"HELLO": b"-NOAUTH Authentication required.\r\n"},  # Redis 5 with a password
        {b"CLIENT": b"-ERR Unknown subcommand or wrong number of arguments for 'TRACKING'\r\n"},
        {b"CLIENT": b"-NOPERM this user has no permissions to run the 'client' command\r\n"},
    ],
)
async def test_tracked_reads_from_a_redis_that_cannot_track_are_plain_gets(
    fake: FakeRedis, caplog: pytest.LogCaptureFixture, refused: dict[bytes, bytes]
) -> None:
    fake.refuse.update(refused)
    fake.replies[b"session:a"] = bulk(b"alice")
    tracked = TrackedGet(Endpoint(port=fake.port, password="pw"), kept="session:", timeout=TIMEOUT)
    try:
        assert await asyncio.gather(*(tracked.get("session:a") for _ in range(3))) == [b"alice"] * 3
        fake.replies[b"session:a"] = bulk(b"changed")  # no copy: every read asks Redis
        assert await tracked.get("session:a") == b"changed"
    finally:
        tracked.close()
    hellos = [words for _, words in fake.commands if words[0] == b"HELLO"]
    assert len(hellos) == 1  # asked once, not at every read
    gets = [words for _, words in fake.commands if words[0] == b"GET"]
    assert len(gets) == 4
    warnings = [r.getMessage() for r in caplog.records if r.name == "gateway.store"]
    assert len(warnings) == 1
    assert "session reads are plain GETs" in warnings[0]


async def test_tracked_reads_with_a_refused_password_fail_closed(fake: FakeRedis) -> None:
    fake.refuse[b"HELLO"] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    fake.replies[b"session:a"] = bulk(b"alice")
    tracked = TrackedGet(Endpoint(port=fake.port, password="bad"), kept="session:", timeout=TIMEOUT)
    try:
        for _ in range(2):
            with pytest.raises(RespError, match="WRONGPASS"):
                await tracked.get("session:a")
    finally:
        tracked.close()
    assert not [words for _, words in fake.commands if words[0] == b"GET"]
    # Not taken for a Redis that cannot track: each read tries the handshake again.
    assert len([words for _, words in fake.commands if words[0] == b"HELLO"]) == 2
