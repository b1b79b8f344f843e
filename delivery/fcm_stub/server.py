"""The stub's HTTP/1.1 server: an asyncio event loop in front of ``StubState``.

A small hand-written HTTP/1.1 parser (keep-alive, pipelining, ``Content-Length``
bodies — what ``requests`` sends) rather than ``http.server``: the stdlib's threaded
server tops out near the SDK's own send rate, and the stub must never be the
bottleneck of a benchmark. All state lives on the loop's thread, so nothing needs a
lock; tests and users reach it only over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from pathlib import Path

from delivery.fcm_stub.state import TOKEN_PATH, Reply, StubState

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
FLUSH_SECONDS = 0.25
REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large",
    429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
}  # fmt: skip


class _HttpConnection(asyncio.Protocol):
    """One client connection: parse requests off the buffer, answer them in order."""

    def __init__(self, state: StubState, connections: set[_HttpConnection]) -> None:
        self.state = state
        self.connections = connections
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiting = False  # a delayed reply is pending; later pipelined requests wait

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._process()

    def _process(self) -> None:
        while not self.waiting and self.transport is not None:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    self._write(Reply(413, {"error": "request head too large"}), keep_alive=False)
                return
            lines = bytes(self.buffer[:head_end]).decode("latin-1").split("\r\n")
            try:
                method, target, version = lines[0].split(" ", 2)
            except ValueError:
                self._write(Reply(400, {"error": "malformed request line"}), keep_alive=False)
                return
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._write(Reply(411, {"error": "send a Content-Length body"}), keep_alive=False)
                return
            length = int(headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                self._write(Reply(413, {"error": "request body too large"}), keep_alive=False)
                return
            if len(self.buffer) < head_end + 4 + length:
                return
            body = bytes(self.buffer[head_end + 4 : head_end + 4 + length])
            del self.buffer[: head_end + 4 + length]
            connection = headers.get("connection", "").lower()
            keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
            reply = self.state.handle(method, target, headers, body)
            if reply.delay:
                self.waiting = True
                asyncio.get_running_loop().call_later(reply.delay, self._finish, reply, keep_alive)
                return
            self._finish(reply, keep_alive)

    def _finish(self, reply: Reply, keep_alive: bool) -> None:
        self.waiting = False
        if self.transport is None:
            return
        if reply.drop:
            self.transport.close()
            self.transport = None
            return
        self._write(reply, keep_alive=keep_alive)
        if keep_alive and self.buffer:
            self._process()

    def _write(self, reply: Reply, *, keep_alive: bool) -> None:
        assert self.transport is not None
        payload = json.dumps(reply.body, separators=(",", ":")).encode()
        head = [
            f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Status')}",
            "Content-Type: application/json; charset=UTF-8",
            f"Content-Length: {len(payload)}",
            *(f"{name}: {value}" for name, value in reply.headers),
        ]
        if not keep_alive:
            head.append("Connection: close")
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
        if not keep_alive:
            self.transport.close()
            self.transport = None


class FcmStubServer:
    """The loopback FCM stub: bind at construction, then ``start()`` (thread) or ``serve_forever()``.

    ``port=0`` picks a free port; ``url`` is the base URL for ``FCM_ENDPOINT`` and
    ``token_uri`` is what a service-account JSON must name.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        project: str | None = None,
        log_path: Path | None = None,
        keep_log: bool = True,
    ) -> None:
        self.state = StubState(project=project, log_path=log_path, keep_log=keep_log)
        self._socket = socket.create_server((host, port), backlog=1024, reuse_port=False)
        self.host, self.port = self._socket.getsockname()[:2]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._connections: set[_HttpConnection] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token_uri(self) -> str:
        return f"{self.url}{TOKEN_PATH}"

    def start(self) -> FcmStubServer:
        """Serve on a daemon thread (tests); returns once the server accepts connections."""
        self._thread = threading.Thread(target=self.serve_forever, name=f"fcm-stub-{self.port}", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until ``stop()`` (or the loop is interrupted)."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            self.state.close()
            loop.close()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await loop.create_server(
            lambda: _HttpConnection(self.state, self._connections), sock=self._socket
        )
        self._ready.set()
        try:
            while not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), FLUSH_SECONDS)
                self.state.flush()
        finally:
            server.close()
            for connection in list(self._connections):
                if connection.transport is not None:
                    connection.transport.close()
            await server.wait_closed()

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        if self._loop is None:
            self._socket.close()

    def __enter__(self) -> FcmStubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
