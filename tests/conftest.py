"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import jsonl

# the fake OpenAI server (the ``fake`` fixture) and a misbehaving one (``hostile``)
pytest_plugins = ["fake_openai", "hostile_openai"]


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """``write(data, name="in.jsonl")``: bytes, or objects to dump one per line."""

    def _write(data: bytes | list[Any], name: str = "in.jsonl") -> Path:
        path = tmp_path / name
        path.write_bytes(data if isinstance(data, bytes) else jsonl(*data))
        return path

    return _write
