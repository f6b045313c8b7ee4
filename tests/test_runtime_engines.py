"""Engines from a deployment: what each entry builds, and the order they start in."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aragog.engines.base import EngineLoad, StageOutput
from aragog.runtime.deploy import deployment_from_dict
from aragog.runtime.engines import build_engine, start_engines


class RecordingEngine:
    """An engine that records when its start began and ended (no model behind it)."""

    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name = name
        self.model = "qwen2.5-7b"
        self._log = log
        self._fail = fail

    async def start(self) -> None:
        self._log.append(f"begin {self.name}")
        await asyncio.sleep(0.05)
        if self._fail:
            raise RuntimeError(f"{self.name} cannot start")
        self._log.append(f"end {self.name}")

    async def generate(self, request_id, prompt, max_tokens, temperature):
        return StageOutput("", 0, 0)

    def load(self) -> EngineLoad:
        return EngineLoad()

    async def shutdown(self) -> None:
        pass


def _deployment(tmp_path: Path, gpu_ids: list[list[int]], shared: bool):
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text("{}")
    engines = [
        {
            "model": "qwen2.5-7b",
            "vllm": {
                "model_path": str(folder),
                "gpu_ids": ids,
                "gpu_memory_utilization": 0.3,
            },
        }
        for ids in gpu_ids
    ]
    doc = {
        "family": "qwen2.5",
        "workflows": ["self-refine"],
        "engines": engines,
        "allow_shared_gpus": shared,
    }
    return deployment_from_dict(doc, "deploy.yaml", tmp_path)


def test_engines_on_separate_gpus_start_together(tmp_path):
    deployment = _deployment(tmp_path, [[0], [1], [2]], shared=False)
    log: list[str] = []
    engines = [RecordingEngine(e.name, log) for e in deployment.engines]

    results = asyncio.run(start_engines(engines, deployment.engines))

    assert results == [None, None, None]
    assert log[:3] == ["begin qwen2.5-7b#0", "begin qwen2.5-7b#1", "begin qwen2.5-7b#2"]


def test_engines_sharing_a_gpu_start_one_after_another(tmp_path):
    deployment = _deployment(tmp_path, [[0], [1], [0]], shared=True)
    log: list[str] = []
    engines = [RecordingEngine(e.name, log) for e in deployment.engines]

    asyncio.run(start_engines(engines, deployment.engines))

    assert log.index("end qwen2.5-7b#0") < log.index("begin qwen2.5-7b#2")
    assert log.index("begin qwen2.5-7b#1") < log.index("end qwen2.5-7b#0")


def test_a_failed_start_is_reported_for_its_engine(tmp_path):
    deployment = _deployment(tmp_path, [[0], [1]], shared=False)
    log: list[str] = []
    engines = [
        RecordingEngine("qwen2.5-7b#0", log),
        RecordingEngine("qwen2.5-7b#1", log, fail=True),
    ]

    results = asyncio.run(start_engines(engines, deployment.engines))

    assert results[0] is None
    assert "cannot start" in str(results[1])


def test_a_vllm_entry_builds_a_vllm_engine_with_the_files_settings(tmp_path):
    deployment = _deployment(tmp_path, [[3]], shared=False)

    engine = build_engine(deployment.engines[0])

    assert type(engine).__name__ == "VllmEngine"
    assert engine.config.gpu_ids == (3,)
    assert engine.config.gpu_memory_utilization == pytest.approx(0.3)
    assert engine.config.model == "qwen2.5-7b"


def test_a_remote_entry_builds_a_remote_engine_reading_its_key_from_the_env(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("TEST_REMOTE_KEY", "secret")
    doc = {
        "family": "qwen2.5",
        "workflows": ["self-refine"],
        "engines": [
            {
                "model": "qwen2.5-14b",
                "remote": {
                    "url": "http://127.0.0.1:9/v1/",
                    "served_model_name": "Qwen/Qwen2.5-14B-Instruct",
                    "api_key_env": "TEST_REMOTE_KEY",
                    "max_retries": 1,
                },
            }
        ],
    }
    entry = deployment_from_dict(doc, "deploy.yaml", tmp_path).engines[0]

    engine = build_engine(entry)

    assert type(engine).__name__ == "RemoteEngine"
    assert engine.config.url == "http://127.0.0.1:9/v1"
    assert engine.config.api_key == "secret"
    assert engine.config.request_model == "Qwen/Qwen2.5-14B-Instruct"
    assert engine.config.max_retries == 1
