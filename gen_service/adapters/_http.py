"""HTTP plumbing shared by the backends that talk to a server: Ollama (``ollama.py``) and
OpenAI-compatible servers (``openai_compat.py``).

Every decision about a failed call is made here, once: which error class it becomes, whether
it is retried, and how long the server asked us to wait. The backends only word the messages,
through a :class:`Wording`, because their fixes differ ("run `ollama pull X`" against "serve X
at URL")::

    transport error  ->  Failure  ->  REFUSED: BackendDown (nothing listens: producers pause)
                                      STALLED, TIMEOUT, DROPPED, OTHER: BackendUnavailable
    HTTP status and the server's words  ->  Refusal (see classify)  ->  REFUSAL_ERRORS
    Retry-After (delta-seconds or an HTTP date)  ->  retry_after on retryable errors
    a body that is not a JSON object  ->  BackendUnavailable

**A grammar the server cannot compile.** Ollama, llama-server and llama-cpp-python compile the
request's JSON schema into a llama.cpp grammar, which refuses repetitions past a limit (see
:func:`gen_service.domain.schema.grammar_safe`). Two things can happen, and both end in an
error that names the limit and the fix instead of an unexplained outage:

- the server refuses the request with a message about the grammar: :data:`Refusal.GRAMMAR`, a
  :class:`BackendRejected` (repeating the request cannot help);
- the server dies compiling it (``python -m llama_cpp.server`` segfaults on a grammar llama.cpp
  refuses): the connection of a schema-constrained request is dropped, then connections are
  refused. A :class:`CrashWatch` per server remembers the drop; the next refused connection
  becomes a :class:`BackendDown` whose message says the server probably crashed compiling the
  grammar, with the fix, and a ``backend.grammar_crash_suspected`` event is logged once per
  drop. It stays a BackendDown, not a rejection: the server is really gone, so producers pause
  and one probe waits for it to be restarted (SPEC §7), and the outage is now explained.
  A successful answer from the server clears the suspicion.
"""

from __future__ import annotations

import email.utils
import enum
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson
import structlog

from gen_service.domain.schema import GRAMMAR_MAX_STRING_CHARS, GRAMMAR_REPETITION_LIMIT
from gen_service.errors import (
    BackendDown,
    BackendError,
    BackendRejected,
    BackendUnavailable,
    ModelNotFound,
)

log = structlog.get_logger(__name__)

MAX_MESSAGE_CHARS = 500


class Failure(enum.Enum):
    """How a request failed before any HTTP answer arrived."""

    REFUSED = "refused"  # nothing listens at the address (or the name does not resolve)
    STALLED = "stalled"  # connected, but no answer within the request timeout
    TIMEOUT = "timeout"  # connect, write or pool timeout
    DROPPED = "dropped"  # the connection broke: closed without an answer, reset
    OTHER = "other"


class Refusal(enum.Enum):
    """What an HTTP error answer means; :data:`REFUSAL_ERRORS` maps each to its error class."""

    UNAUTHORIZED = "unauthorized"  # 401/403: the API key is missing or wrong
    NO_ROUTE = "no_route"  # a bare 404: the URL is wrong, not the model
    MODEL_MISSING = "model_missing"  # the server does not have the model
    GRAMMAR = "grammar"  # the server cannot compile the schema's grammar
    MALFORMED = "malformed"  # llama-cpp-python's 500 wrapping a request-body validation error
    BUSY = "busy"  # 429 / 503: queue full, come back later
    FAILED = "failed"  # 408, other 5xx: timeout, runner crash, out of memory
    REJECTED = "rejected"  # any other 4xx: the request itself is wrong


REFUSAL_ERRORS: dict[Refusal, type[BackendError]] = {
    Refusal.UNAUTHORIZED: BackendRejected,
    Refusal.NO_ROUTE: BackendRejected,
    Refusal.MODEL_MISSING: ModelNotFound,
    Refusal.GRAMMAR: BackendRejected,
    Refusal.MALFORMED: BackendRejected,
    Refusal.BUSY: BackendUnavailable,
    Refusal.FAILED: BackendUnavailable,
    Refusal.REJECTED: BackendRejected,
}

_BARE_404 = frozenset({"", "not found", "file not found", "404 page not found"})


def classify(status: int, message: str, *, model: str | None) -> Refusal:
    """The meaning of an HTTP error ``status`` with the server's ``message``; ``model`` is the
    model the request was about (None for listings, where a 404 cannot mean a missing model)."""
    lowered = message.lower().strip()
    if status in (401, 403):
        return Refusal.UNAUTHORIZED
    if status == 404 and lowered in _BARE_404:
        return Refusal.NO_ROUTE
    if "grammar" in lowered:
        return Refusal.GRAMMAR
    if model is not None and (
        status == 404
        or (status in (400, 422) and "model" in lowered and "not exist" in lowered)
        or "model_not_found" in lowered
    ):
        return Refusal.MODEL_MISSING
    if status == 500 and "validation error" in lowered and "'body'" in lowered:
        return Refusal.MALFORMED
    if status in (429, 503):
        return Refusal.BUSY
    if status >= 500 or status == 408:
        return Refusal.FAILED
    return Refusal.REJECTED


def transport_failure(exc: httpx.HTTPError) -> Failure:
    if isinstance(exc, httpx.ConnectError):
        return Failure.REFUSED
    if isinstance(exc, httpx.ReadTimeout):
        return Failure.STALLED
    if isinstance(exc, httpx.TimeoutException):
        return Failure.TIMEOUT
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return Failure.DROPPED
    return Failure.OTHER


_TRANSPORT_LABELS: tuple[tuple[type[httpx.HTTPError], str], ...] = (
    (httpx.ConnectTimeout, "connect timed out"),
    (httpx.ConnectError, "connection refused or unresolvable"),
    (httpx.ReadTimeout, "no answer before the request timeout"),
    (httpx.WriteTimeout, "write timed out"),
    (httpx.PoolTimeout, "no free connection"),
    (httpx.RemoteProtocolError, "the server dropped the connection"),
    (httpx.ReadError, "the connection broke while reading"),
    (httpx.WriteError, "the connection broke while writing"),
)


def describe_transport(exc: httpx.HTTPError) -> str:
    """What went wrong, in words, with httpx's detail: "the server dropped the connection:
    Server disconnected without sending a response."."""
    label = next((t for kind, t in _TRANSPORT_LABELS if isinstance(exc, kind)), type(exc).__name__)
    detail = str(exc)
    return f"{label}: {detail}" if detail else label


def retry_after(response: httpx.Response, *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: Retry-After as delta-seconds or as an HTTP date
    (RFC 9110 §10.2.3); None when absent or unreadable, never negative."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; a malformed one may lack the zone
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def server_message(response: httpx.Response) -> str:
    """The server's own words: OpenAI's {"error": {"message"}}, Ollama's {"error": "..."},
    FastAPI's {"detail"} (a 422 list of locations and messages), or the body text."""
    try:
        payload = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        payload = _json_fallback(response)  # a BOM, UTF-16: what httpx's decoding accepts
    if payload is _NOT_JSON:
        return response.text.strip() or response.reason_phrase
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        detail = payload.get("detail")
        if isinstance(detail, list):
            return "; ".join(
                f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg', '')}"
                if isinstance(d, dict)
                else str(d)
                for d in detail
            )
        if detail is not None:
            return str(detail)
        if payload.get("message"):
            return str(payload["message"])
    return response.text.strip()


_NOT_JSON = object()


def _json_fallback(response: httpx.Response) -> Any:
    """The body as httpx reads JSON (its charset detection), or _NOT_JSON."""
    try:
        return response.json()
    except ValueError:
        return _NOT_JSON


def json_object(response: httpx.Response, where: str) -> dict[str, Any]:
    """The body as a JSON object; anything else is a server fault worth retrying."""
    try:
        payload = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        payload = _json_fallback(response)  # a BOM, UTF-16: what httpx's decoding accepts
    if payload is _NOT_JSON:
        raise BackendUnavailable(
            f"{where} answered HTTP {response.status_code} with a body that is not JSON "
            f"({response.text[:80]!r})",
            status=response.status_code,
        )
    if not isinstance(payload, dict):
        raise BackendUnavailable(
            f"{where} answered with a JSON {type(payload).__name__}, not an object",
            status=response.status_code,
        )
    return payload


def encode_json(body: dict[str, Any]) -> bytes:
    """A request body as JSON (UTF-8), with orjson: a generation request carries its batch
    schema, thousands of numbers in the grammar-safe enums, which the standard library's
    encoder writes several times slower. NaN and infinities become null; keys that are not
    strings are written as strings; what orjson cannot write (integers past 64 bits) is
    written by the standard library."""
    try:
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(body, ensure_ascii=False).encode("utf-8")


JSON_HEADERS = {"Content-Type": "application/json"}


# -- grammar failures ------------------------------------------------------------------------

_GRAMMAR_FIX = (
    "Fix: keep models.<role>.grammar_safe = true (the default) for the role that uses model "
    "{model!r}, or lower datatypes.<type>.max_string_chars: llama.cpp refuses a grammar whose "
    f"repetitions reach {GRAMMAR_REPETITION_LIMIT} rules, which a free-text field of about "
    "1,000 characters or more produces, and grammar-safe schemas cap free text at "
    f"{GRAMMAR_MAX_STRING_CHARS} characters."
)


def grammar_refused(server: str, said: str, model: str | None) -> str:
    """The message of a :data:`Refusal.GRAMMAR`."""
    return (
        f"{server} could not compile this request's JSON schema into a grammar ({said}). "
        + _GRAMMAR_FIX.format(model=model or "?")
    )


@dataclass(slots=True)
class _Drop:
    model: str
    at: float
    announced: bool = False


class CrashWatch:
    """Per server: was a schema-constrained request dropped, and is the server gone since?"""

    __slots__ = ("_drop",)

    def __init__(self) -> None:
        self._drop: _Drop | None = None

    def dropped(self, model: str) -> None:
        """A schema-constrained request to ``model`` lost its connection without an answer."""
        self._drop = _Drop(model, time.monotonic())

    def answered(self) -> None:
        """The server answered something: it is alive, whatever happened before."""
        self._drop = None

    def suspected(self, server: str) -> str | None:
        """After a refused connection: the crash diagnosis if a drop came before, else None.
        Logs ``backend.grammar_crash_suspected`` once per drop."""
        drop = self._drop
        if drop is None:
            return None
        text = (
            f"{server} refuses connections since it dropped a schema-constrained request to "
            f"{drop.model!r}: it probably crashed compiling the request's grammar "
            "(llama-cpp-python's server dies with a segmentation fault on a grammar llama.cpp "
            "refuses; its log then shows 'failed to parse grammar'). Restart the server. "
            + _GRAMMAR_FIX.format(model=drop.model)
        )
        if not drop.announced:
            drop.announced = True
            log.error(
                "backend.grammar_crash_suspected",
                server=server,
                model=drop.model,
                seconds_since_drop=round(time.monotonic() - drop.at, 1),
                fix=_GRAMMAR_FIX.format(model=drop.model),
            )
        return text


# -- the shared request path -----------------------------------------------------------------


class Wording(Protocol):
    """How one backend words the errors whose class this module decides."""

    def transport(
        self, failure: Failure, described: str, *, method: str, url: str, server: str
    ) -> str:
        """A request to ``server`` that got no HTTP answer; ``described`` is
        :func:`describe_transport`."""
        ...

    def refusal(
        self, refusal: Refusal, said: str, *, status: int, url: str, server: str, model: str | None
    ) -> str:
        """An HTTP error answer from ``server``; ``said`` is "STATUS: the server's message"."""
        ...


class HttpServers:
    """Sends requests to one or more servers through one client and turns every failure into
    a :mod:`gen_service.errors` error, worded by the backend's :class:`Wording`."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        wording: Wording,
        *,
        redact: Callable[[str], str] = lambda text: text,
    ) -> None:
        self.client = client
        self._wording = wording
        self._redact = redact
        self._watches: dict[str, CrashWatch] = {}

    def watch(self, server: str) -> CrashWatch:
        return self._watches.setdefault(server, CrashWatch())

    async def request(
        self,
        method: str,
        url: str,
        *,
        server: str,
        json: dict[str, Any] | None = None,
        constrained_model: str | None = None,
        timeouts: httpx.Timeout | float | None = None,
    ) -> httpx.Response:
        """One request to ``server`` (a base URL, for messages and the crash watch); any
        answer is returned, a missing one raised. ``constrained_model``: the request carries a
        JSON schema for this model, so a dropped connection may be a grammar crash."""
        watch = self.watch(server)
        try:
            if timeouts is None:  # the client's own
                response = await self.client.request(method, url, json=json)
            else:
                response = await self.client.request(method, url, json=json, timeout=timeouts)
        except httpx.HTTPError as exc:
            raise self.transport_error(
                exc, method=method, url=url, server=server, model=(constrained_model)
            ) from exc
        watch.answered()
        return response

    async def request_capped(
        self,
        method: str,
        url: str,
        *,
        server: str,
        json: dict[str, Any],
        max_bytes: int,
        constrained_model: str | None = None,
    ) -> tuple[httpx.Response, bool]:
        """Like :meth:`request`, but the body is read only up to ``max_bytes``: a server that
        answers more (a runaway generation, a misbehaving proxy) is cut off there and never
        held whole in memory. Returns the answer and whether it was cut."""
        watch = self.watch(server)
        cut = False
        try:
            async with self.client.stream(
                method, url, content=encode_json(json), headers=JSON_HEADERS
            ) as streamed:
                chunks: list[bytes] = []
                size = 0
                async for chunk in streamed.aiter_bytes():
                    if size + len(chunk) > max_bytes:
                        chunks.append(chunk[: max_bytes - size])
                        cut = True
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                response = httpx.Response(
                    streamed.status_code,
                    headers=streamed.headers,
                    content=b"".join(chunks),
                    request=streamed.request,
                )
        except httpx.HTTPError as exc:
            raise self.transport_error(
                exc, method=method, url=url, server=server, model=constrained_model
            ) from exc
        watch.answered()
        return response, cut

    def transport_error(
        self, exc: httpx.HTTPError, *, method: str, url: str, server: str, model: str | None
    ) -> BackendUnavailable:
        failure = transport_failure(exc)
        watch = self.watch(server)
        if failure is Failure.DROPPED and model is not None:
            watch.dropped(model)
        message = self._wording.transport(
            failure, describe_transport(exc), method=method, url=url, server=server
        )
        if failure is not Failure.REFUSED:
            return BackendUnavailable(message)
        crash = watch.suspected(server)
        return BackendDown(f"{message} {crash}" if crash else message)

    def message(self, response: httpx.Response) -> str:
        """The server's words, redacted and cut to :data:`MAX_MESSAGE_CHARS`."""
        return self._redact(server_message(response))[:MAX_MESSAGE_CHARS]

    def error(
        self, response: httpx.Response, *, server: str, model: str | None, message: str | None
    ) -> BackendError:
        """The error an HTTP error answer stands for (``message``: the server's words if
        already read)."""
        status = response.status_code
        said_by_server = self.message(response) if message is None else message
        refusal = classify(status, said_by_server, model=model)
        said = f"{status}: {said_by_server}" if said_by_server else str(status)
        url = str(response.request.url)
        if refusal is Refusal.GRAMMAR:
            text = grammar_refused(server, said, model)
        else:
            text = self._wording.refusal(
                refusal, said, status=status, url=url, server=server, model=model
            )
        error_type = REFUSAL_ERRORS[refusal]
        if error_type is ModelNotFound:
            assert model is not None  # classify() says MODEL_MISSING only with a model
            return ModelNotFound(text, model=model)
        wait = retry_after(response) if error_type.retryable else None
        return error_type(text, status=status, retry_after=wait)
