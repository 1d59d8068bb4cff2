"""Serving the app with uvicorn, hardened against slow and crowded clients.

uvicorn has no timeout on receiving a request: its keep-alive timeout covers the time between
requests, and a client that sends one byte a second holds its connection for ever (slowloris).
RequestDeadlines closes a connection whose request line and headers have not all arrived
within header_timeout seconds, or whose body has not within body_timeout more. uvicorn itself
never reads a forwarded header here unless the operator names the proxies that send it."""

from __future__ import annotations

import asyncio
import logging
import resource
import sys

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..config import Settings

log = logging.getLogger("profilestore.web")
OPEN_FILES_WANTED = 1 << 16  # every connection is a file; many slow ones must not starve the rest


class RequestDeadlines(HttpToolsProtocol):
    """httptools' HTTP/1.1 protocol with a deadline on receiving each request (see above). A
    deadline is a time kept on the connection, checked by one sweep of all connections every
    SWEEP_SECONDS, not a timer per request: arming and cancelling three timers a request cost
    a few percent of the fetch rate."""

    header_timeout = 10.0
    body_timeout = 300.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._deadline: float | None = None
        self._in_body = False  # the current request's headers are in, its body is not

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._deadline = self.loop.time() + self.header_timeout
        _sweep_soon(self.loop, self.connections)

    def on_message_begin(self) -> None:  # the first byte of the next request on the connection
        super().on_message_begin()
        self._deadline, self._in_body = self.loop.time() + self.header_timeout, False

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._deadline, self._in_body = self.loop.time() + self.body_timeout, True

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._deadline, self._in_body = None, False

    def too_slow(self) -> None:
        """Close the connection, answering 408 first unless this request has an answer begun."""
        self._deadline = None
        if self.transport.is_closing():
            return
        if not (self._in_body and self.cycle.response_started):
            message = b"The request did not arrive in time"
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(message), message)
            )
        self.transport.close()


SWEEP_SECONDS = 0.5
_sweeping: set[asyncio.AbstractEventLoop] = set()


def _sweep_soon(loop: asyncio.AbstractEventLoop, connections: set) -> None:
    """Start the sweep of this loop's connections, unless it runs already."""
    if loop not in _sweeping:
        _sweeping.add(loop)
        loop.call_later(SWEEP_SECONDS, _sweep, loop, connections)


def _sweep(loop: asyncio.AbstractEventLoop, connections: set) -> None:
    now = loop.time()
    for connection in list(connections):
        deadline = getattr(connection, "_deadline", None)
        if deadline is not None and deadline <= now:
            connection.too_slow()
    loop.call_later(SWEEP_SECONDS, _sweep, loop, connections)


def protocol(settings: Settings) -> type[RequestDeadlines]:
    """RequestDeadlines with the configured timeouts."""
    timeouts = {"header_timeout": settings.header_timeout_seconds, "body_timeout": settings.body_timeout_seconds}
    return type("ConfiguredRequestDeadlines", (RequestDeadlines,), timeouts)


def raise_open_files_limit() -> None:
    """Let this process have as many open files as the system allows, up to OPEN_FILES_WANTED
    (a soft limit of 1,024 is common, and the hard limit is usually far above it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_WANTED)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as e:
            log.warning("could not raise the open files limit from %d: %s", soft, e)


def run(app, host: str, port: int, settings: Settings) -> None:
    raise_open_files_limit()
    # A thread of this process counting or storing a 50 MB body hands the GIL back only every
    # switch interval, and the event loop waits for it at every hand-over: with the default 5 ms,
    # fetch p99 was 132-158 ms while four such bodies arrived, 23-36 ms with 0.5 (bench/bodies).
    sys.setswitchinterval(0.0005)
    proxies = [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]
    uvicorn.run(
        app, host=host, port=port, http=protocol(settings),
        proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None,
        # No access log: it would cost every request a logging call, and it is off anyway (see docs/operations.md).
        log_level="warning", access_log=False,
    )  # fmt: skip
