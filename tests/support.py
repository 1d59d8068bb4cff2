"""Helpers the tests share: submitting batches and reading answers the way a client does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from xml.etree import ElementTree

import httpx

DEADLINE_SECONDS = 300  # a safety net for a hung worker, never a performance assertion


def xml_fields(response: httpx.Response) -> dict:
    root = ElementTree.fromstring(response.text)
    assert root.tag == "response"
    return {child.tag: child.text or "" for child in root if child.tag != "profile"}


def failed_profile_ids(response: httpx.Response) -> list[str]:
    root = ElementTree.fromstring(response.text)
    return [p.findtext("id") for p in root.findall("profile") if p.findtext("status") == "failed"]


def submit(http, text: str | bytes, client: str = "demo", version: int = 2, **kwargs) -> httpx.Response:
    path = f"/m2/{client}/v2/profile/batchUpdate" if version == 2 else f"/m2/{client}/profile/batchUpdate"
    body = text.encode() if isinstance(text, str) else text
    headers = {"Content-Type": "application/x-www-form-urlencoded", **kwargs.pop("headers", {})}
    return http.post(path, content=body, headers=headers, **kwargs)


def accepted_id(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    fields = xml_fields(response)
    assert fields["success"] == "true", response.text
    return fields["batchId"]


def wait_complete(http, batch_id: str) -> dict:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        record = http.get(f"/api/batches/{batch_id}").json()
        if record["status"] != "incomplete":
            return record
        time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} did not finish within {DEADLINE_SECONDS}s")


def apply(http, text: str, client: str = "demo", version: int = 2) -> dict:
    """Submit a batch and wait until it is applied; its /api record."""
    return wait_complete(http, accepted_id(submit(http, text, client, version)))


def attributes(http, visitor_id: str, client: str = "demo", by: str = "thirdPartyId") -> dict[str, str] | None:
    path = f"/rest/v1/profiles/thirdPartyId/{visitor_id}" if by == "thirdPartyId" else f"/rest/v1/profiles/{visitor_id}"
    response = http.get(path, params={"client": client})
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return {name: a["value"] for name, a in response.json()["profileAttributes"].items()}


def deliver(http, body: dict, client: str | None = "demo", session: str = "s1", **params) -> httpx.Response:
    """A Delivery API call, as a page or a server SDK makes it."""
    query = {"sessionId": session, **({"client": client} if client else {}), **params}
    return http.post("/rest/v1/delivery", params=query, json={"context": {"channel": "web"}, **body})


class FakeClock:
    """Epoch milliseconds that move only when a test moves them."""

    def __init__(self, iso: str = "2026-11-23T10:00:00+00:00"):
        from datetime import datetime

        self.ms = int(datetime.fromisoformat(iso).timestamp() * 1000)

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float = 0, days: float = 0) -> None:
        self.ms += int((seconds + days * 86_400) * 1000)


def seq_of(batch_id: str) -> int:
    return int(batch_id.rsplit("-", 1)[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """A real `profilestore serve` process on a data folder."""

    def __init__(self, data_dir: Path, env: dict | None = None, extra_args: list[str] = ()):
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "profilestore", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        command += self.extra_args
        self.log = open(self.data_dir.parent / f"serve-{self.port}.log", "ab")
        self.process = subprocess.Popen(command, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"profilestore serve did not start; see {self.log.name}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.log.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.log.close()


@contextmanager
def serve_process(data_dir: Path, env: dict | None = None, extra_args: list[str] = ()):
    server = ServeProcess(data_dir, env, extra_args)
    server.start()
    try:
        yield server
    finally:
        server.stop()
