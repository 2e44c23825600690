"""Which tiktoken encoding a model uses, and counting text in it, offline.

``encoding_name``: cl100k_base for gpt-4 and gpt-4-*, gpt-3.5/gpt-35, davinci-002, babbage-002,
text-moderation and every embeddings request (all OpenAI embedding models use it); o200k_base
for everything else: gpt-4o, 4.1, 4.5, 5, the o-series, and any newer or unknown name (every
OpenAI model since May 2024 uses it).

``text_counter(name)`` is what counting uses: ``bpe-openai``'s Rust tokenizer ``count()``, which
gives tiktoken's numbers (``len(encode_ordinary(text))``; a test holds the two equal on a fixed
corpus) about twice as fast and without building token lists. A text longer than
``PIECE_CHARS`` is counted a piece at a time (``pieces``), so a pasted blob of many megabytes
costs time and memory in proportion to its length (tiktoken's merge is superlinear on one long
word: 28 s and 1.1 GB for 20 MB).

``get_encoding`` builds tiktoken's own ``Encoding`` (the reference the counter is checked
against) from the copy of the encoding file in the ``bpe-openai`` package (gzipped), checked
against the hash tiktoken expects; tiktoken itself would download the file on first use,
which cannot work offline or in CI.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
import threading
import types
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import JsonlBatchError
from ..rules.profiles import EMBEDDINGS_URL

INSTALL_HINT = "pip install 'jsonl-batch[tokens]'"
CL100K_MODELS = ("gpt-4-", "gpt-3.5", "gpt-35", "davinci-002", "babbage-002", "text-moderation")
BINDINGS = "bpe_openai._bindings"
PIECE_CHARS = 1 << 16
"""Texts longer than this are counted a piece of at most this many characters at a time."""
_CUT = re.compile(r"(?<=\S) |(?<=[A-Za-z])[0-9]")
"""Where no token of either encoding spans the cut: a space after a non-space (a word's
leading space starts a new pre-token), a digit after an ASCII letter (letters and digits are
never one pre-token)."""


class TokensUnavailable(JsonlBatchError, RuntimeError):
    """Tokens cannot be counted: bpe-openai (the ``tokens`` extra) or an encoding file is
    missing (the message says how to fix it)."""

    code = "tokens_unavailable"


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
_COUNTERS: dict[str, Callable[[str], int]] = {}
_LOCK = threading.Lock()


def text_counter(name: str) -> Callable[[str], int]:
    """The tokens of a text in the encoding called ``name``, as tiktoken's
    ``len(encode_ordinary(text))`` (special-token strings count as text, as the API counts
    them), built once per process. Long texts are counted in ``pieces``."""
    found = _COUNTERS.get(name)
    if found is None:
        with _LOCK:
            found = _COUNTERS.get(name) or _COUNTERS.setdefault(name, _counter(name))
    return found


def pieces(text: str, size: int = PIECE_CHARS) -> Iterator[str]:
    """``text`` cut into pieces of at most ``size`` characters whose counts add up to the
    whole's: each cut is at the first exact place (``_CUT``) in the second half of a piece.
    Only where a piece's second half has none (``size // 2`` characters of letters alone,
    say, with no space and no digit) is it cut at ``size``, which can move the total by a
    token or two per cut: the one approximation, and only in texts over ``size`` characters."""
    start, end = 0, len(text)
    search = _CUT.search
    while end - start > size:
        found = search(text, start + size // 2, start + size)
        cut = found.start() if found is not None else start + size
        yield text[start:cut]
        start = cut
    yield text[start:]


def get_encoding(name: str) -> Any:
    """The tiktoken ``Encoding`` called ``name``, built once per process from packaged files."""
    found = _ENCODINGS.get(name)
    if found is None:
        with _LOCK:
            found = _ENCODINGS.get(name) or _ENCODINGS.setdefault(name, _build(name))
    return found


def _counter(name: str) -> Callable[[str], int]:
    count = _tokenizer(name).count

    def counter(text: str) -> int:
        if len(text) > PIECE_CHARS:
            return sum(counter(piece) for piece in pieces(text))
        try:
            return count(text)  # type: ignore[no-any-return]
        except UnicodeEncodeError:  # lone surrogates: replaced, as tiktoken does
            return count(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))  # type: ignore[no-any-return]

    return counter


def _tokenizer(name: str) -> Any:
    """bpe-openai's Rust tokenizer for an encoding."""
    bindings = sys.modules.get(BINDINGS) or _load_bindings()
    if bindings is None:
        raise TokensUnavailable(f"token counting needs bpe-openai: {INSTALL_HINT}")
    if name not in bindings.supported_encodings():
        raise TokensUnavailable(f"bpe-openai has no encoding {name!r}: {INSTALL_HINT}")
    return bindings.tokenizer_for_encoding(name)


def _load_bindings() -> types.ModuleType | None:
    """bpe-openai's extension module, loaded on its own (and registered, so that importing
    it later finds it): the package's ``__init__`` builds every encoding's tables in Python,
    which takes half a second."""
    spec = importlib.util.find_spec("bpe_openai")
    folder = Path(spec.origin).parent if spec and spec.origin else None
    for suffix in importlib.machinery.EXTENSION_SUFFIXES if folder else ():
        path = folder / f"_bindings{suffix}" if folder else Path()
        if path.is_file():
            loader = importlib.machinery.ExtensionFileLoader(BINDINGS, str(path))
            found = importlib.util.spec_from_file_location(BINDINGS, path, loader=loader)
            if found is None:
                break
            module = importlib.util.module_from_spec(found)
            loader.exec_module(module)
            sys.modules[BINDINGS] = module
            return module
    return None


def _build(name: str) -> Any:
    try:
        import tiktoken
        from tiktoken_ext import openai_public
    except ImportError:
        raise TokensUnavailable(
            "tiktoken's own encoder (the reference, not the counter) needs tiktoken: "
            "pip install tiktoken"
        ) from None
    constructor = openai_public.ENCODING_CONSTRUCTORS.get(name)
    if constructor is None:
        raise TokensUnavailable(f"tiktoken has no encoding {name!r}: pip install -U tiktoken")
    # tiktoken's own constructor (pattern, special tokens, expected hash) run with its file
    # loader swapped for the packaged file: no download, and no global state touched.
    scope = {**constructor.__globals__, "load_tiktoken_bpe": partial(_packaged_ranks, name)}
    spec = types.FunctionType(constructor.__code__, scope)()
    return tiktoken.Encoding(**spec)


def _packaged_ranks(name: str, _url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """The ``{token bytes: rank}`` table of bpe-openai's copy of a tiktoken encoding file."""
    import base64  # imported here, only for this: every command loads this module (cli.options),
    import gzip  # and hashlib's set-up of OpenSSL is ~3 ms of each one's start
    import hashlib

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
