"""The event loop the async commands run on: anyio's asyncio backend, with uvloop where it is
installed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable


def run_async(fn: Callable[[], Awaitable[int]]) -> int:
    import anyio

    return anyio.run(fn, backend="asyncio", backend_options={"use_uvloop": uvloop_available()})


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
