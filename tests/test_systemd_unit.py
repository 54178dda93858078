"""What systemd/gen-service.service must keep: checks on the file itself (CI has no GPU and no
systemd to start it under), and the exposure limit of scripts/verify-systemd."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "gen-service.service"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values in order; an empty assignment resets the list, as systemd does."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a setting before any section: {raw!r}"
        assert "\\" not in line, "continuation lines are not parsed here"
        key, _, value = line.partition("=")
        values = current.setdefault(key.strip(), [])
        value = value.strip()
        if value:
            values.append(value)
        else:
            values.clear()
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key, [])
    assert len(values) == 1, f"{key}= is set {len(values)} times: {values}"
    return values[0]


def test_devices_are_closed_except_the_nvidia_ones(service: dict[str, list[str]]) -> None:
    """nvidia-smi and CUDA keep the GPU; every other device node stays shut."""
    assert service.get("PrivateDevices", ["no"]) == ["no"], "a private /dev hides /dev/nvidia*"
    assert one(service, "DevicePolicy") == "closed"
    allowed = set(service.get("DeviceAllow", []))
    # Major 195 (/dev/nvidiactl, /dev/nvidia0.., /dev/nvidia-modeset) under either driver's
    # name, and /dev/nvidia-uvm, /dev/nvidia-uvm-tools.
    assert {"char-nvidia-frontend rw", "char-nvidia rw", "char-nvidia-uvm rw"} <= allowed
    assert all("nvidia" in entry for entry in allowed), f"only NVIDIA devices: {allowed}"


def test_any_backend_address_stays_reachable(service: dict[str, list[str]]) -> None:
    """Remote OpenAI-compatible servers can be anywhere: no address lists, no private network."""
    assert "IPAddressDeny" not in service
    assert "IPAddressAllow" not in service
    assert service.get("PrivateNetwork", ["no"]) == ["no"]
    families = set(one(service, "RestrictAddressFamilies").split())
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= families  # notify socket, backends


def test_embedded_llama_cpp_is_not_locked_out(service: dict[str, list[str]]) -> None:
    """ctypes callbacks, llama.cpp threads and the NVIDIA /proc files stay available."""
    assert service.get("MemoryDenyWriteExecute", ["no"]) == ["no"]
    filters = service.get("SystemCallFilter", [])
    assert "@system-service" in filters
    removed = " ".join(f for f in filters if f.startswith("~"))
    assert "@resources" not in removed, "ggml may set affinity, NUMA policy and priority"
    assert one(service, "SystemCallErrorNumber") == "EPERM", "a denied call fails, not kills"
    assert one(service, "SystemCallArchitectures") == "native"
    assert service.get("ProcSubset", ["all"]) == ["all"], "NVIDIA reads /proc/driver/nvidia"


def test_service_behaviour_is_kept(service: dict[str, list[str]]) -> None:
    """Type=notify with the watchdog, reload by SIGHUP, no restart loop on a bad config, and a
    stop timeout above the shipped config's drain grace."""
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    assert one(service, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(service, "Restart") == "on-failure"
    assert "78" in one(service, "RestartPreventExitStatus").split()
    assert int(one(service, "WatchdogSec")) > 60  # the service pings every 60 s
    config = tomllib.loads((REPO / "systemd" / "gen-service.toml").read_text(encoding="utf-8"))
    assert int(one(service, "TimeoutStopSec")) > config["service"]["shutdown_grace_s"]
    assert one(service, "User") == "gen-service"
    assert one(service, "StateDirectory") == "gen-service"
    assert one(service, "ProtectSystem") == "strict"
    assert one(service, "NoNewPrivileges") == "yes"
    assert "CapabilityBoundingSet" in service and service["CapabilityBoundingSet"] == []


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (apt-get install systemd); CI installs it",
)
def test_verify_script_fails_above_the_exposure_limit() -> None:
    """The same unit fails once the limit is below its figure, and the message gives both."""
    done = subprocess.run(
        [str(REPO / "scripts" / "verify-systemd"), "--max-exposure", "0.5", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "passes systemd-analyze verify" in done.stdout
    assert "an exposure level of " in done.stderr
    assert "above the limit of 0.5" in done.stderr
