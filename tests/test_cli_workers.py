"""How many workers `gateway serve` runs (a real process under a narrowed CPU affinity): one per
CPU it may use when `--workers` is absent (SPEC 1), the number given otherwise.

Workers are counted twice over: the processes uvicorn spawns (read from /proc; with one worker
uvicorn serves from the `gateway serve` process itself and spawns none) and the "Started server
process" line each worker logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from harness import free_port

ALLOWED = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def write_config(path: Path, port: int, store: str) -> Path:
    path.write_text(
        textwrap.dedent(f"""
            [gateway]
            public_url = "http://127.0.0.1:{port}"
            cookie_secret = "workers-test-cookie-secret-0123456789"
            store = "{store}"
            cookie_secure = false

            [[identity_providers]]
            id = "okta"
            name = "Okta"
            type = "okta"
            [identity_providers.config]
            client_id = "0oaclient"
            client_secret = "workers-test-client-secret"
            okta_account = "https://dev-123.okta.com"
        """)
    )
    return path


def spawned_workers(pid: int) -> list[int]:
    """The worker processes uvicorn spawned under `pid` (not its multiprocessing helpers)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:  # the thread ended meanwhile
            continue
        for child in map(int, children):
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in command:
                found.append(child)
    return found


def wait_for_workers(process: subprocess.Popen[bytes], url: str, expected: int) -> None:
    """Until the gateway answers and `expected` workers are spawned (none for one worker)."""
    spawned = 0 if expected == 1 else expected
    deadline = time.monotonic() + 60  # each worker imports the app; the suite shares the CPUs
    while time.monotonic() < deadline:
        assert process.poll() is None, f"gateway serve exited {process.returncode}"
        try:
            answers = httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            answers = False
        if answers and len(spawned_workers(process.pid)) == spawned:
            return
        time.sleep(0.2)
    raise AssertionError(
        f"expected {spawned} spawned workers, found {len(spawned_workers(process.pid))}"
    )


@pytest.mark.skipif(not ALLOWED or not Path("/proc").is_dir(), reason="needs Linux affinity")
@pytest.mark.parametrize(
    ("cpus", "flag", "expected", "memory"),
    [
        pytest.param(1, [], 1, False, id="1 CPU, no --workers"),
        pytest.param(2, [], 2, False, id="2 CPUs, no --workers"),
        pytest.param(1, ["--workers", "2"], 2, False, id="1 CPU, --workers 2"),
        # the memory store lives in one process: sessions made by one worker are unknown to
        # the others, so it is served by one unless told otherwise
        pytest.param(2, [], 1, True, id="2 CPUs, memory store"),
    ],
)
def test_serve_runs_one_worker_per_cpu_it_may_use_unless_told(
    tmp_path: Path,
    cpus: int,
    flag: list[str],
    expected: int,
    memory: bool,
    request: pytest.FixtureRequest,
) -> None:
    if len(ALLOWED) < cpus:
        pytest.skip(f"this process may use {len(ALLOWED)} CPU(s)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = "memory" if memory else request.getfixturevalue("redis_url")
    config = write_config(tmp_path / "gateway.toml", port, store)
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
    with (tmp_path / "stdout").open("wb") as stdout, (tmp_path / "stderr").open("wb") as stderr:
        process = subprocess.Popen(
            [*command, "--port", str(port), *flag],
            stdout=stdout,
            stderr=stderr,
            # what `taskset` does: the CPUs the process (and so its workers) may run on
            preexec_fn=lambda: os.sched_setaffinity(0, ALLOWED[:cpus]),
        )
        try:
            wait_for_workers(process, url, expected)
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    errors = (tmp_path / "stderr").read_text()
    assert returncode == 0, errors
    lines = [json.loads(line) for line in (tmp_path / "stdout").read_text().splitlines()]
    started = [e for e in lines if e["message"].startswith("Started server process")]
    assert len(started) == expected


def connections_per_worker(workers: list[int], port: int) -> dict[int, int]:
    """How many established connections to `port` each worker process holds, from /proc."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01":  # TCP_ESTABLISHED
                    established.add(fields[9])  # the socket's inode
    held = {}
    for pid in workers:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
        held[pid] = len(inodes & established)
    return held


def open_connections(port: int, count: int) -> list[socket.socket]:
    """`count` keep-alive connections opened at once, each with one answered request."""
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    for conn in conns:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    for conn in conns:
        conn.settimeout(30)
        assert conn.recv(4096).startswith(b"HTTP/1.1 200")
    return conns


def wait_for_spread(workers: list[int], port: int, total: int) -> dict[int, int]:
    """The connections per worker once all `total` are accepted (each answered one request,
    but /proc may lag the last close or accept by a moment)."""
    deadline = time.monotonic() + 10
    held = connections_per_worker(workers, port)
    while sum(held.values()) != total and time.monotonic() < deadline:
        time.sleep(0.1)
        held = connections_per_worker(workers, port)
    return held


def wait_for_startups(log: Path, count: int) -> None:
    """Until `count` workers logged that their app started (then they accept)."""
    deadline = time.monotonic() + 60
    while log.read_text().count("Application startup complete") < count:
        assert time.monotonic() < deadline, "the replacement worker did not start"
        time.sleep(0.1)
    time.sleep(0.2)  # from the log line to its listener: a few instructions


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux /proc")
def test_workers_share_connections_evenly_and_a_restarted_worker_takes_its_share(
    tmp_path: Path, redis_url: str
) -> None:
    # Opened at once, connections went to whichever worker was awake: 21 and 11 of 32. Each
    # worker now leaves new connections to the other while it holds more.
    port = free_port()
    config = write_config(tmp_path / "gateway.toml", port, redis_url)
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
    with (tmp_path / "stdout").open("wb") as stdout, (tmp_path / "stderr").open("wb") as stderr:
        process = subprocess.Popen(
            [*command, "--port", str(port), "--workers", "2"], stdout=stdout, stderr=stderr
        )
        conns: list[socket.socket] = []
        try:
            wait_for_workers(process, f"http://127.0.0.1:{port}", 2)
            wait_for_startups(tmp_path / "stdout", 2)  # both serve, not just the one that answered
            workers = spawned_workers(process.pid)
            conns = open_connections(port, 32)
            held = wait_for_spread(workers, port, 32)
            assert sorted(held.values()) in ([16, 16], [15, 17], [14, 18]), held

            # A worker that dies is replaced, and the replacement takes the dead one's place in
            # the balance (its slot): connections opened afresh are shared with it evenly.
            for conn in conns:
                conn.close()
            os.kill(workers[0], signal.SIGKILL)
            wait_for_workers(process, f"http://127.0.0.1:{port}", 2)
            wait_for_startups(tmp_path / "stdout", 3)  # the replacement serves
            current = spawned_workers(process.pid)
            assert workers[0] not in current
            wait_for_spread(current, port, 0)  # the old connections are gone
            conns = open_connections(port, 32)
            held = wait_for_spread(current, port, 32)
            assert sorted(held.values()) in ([16, 16], [15, 17], [14, 18]), held
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=30)
        finally:
            for conn in conns:
                conn.close()
            if process.poll() is None:  # failed: its workers would outlive a killed parent
                for worker in spawned_workers(process.pid):
                    os.kill(worker, signal.SIGKILL)
                process.kill()
                process.wait()
    assert returncode == 0, (tmp_path / "stderr").read_text()
