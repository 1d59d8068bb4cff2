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
    """httptools' HTTP/1.1 protocol with a deadline on receiving each request (see above)."""

    header_timeout = 10.0
    body_timeout = 300.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def on_message_begin(self) -> None:  # the first byte of the next request on the connection
        super().on_message_begin()
        self._arm(self.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:  # nothing sent for it yet
            message = b"The request did not arrive in time"
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(message), message)
            )
        self.transport.close()


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
    sys.setswitchinterval(0.0005)
    proxies = [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]
    uvicorn.run(
        app, host=host, port=port, http=protocol(settings),
        proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None,
        # No access log: it would cost every request a logging call, and it is off anyway (see README).
        log_level="warning", access_log=False,
    )  # fmt: skip
