"""The ``/metrics`` (Prometheus) and ``/status`` (JSON) endpoint: a small HTTP/1.1 server on an
anyio TCP listener, run as one task of the supervisor's task group, so it starts after the
database, stops with the service and needs no thread (``prometheus_client.start_http_server``
would run a daemon thread outside the task group that nothing shuts down).

What it serves, all from one :class:`~prometheus_client.CollectorRegistry` of its own (never
the process-global one, which tests and other libraries share)::

    counters   bumped by the writer once per committed batch or verdict, never per sample
      gen_service_samples_total{datatype,status}        accepted | rejected | duplicate
      gen_service_batches_total{datatype,status}        ok | failed
      gen_service_tokens_decoded_total{datatype,model}  every decoded token, thinking included
      gen_service_tokens_wasted_total{datatype,model}   of those: failed attempts, cut-off tails
    gauges     read at scrape time from what the service keeps anyway (a ServiceSnapshot)
      gen_service_accepted_samples{datatype}            counting toward the total target
      gen_service_accepted_today{datatype}, gen_service_{daily,total}_target{datatype}
      gen_service_phase_info{phase,models}              1; empty labels between phases
      gen_service_model_gpu_share{model}                share of the resident model in VRAM
      gen_service_writer_queue_depth                    writes waiting for the writer
      gen_service_gate_state{state}                     1 for the gate's state, 0 for the others
      gen_service_paused                                1 while producers wait at the gate
    judge      from the database at start, then per verdict; only once judgments exist
      gen_service_judged_samples{datatype}, gen_service_judge_overall_mean{datatype}
      gen_service_batches_flagged{datatype}

The counters count what this process committed (a restart starts them at 0, as Prometheus
expects of counters); the gauges say what the database holds.
"""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import structlog
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from gen_service.adapters.store.readonly import open_readonly, query
from gen_service.domain.records import BatchRecord, CommitResult
from gen_service.domain.snapshot import ServiceSnapshot
from gen_service.errors import ConfigError, GenServiceError

log = structlog.get_logger("gen_service.metrics")

GATE_STATES = ("open", "probing", "paused")
MAX_REQUEST_HEAD = 8192  # bytes of request line and headers; a scrape sends a few hundred
REQUEST_TIMEOUT_S = 10.0  # a client that sends no complete request by then is dropped


class ServiceMetrics:
    """The registry, the counters the writer bumps, and the gauges read at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._samples = Counter(
            "gen_service_samples",
            "Samples committed by this process, by data type and status "
            "(accepted, rejected, duplicate)",
            ["datatype", "status"],
            registry=self.registry,
        )
        self._batches = Counter(
            "gen_service_batches",
            "Batches (requests) committed by this process, by data type and status (ok, failed)",
            ["datatype", "status"],
            registry=self.registry,
        )
        self._decoded = Counter(
            "gen_service_tokens_decoded",
            "Tokens the backend decoded for this process's batches, every attempt and thinking "
            "included",
            ["datatype", "model"],
            registry=self.registry,
        )
        self._wasted = Counter(
            "gen_service_tokens_wasted",
            "Of the decoded tokens, those thrown away: failed attempts and cut-off tails",
            ["datatype", "model"],
            registry=self.registry,
        )
        # datatype -> [judged samples, sum of their overall scores, flagged batches]
        self._judge: dict[str, list[float]] = {}
        self._snapshot: Callable[[], ServiceSnapshot] | None = None
        self.registry.register(_SnapshotCollector(self))

    def watch(self, snapshot: Callable[[], ServiceSnapshot], datatypes: Iterable[str]) -> None:
        """Read gauges from ``snapshot`` at each scrape; show the counters of ``datatypes`` at
        0 from the start, so ``rate()`` has a first point."""
        self._snapshot = snapshot
        for name in datatypes:
            for status in ("accepted", "rejected", "duplicate"):
                self._samples.labels(name, status)
            for status in ("ok", "failed"):
                self._batches.labels(name, status)

    async def load_judgments(self, db: Path) -> None:
        """Take the judge's figures so far from the database (once, at start; in a worker
        thread: on a large database the query takes tens of milliseconds)."""
        self._judge = await anyio.to_thread.run_sync(_judge_figures, db)

    # -- the writer's hooks (service.writer.CommitObserver) --------------------------------

    def batch_committed(self, record: BatchRecord, result: CommitResult) -> None:
        d = record.datatype
        self._samples.labels(d, "accepted").inc(result.accepted)
        self._samples.labels(d, "rejected").inc(result.rejected)
        self._samples.labels(d, "duplicate").inc(result.duplicates)
        self._batches.labels(d, record.status).inc()
        self._decoded.labels(d, record.model).inc(record.eval_tokens)
        self._wasted.labels(d, record.model).inc(record.wasted_tokens)

    def verdicts_committed(self, datatype: str, overall: Sequence[float], flagged: bool) -> None:
        figures = self._judge.setdefault(datatype, [0, 0.0, 0])
        figures[0] += len(overall)
        figures[1] += sum(overall)
        figures[2] += int(flagged)

    # -- scrape ------------------------------------------------------------------------------

    def _gauges(self) -> Iterator[Metric]:
        if self._snapshot is not None:
            yield from _snapshot_gauges(self._snapshot())
        judged = GaugeMetricFamily(
            "gen_service_judged_samples", "Samples the judge has scored", labels=["datatype"]
        )
        mean = GaugeMetricFamily(
            "gen_service_judge_overall_mean",
            "Mean overall judge score (0..1) of the judged samples",
            labels=["datatype"],
        )
        flagged = GaugeMetricFamily(
            "gen_service_batches_flagged",
            "Batches the judge flagged (judged mean below validation.flag_below, or labels "
            "that disagree)",
            labels=["datatype"],
        )
        for name, (count, total, flags) in sorted(self._judge.items()):
            judged.add_metric([name], count)
            if count:
                mean.add_metric([name], total / count)
            flagged.add_metric([name], flags)
        yield from (judged, mean, flagged)


class _SnapshotCollector(Collector):
    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # nothing to check for clashes, and no snapshot to read at registration

    def collect(self) -> Iterator[Metric]:
        yield from self._metrics._gauges()


def _snapshot_gauges(snap: ServiceSnapshot) -> Iterator[Metric]:
    accepted = GaugeMetricFamily(
        "gen_service_accepted_samples",
        "Accepted samples in the database, counting toward the total target",
        labels=["datatype"],
    )
    today = GaugeMetricFamily(
        "gen_service_accepted_today",
        "Accepted samples of the local day (service.timezone)",
        labels=["datatype"],
    )
    daily = GaugeMetricFamily(
        "gen_service_daily_target", "Daily target (0: no daily cap)", labels=["datatype"]
    )
    total = GaugeMetricFamily("gen_service_total_target", "Total target", labels=["datatype"])
    for t in snap.types:
        accepted.add_metric([t.datatype], t.accepted)
        today.add_metric([t.datatype], t.accepted_today)
        daily.add_metric([t.datatype], t.daily_target)
        total.add_metric([t.datatype], t.total_target)
    yield from (accepted, today, daily, total)
    phase = InfoMetricFamily(
        "gen_service_phase", "The schedule phase running now and its resident models"
    )
    phase.add_metric([], {"phase": snap.phase or "", "models": ",".join(snap.models)})
    yield phase
    share = GaugeMetricFamily(
        "gen_service_model_gpu_share",
        "Share of the resident model in VRAM after its load (below 1: partly on the CPU)",
        labels=["model"],
    )
    for model, value in sorted(snap.gpu_shares.items()):
        share.add_metric([model], value)
    yield share
    yield GaugeMetricFamily(
        "gen_service_writer_queue_depth",
        "Writes (batches, verdicts) waiting for the writer",
        value=snap.queue_depth,
    )
    gate = GaugeMetricFamily(
        "gen_service_gate_state",
        "1 for the gate's state: open, probing (the backend is down), paused (the database "
        "refuses writes)",
        labels=["state"],
    )
    for state in GATE_STATES:
        gate.add_metric([state], 1.0 if snap.gate == state else 0.0)
    yield gate
    yield GaugeMetricFamily(
        "gen_service_paused",
        "1 while the producers wait at the gate (see gen_service_gate_state)",
        value=0.0 if snap.gate == "open" else 1.0,
    )


def _judge_figures(db: Path) -> dict[str, list[float]]:
    conn = open_readonly(db)
    try:
        figures: dict[str, list[float]] = {}
        for row in query(
            conn, "SELECT datatype, COUNT(*), TOTAL(overall) FROM judgments GROUP BY datatype"
        ):
            figures[row[0]] = [row[1], row[2], 0]
        for row in query(
            conn, "SELECT datatype, COUNT(*) FROM batches WHERE flagged = 1 GROUP BY datatype"
        ):
            figures.setdefault(row[0], [0, 0.0, 0])[2] = row[1]
        return figures
    finally:
        conn.close()


# -- the HTTP endpoint ---------------------------------------------------------------------


class MetricsEndpoint:
    """A bound listener and the metrics it serves; :meth:`serve` runs in the task group."""

    def __init__(self, listener: anyio.abc.Listener[Any], address: str) -> None:
        self._listener = listener
        self.address = address
        self.metrics = ServiceMetrics()
        self._status_threads = anyio.CapacityLimiter(1)  # one /status query at a time

    async def serve(
        self,
        status: Callable[[], dict[str, Any]],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Answer requests until cancelled; ``status`` (blocking, run in a worker thread)
        makes the ``/status`` object."""
        task_status.started()

        async def handle(client: anyio.abc.ByteStream) -> None:
            await self._handle(client, status)

        await self._listener.serve(handle)

    async def _handle(
        self, client: anyio.abc.ByteStream, status: Callable[[], dict[str, Any]]
    ) -> None:
        async with client:
            try:
                with anyio.fail_after(REQUEST_TIMEOUT_S):
                    head = await _read_head(client)
                if head is None:
                    return
                response = await self._respond(head, status)
                await client.send(response)
            except (TimeoutError, OSError, anyio.EndOfStream, anyio.BrokenResourceError):
                return  # the client went away or never finished asking: nothing to answer
            except Exception:
                # A bug behind one answer must not end a 24/7 run (the listener's task group
                # would take the service down with it): log it with its traceback, answer 500.
                log.exception("metrics.request_failed")
                with suppress(OSError, anyio.BrokenResourceError):
                    await client.send(_response(500, b"internal error, see the service's log\n"))

    async def _respond(self, head: bytes, status: Callable[[], dict[str, Any]]) -> bytes:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _response(400, b"bad request\n")
        method, target = parts[0], parts[1]
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return _response(405, b"only GET\n", allow="GET, HEAD")
        if path == "/metrics":
            accept = ""
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "accept":
                    accept = value.strip()
            encode, content_type = choose_encoder(accept)  # OpenMetrics when Prometheus asks
            body = encode(self.metrics.registry)
        elif path == "/status":
            try:
                # Abandoned on cancel: a shutdown does not wait for nvidia-smi or a query.
                data = await anyio.to_thread.run_sync(
                    status, abandon_on_cancel=True, limiter=self._status_threads
                )
            except GenServiceError as exc:  # the database cannot be read right now
                return _response(503, f"{exc}\n".encode())
            body = (json.dumps(data) + "\n").encode()
            content_type = "application/json"
        elif path == "/":
            body = b"gen-service: /metrics (Prometheus), /status (JSON)\n"
            content_type = "text/plain; charset=utf-8"
        else:
            return _response(404, b"not found: try /metrics or /status\n")
        return _response(200, body, content_type=content_type, head_only=method == "HEAD")


async def _read_head(client: anyio.abc.ByteStream) -> bytes | None:
    """The request line and headers (the body of a GET is ignored); None when the client
    closes first or sends more than :data:`MAX_REQUEST_HEAD` bytes without finishing."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_REQUEST_HEAD:
            return None
        try:
            data += await client.receive(4096)
        except anyio.EndOfStream:
            return None
    return data.split(b"\r\n\r\n", 1)[0]


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS |= {500: "Internal Server Error", 503: "Service Unavailable"}


def _response(
    code: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    allow: str | None = None,
    head_only: bool = False,
) -> bytes:
    headers = [
        f"HTTP/1.1 {code} {_REASONS[code]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if allow:
        headers.append(f"Allow: {allow}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + (b"" if head_only else body)


@asynccontextmanager
async def open_endpoint(
    host_port: tuple[str, int] | None, *, config_path: Path | None = None
) -> AsyncIterator[MetricsEndpoint | None]:
    """Bind the endpoint's address before anything else starts (None: it is off).

    An address that cannot be bound (the port is in use, the host is not this machine's, a
    port below 1024 without the privilege) is a :class:`ConfigError`, exit 78: the value of
    ``[service] metrics_addr`` cannot work on this host, and restarting would not change that
    (systemd does not restart on 78), so it is said once, with the fix."""
    if host_port is None:
        yield None
        return
    host, port = host_port
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    except OSError as exc:
        where = f"{config_path}: " if config_path else ""
        raise ConfigError(
            f"{where}[service] metrics_addr: cannot listen on {address}: "
            f"{exc.strerror or exc}. {_why_not(exc, host, port)} Fix: choose another address "
            'or port, or set metrics_addr = "" to turn the endpoint off.',
            path=None if config_path is None else str(config_path),
            key="[service] metrics_addr",
        ) from None
    async with listener:
        log.info("metrics.listening", url=f"http://{address}/metrics")
        yield MetricsEndpoint(listener, address)


def _why_not(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"Another process holds the port (`ss -ltnp 'sport = :{port}'` shows which)."
    if exc.errno == errno.EACCES:
        return "Ports below 1024 need privileges the service does not have."
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return f"{host!r} is not an address of this machine."
    return ""


__all__ = ["MetricsEndpoint", "ServiceMetrics", "open_endpoint"]
