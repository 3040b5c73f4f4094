"""A real HTTP/1.1 server on 127.0.0.1 for tests: programmable replies, recorded requests.

Provider fakes (OpenAI chat completions, Anthropic messages) are built on it, and the
official SDKs talk to it over real sockets, so what tether sends and receives goes
through the same HTTP stack as in production.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    """What the server answers.

    `json` for a JSON body; `sse` for a text/event-stream of `(event, data)` pairs
    (`event` may be None; `data` a dict is JSON-encoded, a str is sent as-is);
    `drop` closes the connection without answering (a connection reset).
    """

    status: int = 200
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    sse: list[tuple[str | None, Any]] | None = None
    delay: float = 0.0
    drop: bool = False


Handler = Callable[[Request], Reply]


class _QuietServer(ThreadingHTTPServer):
    """Does not print a client that hung up (a timeout test): a late answer then fails
    with a broken pipe, and printing that traceback from the server thread runs
    `ast.parse` (3.11 tracebacks do) concurrently with the main thread's, which CPython
    3.11.7 can fail with "SystemError: AST constructor recursion depth mismatch"."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeHTTPServer:
    """Serves `handler` on a free port of 127.0.0.1 in a daemon thread."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                owner.requests.append(request)
                reply = owner.handler(request)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if reply.sse is not None:
                    self._send_sse(reply)
                    return
                payload = b"" if reply.json is None else json.dumps(reply.json).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def _send_sse(self, reply: Reply) -> None:
                self.send_response(reply.status)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                for event, data in reply.sse or []:
                    text = data if isinstance(data, str) else json.dumps(data)
                    frame = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
                    chunk = frame.encode()
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            do_POST = _serve
            do_GET = _serve

        self._server = _QuietServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # A short poll interval: `stop()` waits for it, and the default 0.5 s adds up.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def start(self) -> FakeHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def serving(handler: Handler) -> Iterator[FakeHTTPServer]:
    """Run a `FakeHTTPServer` for the duration of a `with` block."""
    server = FakeHTTPServer(handler).start()
    try:
        yield server
    finally:
        server.stop()
