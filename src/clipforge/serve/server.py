"""Running the app with uvicorn: in the foreground (`serve`) or in a background thread (tests, benchmarks).

Slow clients are bounded: a connection must deliver a request's headers within `header_timeout`
seconds of opening (or of its previous response) or it is closed; idle keep-alive connections close
after `keep_alive` seconds; beyond `max_connections` open connections new requests get a 503. The body
has its own deadline (`Limits.body_timeout_s`, enforced while reading it: a 408).
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

HEADER_TIMEOUT = 10.0
KEEP_ALIVE = 5.0
MAX_CONNECTIONS = 128


def _protocol(header_timeout: float):
    """uvicorn's h11 protocol, closing a connection whose request headers do not arrive in time."""
    from uvicorn.protocols.http.h11_impl import H11Protocol  # optional (`serve` extra), as in `serve()`

    class DeadlineH11(H11Protocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_deadline()

        def _arm_deadline(self) -> None:
            self._armed_cycle = self.cycle  # a new request replaces the cycle: then the headers arrived
            self._deadline = self.loop.call_later(header_timeout, self._deadline_expired)

        def _deadline_expired(self) -> None:
            if self.cycle is self._armed_cycle and not self.transport.is_closing():
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._deadline.cancel()
            if not self.transport.is_closing():
                self._arm_deadline()

        def connection_lost(self, exc) -> None:
            self._deadline.cancel()
            super().connection_lost(exc)

    return DeadlineH11


def server_config(
    app,
    *,
    log_level: str = "info",
    header_timeout: float = HEADER_TIMEOUT,
    keep_alive: float = KEEP_ALIVE,
    max_connections: int = MAX_CONNECTIONS,
    **kwargs,
):
    """A `uvicorn.Config` for `app` with the slow-client bounds of this module."""
    import uvicorn  # optional (the `serve` extra): only needed to actually run a server

    return uvicorn.Config(
        app,
        log_level=log_level,
        http=_protocol(header_timeout),
        timeout_keep_alive=int(max(1, keep_alive)),
        limit_concurrency=max_connections,
        **kwargs,
    )


def serve(app, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve `app` until interrupted."""
    import uvicorn  # optional (the `serve` extra): only needed to actually run a server

    uvicorn.Server(server_config(app, host=host, port=port, log_level=log_level)).run()


@contextmanager
def serve_in_thread(
    app, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0, **bounds: float
) -> Iterator[str]:
    """Run `app` on `host:port` (0 = a free port) in a daemon thread; yields the base URL.
    `bounds` override `server_config`'s header_timeout, keep_alive and max_connections."""
    import uvicorn  # optional (the `serve` extra): only needed to actually run a server

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, log_level="warning", access_log=False, **bounds))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the server on {host}:{port} did not start within {timeout}s")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
