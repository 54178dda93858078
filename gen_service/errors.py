"""The project's errors.

Every failure that crosses a module boundary is one of these; adapters translate the errors of
sockets, processes and files into them at the edge, so the service decides what to do by type::

    GenServiceError
     ├── ConfigError              bad configuration: exit 78 (EX_CONFIG), old config kept on SIGHUP
     ├── BackendError             the inference server failed a call
     │    ├── BackendUnavailable  retryable: refused, dropped, timed out, 503 busy, 500 runner crash
     │    │    └── BackendDown     nothing answers at the address: producers pause, one probe waits
     │    ├── TruncatedOutput     retryable with a larger num_predict (done_reason "length")
     │    └── BackendRejected     not retryable: 400 bad request, 401/403, 404 ...
     │         └── ModelNotFound  the model is not pulled / not served
     ├── InvalidCompletion        the model answered, but nothing in it is usable JSON
     └── StoreError               the SQLite database cannot be opened or written

Exit codes (``cli.py``): 0 ok, 1 unexpected bug, 69 backend unavailable (EX_UNAVAILABLE),
74 store error (EX_IOERR), 78 config error (EX_CONFIG), 130 interrupted.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_SOFTWARE = 1
EXIT_USAGE = 64
EXIT_UNAVAILABLE = 69
EXIT_IOERR = 74
EXIT_CONFIG = 78


class GenServiceError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code = EXIT_SOFTWARE


class ConfigError(GenServiceError):
    """The configuration is wrong; the message names the file, the key and the fix."""

    exit_code = EXIT_CONFIG

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key


class BackendError(GenServiceError):
    """An inference backend call failed."""

    exit_code = EXIT_UNAVAILABLE
    retryable = False

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class BackendUnavailable(BackendError):
    """A transient failure: the same request may succeed later."""

    retryable = True


class BackendDown(BackendUnavailable):
    """The server cannot be reached at all (connection refused, no route): not one request's
    bad luck, so producers pause while a single probe waits for it to come back."""


class TruncatedOutput(BackendError):
    """The model hit num_predict before it finished; retry with a larger budget."""

    retryable = True

    def __init__(self, message: str, *, content: str = "", tokens: int = 0) -> None:
        super().__init__(message)
        self.content = content
        self.tokens = tokens


class BackendRejected(BackendError):
    """The backend refused the request itself; repeating it will not help."""


class ModelNotFound(BackendRejected):
    """The model is not available on the backend."""

    def __init__(self, message: str, *, model: str) -> None:
        super().__init__(message, status=404)
        self.model = model


class InvalidCompletion(GenServiceError):
    """The completion holds no usable JSON (after fences and think text are removed)."""


class StoreError(GenServiceError):
    """The SQLite store cannot be opened, migrated or written."""

    exit_code = EXIT_IOERR


class StoreUnavailable(StoreError):
    """The database's disk refuses writes for now: it is full, read-only or not permitted.
    The writer keeps what it holds and retries; producers pause meanwhile."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # "full" | "readonly" | "permission" | "io"


# Errors a task raises only because another task failed first: never the cause.
_FOLLOW_ON = ("BrokenResourceError", "ClosedResourceError", "EndOfStream", "CancelledError")


def primary_error(exc: BaseException) -> BaseException:
    """The error that ended a task group: the first of our own errors among the leaves of an
    exception group, else the first that is not a follow-on (a stream another task closed,
    a cancellation), else the first leaf."""
    leaves = list(_leaves(exc))
    for leaf in leaves:
        if isinstance(leaf, GenServiceError):
            return leaf
    for leaf in leaves:
        if type(leaf).__name__ not in _FOLLOW_ON:
            return leaf
    return leaves[0] if leaves else exc


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
