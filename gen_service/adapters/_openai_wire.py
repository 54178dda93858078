"""The OpenAI-compatible wire format, as :mod:`gen_service.adapters.openai_compat` speaks it:
the chat request body (structured output and thinking in each server's dialect), a model
listing entry as :class:`~gen_service.adapters.backend.ModelInfo`, and the words for the
errors :mod:`gen_service.adapters._http` decides."""

from __future__ import annotations

from typing import Any, Literal

from gen_service.adapters._completions import as_mapping, chat_messages
from gen_service.adapters._http import Failure, Refusal
from gen_service.adapters.backend import ChatRequest, ModelInfo


class OpenAIWording:
    """The OpenAI backend's words for the errors :mod:`gen_service.adapters._http` decides."""

    def __init__(self, secret: str | None) -> None:
        self._has_key = secret is not None

    def transport(
        self, failure: Failure, described: str, *, method: str, url: str, server: str
    ) -> str:
        text = f"{method} {url} failed ({described}); is the server running at {server}?"
        if failure is Failure.STALLED:
            text += " If it is busy, lower backend.num_parallel or raise backend.request_timeout_s."
        return text

    def refusal(
        self, refusal: Refusal, said: str, *, status: int, url: str, server: str, model: str | None
    ) -> str:
        if refusal is Refusal.UNAUTHORIZED:
            what = (
                "the API key was refused"
                if self._has_key
                else "no API key was sent and the server wants one"
            )
            return (
                f"{server} refused the request ({said}): {what}; set the API key in the "
                "environment variable named by backend.api_key_env"
            )
        if refusal is Refusal.NO_ROUTE:
            # The route itself is missing, not the model: the URL lacks /v1 or is wrong.
            return (
                f"{url} does not exist ({said}); backend.url and backend.endpoints must be "
                "the server's OpenAI base URL including /v1, e.g. http://127.0.0.1:8000/v1"
            )
        if refusal is Refusal.MODEL_MISSING:
            return (
                f"model {model!r} is not served at {server} ({said}); list the served names "
                f"with GET {server}/models and use one of them"
            )
        if refusal is Refusal.MALFORMED:
            # llama-cpp-python's server answers a malformed request with 500 wrapping pydantic's
            # complaint; repeating the request cannot help.
            return (
                f"{server} rejected the request body ({said}); the server does not accept "
                "this request shape, check backend.response_format and the model options"
            )
        if refusal in (Refusal.BUSY, Refusal.FAILED):
            return f"{server} failed the request ({said}); it will be retried"
        return (
            f"{server} rejected the request ({said}); fix the request or the server's options "
            "(for a schema refusal, set backend.response_format to the mode the server supports)"
        )


def chat_body(
    request: ChatRequest, fmt: Literal["json_schema", "json_object"] | None, send_kwargs: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": chat_messages(request.messages),
        "temperature": request.temperature,
        "max_tokens": request.num_predict,
        "stream": False,
    }
    if request.seed is not None:
        body["seed"] = request.seed
    if request.repeat_penalty is not None:
        # vLLM and SGLang read repetition_penalty, llama.cpp's servers repeat_penalty; each
        # ignores the other's name.
        body["repetition_penalty"] = request.repeat_penalty
        body["repeat_penalty"] = request.repeat_penalty
    if fmt == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "batch", "schema": request.schema, "strict": True},
        }
    elif fmt == "json_object":
        body["response_format"] = {"type": "json_object", "schema": request.schema}
    if send_kwargs:
        body["chat_template_kwargs"] = {"enable_thinking": request.think}
    return body


def model_info(item: dict[str, Any]) -> ModelInfo:
    # vLLM adds max_model_len; llama-server adds meta {size, n_params}. Others give only the id.
    meta = as_mapping(item.get("meta"))
    max_len = item.get("max_model_len")
    n_params = meta.get("n_params")
    return ModelInfo(
        name=str(item["id"]),
        size_bytes=int(meta.get("size") or 0),
        parameter_size=_parameter_size(n_params) if isinstance(n_params, int) else "",
        capabilities=frozenset({"completion"}),
        context_length=max_len if isinstance(max_len, int) else None,
    )


def _parameter_size(n_params: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6)):
        if n_params >= scale:
            return f"{n_params / scale:.3g}{unit}"
    return str(n_params)
