"""Authenticated proxied requests per second: the gateway vs. the same upstream reached directly.

One run, on loopback, with a real Redis: starts redis-server, a tiny upstream (nginx answering a
small static body when nginx is installed, else a minimal Python server; the summary says which),
and `gateway serve --workers N` with a Redis store. A session is created through the gateway's own
SessionManager, so every benchmarked request carries a valid `CF_Authorization` cookie and goes
cookie -> session (one Redis GET) -> policy -> upstream. wrk measures the upstream directly, then
through the gateway, with the same connections and duration, and the script prints requests/s,
p50/p99 latency and the ratio.

    python bench/proxy_throughput.py [--duration 10] [--connections 32] [--workers 2]
                                     [--upstream nginx|python|uvicorn]

Needs `wrk` and `redis-server` (Debian: apt-get install wrk redis-server; nginx optional).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from gateway.identity import Identity
from gateway.state.sessions import CookieSigner, SessionManager
from gateway.state.store.redis import RedisStore

COOKIE_SECRET = "bench-cookie-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on port {port} after {timeout} s")


def start_upstream(tmp: Path, port: int, kind: str) -> tuple[subprocess.Popen[bytes], str]:
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
        return subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp)]), "nginx (1 worker)"
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
        return subprocess.Popen(command), "uvicorn + a pure ASGI hello (1 worker)"
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
    return subprocess.Popen([sys.executable, "-c", code]), "python asyncio (1 process)"


def write_config(tmp: Path, port: int, upstream_port: int, redis_port: int) -> Path:
    config = tmp / "gateway.toml"
    config.write_text(
        textwrap.dedent(f"""
        [gateway]
        public_url = "http://bench.local:{port}"
        cookie_secret = "{COOKIE_SECRET}"
        store = "redis://127.0.0.1:{redis_port}/0"
        cookie_secure = false

        [[identity_providers]]
        id = "okta-bench"
        name = "Okta"
        type = "okta"
        [identity_providers.config]
        client_id = "0oabench"
        client_secret = "unused"
        okta_account = "https://bench.okta.invalid"

        [[apps]]
        id = "bench"
        name = "Bench"
        domain = "app.bench.local"
        upstream = "http://127.0.0.1:{upstream_port}"
        [[apps.policies]]
        name = "Engineering"
        decision = "allow"
        include = [ {{ okta = {{ name = "Engineering" }} }} ]
    """)
    )
    return config


async def make_session(redis_port: int) -> str:
    store = RedisStore.from_url(f"redis://127.0.0.1:{redis_port}/0")
    manager = SessionManager(store, CookieSigner((COOKIE_SECRET,), "gateway.session"))
    identity = Identity(
        id="bench",
        user_uuid="bench-user",
        sub="00ubench",
        name="Bench",
        email="bench@example.com",
        groups=("Everyone", "Engineering"),
        idp_id="okta-bench",
        idp_type="okta",
        iat=int(time.time()),
    )
    _, cookie = await manager.create(identity, kind="app", duration=3600, app_id="bench")
    await store.close()
    return cookie


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and its children that are running
    (`gateway serve` and its workers), from /proc; 0.0 where /proc is not there."""
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


def run_wrk(url: str, args: argparse.Namespace, headers: list[str]) -> tuple[float, str, str, str]:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1)  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        raise SystemExit(
            f"{url}: {non2xx.group(1)} non-2xx answers; the benchmark is invalid\n{out}"
        )
    return rps, p50, p99, out


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
    args = parser.parse_args()
    for tool in ("wrk", "redis-server"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (apt-get install wrk redis-server)")
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        try:
            redis_port, upstream_port, gateway_port = free_port(), free_port(), free_port()
            procs.append(
                subprocess.Popen(
                    ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
                    stdout=subprocess.DEVNULL,
                )
            )
            upstream, upstream_kind = start_upstream(tmp, upstream_port, args.upstream)
            procs.append(upstream)
            wait_for_port(redis_port)
            wait_for_port(upstream_port)
            config = write_config(tmp, gateway_port, upstream_port, redis_port)
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "gateway",
                        "serve",
                        "--config",
                        str(config),
                        "--port",
                        str(gateway_port),
                        "--workers",
                        str(args.workers),
                        "--log-level",
                        "warning",
                    ],
                    env={**os.environ},
                )
            )
            wait_for_port(gateway_port)
            cookie = asyncio.run(make_session(redis_port))
            headers = ["Host: app.bench.local", f"Cookie: CF_Authorization={cookie}"]
            # Warm up both paths (connection pools, JIT-less caches) before measuring.
            subprocess.run(
                ["wrk", "-t1", "-c4", "-d2s", f"http://127.0.0.1:{upstream_port}/"],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [
                    "wrk",
                    "-t1",
                    "-c4",
                    "-d2s",
                    *[arg for h in headers for arg in ("-H", h)],
                    f"http://127.0.0.1:{gateway_port}/",
                ],
                check=True,
                capture_output=True,
            )
            direct = run_wrk(f"http://127.0.0.1:{upstream_port}/", args, [])
            cpu_before = cpu_seconds(procs[-1].pid)
            through = run_wrk(f"http://127.0.0.1:{gateway_port}/", args, headers)
            cpu_used = cpu_seconds(procs[-1].pid) - cpu_before
        finally:
            for proc in reversed(procs):
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(
        f"upstream: {upstream_kind}; wrk -t{args.threads} -c{args.connections} -d{args.duration}s; "
        f"gateway workers: {args.workers}; store: redis"
    )
    print(f"{'':10} {'req/s':>10} {'p50':>10} {'p99':>10}")
    print(f"{'direct':10} {direct[0]:>10.0f} {direct[1]:>10} {direct[2]:>10}")
    print(f"{'gateway':10} {through[0]:>10.0f} {through[1]:>10} {through[2]:>10}")
    print(f"ratio gateway/direct: {through[0] / direct[0]:.3f}x")
    if cpu_used > 0:
        # Steadier than req/s on a shared machine: what one request costs the gateway's CPUs.
        per_request = cpu_used / (through[0] * args.duration) * 1e6
        print(f"gateway CPU per request: {per_request:.0f} us (all workers, user + system)")


if __name__ == "__main__":
    main()
