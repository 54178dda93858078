"""The HTTP side: one handler per connection, routing Ollama's endpoints and the control ones.

It reads and answers; the state it acts on is the server's ``Gpu``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import select
import socket
import sys
import time
import traceback
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from gen_service.testing.fake_ollama._config import (
    FAULT_NAMES,
    JUDGE_FIELDS,
    OLLAMA_VERSION,
    FakeModel,
    FaultRates,
    JudgeBehaviour,
    model_details,
    parameter_count,
)
from gen_service.testing.fake_ollama._decode import PREFILL_SPEEDUP
from gen_service.testing.fake_ollama._generate import Completion, generate
from gen_service.testing.fake_ollama._gpu import Gpu, Lease
from gen_service.testing.fake_ollama._request import (
    MSG_BUSY,
    MSG_PULL_UNKNOWN,
    MSG_RUNNER_CRASH,
    Abort,
    ChatRequest,
    HttpError,
    model_named,
    parse_chat,
)
from gen_service.testing.fake_ollama._text import iso

if TYPE_CHECKING:
    from gen_service.testing.fake_ollama._server import Server

_PIECE = re.compile(r"\S+\s*|\s+")


class Handler(BaseHTTPRequestHandler):
    """One connection: reads each request, routes it and answers as Ollama would."""

    protocol_version = "HTTP/1.1"
    server_version = "Ollama"
    sys_version = ""

    @property
    def _srv(self) -> Server:
        return cast("Server", self.server)

    @property
    def _gpu(self) -> Gpu:
        return self._srv.gpu

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every response (Go's net/http sets it too).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ---- plumbing

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, content_type: str, *, count: bool = True) -> None:
        if count:
            self._gpu.count_status(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._responded = True

    def _send_json(self, status: int, payload: object, *, count: bool = True) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self._send(status, body, "application/json; charset=utf-8", count=count)

    def _begin_stream(self) -> None:
        self._gpu.count_status(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._responded = True

    def _stream_line(self, payload: object) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _sleep(self, seconds: float) -> None:
        """Sleep, or abort at once if the server goes down."""
        if seconds > 0 and self._srv.down.wait(seconds):
            raise Abort

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _dispatch(self, method: str) -> None:
        self._responded = False
        control = False
        try:
            raw = self._read_body()
            path = urlsplit(self.path).path.rstrip("/") or "/"
            control = path.startswith("/_fake/")
            if not control:
                self._gpu.count_request()
            routes = _CONTROL_ROUTES if control else _ROUTES
            handlers = routes.get(path)
            if handlers is None:
                self._send(404, b"404 page not found", "text/plain", count=not control)
                return
            handler = handlers.get("GET" if method == "HEAD" else method)
            if handler is None:
                self._send(405, b"405 method not allowed", "text/plain", count=not control)
                return
            handler(self, raw)
        except HttpError as exc:
            if self._responded:
                self.close_connection = True
            else:
                self._send_json(exc.status, {"error": exc.message}, count=not control)
        except Abort:
            self.close_connection = True
        except OSError:
            self.close_connection = True
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            if self._responded:
                self.close_connection = True
            else:
                self._send_json(500, {"error": f"fake ollama: {exc!r}"}, count=not control)

    def _json_body(self, raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            raise HttpError(400, "EOF")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"invalid JSON body: {exc}") from None
        if not isinstance(body, dict):
            raise HttpError(400, "invalid request body: expected a JSON object")
        return body

    def _model_named(self, body: Mapping[str, Any]) -> tuple[str, FakeModel | None]:
        return model_named(body, self._gpu.find)

    # ---- informational endpoints

    def _root(self, raw: bytes) -> None:
        self._send(200, b"Ollama is running", "text/plain; charset=utf-8")

    def _version(self, raw: bytes) -> None:
        # Real Ollama answers {"version"} alone; the extra key lets the service mark what it
        # generates here as test data (SPEC: a fake's sample is never presented as real data).
        self._send_json(200, {"version": OLLAMA_VERSION, "test_double": "gen-service fake-ollama"})

    def _tags(self, raw: bytes) -> None:
        modified = iso(time.time() - 86400)
        models = [
            {
                "name": m.name,
                "model": m.name,
                "modified_at": modified,
                "size": m.size_bytes,
                "digest": m.digest,
                "details": model_details(m),
            }
            for m in self._gpu.models.values()
        ]
        self._send_json(200, {"models": models})

    def _ps(self, raw: bytes) -> None:
        self._send_json(200, {"models": self._gpu.ps()})

    def _show(self, raw: bytes) -> None:
        name, model = self._model_named(self._json_body(raw))
        if model is None:
            raise HttpError(404, f"model '{name}' not found")
        family = model.family
        self._send_json(
            200,
            {
                "license": "",
                "modelfile": f'# Modelfile generated by "ollama show"\nFROM {model.name}\n',
                "parameters": 'stop "<|im_end|>"\ntemperature 0.6',
                "template": "{{ .Prompt }}",
                "details": model_details(model),
                "model_info": {
                    "general.architecture": family,
                    "general.parameter_count": parameter_count(model.parameter_size),
                    "general.file_type": 15,
                    f"{family}.context_length": model.context_length,
                },
                "capabilities": list(model.capabilities),
                "modified_at": iso(time.time() - 86400),
            },
        )

    # ---- pull

    def _pull(self, raw: bytes) -> None:
        body = self._json_body(raw)
        _, model = self._model_named(body)
        stream = body.get("stream") is not False
        if not stream:
            if model is None:
                raise HttpError(500, MSG_PULL_UNKNOWN)
            self._sleep(model.size_bytes / 200e6 * self._gpu.config.time_scale)
            self._send_json(200, {"status": "success"})
            return
        self._begin_stream()
        self._stream_line({"status": "pulling manifest"})
        if model is None:
            self._stream_line({"error": MSG_PULL_UNKNOWN})
            self._end_stream()
            return
        layers = [
            ("sha256:" + model.digest, model.size_bytes),
            ("sha256:" + hashlib.sha256(model.digest.encode()).hexdigest(), 1_492),
        ]
        for digest, total in layers:
            for step in range(5):
                self._sleep(total / 4 / 200e6 * self._gpu.config.time_scale if step else 0)
                self._stream_line(
                    {
                        "status": f"downloading {digest}",
                        "digest": digest,
                        "total": total,
                        "completed": total * step // 4,
                    }
                )
        for status in ("verifying sha256 digest", "writing manifest", "success"):
            self._stream_line({"status": status})
        self._end_stream()

    # ---- chat

    def _chat(self, raw: bytes) -> None:
        request = parse_chat(self._json_body(raw), self._gpu.find)
        gpu = self._gpu
        gpu.count_chat(time.monotonic(), request)
        if not request.messages:
            self._load_or_unload(request)
            return

        faults = gpu.draw_faults()
        if "drop" in faults:
            gpu.count_fault("drop")
            raise Abort
        if "busy_503" in faults:
            gpu.count_fault("busy_503")
            raise HttpError(503, MSG_BUSY)
        if not gpu.acquire_slot(request.model.name, self._srv.down):
            raise HttpError(503, MSG_BUSY)
        lease = Lease(gpu, request)
        try:
            resident, loaded = lease.claim()
            self._sleep(resident.ready_at - time.monotonic())
            lease.busy_since = time.monotonic()
            if "error_500" in faults:
                gpu.count_fault("error_500")
                gpu.evict(request.model.name)
                raise HttpError(500, MSG_RUNNER_CRASH)
            if "stall" in faults:
                gpu.count_fault("stall")
                self._stall()
            completion = generate(gpu, request, faults, gpu.request_rng())
            self._answer(request, completion, gpu.config.load_s if loaded else 0.0, lease)
        finally:
            lease.end()

    def _stall(self) -> None:
        deadline = time.monotonic() + self._gpu.config.stall_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._srv.down.wait(min(0.05, remaining)) or self._client_gone():
                raise Abort

    def _load_or_unload(self, request: ChatRequest) -> None:
        gpu = self._gpu
        if request.keep_alive == 0:
            gpu.unload(request.model.name)
            reason = "unload"
        else:
            resident, _ = gpu.claim(request)
            try:
                self._sleep(resident.ready_at - time.monotonic())
            finally:
                gpu.release(resident, request.keep_alive)
            reason = "load"
        self._send_json(
            200,
            {
                "model": request.name,
                "created_at": iso(time.time()),
                "message": {"role": "assistant", "content": ""},
                "done_reason": reason,
                "done": True,
            },
        )

    def _answer(
        self, request: ChatRequest, completion: Completion, load_s: float, lease: Lease
    ) -> None:
        """Send the completion as it decodes; the lease ends just before the final bytes, so a
        client that reads the answer sees the slot free, the tokens counted and keep_alive 0
        applied."""
        gpu = self._gpu
        cached = lease.cached_prompt_tokens(prompt_text(request), completion.prompt_tokens)
        evaluated = completion.prompt_tokens - cached
        prompt_s = evaluated / (gpu.alone_rate(request.model) * PREFILL_SPEEDUP)
        self._sleep(prompt_s * gpu.config.time_scale)
        lease.start_decode(completion.eval_tokens)
        down = self._srv.down
        if not request.stream:
            lease.wait_decoded(completion.eval_tokens, down)
            message: dict[str, str] = {"role": "assistant", "content": completion.content}
            if completion.thinking:
                message["thinking"] = completion.thinking
            final = self._final(request, completion, load_s, prompt_s, lease)
            final["message"] = message
            lease.end(completion.eval_tokens)
            self._send_json(200, final)
            return

        pieces = [("thinking", p) for p in _PIECE.findall(completion.thinking)]
        pieces += [("content", p) for p in _PIECE.findall(completion.content)]
        self._begin_stream()
        for i, (kind, piece) in enumerate(pieces):
            lease.wait_decoded(completion.eval_tokens * (i + 1) / len(pieces), down)
            message = {"role": "assistant", "content": piece if kind == "content" else ""}
            if kind == "thinking":
                message["thinking"] = piece
            self._stream_line(
                {
                    "model": request.name,
                    "created_at": iso(time.time()),
                    "message": message,
                    "done": False,
                }
            )
        lease.wait_decoded(completion.eval_tokens, down)
        final = self._final(request, completion, load_s, prompt_s, lease)
        lease.end(completion.eval_tokens)
        self._stream_line(final)
        self._end_stream()

    @staticmethod
    def _final(
        request: ChatRequest, completion: Completion, load_s: float, prompt_s: float, lease: Lease
    ) -> dict[str, Any]:
        """The last line of an answer, with the simulated (unscaled) durations."""
        eval_s = lease.eval_s(completion.eval_tokens)
        return {
            "model": request.name,
            "created_at": iso(time.time()),
            "message": {"role": "assistant", "content": ""},
            "done_reason": completion.done_reason,
            "done": True,
            "total_duration": int((load_s + prompt_s + eval_s) * 1e9) + 250_000,
            "load_duration": int(load_s * 1e9) + 50_000,
            "prompt_eval_count": completion.prompt_tokens,
            "prompt_eval_duration": int(prompt_s * 1e9),
            "eval_count": completion.eval_tokens,
            "eval_duration": int(eval_s * 1e9),
        }

    # ---- control endpoints

    def _fake_stats(self, raw: bytes) -> None:
        self._send_json(200, self._gpu.stats().to_json(), count=False)

    def _fake_faults_get(self, raw: bytes) -> None:
        self._send_json(200, dataclasses.asdict(self._gpu.faults), count=False)

    def _fake_faults_set(self, raw: bytes) -> None:
        body = self._json_body(raw)
        unknown = set(body) - set(FAULT_NAMES)
        if unknown:
            raise HttpError(400, f"unknown fault(s): {', '.join(sorted(unknown))}")
        try:
            faults = FaultRates(**body)
        except (TypeError, ValueError) as exc:
            raise HttpError(400, str(exc)) from None
        self._gpu.set_faults(faults)
        self._send_json(200, dataclasses.asdict(faults), count=False)

    def _fake_judge_get(self, raw: bytes) -> None:
        self._send_json(200, dataclasses.asdict(self._gpu.judge), count=False)

    def _fake_judge_set(self, raw: bytes) -> None:
        body = self._json_body(raw)
        unknown = set(body) - set(JUDGE_FIELDS)
        if unknown:
            raise HttpError(400, f"unknown judge setting(s): {', '.join(sorted(unknown))}")
        try:
            judge = JudgeBehaviour(**body)
        except (TypeError, ValueError) as exc:
            raise HttpError(400, str(exc)) from None
        self._gpu.set_judge(judge)
        self._send_json(200, dataclasses.asdict(judge), count=False)

    def _fake_evict(self, raw: bytes) -> None:
        name, model = self._model_named(self._json_body(raw))
        self._gpu.evict(model.name if model else name)
        self._send_json(200, {"evicted": model.name if model else name}, count=False)

    def _fake_reset(self, raw: bytes) -> None:
        self._gpu.reset_stats()
        self._send_json(200, {"reset": True}, count=False)


_Route = dict[str, Any]
_ROUTES: dict[str, _Route] = {
    "/": {"GET": Handler._root},
    "/api/version": {"GET": Handler._version},
    "/api/tags": {"GET": Handler._tags},
    "/api/ps": {"GET": Handler._ps},
    "/api/show": {"POST": Handler._show},
    "/api/chat": {"POST": Handler._chat},
    "/api/pull": {"POST": Handler._pull},
}
_CONTROL_ROUTES: dict[str, _Route] = {
    "/_fake/stats": {"GET": Handler._fake_stats},
    "/_fake/faults": {"GET": Handler._fake_faults_get, "POST": Handler._fake_faults_set},
    "/_fake/judge": {"GET": Handler._fake_judge_get, "POST": Handler._fake_judge_set},
    "/_fake/evict": {"POST": Handler._fake_evict},
    "/_fake/reset": {"POST": Handler._fake_reset},
}


def prompt_text(request: ChatRequest) -> str:
    """The prompt as the model's cache sees it: the messages in order, roles included."""
    return "".join(
        f"{m.get('role', '')}\n{m.get('content', '')}\n"
        for m in request.messages
        if isinstance(m, Mapping)
    )
