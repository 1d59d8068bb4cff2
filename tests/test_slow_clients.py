"""Clients that send their requests slowly, or not at all, are cut off, and while thousands of
them hold connections open the service goes on answering everyone else."""

import resource
import socket
import time
from contextlib import contextmanager

import httpx
import pytest

from support import DEADLINE_SECONDS, apply, eventually, serve_process, submit, xml_fields

pytestmark = pytest.mark.slow  # thousands of slow connections and request timeouts

SLOW_CONNECTIONS = 2_000


@contextmanager
def open_files_limit(soft: int):
    """Processes started inside inherit this soft limit on open files (a common default)."""
    was = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, was[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, was)


def test_thousands_of_slow_connections_are_cut_off_and_others_are_served(store_url, tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < SLOW_CONNECTIONS + 500:  # the test's own sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, SLOW_CONNECTIONS + 500), hard))
    server = serve_process(store_url, tmp_path, {"PROFILESTORE_HEADER_TIMEOUT_SECONDS": "3"})
    with open_files_limit(1024):
        server.start()
    slow: list[socket.socket] = []
    try:
        http = httpx.Client(base_url=server.url, timeout=30)
        for _ in range(SLOW_CONNECTIONS):
            connection = socket.create_connection(("127.0.0.1", server.port))
            connection.sendall(b"GET /api/health/live HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
            slow.append(connection)
        for connection in slow:
            connection.sendall(b"X-Slow: 1")  # a byte now and then does not keep a connection open
        for _ in range(20):
            assert http.get("/api/health/live").status_code == 200
            assert http.get("/rest/v1/profiles/nobody", params={"client": "demo"}).status_code == 404
        record = apply(http, "batch=thirdPartyId,city\ncrm-1,Oslo\n")
        assert record["successfulUpdates"] == 1

        deadline = time.monotonic() + DEADLINE_SECONDS
        for connection in slow:
            connection.settimeout(max(0.1, deadline - time.monotonic()))
            answer = b""
            while chunk := connection.recv(4096):  # until the server closes it
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408 Request Timeout"), answer[:100]
    finally:
        for connection in slow:
            connection.close()
        server.stop()


def test_a_request_whose_body_does_not_arrive_in_time_is_cut_off(store_url, tmp_path):
    with serve_process(store_url, tmp_path, {"PROFILESTORE_BODY_TIMEOUT_SECONDS": "2"}) as server:
        connection = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_SECONDS)
        connection.sendall(b"POST /m2/demo/v2/profile/batchUpdate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
                           b"batch=thirdPartyId,city\n")  # fmt: skip
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout")
        assert httpx.get(f"{server.url}/api/batches", timeout=30).json()["batches"] == [], "nothing was stored"


def test_slow_uploads_holding_every_turn_make_other_large_ones_try_again_later(store_url, tmp_path):
    env = {"PROFILESTORE_MAX_CONCURRENT_UPLOADS": "1", "PROFILESTORE_UPLOAD_WAIT_SECONDS": "1"}
    with serve_process(store_url, tmp_path, env) as server:
        http = httpx.Client(base_url=server.url, timeout=60)
        slow = socket.create_connection(("127.0.0.1", server.port))
        slow.sendall(
            b"POST /m2/demo/v2/profile/batchUpdate HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\nbatch="
        )
        large = "batch=thirdPartyId,note\n" + "".join(f"c{i},{'x' * 100}\n" for i in range(15_000))
        try:
            refused = eventually(lambda: (r := submit(http, large)).status_code == 503 and r, "refused for now")
            assert xml_fields(refused)["message"] == (
                "The service is receiving as many large batches as it takes at "
                "once (PROFILESTORE_MAX_CONCURRENT_UPLOADS); try again in a few seconds"
            )
            assert int(refused.headers["Retry-After"]) > 0
            assert apply(http, "batch=thirdPartyId,city\ncrm-1,Oslo\n")["successfulUpdates"] == 1, "small ones go on"
        finally:
            slow.close()
        assert eventually(lambda: submit(http, large).status_code == 200, "accepted once the turn is free")
