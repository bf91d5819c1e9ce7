"""Authenticated proxied requests per second: the gateway vs. the same upstream reached directly,
and optionally vs. a peer, Apache httpd with mod_auth_openidc.

One run, on loopback, with a real Redis: starts redis-server, a tiny upstream (nginx answering a
small static body when nginx is installed, else a minimal Python server; the summary says which),
the demo's development IdP (`gateway/demo/devidp.py`) and `gateway serve --workers N` with a Redis
store. A scripted browser signs in through the gateway at the development IdP, as a user of the
Engineering group the app's policy allows, so every benchmarked request carries a real
`CF_Authorization` cookie and goes cookie -> session (one Redis GET) -> policy -> upstream. wrk
measures the upstream directly, then through the gateway, with the same connections and duration,
and the script prints requests/s, p50/p99/p99.9 latency and the ratio.

With `--peer modauth`, Apache httpd with mod_auth_openidc (`modauth.py`: its generated config
says how it matches the gateway's) signs in through the same IdP as the same user, proxies to the
same upstream and is measured the same way, once with its shared-memory session cache and once
with its Redis cache; the table then gives each row's requests/s against direct and against each
peer row.

Before measuring, each contender must let the signed-in request reach the upstream and refuse it
without the cookie, and a signed-in user outside the Engineering group. During each measurement a
wrk script (`non_2xx.lua`) counts answers that are not 2xx (a 302 would be a request sent back to
sign in): the run fails if they pass 1% of any row.

    python bench/proxy_throughput.py [--duration 10] [--connections 32] [--workers 2]
                                     [--upstream nginx|python|uvicorn] [--peer modauth]
                                     [--session-reads tracked|pipelined|redis-py]

Needs `wrk` and `redis-server` (Debian: apt-get install wrk redis-server; nginx optional), and
for `--peer modauth`: apt-get install -y apache2 libapache2-mod-auth-openidc.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from modauth import CACHES, SESSION_COOKIE, describe, find_apache, redirect_uri, running_modauth
from signin import DevIdP, check_gate, check_refused, running_dev_idp, session_cookie

GATEWAY_COOKIE = "CF_Authorization"
APP_HOST = "localhost"  # the app's host; the team host is 127.0.0.1, so sign-in crosses hosts
NON_2XX_SCRIPT = Path(__file__).with_name("non_2xx.lua")
MAX_NON_2XX = 0.01  # of a row's answers; above it the row measured something else


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that nothing is bound to, below the kernel's ephemeral
    range. The ports are chosen before the servers start (the IdP must know its redirect URIs),
    and outgoing connections, like programs asking for port 0, take theirs from that range: a
    port found there could be taken by the time its server binds it."""
    try:
        ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        first_ephemeral = int(ephemeral[0])
    except (OSError, IndexError, ValueError):
        first_ephemeral = 32768  # Linux's default
    ports: set[int] = set()
    while len(ports) < count:
        port = random.randrange(10000, first_ephemeral)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.add(port)
    return sorted(ports)


def wait_for_port(
    port: int,
    timeout: float = 15.0,
    process: subprocess.Popen[bytes] | None = None,
    said: Callable[[], str] = lambda: "",
) -> None:
    """Until something listens on `port`; fails the run at the timeout, or as soon as `process`
    (what should listen) has exited, with what it `said`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"{process.args[0]} exited with {process.returncode}\n{said()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on port {port} after {timeout} s\n{said()}")


def upstream_command(tmp: Path, port: int, kind: str) -> tuple[list[str], str]:
    """The command that runs the upstream of `kind` on `port`, and how the summary names it."""
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if kind == "nginx" and nginx is None:
        raise SystemExit("nginx not found (apt-get install nginx-light), or use --upstream python")
    if kind == "nginx":
        conf = tmp / "nginx.conf"
        conf.write_text(
            textwrap.dedent(f"""
            worker_processes 1;
            daemon off;
            pid {tmp}/nginx.pid;
            error_log {tmp}/nginx-error.log;
            events {{ worker_connections 1024; }}
            http {{
                access_log off;
                client_body_temp_path {tmp};
                server {{
                    listen 127.0.0.1:{port};
                    location / {{ return 200 "hello from upstream\\n"; }}
                }}
            }}
        """)
        )
        return [nginx, "-c", str(conf), "-p", str(tmp)], "nginx (1 worker)"
    if kind == "uvicorn":
        app = textwrap.dedent("""
            async def app(scope, receive, send):
                if scope["type"] != "http":
                    return
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"hello from upstream\\n"})
        """)
        (tmp / "tiny_upstream.py").write_text(app)
        command = [sys.executable, "-m", "uvicorn", "tiny_upstream:app", "--port", str(port),
                   "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                   "--log-level", "warning", "--app-dir", str(tmp)]  # fmt: skip
        return command, "uvicorn + a pure ASGI hello (1 worker)"
    code = textwrap.dedent(f"""
        import asyncio
        BODY = (b"HTTP/1.1 200 OK\\r\\nContent-Length: 20\\r\\nContent-Type: text/plain\\r\\n"
                b"\\r\\nhello from upstream\\n")
        async def handle(reader, writer):
            try:
                while True:
                    head = await reader.readuntil(b"\\r\\n\\r\\n")
                    writer.write(BODY)
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
        async def main():
            server = await asyncio.start_server(handle, "127.0.0.1", {port})
            await server.serve_forever()
        asyncio.run(main())
    """)
    return [sys.executable, "-c", code], "python asyncio (1 process)"


def write_config(
    tmp: Path, port: int, upstream_port: int, redis_port: int, idp: DevIdP, session_reads: str
) -> Path:
    config = tmp / "gateway.toml"
    config.write_text(
        textwrap.dedent(f"""
        [gateway]
        public_url = "http://127.0.0.1:{port}"
        cookie_secret = "{secrets.token_urlsafe(32)}"
        store = "redis://127.0.0.1:{redis_port}/0"
        cookie_secure = false
        session_reads = "{session_reads}"

        [[identity_providers]]
        id = "dev-okta"
        name = "Okta"
        type = "okta"
        [identity_providers.config]
        client_id = "{idp.client_id}"
        client_secret = "{idp.client_secret}"
        okta_account = "{idp.issuer}"
        api_token = "{idp.api_token}"
        pkce_enabled = true

        [[apps]]
        id = "bench"
        name = "Bench"
        domain = "{APP_HOST}"
        upstream = "http://127.0.0.1:{upstream_port}"
        [[apps.policies]]
        name = "Engineering"
        decision = "allow"
        include = [ {{ okta = {{ name = "Engineering" }} }} ]
    """)
    )
    return config


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and its children that are running
    (`gateway serve` and its workers, Apache and its processes), from /proc; 0.0 where /proc is
    not there."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for each in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in found]


@dataclass(frozen=True, slots=True)
class Row:
    """One measured contender."""

    name: str
    rps: float
    p50: str
    p99: str
    p999: str  # the 99.9th percentile: where a stall that hits few requests shows
    cpu_seconds: float  # used by its processes during the measurement; 0.0 when not known
    cpu_of: str  # whose CPU that is, for the summary


def run_wrk(url: str, args: argparse.Namespace, headers: list[str]) -> tuple[float, str, str, str]:
    """requests/s, p50, p99 and p99.9 at `url`; fails the run if over 1% of the answers were not
    2xx."""
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    cmd += ["-s", str(NON_2XX_SCRIPT)]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1)  # type: ignore[union-attr]
    p999_us = int(re.search(r"p99.9 latency: (\d+) us", out).group(1))  # type: ignore[union-attr]
    p999 = f"{p999_us / 1000:.2f}ms" if p999_us >= 1000 else f"{p999_us:.2f}us"
    counted = re.search(r"non-2xx answers: (\d+) of (\d+)", out)
    if counted is None:
        raise SystemExit(f"{url}: wrk did not count the non-2xx answers\n{out}")
    non_2xx, total = int(counted.group(1)), int(counted.group(2))
    if total == 0 or non_2xx > MAX_NON_2XX * total:
        raise SystemExit(
            f"{url}: {non_2xx} of {total} answers were not 2xx; the benchmark is invalid\n{out}"
        )
    if non_2xx:
        print(f"note: {url}: {non_2xx} of {total} answers were not 2xx", file=sys.stderr)
    return rps, p50, p99, p999


def measure(
    name: str, url: str, headers: list[str], args: argparse.Namespace, pid: int | None, cpu_of: str
) -> Row:
    """Warm the path up (connection pools, caches), then measure it with wrk."""
    warm = ["wrk", "-t1", "-c4", "-d2s", *[arg for h in headers for arg in ("-H", h)], url]
    subprocess.run(warm, check=True, capture_output=True)
    cpu_before = cpu_seconds(pid) if pid is not None else 0.0
    rps, p50, p99, p999 = run_wrk(url, args, headers)
    cpu_used = cpu_seconds(pid) - cpu_before if pid is not None else 0.0
    return Row(name, rps, p50, p99, p999, cpu_used, cpu_of)


@contextlib.contextmanager
def started(command: list[str], **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A process that is stopped (SIGTERM, then SIGKILL after 10 s) when the block ends."""
    process: subprocess.Popen[bytes] = subprocess.Popen(command, **popen)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure_gateway(
    args: argparse.Namespace, tmp: Path, idp: DevIdP, ports: dict[str, int]
) -> list[Row]:
    """direct and gateway: the upstream, then `gateway serve` signed in through `idp`."""
    config = write_config(
        tmp, ports["gateway"], ports["upstream"], ports["redis"], idp, args.session_reads
    )
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(config),
               "--port", str(ports["gateway"]), "--workers", str(args.workers),
               "--log-level", "warning"]  # fmt: skip
    with started(command) as gateway:
        wait_for_port(ports["gateway"], process=gateway)
        app_url = f"http://{APP_HOST}:{ports['gateway']}/"
        cookie = session_cookie(app_url, idp.member, GATEWAY_COOKIE)
        check_refused(app_url, idp.outsider)
        url = f"http://127.0.0.1:{ports['gateway']}/"
        host = f"{APP_HOST}:{ports['gateway']}"
        check_gate(url, {"Host": host}, GATEWAY_COOKIE, cookie)
        headers = [f"Host: {host}", f"Cookie: {GATEWAY_COOKIE}={cookie}"]
        direct = measure("direct", f"http://127.0.0.1:{ports['upstream']}/", [], args, None, "")
        through = measure("gateway", url, headers, args, gateway.pid, "all workers")
    return [direct, through]


def measure_modauth(
    args: argparse.Namespace, apache: str, idp: DevIdP, ports: dict[str, int]
) -> list[Row]:
    """One row per mod_auth_openidc session cache, each signed in through `idp` anew."""
    rows = []
    for cache in CACHES:
        with running_modauth(
            apache,
            cache=cache,
            port=ports[f"modauth-{cache}"],
            idp=idp,
            upstream_port=ports["upstream"],
            redis_port=ports["redis"],
            processes=args.workers,
            threads=args.connections,
        ) as peer:
            wait_for_port(ports[f"modauth-{cache}"], process=peer.process, said=peer.log_tail)
            try:
                cookie = session_cookie(peer.url, idp.member, SESSION_COOKIE)
                check_refused(peer.url, idp.outsider)
                check_gate(peer.url, {}, SESSION_COOKIE, cookie)
            except (SystemExit, httpx.HTTPError) as exc:
                raise SystemExit(f"{peer.url}: {exc!r}\n{peer.log_tail()}") from exc
            headers = [f"Cookie: {SESSION_COOKIE}={cookie}"]
            row = measure(
                f"modauth ({cache})", peer.url, headers, args, peer.process.pid, "all processes"
            )
        rows.append(row)
    return rows


def print_summary(
    rows: list[Row], args: argparse.Namespace, upstream_kind: str, peer: str | None
) -> None:
    print(
        f"upstream: {upstream_kind}; wrk -t{args.threads} -c{args.connections} -d{args.duration}s; "
        f"gateway workers: {args.workers}; store: redis, session_reads {args.session_reads}"
    )
    if peer is not None:
        print(
            f"peer: {peer}, mpm event, {args.workers} processes x {args.connections} threads; "
            "same upstream, IdP, user and policy (groups contains Engineering)"
        )
    # With a peer, each row's req/s over every row's: "/direct", "/gateway", "/shm", "/redis".
    bases = rows if peer is not None else []
    labels = ["/" + r.name.removeprefix("modauth (").removesuffix(")") for r in bases]
    width = max(10, *(len(r.name) for r in rows))
    print(
        f"{'':{width}} {'req/s':>10} {'p50':>10} {'p99':>10} {'p99.9':>10}"
        + "".join(f" {x:>8}" for x in labels)
    )
    for r in rows:
        ratios = "".join(f" {r.rps / b.rps:>8.3f}" for b in bases)
        print(f"{r.name:{width}} {r.rps:>10.0f} {r.p50:>10} {r.p99:>10} {r.p999:>10}{ratios}")
    direct, gateway = rows[0], rows[1]
    print(f"ratio gateway/direct: {gateway.rps / direct.rps:.3f}x")
    for r in rows[1:]:
        if r.cpu_seconds > 0:
            # Steadier than req/s on a shared machine: what one request costs the contender's CPUs.
            per_request = r.cpu_seconds / (r.rps * args.duration) * 1e6
            print(f"{r.name} CPU per request: {per_request:.0f} us ({r.cpu_of}, user + system)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--upstream",
        choices=("nginx", "python", "uvicorn"),
        default="nginx",
        help="the tiny upstream: nginx's static answer, a minimal asyncio HTTP server, or a pure "
        "ASGI hello under uvicorn",
    )
    parser.add_argument(
        "--session-reads",
        choices=("tracked", "pipelined", "redis-py"),
        default="tracked",
        help="the gateway's [gateway] session_reads (default: the config's default)",
    )
    parser.add_argument(
        "--peer",
        choices=("modauth",),
        help="also measure Apache httpd + mod_auth_openidc (shm, then redis session cache)",
    )
    args = parser.parse_args()
    for tool in ("wrk", "redis-server"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (apt-get install wrk redis-server)")
    apache = find_apache() if args.peer == "modauth" else None
    peers = [f"modauth-{cache}" for cache in CACHES] if apache is not None else []
    names = ["redis", "upstream", "gateway", "idp", *peers]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    redirect_uris = [f"http://127.0.0.1:{ports['gateway']}/cdn-cgi/access/callback"]
    redirect_uris += [redirect_uri(ports[peer]) for peer in peers]
    redis = ["redis-server", "--port", str(ports["redis"]), "--save", "", "--appendonly", "no"]
    with (
        tempfile.TemporaryDirectory() as tmpdir,
        started(redis, stdout=subprocess.DEVNULL),
    ):
        tmp = Path(tmpdir)
        command, upstream_kind = upstream_command(tmp, ports["upstream"], args.upstream)
        with started(command), running_dev_idp(ports["idp"], redirect_uris) as idp:
            wait_for_port(ports["redis"])
            wait_for_port(ports["upstream"])
            rows = measure_gateway(args, tmp, idp, ports)
            if apache is not None:
                rows += measure_modauth(args, apache, idp, ports)
    print_summary(rows, args, upstream_kind, describe(apache) if apache is not None else None)


if __name__ == "__main__":
    main()
