"""Which tiktoken encoding a model uses, and the encoding itself, built offline.

``encoding_name``: cl100k_base for gpt-4 and gpt-4-*, gpt-3.5/gpt-35, davinci-002, babbage-002,
text-moderation and every embeddings request (all OpenAI embedding models use it); o200k_base
for everything else: gpt-4o, 4.1, 4.5, 5, the o-series, and any newer or unknown name (every
OpenAI model since May 2024 uses it).

``get_encoding`` builds a tiktoken ``Encoding`` once per process from the copy of the encoding
file in the ``bpe-openai`` package (gzipped), checked against the hash tiktoken expects; tiktoken
itself would download the file on first use, which cannot work offline or in CI.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import threading
import types
from functools import partial
from pathlib import Path
from typing import Any

from .profiles import EMBEDDINGS_URL

INSTALL_HINT = "pip install 'jsonl-batch[tokens]'"
CL100K_MODELS = ("gpt-4-", "gpt-3.5", "gpt-35", "davinci-002", "babbage-002", "text-moderation")


class TokensUnavailable(RuntimeError):
    """Tokens cannot be counted: tiktoken or an encoding file is missing (the message says
    how to fix it)."""


def base_model(model: str | None) -> str:
    """The model name used to pick an encoding: lower case, ``ft:`` wrapper removed."""
    name = (model or "").lower()
    return name[3:].split(":", 1)[0] if name.startswith("ft:") else name


def encoding_name(model: str | None, url: str | None = None) -> str:
    """The tiktoken encoding for a model (and endpoint): ``o200k_base`` or ``cl100k_base``."""
    name = base_model(model)
    if url == EMBEDDINGS_URL or name == "gpt-4" or name.startswith(CL100K_MODELS):
        return "cl100k_base"
    return "o200k_base"


_ENCODINGS: dict[str, Any] = {}
_LOCK = threading.Lock()


def get_encoding(name: str) -> Any:
    """The tiktoken ``Encoding`` called ``name``, built once per process from packaged files."""
    found = _ENCODINGS.get(name)
    if found is None:
        with _LOCK:
            found = _ENCODINGS.get(name) or _ENCODINGS.setdefault(name, _build(name))
    return found


def _build(name: str) -> Any:
    try:
        import tiktoken
        from tiktoken_ext import openai_public
    except ImportError:
        raise TokensUnavailable(f"token counting needs tiktoken: {INSTALL_HINT}") from None
    constructor = openai_public.ENCODING_CONSTRUCTORS.get(name)
    if constructor is None:
        raise TokensUnavailable(f"tiktoken has no encoding {name!r}: {INSTALL_HINT}")
    # tiktoken's own constructor (pattern, special tokens, expected hash) run with its file
    # loader swapped for the packaged file: no download, and no global state touched.
    scope = {**constructor.__globals__, "load_tiktoken_bpe": partial(_packaged_ranks, name)}
    spec = types.FunctionType(constructor.__code__, scope)()
    return tiktoken.Encoding(**spec)


def _packaged_ranks(name: str, _url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """The ``{token bytes: rank}`` table of bpe-openai's copy of a tiktoken encoding file."""
    spec = importlib.util.find_spec("bpe_openai")
    folder = Path(spec.origin).parent if spec and spec.origin else None
    path = folder / "data" / f"{name}.tiktoken.gz" if folder else None
    if path is None or not path.is_file():
        raise TokensUnavailable(
            f"the {name} encoding is not available offline; it comes with the bpe-openai "
            f"package: {INSTALL_HINT}"
        )
    data = gzip.decompress(path.read_bytes())
    if expected_hash and hashlib.sha256(data).hexdigest() != expected_hash:
        raise TokensUnavailable(
            f"{path} is not the {name} file tiktoken expects (sha256 {expected_hash}); "
            "reinstall it: pip install --force-reinstall 'bpe-openai>=0.1.4'"
        )
    return {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }
