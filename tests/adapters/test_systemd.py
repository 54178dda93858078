"""sd_notify and the watchdog against a real AF_UNIX datagram socket, and the unit file check."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from gen_service.adapters.systemd import Notifier, watchdog_loop

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


class Listener:
    """The service manager's end: a bound datagram socket that parses sd_notify messages."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def receive(self, timeout: float = 5.0) -> dict[str, str]:
        self.sock.settimeout(timeout)
        return parse(self.sock.recv(4096))

    async def areceive(self) -> dict[str, str]:
        self.sock.setblocking(False)
        while True:
            try:
                return parse(self.sock.recv(4096))
            except BlockingIOError:
                await anyio.wait_readable(self.sock)

    def pending(self) -> list[dict[str, str]]:
        """Every message already queued, without waiting."""
        self.sock.setblocking(False)
        messages = []
        while True:
            try:
                messages.append(parse(self.sock.recv(4096)))
            except BlockingIOError:
                return messages


def parse(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().split("\n"))


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    """A socket in tmp_path named by $NOTIFY_SOCKET, with a 0.2 s watchdog for this process."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "200000")
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        yield Listener(sock)


def test_ready_sends_ready_with_status(listener: Listener) -> None:
    """ready() sends READY=1 and the status line in one datagram."""
    with Notifier() as notifier:
        notifier.ready("generating: phase dramatic-irony")
    assert listener.receive() == {"READY": "1", "STATUS": "generating: phase dramatic-irony"}


def test_status_alone_and_on_one_line(listener: Listener) -> None:
    """status() sends only STATUS=, with newlines folded so the protocol stays line-based."""
    with Notifier() as notifier:
        notifier.status("draining\nREADY=1")
    assert listener.receive() == {"STATUS": "draining READY=1"}


def test_ready_without_status_sends_ready_only(listener: Listener) -> None:
    """ready() with no text sends READY=1 and no empty STATUS=."""
    with Notifier() as notifier:
        notifier.ready()
    assert listener.receive() == {"READY": "1"}


def test_stopping_and_reloading(listener: Listener) -> None:
    """stopping() sends STOPPING=1; reloading() sends RELOADING=1 with the CLOCK_MONOTONIC µs."""
    with Notifier() as notifier:
        notifier.stopping("draining, grace 60 s")
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        notifier.reloading()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert listener.receive() == {"STOPPING": "1", "STATUS": "draining, grace 60 s"}
    reloading = listener.receive()
    assert reloading.keys() == {"RELOADING", "MONOTONIC_USEC"}
    assert reloading["RELOADING"] == "1"
    assert before <= int(reloading["MONOTONIC_USEC"]) <= after


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """A NOTIFY_SOCKET starting with '@' names a socket in the abstract namespace."""
    name = f"gen-service-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        with Notifier() as notifier:
            assert notifier.enabled
            notifier.watchdog()
        assert Listener(sock).receive() == {"WATCHDOG": "1"}


def test_unset_notify_socket_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside systemd every method does nothing, logs nothing and there is no watchdog."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    with capture_logs() as logs, Notifier() as notifier:
        notifier.ready("x")
        notifier.status("x")
        notifier.reloading()
        notifier.stopping()
        notifier.watchdog()
        assert not notifier.enabled
        assert notifier.watchdog_interval() is None
    assert logs == []


def test_watchdog_interval_is_half_the_timeout(listener: Listener) -> None:
    """WATCHDOG_USEC=200000 (0.2 s) means a ping every 0.1 s."""
    with Notifier() as notifier:
        assert notifier.watchdog_interval() == pytest.approx(0.1)


def test_watchdog_pid_of_this_process_counts(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A WATCHDOG_PID equal to our pid keeps the watchdog."""
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    with Notifier() as notifier:
        assert notifier.watchdog_interval() == pytest.approx(0.1)


@pytest.mark.parametrize("pid", [str(os.getpid() + 1), "not-a-pid"])
def test_watchdog_pid_of_another_process_means_no_watchdog(
    listener: Listener, monkeypatch: pytest.MonkeyPatch, pid: str
) -> None:
    """A WATCHDOG_PID that is not ours (or not a pid) means the watchdog is someone else's."""
    monkeypatch.setenv("WATCHDOG_PID", pid)
    with Notifier() as notifier:
        assert notifier.watchdog_interval() is None


@pytest.mark.parametrize("usec", ["", "0", "-5", "soon"])
def test_unusable_watchdog_usec_means_no_watchdog(
    listener: Listener, monkeypatch: pytest.MonkeyPatch, usec: str
) -> None:
    """An empty, zero, negative or non-numeric WATCHDOG_USEC means no watchdog."""
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    with Notifier() as notifier:
        assert notifier.watchdog_interval() is None


def test_missing_socket_warns_once_and_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket path with nothing behind it logs systemd.notify_failed once; calls go on."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "absent.sock"))
    with capture_logs() as logs, Notifier() as notifier:
        notifier.ready("up")
        notifier.watchdog()
        notifier.status("still up")
        notifier.reloading()
        notifier.stopping()
    assert [(e["event"], e["log_level"]) for e in logs] == [("systemd.notify_failed", "warning")]
    assert logs[0]["socket"] == str(tmp_path / "absent.sock")
    assert logs[0]["message"] == "READY=1"


def test_unsupported_address_is_disabled_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """A NOTIFY_SOCKET that is neither a path nor '@name' disables notifications, loudly."""
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    with capture_logs() as logs, Notifier() as notifier:
        notifier.ready()
        assert not notifier.enabled
    assert [e["event"] for e in logs] == ["systemd.notify_failed"]


def test_closed_notifier_is_a_no_op(listener: Listener) -> None:
    """After close() the methods send nothing and do not raise."""
    notifier = Notifier()
    notifier.close()
    notifier.ready()
    notifier.close()
    assert listener.pending() == []


async def test_watchdog_loop_pings_repeatedly(listener: Listener) -> None:
    """The loop sends WATCHDOG=1 again and again while it runs."""
    with Notifier() as notifier, anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watchdog_loop, notifier)
            pings = [await listener.areceive() for _ in range(3)]
            tg.cancel_scope.cancel()
    assert pings == [{"WATCHDOG": "1"}] * 3


async def test_watchdog_loop_returns_at_once_without_a_watchdog(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no WATCHDOG_USEC the loop returns instead of running forever, and sends nothing."""
    monkeypatch.delenv("WATCHDOG_USEC")
    with Notifier() as notifier, anyio.fail_after(5):
        await watchdog_loop(notifier)
    assert listener.pending() == []


async def test_unhealthy_withholds_pings_until_it_recovers(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While healthy() is False no ping goes out; when it turns True they resume."""
    monkeypatch.setenv("WATCHDOG_USEC", "20000")
    answers = [False, False, False, True]
    with capture_logs() as logs, Notifier() as notifier, anyio.CancelScope() as scope:

        def healthy() -> bool:
            answer = answers.pop(0)
            if not answers:
                scope.cancel()  # the loop's next sleep ends the test
            return answer

        await watchdog_loop(notifier, healthy=healthy)
    assert answers == []
    assert listener.pending() == [{"WATCHDOG": "1"}]
    assert [e["event"] for e in logs] == [
        "systemd.watchdog_enabled",
        "systemd.watchdog_withheld",
        "systemd.watchdog_resumed",
    ]


async def test_never_healthy_sends_no_ping(listener: Listener) -> None:
    """A loop whose healthy() is always False never pings, so systemd would restart it."""
    calls = 0
    with Notifier() as notifier, anyio.CancelScope() as scope:

        def healthy() -> bool:
            nonlocal calls
            calls += 1
            if calls == 3:
                scope.cancel()
            return False

        await watchdog_loop(notifier, healthy=healthy)
    assert calls == 3
    assert listener.pending() == []


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (apt-get install systemd); CI installs it",
)


@needs_systemd_analyze
def test_unit_file_passes_systemd_analyze_verify() -> None:
    """scripts/verify-systemd finds no problem in systemd/gen-service.service."""
    done = subprocess.run(
        [str(REPO / "scripts" / "verify-systemd")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: gen-service.service passes" in done.stdout


@needs_systemd_analyze
def test_verify_script_fails_on_a_bad_unit(tmp_path: Path) -> None:
    """A misspelt key, which systemd-analyze only warns about, fails the check."""
    text = (REPO / "systemd" / "gen-service.service").read_text(encoding="utf-8")
    bad = tmp_path / "gen-service.service"
    bad.write_text(text.replace("WatchdogSec=", "WatchdogSecs="), encoding="utf-8")
    done = subprocess.run(
        [str(REPO / "scripts" / "verify-systemd"), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Unknown key 'WatchdogSecs'" in done.stdout
