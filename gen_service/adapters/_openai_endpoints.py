"""The endpoints of the OpenAI backend: one per server base URL, with what the backend has
learned about it (its structured-output mode, whether it takes ``chat_template_kwargs``) and
its load, and the :class:`Router` that picks one for each request.

A model's requests go to the endpoints configured for it (``[models.X] endpoints``), else to
``backend.url``: the one with the fewest requests in flight, ties round-robin, passing over
one that has just failed while another is healthy.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Literal

from gen_service.errors import ConfigError

# An endpoint that just failed with a transient error is passed over for this long while another
# one is healthy: a dead server fails fast, has nothing in flight, and would otherwise attract
# every request that least-in-flight routing hands out.
FAILURE_COOLDOWN_S = 5.0


class Endpoint:
    """One server base URL (ending in /v1) and what we learned about it."""

    __slots__ = (
        "base",
        "failed_at",
        "in_flight",
        "requests_sent",
        "response_format",
        "root",
        "template_kwargs",
    )

    def __init__(self, base: str) -> None:
        self.base = base
        # /health and /version live beside /v1, not under it.
        self.root = base.removesuffix("/v1")
        self.in_flight = 0
        self.requests_sent = 0
        self.response_format: Literal["json_schema", "json_object"] | None = None
        self.template_kwargs: bool | None = None
        self.failed_at: float | None = None


def normalize_url(url: str, key: str) -> str:
    base = url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ConfigError(
            f"{key} = {url!r} is not an http(s) URL; give the server's OpenAI base URL "
            "including /v1, e.g. http://127.0.0.1:8000/v1",
            key=key,
        )
    return base


class Router:
    """The endpoints in the order configured, and which one serves a model's next request."""

    def __init__(self, url: str, endpoints: Mapping[str, Sequence[str]] | None) -> None:
        self._endpoints: dict[str, Endpoint] = {}
        self._default_route = [self._endpoint(url)]
        self._routes: dict[str, list[Endpoint]] = {}
        for model, urls in (endpoints or {}).items():
            key = f"backend.endpoints.{model}"
            if isinstance(urls, str) or not urls:
                raise ConfigError(
                    f"{key} must be a non-empty list of base URLs ending in /v1", key=key
                )
            self._routes[model] = [self._endpoint(normalize_url(u, key)) for u in urls]
        self._next_tie: dict[str, int] = {}

    @property
    def endpoints(self) -> list[Endpoint]:
        """Every endpoint once, in the order configured."""
        return list(self._endpoints.values())

    def _endpoint(self, base: str) -> Endpoint:
        # One Endpoint per server URL, shared by every model routed to it, so in-flight
        # counts are per server.
        return self._endpoints.setdefault(base, Endpoint(base))

    def route(self, model: str) -> list[Endpoint]:
        return self._routes.get(model, self._default_route)

    def pick(self, model: str) -> Endpoint:
        """The endpoint with the fewest requests in flight; ties go round-robin."""
        route = self.route(model)
        if len(route) == 1:
            return route[0]
        now = time.monotonic()
        usable = [
            ep for ep in route if ep.failed_at is None or now - ep.failed_at >= FAILURE_COOLDOWN_S
        ] or route
        fewest = min(ep.in_flight for ep in usable)
        start = self._next_tie.get(model, 0)
        for offset in range(len(route)):
            index = (start + offset) % len(route)
            ep = route[index]
            if ep in usable and ep.in_flight == fewest:
                self._next_tie[model] = (index + 1) % len(route)
                return ep
        raise AssertionError("unreachable: some usable endpoint has the fewest in flight")
