"""Instructions per authenticated proxied request, counted by callgrind: a cost that does not
move with the load on the machine, where requests/s, p99 and even CPU seconds per request do.

The same set-up as `proxy_throughput.py` (a real Redis, nginx's small static answer, the demo's
development IdP, a signed-in user of the Engineering group), but one `gateway serve --workers 1`
runs under `valgrind --tool=callgrind` with instrumentation off. A fixed client (`--connections`
keep-alive connections, each sending its share of `--requests` one after another) warms it up,
then callgrind counts every instruction the process runs while the measured requests are served.

Session reads are `pipelined` unless told: the `tracked` copy is served only within 0.1 s of
Redis's last message, which under valgrind's slowdown is a handful of requests, so most tracked
reads here go to Redis as they rarely would at full speed; `proxy_throughput.py` compares the
two. Counts vary by a percent or two from run to run (how requests share a turn of the event
loop depends on timing), so compare trees within one run, and trust differences above that.

What it counts is user-space work only: system calls (a socket write, the Redis round trip of a
session read) cost kernel time that callgrind does not see, so a change that saves a system call
shows here only by what it saves or adds around it. Each `--tree` is a directory holding a
`gateway` package (a checkout or `git archive` of another commit) that is measured in turn, with
the same sign-in, for an A/B; the default is this checkout.

    python bench/instructions.py [--requests 400] [--connections 4]
                                 [--session-reads pipelined|tracked|redis-py]
                                 [--log-level warning|info] [--tree DIR ...]

Needs valgrind (callgrind_control comes with it), redis-server and nginx. A run takes minutes:
the start-up under valgrind is slow, the counted requests are not many.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from proxy_throughput import (
    APP_HOST,
    GATEWAY_COOKIE,
    free_ports,
    started,
    upstream_command,
    wait_for_port,
    write_config,
)
from signin import running_dev_idp, session_cookie

CHECKOUT = Path(__file__).resolve().parent.parent
WARM_UP = 40  # requests served before counting starts: pools, caches, lazily built objects


async def client(port: int, host: str, cookie: str, requests: int, connections: int) -> None:
    """`requests` GETs over `connections` keep-alive connections; each answer must be a 200."""
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\nCookie: {GATEWAY_COOKIE}={cookie}\r\n\r\n"

    async def one_connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(requests // connections):
            writer.write(request.encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200 "):
                raise SystemExit(f"the gateway answered {head[:40]!r}, not 200")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            if length is None:
                raise SystemExit("the benchmark's upstream answers with a Content-Length")
            await reader.readexactly(int(length.group(1)))
        writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))


def count(
    tree: Path, serve: list[str], args: argparse.Namespace, port: int, host: str, cookie: str
) -> int:
    """Instructions callgrind counted while `gateway serve` from `tree` served the requests."""
    with tempfile.TemporaryDirectory() as tmpdir:
        log = Path(tmpdir) / "callgrind.log"
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={tmpdir}/callgrind.out", f"--log-file={log}",
                   *serve]  # fmt: skip
        environment = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
        # Run from `tree`: `python -m` puts the working directory first on the import path, so
        # a run started in a checkout would import that checkout's `gateway` whatever the tree.
        with started(command, env=environment, cwd=tree, stdout=subprocess.DEVNULL) as gateway:
            wait_for_port(port, timeout=600, process=gateway)
            asyncio.run(client(port, host, cookie, WARM_UP, args.connections))
            control = ["callgrind_control", "--instr"]
            subprocess.run([*control, "on", str(gateway.pid)], check=True, capture_output=True)
            asyncio.run(client(port, host, cookie, args.requests, args.connections))
            subprocess.run([*control, "off", str(gateway.pid)], check=True, capture_output=True)
            # callgrind reports at exit, which takes valgrind a while: longer than `started`
            # waits before it kills.
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=300)
        collected = re.search(r"Collected : (\d+)", log.read_text(errors="replace"))
        if collected is None:
            raise SystemExit(f"callgrind reported no count:\n{log.read_text(errors='replace')}")
        return int(collected.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--session-reads", choices=("tracked", "pipelined", "redis-py"), default="pipelined"
    )
    parser.add_argument("--log-level", choices=("warning", "info"), default="warning")
    parser.add_argument(
        "--tree",
        type=Path,
        action="append",
        help="a directory holding a `gateway` package to measure (repeat for an A/B); "
        "default: this checkout",
    )
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.tree or [CHECKOUT]]
    names = ["redis", "upstream", "gateway", "idp"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    redis = ["redis-server", "--port", str(ports["redis"]), "--save", "", "--appendonly", "no"]
    redirect_uris = [f"http://127.0.0.1:{ports['gateway']}/cdn-cgi/access/callback"]
    with (
        tempfile.TemporaryDirectory() as tmpdir,
        started(redis, stdout=subprocess.DEVNULL),
    ):
        tmp = Path(tmpdir)
        upstream, _ = upstream_command(tmp, ports["upstream"], "nginx")
        with started(upstream), running_dev_idp(ports["idp"], redirect_uris) as idp:
            wait_for_port(ports["redis"])
            wait_for_port(ports["upstream"])
            config = write_config(
                tmp, ports["gateway"], ports["upstream"], ports["redis"], idp, args.session_reads
            )
            host = f"{APP_HOST}:{ports['gateway']}"
            serve = [sys.executable, "-m", "gateway", "serve", "--config", str(config),
                     "--port", str(ports["gateway"]), "--workers", "1",
                     "--log-level", args.log_level]  # fmt: skip
            # Signed in once, without valgrind: the session lives in Redis, so every tree's
            # gateway (same config, same cookie secret) takes the same cookie.
            with started(serve, stdout=subprocess.DEVNULL) as gateway:
                wait_for_port(ports["gateway"], process=gateway)
                cookie = session_cookie(f"http://{host}/", idp.member, GATEWAY_COOKIE)
            print(
                f"session_reads {args.session_reads}, log level {args.log_level}, "
                f"{args.requests} requests over {args.connections} connections, 1 worker"
            )
            for tree in trees:
                total = count(tree, serve, args, ports["gateway"], host, cookie)
                print(f"{tree}: {total / args.requests:,.0f} instructions per request", flush=True)


if __name__ == "__main__":
    main()
