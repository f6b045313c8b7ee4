"""The HTTP API: workflow runs over HTTP, health and Prometheus metrics.

Endpoints:

- ``POST /v1/workflows/{name}/runs`` with ``{"input": {...}}`` (and optionally
  ``"profile_input": N`` and ``"max_tokens": {"agent": N}``, see
  :meth:`aragog.runtime.runtime.Runtime.run`): 200 and the run's result; 400 with a
  message for a body that is not JSON or lacks a field; 404 for an unknown workflow;
  429 when the meta-queue is full; 503 while the engines start (or the server
  stops); 500 when an accepted run failed (the engine's message). A client that
  disconnects cancels its run, which aborts its stage calls in the engines.
- ``GET /v1/workflows``: the served workflows, their agents and candidate models.
- ``GET /health``: 200 when serving, 503 while starting, stopping or failed.
- ``GET /metrics``: Prometheus text format (see :mod:`aragog.server.metrics`).

The engines start in the background once the server listens, so health checks
answer (503) during the tens of seconds engines take to come up.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from aragog.errors import AragogError
from aragog.runtime.deploy import describe_deployment
from aragog.runtime.errors import (
    InvalidInput,
    NotReady,
    QueueFull,
    RunFailed,
    UnknownWorkflow,
)
from aragog.runtime.runtime import Runtime, RuntimeState
from aragog.server.metrics import ServerMetrics

logger = logging.getLogger(__name__)

RUN_FIELDS = ("input", "profile_input", "max_tokens")
# Status for a client that went away before its run finished (nginx's convention);
# nobody reads it, but access logs do.
CLIENT_CLOSED_REQUEST = 499


def create_app(
    runtime: Runtime,
    metrics: ServerMetrics,
    on_start_failure: Callable[[], None] | None = None,
) -> FastAPI:
    """The ASGI app serving ``runtime``; its lifespan starts and stops the runtime.

    Args:
        runtime: a runtime not started yet, built with ``metrics`` as its observer.
        metrics: the server's metrics, already watching ``runtime``.
        on_start_failure: called when the engines fail to start (the CLI stops the
            server then, so that ``aragog serve`` exits with an error).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Start the engines in the background: the server answers 503 meanwhile.
        app.state.loop = asyncio.get_running_loop()
        starting = asyncio.create_task(_start(runtime, on_start_failure))
        try:
            yield
        finally:
            # Stop: let starting engines come up, then shut everything down.
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            await runtime.shutdown()

    app = FastAPI(title="aragog", lifespan=lifespan)
    app.state.runtime = runtime

    @app.post("/v1/workflows/{name}/runs")
    async def create_run(name: str, request: Request) -> Response:
        # Unknown workflows are known without engines; then the body, then the state.
        if name not in runtime.deployment.workflows:
            return _error(404, f"unknown workflow {name!r}")
        try:
            body = _parse_body(await request.body())
        except InvalidInput as exc:
            return _error(400, str(exc))
        if runtime.state is not RuntimeState.READY:
            return _error(503, _state_message(runtime))

        # Run it, unless the client leaves first: then cancel the run.
        run = asyncio.create_task(
            runtime.run(
                name,
                body["input"],
                profile_input=body.get("profile_input"),
                max_tokens=body.get("max_tokens"),
            )
        )
        left = asyncio.create_task(_disconnected(request))
        await asyncio.wait({run, left}, return_when=asyncio.FIRST_COMPLETED)
        left.cancel()
        if not run.done():
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        try:
            result = run.result()
        except (InvalidInput, UnknownWorkflow) as exc:
            return _error(400, str(exc))
        except QueueFull as exc:
            return _error(429, str(exc))
        except NotReady as exc:
            return _error(503, str(exc))
        except (RunFailed, AragogError) as exc:
            return _error(500, f"run failed: {exc}")
        return JSONResponse(result.to_dict())

    @app.get("/v1/workflows")
    async def list_workflows() -> dict[str, Any]:
        document = describe_deployment(runtime.deployment)
        if runtime.state is RuntimeState.READY:
            for name, info in document["workflows"].items():
                router = runtime.router(name)
                learned = router.learned
                info["router"] = {
                    "kind": "oracle" if learned is None else "learned",
                    "profile": router.source,
                    "num_profile_inputs": router.num_inputs,
                }
                if learned is not None:
                    info["router"]["learned"] = {
                        "file": learned.source,
                        "embedding_model": learned.embedder.name,
                        "target": learned.router.target,
                        "threshold": learned.router.threshold,
                    }
        return document

    @app.get("/health")
    async def health() -> Response:
        state = runtime.state
        body: dict[str, Any] = {"status": state.value}
        if state is not RuntimeState.READY:
            if runtime.failure:
                body["error"] = runtime.failure
            return JSONResponse(body, status_code=503)
        body["queue_length"] = runtime.num_queued
        body["num_rounds"] = runtime.num_rounds
        body["engines"] = [
            {
                "name": s.name,
                "model": s.model,
                "num_in_flight": s.num_in_flight,
                "saturation_batch": s.saturation_batch,
            }
            for s in runtime.engines()
        ]
        return JSONResponse(body)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _start(runtime: Runtime, on_failure: Callable[[], None] | None) -> None:
    try:
        await runtime.start()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logger.error("engines failed to start: %s", exc)
        if on_failure is not None:
            on_failure()


def _parse_body(raw: bytes) -> dict[str, Any]:
    """The run request's fields; InvalidInput with a one-line message otherwise."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"body: not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise InvalidInput(
            f'body: expected a JSON object like {{"input": {{...}}}}, found '
            f"{type(body).__name__}"
        )
    unknown = sorted(set(body) - set(RUN_FIELDS))
    if unknown:
        raise InvalidInput(
            f"{unknown[0]}: unknown field (expected {', '.join(RUN_FIELDS)})"
        )
    if "input" not in body:
        raise InvalidInput("input: missing field (the run's named input fields)")
    if not isinstance(body["input"], dict):
        raise InvalidInput(
            f"input: expected an object of named fields, found "
            f"{type(body['input']).__name__}"
        )
    row = body.get("profile_input")
    if row is not None and (isinstance(row, bool) or not isinstance(row, int)):
        raise InvalidInput(f"profile_input: expected an integer, found {row!r}")
    caps = body.get("max_tokens")
    if caps is not None and not isinstance(caps, dict):
        raise InvalidInput(
            f"max_tokens: expected an object of agent names to counts, found "
            f"{type(caps).__name__}"
        )
    return body


async def _disconnected(request: Request) -> None:
    # The body is read already, so the next message is the client going away.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _state_message(runtime: Runtime) -> str:
    state = runtime.state
    if state is RuntimeState.STARTING or state is RuntimeState.CREATED:
        return "engines are starting; retry shortly"
    if state is RuntimeState.FAILED:
        return f"engines failed to start: {runtime.failure}"
    return f"the server is {state.value}"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
