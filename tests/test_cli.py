"""The command line, run as a user runs it: the installed entry point."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SIMULATE_FIELDS = {"completed", "throughput_rps", "latency_s", "accuracy"}


def _aragog(*args: str, cwd=None) -> subprocess.CompletedProcess:
    exe = shutil.which("aragog")
    command = [exe] if exe else [sys.executable, "-m", "aragog.cli"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def _remote_deployment(tmp_path) -> Path:
    """A self-refine deployment on remote engines that nothing listens for."""
    deploy = tmp_path / "deploy.yaml"
    remote = {"url": "http://127.0.0.1:9/v1"}
    engines = [
        {"model": m, "remote": remote}
        for m in ("qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b")
    ]
    doc = {"family": "qwen2.5", "workflows": ["self-refine"], "engines": engines}
    deploy.write_text(json.dumps(doc))
    return deploy


def test_simulate_writes_every_policy_with_the_documented_fields(tmp_path):
    out = tmp_path / "run.json"

    proc = _aragog("simulate", "--requests", "60", "--rate", "4", "--json", str(out))

    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["workflow"] == "self-refine"
    assert doc["family"] == "qwen2.5"
    assert doc["trace"] == "azure-conv"
    assert set(doc["policies"]) == {"aragog", "per-input", "per-workflow"}
    for record in doc["policies"].values():
        assert set(record) >= SIMULATE_FIELDS
        assert record["completed"] == 60
        assert set(record["latency_s"]) == {"mean", "p25", "p50", "p95"}
        assert record["latency_s"]["p25"] <= record["latency_s"]["p50"]
        assert record["latency_s"]["p50"] <= record["latency_s"]["p95"]
        assert "accuracy_max_config" in record
    # The oracle keeps every aragog request on an accuracy-preserving configuration.
    aragog = doc["policies"]["aragog"]
    assert aragog["accuracy"] == aragog["accuracy_max_config"]
    assert "aragog" in proc.stdout


def test_sweep_reports_rates_and_maximum_throughput_and_draws_a_plot(tmp_path):
    out, plot = tmp_path / "sweep.json", tmp_path / "sweep.png"

    proc = _aragog(
        "sweep",
        "--workflow",
        "text-to-sql",
        "--requests",
        "40",
        "--rate",
        "1",
        "--rate",
        "3",
        "--workers",
        "1",
        "--json",
        str(out),
        "--plot",
        str(plot),
    )

    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    for record in doc["policies"].values():
        offered = [r["offered_rate_rps"] for r in record["rates"]]
        # The ladder's two rates, plus any bisection of the policy's own bracket.
        assert {1.0, 3.0} <= set(offered)
        assert offered == sorted(offered)
        assert all(1.0 <= r <= 3.0 for r in offered)
        measured = [r["throughput_rps"] for r in record["rates"]]
        assert record["max_throughput_rps"] in [*measured, 0.0]
        assert set(record) >= SIMULATE_FIELDS
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "--workflow", "nope"], "nope: no such workflow file"),
        (["simulate", "--family", "gpt"], "gpt: no such family file"),
        (["simulate", "--rate", "-1", "--requests", "5"], "--rate: expected"),
        (["simulate", "--trace", "missing.csv"], "missing.csv"),
        (["sweep", "--rate", "0", "--requests", "5"], "--rate"),
        (
            ["simulate", "--throughput-profile", "none.json"],
            "none.json: cannot read (No such file or directory)",
        ),
    ],
)
def test_bad_input_gets_one_line_and_a_non_zero_exit(args, message):
    proc = _aragog(*args)

    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_broken_workflow_file_is_named_with_its_field(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text(
        "name: loop\nagents:\n"
        "  - {name: a, upstream: [b], output: {source: trace}}\n"
        "  - {name: b, upstream: [a], output: {source: trace}}\n"
    )

    proc = _aragog("simulate", "--workflow", str(path))

    assert proc.returncode == 2
    assert f"{path}: agents: cycle among a, b" in proc.stderr


def test_serve_refuses_a_router_file_in_one_line_before_starting_anything(tmp_path):
    from test_deploy import _router_file

    deploy = _remote_deployment(tmp_path)
    voting = _router_file(tmp_path, "voting")
    cases = [
        ("missing.npz", "--router missing.npz: no such file"),
        (
            voting,
            f"--router {voting}: trained for workflow 'voting', which {deploy} does "
            "not serve (served: self-refine)",
        ),
    ]

    for router, message in cases:
        proc = _aragog("serve", "--config", str(deploy), "--router", router)

        # The log says what was loaded; the error is the last line, alone.
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == f"error: {message}"


def test_serve_without_the_serve_extra_says_how_to_install_it(tmp_path, monkeypatch):
    from aragog.errors import ConfigError
    from aragog.server.serve import serve

    deploy = _remote_deployment(tmp_path)
    # A None entry makes `import uvicorn` raise ImportError, as on a machine without it.
    monkeypatch.setitem(sys.modules, "uvicorn", None)

    with pytest.raises(ConfigError) as info:
        serve(str(deploy))

    assert str(info.value).startswith(
        "aragog serve needs the serve extra (pip install 'aragog[serve]'): "
    )
