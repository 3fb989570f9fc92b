"""Real local services for the tests, started and stopped by the tests themselves."""
from __future__ import annotations

import os
import shutil

import pytest

from beam_pipelines.ops.local_services import PubSubEmulator, free_port

__all__ = ["PubSubEmulator", "free_port", "require"]


def require(tool: str, what: str) -> str:
    """The path of ``tool``; a missing tool fails in CI and skips elsewhere."""
    path = shutil.which(tool)
    if path:
        return path
    message = f"{what} needs `{tool}`, which is not installed"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
