"""Builders for serving tests: tiny deployments, free ports, a server in a thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from tiny_models import cached_tiny_models

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
TINY_EXAMPLE = REPO / "examples" / "deploy-cpu-tiny.yaml"
TINY_WORKFLOWS = (
    DATA / "tiny-chain.yaml",
    DATA / "tiny-fanout.yaml",
    DATA / "tiny-long.yaml",
)

# Importing and starting vLLM trips deprecations inside torch (vLLM's code calls the
# deprecated parts, not aragog's), in this process and in threads of it.
VLLM_WARNING_FILTERS = (
    "ignore:.*torch.jit.script_method.*:DeprecationWarning",
    "ignore:.*torch.distributed.reduce_op.*:FutureWarning",
)


def tiny_deployment(
    root: Path,
    models: tuple[str, ...] = ("tiny-2l", "tiny-3l", "tiny-4l"),
    **overrides: Any,
) -> Path:
    """Write the CPU example deployment, on the cached tiny models, into ``root``.

    ``models`` picks the engines (one per model); ``overrides`` replace top-level
    sections of the file (``scheduler``, ``router``, ...).
    """
    doc = yaml.safe_load(TINY_EXAMPLE.read_text())
    tiny = cached_tiny_models()
    doc["workflows"] = [str(p) for p in TINY_WORKFLOWS]
    doc["engines"] = [e for e in doc["engines"] if e["model"] in models]
    for engine in doc["engines"]:
        engine["vllm"]["model_path"] = str(tiny[engine["model"]].path)
    doc.update(overrides)
    path = root / "deploy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float, every_s=0.1) -> bool:
    """True once ``predicate`` holds, False when ``timeout_s`` passes first."""
    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s:
        if predicate():
            return True
        time.sleep(every_s)
    return predicate()


class ServerThread:
    """``aragog serve``'s app on uvicorn, in a thread of the test process.

    The runtime and its event loop stay reachable, so tests can look inside while
    they talk HTTP: :meth:`call` runs a coroutine on the server's loop.
    """

    def __init__(self, config_path: Path) -> None:
        import uvicorn

        from aragog.runtime.deploy import load_deployment
        from aragog.runtime.runtime import Runtime
        from aragog.server.app import create_app
        from aragog.server.metrics import ServerMetrics

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics = ServerMetrics()
        self.runtime = Runtime(load_deployment(config_path), observer=self.metrics)
        self.metrics.watch(self.runtime)
        self.app = create_app(self.runtime, self.metrics)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="aragog-server")

    def start(self) -> None:
        self._thread.start()
        if not wait_until(lambda: self.server.started, 30):
            raise RuntimeError("the server did not start listening within 30 s")

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.app.state.loop

    def call(self, coroutine: Any, timeout_s: float = 60) -> Any:
        """Run ``coroutine`` on the server's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def stop(self, timeout_s: float = 120) -> None:
        self.server.should_exit = True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise RuntimeError(f"the server did not stop within {timeout_s} s")
