"""systemd's notify protocol (``sd_notify``) in a few lines of socket code, and the watchdog.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``, a datagram socket that takes
newline-separated ``KEY=VALUE`` messages: ``READY=1`` ends the start, ``STATUS=`` shows up in
``systemctl status``, ``RELOADING=1`` / ``STOPPING=1`` mark a reload and a stop, ``WATCHDOG=1``
proves the event loop still turns. Outside systemd the variable is unset and every method is a
no-op, so callers never ask whether they run under systemd.

A notification is a courtesy to the service manager, never a reason to fail: sending does not
block and does not raise; the first failure logs ``systemd.notify_failed`` and later ones are
dropped quietly.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from types import TracebackType

import anyio
import structlog

log = structlog.get_logger("gen_service.systemd")


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET``; a no-op when it is unset.

    The environment is read once, at construction (``environ`` defaults to ``os.environ``).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._sock: socket.socket | None = None
        self._warned = False
        if self._address is not None:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            except OSError as exc:
                self._failed(exc, "socket")

    @property
    def enabled(self) -> bool:
        """Whether messages go anywhere (``$NOTIFY_SOCKET`` set and the socket open)."""
        return self._sock is not None

    def ready(self, status: str = "") -> None:
        """Startup (or a reload) is complete: systemd reports the unit as active."""
        self._send("READY=1", status)

    def status(self, text: str) -> None:
        """A one-line status for ``systemctl status``."""
        self._send(None, text)

    def reloading(self, status: str = "") -> None:
        """A reload began; send ``ready()`` when it has ended, applied or refused.

        ``MONOTONIC_USEC`` is what ``Type=notify-reload`` (systemd >= 253) requires; older
        systemd ignores both fields.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}", status)

    def stopping(self, status: str = "") -> None:
        """Shutdown began: systemd shows the unit as deactivating."""
        self._send("STOPPING=1", status)

    def watchdog(self) -> None:
        """Keep-alive: systemd restarts the unit when these stop for ``WatchdogSec``."""
        self._send("WATCHDOG=1", "")

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of ``WatchdogSec``), or None when there is no watchdog.

        None as well when the watchdog is meant for another process (``$WATCHDOG_PID``) or
        there is no socket to ping.
        """
        if self._sock is None or not self._watchdog_usec:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None
            except ValueError:
                return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        return usec / 2 / 1_000_000

    def close(self) -> None:
        """Close the socket; later calls are no-ops."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, state: str | None, status: str) -> None:
        if self._sock is None or self._address is None:
            return
        lines = [state] if state else []
        if status:
            # The protocol is line-based: a newline would start a bogus assignment.
            lines.append("STATUS=" + " ".join(status.splitlines()))
        if not lines:
            return
        message = "\n".join(lines)
        try:
            self._sock.sendto(message.encode("utf-8"), self._address)
        except OSError as exc:  # BlockingIOError (a full queue) included: drop, never wait
            self._failed(exc, message.split("\n", 1)[0])

    def _failed(self, exc: OSError, message: str) -> None:
        if self._warned:
            return
        self._warned = True
        log.warning(
            "systemd.notify_failed",
            socket=_printable(self._address),
            message=message,
            error=str(exc) or type(exc).__name__,
            note="systemd notifications are dropped; the service keeps running",
        )


async def watchdog_loop(notifier: Notifier, *, healthy: Callable[[], bool] = lambda: True) -> None:
    """Ping ``WATCHDOG=1`` every ``watchdog_interval()`` seconds while ``healthy()`` holds.

    The pings come from the event loop itself, so a blocked loop stops them and systemd restarts
    the service. While ``healthy()`` is False the pings are withheld (systemd restarts the unit
    if that lasts ``WatchdogSec``) and resume when it turns True again. Returns at once when no
    watchdog is configured.
    """
    interval = notifier.watchdog_interval()
    if interval is None:
        return
    log.info("systemd.watchdog_enabled", interval_s=interval)
    withheld = False
    while True:
        if healthy():
            if withheld:
                log.info("systemd.watchdog_resumed")
                withheld = False
            notifier.watchdog()
        elif not withheld:
            log.warning(
                "systemd.watchdog_withheld",
                note="unhealthy: systemd restarts the service unless this recovers in time",
            )
            withheld = True
        await anyio.sleep(interval)


def _socket_address(value: str) -> str | None:
    """``$NOTIFY_SOCKET`` as a socket address: a path, or ``@name`` for the abstract namespace."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    if value:
        # vsock: and relative addresses are not supported; say so once, then stay quiet.
        log.warning(
            "systemd.notify_failed",
            socket=value,
            error="unsupported NOTIFY_SOCKET address",
            note="systemd notifications are disabled",
        )
    return None


def _printable(address: str | None) -> str | None:
    return "@" + address[1:] if address and address.startswith("\0") else address
