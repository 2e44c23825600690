"""Talking to a Batch API server: the client, checked answers, batches, downloads.

``from jsonl_batch import api`` gives the functions of ``api.batches`` (``api.make_client()``,
``api.create_batch(...)``, ...), loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(importlib.import_module(".batches", __name__), name)
