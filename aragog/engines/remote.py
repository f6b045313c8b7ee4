"""A remote engine: one model behind an OpenAI-compatible HTTP server (vLLM, SGLang).

Each stage call is one non-streaming ``POST {url}/completions`` with the model, the
prompt, ``max_tokens`` and ``temperature``; the token counts come from the response's
``usage``. Cancelling the awaiting task closes the connection, and vLLM and SGLang
abort a request whose client went away.

Retries. A call is retried, with exponential backoff, only when the server cannot
have started generating for it:

- the connection could not be made (refused, DNS, connect timeout);
- the server answered 429, 502, 503 or 504 (overloaded, starting, or a proxy in front
  of it could not reach it); a ``Retry-After`` header stretches the wait, within
  ``max_backoff_s``.

It is never retried once the server accepted the request: a read timeout, a
connection dropped mid-response, or a 500 may come after the server generated
(part of) the answer, and sending it again would double the work on a server that
is probably already struggling. Any other 4xx is the caller's error and is reported
at once. Every failure is an :class:`EngineError` of one line: which engine, which
URL, what went wrong.

Load. The engine counts its own calls in flight. Given ``metrics_interval_s``, it
also polls the server's Prometheus ``/metrics`` (vLLM's or SGLang's names) for the
server's running and waiting requests and KV-cache use, which include other clients'
requests on a shared server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from aragog.engines.base import EngineError, EngineLoad, StageOutput
from aragog.errors import ConfigError

logger = logging.getLogger(__name__)

# Statuses that mean "not now, and nothing was generated".
RETRY_STATUSES = frozenset({429, 502, 503, 504})

# Longest server message kept in an error line.
MAX_MESSAGE_CHARS = 200


@dataclass(frozen=True, slots=True)
class RemoteEngineConfig:
    """How to reach one model on an OpenAI-compatible server.

    Attributes:
        name: the engine's name (unique in a deployment).
        model: the catalog model it serves.
        url: the API base, e.g. ``http://10.0.0.2:8000/v1``.
        served_model_name: the ``model`` field the server expects; None sends
            ``model``.
        api_key: sent as a bearer token when given.
        connect_timeout_s: to open a connection.
        read_timeout_s: between bytes of a response; a whole generation must come
            within it, since calls do not stream.
        max_retries: retries after the first attempt (see the module note).
        backoff_s: wait before the first retry; doubles each time.
        max_backoff_s: the longest wait between attempts.
        max_connections: concurrent connections to the server.
        start_timeout_s: how long :meth:`RemoteEngine.start` waits for the server
            to answer and list the model.
        metrics_interval_s: seconds between polls of the server's ``/metrics``;
            None polls nothing.
        extra_body: more fields for every completion request (``{"ignore_eos":
            true}`` on vLLM, say).
    """

    name: str
    model: str
    url: str
    served_model_name: str | None = None
    api_key: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 600.0
    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_connections: int = 256
    start_timeout_s: float = 60.0
    metrics_interval_s: float | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"engine {self.name!r}"
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: url must start with http(s)://, {self.url!r}")
        if self.max_retries < 0:
            raise ConfigError(
                f"{where}: max_retries must be 0 or more, found {self.max_retries}"
            )
        for name in (
            "connect_timeout_s",
            "read_timeout_s",
            "start_timeout_s",
            "max_connections",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(
                    f"{where}: {name} must be positive, found {getattr(self, name)}"
                )
        if self.backoff_s < 0 or self.max_backoff_s < self.backoff_s:
            raise ConfigError(
                f"{where}: expected 0 <= backoff_s <= max_backoff_s, found "
                f"{self.backoff_s} and {self.max_backoff_s}"
            )
        if self.metrics_interval_s is not None and not self.metrics_interval_s > 0:
            raise ConfigError(
                f"{where}: metrics_interval_s must be positive, "
                f"found {self.metrics_interval_s}"
            )

    @property
    def request_model(self) -> str:
        return self.served_model_name or self.model


class _Retry(Exception):
    """An attempt failed in a way that is safe to repeat."""

    def __init__(self, reason: str, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait_s = wait_s


class RemoteEngine:
    """One model on an OpenAI-compatible server (see the module note).

    Implements :class:`aragog.engines.base.Engine`.
    """

    def __init__(self, config: RemoteEngineConfig) -> None:
        self.config = config
        self._base_url = config.url.rstrip("/")
        self._client: httpx.AsyncClient | None = None
        self._metrics_task: asyncio.Task[None] | None = None
        self._server_load: EngineLoad | None = None
        self.num_in_flight = 0
        self.num_attempts = 0

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def url(self) -> str:
        return self._base_url

    async def start(self) -> None:
        """Open the connection pool and wait until the server lists the model.

        Raises:
            EngineError: the server did not answer within ``start_timeout_s``, or it
                serves other models only.
        """
        if self._client is not None:
            return
        cfg = self.config
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(
                connect=cfg.connect_timeout_s,
                read=cfg.read_timeout_s,
                write=cfg.connect_timeout_s,
                # The scheduler bounds the calls in flight; waiting for a pooled
                # connection is part of a call's time, never an error.
                pool=None,
            ),
            limits=httpx.Limits(
                max_connections=cfg.max_connections,
                max_keepalive_connections=cfg.max_connections,
            ),
        )
        try:
            served = await self._wait_for_models(client)
        except BaseException:
            await client.aclose()
            raise
        if cfg.request_model not in served:
            await client.aclose()
            raise EngineError(
                f"engine {self.name!r}: {self._base_url} serves "
                f"{sorted(served)}, not {cfg.request_model!r}"
            )

        # Serving: keep the client, and poll the server's load if asked to.
        self._client = client
        if cfg.metrics_interval_s is not None:
            self._metrics_task = asyncio.create_task(
                self._poll_metrics(cfg.metrics_interval_s),
                name=f"metrics {self.name}",
            )
        logger.info("engine %s: %s serves %s", self.name, self._base_url, cfg.model)

    async def generate(
        self, request_id: str, prompt: str, max_tokens: int, temperature: float
    ) -> StageOutput:
        """Run one stage call on the server; cancelling closes its connection.

        Raises:
            EngineError: not started, a client error (4xx), a failure after the
                server accepted the call, or retries used up.
        """
        client = self._client
        if client is None:
            raise EngineError(f"engine {self.name!r}: not running (start it first)")
        body = {
            **self.config.extra_body,
            "model": self.config.request_model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        self.num_in_flight += 1
        try:
            data = await self._post_with_retries(client, request_id, body)
        finally:
            self.num_in_flight -= 1
        return self._stage_output(request_id, data)

    def load(self) -> EngineLoad:
        """The server's reported load when polled, else this engine's own calls."""
        if self._server_load is not None:
            return self._server_load
        return EngineLoad(num_running=self.num_in_flight)

    async def shutdown(self) -> None:
        """Stop polling and close the connections; calls in flight fail."""
        task, self._metrics_task = self._metrics_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # --- helpers -----------------------------------------------------------------

    async def _post_with_retries(
        self, client: httpx.AsyncClient, request_id: str, body: dict[str, Any]
    ) -> Any:
        cfg = self.config
        url = f"{self._base_url}/completions"
        for attempt in range(cfg.max_retries + 1):
            self.num_attempts += 1
            try:
                return await self._post_once(client, url, request_id, body)
            except _Retry as retry:
                if attempt == cfg.max_retries:
                    raise EngineError(
                        f"engine {self.name!r}: POST {url} failed after "
                        f"{attempt + 1} attempts: {retry.reason}"
                    ) from None
                wait_s = min(cfg.max_backoff_s, cfg.backoff_s * 2**attempt)
                if retry.wait_s is not None:
                    wait_s = min(cfg.max_backoff_s, max(wait_s, retry.wait_s))
                logger.warning(
                    "engine %s: call %s attempt %d failed (%s); retrying in %.2f s",
                    self.name,
                    request_id,
                    attempt + 1,
                    retry.reason,
                    wait_s,
                )
                await asyncio.sleep(wait_s)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _post_once(
        self,
        client: httpx.AsyncClient,
        url: str,
        request_id: str,
        body: dict[str, Any],
    ) -> Any:
        where = f"engine {self.name!r}: POST {url} (call {request_id})"
        try:
            response = await client.post(url, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Retry(_describe(exc)) from None
        except httpx.TimeoutException as exc:
            # Sent and accepted: the server may be generating; see the module note.
            raise EngineError(
                f"{where}: no answer in time ({_describe(exc)})"
            ) from None
        except httpx.TransportError as exc:
            raise EngineError(
                f"{where}: connection failed ({_describe(exc)})"
            ) from None

        # Statuses: retry the "not now" ones, report the rest with the server's words.
        if response.status_code in RETRY_STATUSES:
            raise _Retry(
                f"HTTP {response.status_code} {_server_message(response)}",
                _retry_after_s(response),
            )
        if response.status_code != 200:
            raise EngineError(
                f"{where}: HTTP {response.status_code}: {_server_message(response)}"
            )
        try:
            return response.json()
        except ValueError:
            raise EngineError(f"{where}: the answer is not JSON") from None

    def _stage_output(self, request_id: str, data: Any) -> StageOutput:
        try:
            text = data["choices"][0]["text"]
            usage = data["usage"]
            return StageOutput(
                text=str(text),
                num_prompt_tokens=int(usage["prompt_tokens"]),
                num_output_tokens=int(usage["completion_tokens"]),
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise EngineError(
                f"engine {self.name!r}: {self._base_url}/completions (call "
                f"{request_id}): unexpected answer ({_describe(exc)})"
            ) from None

    async def _wait_for_models(self, client: httpx.AsyncClient) -> set[str]:
        url = f"{self._base_url}/models"
        deadline_s = time.monotonic() + self.config.start_timeout_s
        wait_s = min(0.25, self.config.max_backoff_s)
        while True:
            try:
                response = await client.get(url)
                if response.status_code == 200:
                    return {m["id"] for m in response.json()["data"]}
                reason = f"HTTP {response.status_code} {_server_message(response)}"
            except httpx.TransportError as exc:
                reason = _describe(exc)
            except (ValueError, KeyError, TypeError):
                reason = "the model list is not OpenAI's format"
            if time.monotonic() + wait_s > deadline_s:
                raise EngineError(
                    f"engine {self.name!r}: GET {url} did not list models within "
                    f"{self.config.start_timeout_s:.0f} s: {reason}"
                )
            await asyncio.sleep(wait_s)
            wait_s = min(wait_s * 2, self.config.max_backoff_s)

    async def _poll_metrics(self, interval_s: float) -> None:
        # The Prometheus endpoint sits at the server's root, beside /v1.
        root = re.sub(r"/v1$", "", self._base_url)
        url = f"{root}/metrics"
        num_failures = 0
        while self._client is not None:
            try:
                response = await self._client.get(url)
                response.raise_for_status()
                self._server_load = parse_server_metrics(
                    response.text, self.config.request_model
                )
                num_failures = 0
            except (httpx.HTTPError, ValueError) as exc:
                num_failures += 1
                self._server_load = None
                if num_failures == 1:
                    logger.warning(
                        "engine %s: GET %s failed (%s); load falls back to this "
                        "engine's own calls",
                        self.name,
                        url,
                        _describe(exc),
                    )
            await asyncio.sleep(interval_s)


# --- the server's metrics ------------------------------------------------------------

# Prometheus names of vLLM's and SGLang's load gauges.
_RUNNING = ("vllm:num_requests_running", "sglang:num_running_reqs")
_WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs")
_KV_USAGE = (
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "sglang:token_usage",
)
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_server_metrics(text: str, model: str) -> EngineLoad:
    """Running, waiting and KV-cache figures from a vLLM or SGLang ``/metrics`` page.

    Samples labelled with another ``model_name`` are skipped; counts of the rest are
    summed (one server may report several engines), KV use is the highest.

    Raises:
        ValueError: the page holds none of the running-request gauges.
    """
    running = waiting = 0.0
    kv_usage: float | None = None
    found = False
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        if labels and "model_name=" in labels and f'model_name="{model}"' not in labels:
            continue
        number = float(value)
        if math.isnan(number):
            continue
        if name in _RUNNING:
            running += number
            found = True
        elif name in _WAITING:
            waiting += number
        elif name in _KV_USAGE:
            kv_usage = number if kv_usage is None else max(kv_usage, number)
    if not found:
        raise ValueError("no running-request gauge (vLLM or SGLang) on the page")
    return EngineLoad(int(running), int(waiting), kv_usage)


def _server_message(response: httpx.Response) -> str:
    # OpenAI-style {"error": {"message"}}, FastAPI's {"detail"}, vLLM's {"message"}.
    try:
        data = response.json()
    except ValueError:
        text = response.text
    else:
        text = ""
        if isinstance(data, dict):
            error = data.get("error")
            if isinstance(error, dict):
                text = str(error.get("message", ""))
            elif error is not None:
                text = str(error)
            text = text or str(data.get("message") or data.get("detail") or "")
        text = text or str(data)
    line = " ".join(text.split())
    if len(line) > MAX_MESSAGE_CHARS:
        line = line[: MAX_MESSAGE_CHARS - 3] + "..."
    return line or response.reason_phrase


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
