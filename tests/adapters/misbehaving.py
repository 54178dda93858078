"""A tiny HTTP server on 127.0.0.1 that misbehaves on purpose, at the socket level.

Each request gets the next scripted :class:`Act` (the last one repeats): an HTTP answer with
any status, headers and raw body, a connection closed without an answer, a connection reset
(RST), or the server dying (the connection closed and the listening socket with it, so later
connections are refused, as after a segfault). Written on raw sockets because the standard
library's servers cannot reset a connection or stop listening from inside a request.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Act:
    """What the server does with one request."""

    how: Literal["answer", "close", "reset", "die"] = "answer"
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, **headers: str) -> Act:
        return cls("answer", status, json.dumps(payload).encode(), dict(headers))


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    body: bytes


class MisbehavingServer:
    """Serves scripted acts on 127.0.0.1 until closed or told to die."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._acts: list[Act] = [Act()]
        self._lock = threading.Lock()
        self.seen: list[Seen] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def script(self, *acts: Act) -> None:
        with self._lock:
            self._acts = list(acts)

    def _next(self) -> Act:
        with self._lock:
            return self._acts.pop(0) if len(self._acts) > 1 else self._acts[0]

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    request = _read_request(conn)
                except OSError:
                    return  # the client reset the connection (it may, after a cut reply)
                if request is None:
                    return
                self.seen.append(request)
                act = self._next()
                if act.how == "close":
                    return
                if act.how == "reset":
                    # SO_LINGER 0: close() sends RST instead of FIN.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if act.how == "die":
                    self.close()
                    return
                head = [f"HTTP/1.1 {act.status} {_REASONS.get(act.status, 'Status')}"]
                headers = {"Content-Type": "application/json", **act.headers}
                headers["Content-Length"] = str(len(act.body))
                head += [f"{k}: {v}" for k, v in headers.items()]
                try:
                    conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + act.body)
                except OSError:
                    return  # the client stopped reading (e.g. a reply cut at its limit)

    def close(self) -> None:
        """Stop listening: from now on connections are refused."""
        if not self._closed.is_set():
            self._closed.set()
            # shutdown() first: a bare close() leaves the socket listening while the accept
            # thread still blocks in accept() on it.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()


def _read_request(conn: socket.socket) -> Seen | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return Seen(method, path, body)


@contextmanager
def misbehaving_server() -> Iterator[MisbehavingServer]:
    server = MisbehavingServer()
    try:
        yield server
    finally:
        server.close()
