"""The public object: ``FakeOllama`` (start, stop, go down, come up) and ``serve_forever``.

``Server`` is one listening socket; going down closes it, and coming up makes another on the
same port, over the same simulated GPU.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any, cast

from gen_service.testing.fake_ollama._config import (
    DEFAULT_CONFIG,
    FakeConfig,
    FaultRates,
    JudgeBehaviour,
)
from gen_service.testing.fake_ollama._gpu import Gpu
from gen_service.testing.fake_ollama._handler import Handler
from gen_service.testing.fake_ollama._stats import FakeStats


class Server(ThreadingHTTPServer):
    """One listening socket of the fake; ``go_down`` closes it and ``come_up`` makes another."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], gpu: Gpu) -> None:
        self.gpu = gpu
        self.down = threading.Event()
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        super().__init__(address, Handler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        # Like ThreadingMixIn, but the connections and threads are tracked so that going down
        # can close idle keep-alive connections and join every handler.
        conn = cast(socket.socket, request)
        worker = threading.Thread(
            target=self._serve_connection, args=(conn, client_address), daemon=True
        )
        with self._conn_lock:
            self._conns.add(conn)
            self._workers.add(worker)
        worker.start()

    def _serve_connection(self, conn: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(conn, client_address)
        except Exception:  # a client that vanished mid-exchange is not an error here
            pass
        finally:
            self.shutdown_request(conn)
            with self._conn_lock:
                self._conns.discard(conn)
                self._workers.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def join_workers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._conn_lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))


class FakeOllama:
    """The fake Ollama server; ``with FakeOllama(cfg) as fake:`` serves on ``fake.url``."""

    def __init__(
        self, config: FakeConfig = DEFAULT_CONFIG, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config
        self._host = host
        self._port = port
        self._bound_port: int | None = None
        self._gpu = Gpu(config)
        self._life = threading.Lock()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._bound_port is None:
            raise RuntimeError("the fake Ollama has not been started")
        return f"http://{self._host}:{self._bound_port}"

    def start(self) -> str:
        """Bind, serve in a daemon thread and return the base URL."""
        with self._life:
            if self._server is None:
                self._listen(self._bound_port if self._bound_port is not None else self._port)
            return self.url

    def stop(self) -> None:
        """Stop serving; unblocks stalled and queued handlers. Idempotent."""
        with self._life:
            self._close()

    def go_down(self) -> None:
        """Stop listening (new connections are refused) and drop every connection and model."""
        with self._life:
            if self._server is not None:
                self._close()
                self._gpu.evict_all()  # the process is gone, and its runners with it

    def come_up(self) -> None:
        """Listen again on the same port."""
        with self._life:
            if self._bound_port is None:
                raise RuntimeError("come_up() before start()")
            if self._server is None:
                self._listen(self._bound_port)

    def __enter__(self) -> FakeOllama:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stats(self) -> FakeStats:
        return self._gpu.stats()

    def set_faults(self, faults: FaultRates) -> None:
        self._gpu.set_faults(faults)

    def set_judge(self, judge: JudgeBehaviour) -> None:
        """How the following judge requests are answered."""
        self._gpu.set_judge(judge)

    def evict(self, model: str) -> None:
        """Simulate a runner crash or eviction: ``model`` is no longer resident."""
        found = self._gpu.find(model)
        self._gpu.evict(found.name if found else model)

    def reset_stats(self) -> None:
        self._gpu.reset_stats()

    # ---- lifecycle (callers hold self._life)

    def _listen(self, port: int) -> None:
        server = Server((self._host, port), self._gpu)
        self._bound_port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-ollama:{self._bound_port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread

    def _close(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.down.set()
        self._gpu.wake_all()
        server.shutdown()
        thread.join()
        server.server_close()
        server.close_connections()
        server.join_workers(timeout=5.0)


def serve_forever(config: FakeConfig, host: str = "127.0.0.1", port: int = 11434) -> None:
    """Serve until KeyboardInterrupt; print the URL, and a stats line on exit."""
    fake = FakeOllama(config, host, port)
    url = fake.start()
    print(
        f"fake Ollama listening on {url} (a test double: its output is not real data)", flush=True
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
        s = fake.stats()
        faults = ",".join(f"{k}={v}" for k, v in s.faults_injected.items() if v) or "none"
        print(
            f"requests={s.requests} chat={s.chat_requests} loads={sum(s.loads.values())}"
            f" peak_vram={s.peak_vram_bytes / 2**30:.2f}GiB busy={s.busy_fraction:.2f}"
            f" tokens={s.tokens_generated} limit={s.limit_tokens:.0f} faults={faults}",
            flush=True,
        )
