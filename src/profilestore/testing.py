"""A real `profilestore serve` in a child process, for the test suite and the benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def schema_url(database_url: str, schema: str) -> str:
    """The URL of one schema of a PostgreSQL database: its tables are the only ones seen."""
    return f"{database_url}{'&' if '?' in database_url else '?'}options=-csearch_path%3D{schema}"


class ServeProcess:
    """`profilestore serve` on a store and a free port; its output goes to serve-PORT.log in
    log_dir."""

    def __init__(self, store_url: str, log_dir: Path, args: Sequence[str] = (), env: dict | None = None):
        self.store_url = store_url
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"serve-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        """Start it (again, after a kill) and return once it answers /api/health/live."""
        command = [sys.executable, "-m", "profilestore", "serve", "--port", str(self.port), "--store", self.store_url]
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*command, *self.args], env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/health/live").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"profilestore serve did not start within {timeout} s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL, as a crash would (its worker process dies with it)."""
        assert self.process is not None, "kill() of a ServeProcess never started"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._log.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self._log.close()

    def __enter__(self) -> ServeProcess:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
