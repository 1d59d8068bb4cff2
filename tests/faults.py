"""Real faults for the tests to inject: a small disk that fills up, a network path to
PostgreSQL that can be cut, and the end of the service's own database connections."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest


def need_root(what: str) -> None:
    """Skip a test that needs root (to mount a file system), except under CI, where it fails."""
    if os.geteuid() != 0:
        reason = f"{what} needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


class SmallDisk:
    """A tmpfs of a few MB, mounted for one test, and a file that fills every byte of it."""

    def __init__(self, path: Path, megabytes: int):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)], check=True)
        self._filler = path / "filler"

    def fill(self) -> None:
        """Write until the disk is full, to the last byte."""
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for block in (1 << 20, 4096, 1):
                try:
                    while True:
                        os.write(fd, bytes(block))
                except OSError:
                    pass
        finally:
            os.close(fd)

    def free(self) -> None:
        self._filler.unlink()

    def free_a_little(self, size: int) -> None:
        """Give back `size` bytes of the filled disk."""
        os.truncate(self._filler, self._filler.stat().st_size - size)

    def unmount(self) -> None:
        subprocess.run(["umount", "--lazy", str(self.path)], check=True)


class CuttableProxy:
    """A TCP path from a local port to a server that can be cut, as a network partition or a
    database server going down looks to the service: open connections are dropped and new ones
    refused until it is restored."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._up = True
        threading.Thread(target=self._accept, daemon=True).start()

    def url_for(self, url: str) -> str:
        """The URL with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        user = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"))

    def cut(self) -> None:
        with self._lock:
            self._up = False
            for sock in self._open:
                _close(sock)
            self._open.clear()

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def close(self) -> None:
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if not self._up:
                    _close(client)  # refused: the server is down
                    continue
                server = socket.create_connection(self.target)
                self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    _close(source)
    _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def with_application_name(url: str) -> tuple[str, str]:
    """The URL with an application_name of its own, to find the service's connections by; and the name."""
    name = f"profilestore-test-{uuid.uuid4().hex[:8]}"
    return f"{url}{'&' if '?' in url else '?'}application_name={name}", name


def terminate_connections(server_url: str, application_name: str) -> int:
    """End every connection of that application, as a restart or failover of the server does;
    how many there were."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as db:
        ended = db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchall()
    return len(ended)
