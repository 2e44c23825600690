"""Writing batch files that are valid by construction: ``BatchWriter``.

Every line goes through the validator's own ``LineChecker`` and file rules before it is
written, so a line the writer accepts is a line ``validate`` accepts. With rotation on, the
writer opens a new part whenever the next line would break a limit (a token budget too: each
request's input tokens are then estimated with ``TokenCounter``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, ExitStack
from hashlib import sha256
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from ..errors import JsonlBatchError, UsageError
from ..outputs.atomic import WriteError, atomic_output, writes_through
from ..outputs.manifests import Manifest, OutputSet, Part, manifest_path, part_name
from ..rules.checks import FileRules
from ..rules.limits import Limits, Totals
from ..rules.problems import CATALOGUE
from ..rules.profiles import Profile, get_profile
from ..rules.requests import RequestFacts, request_line
from ..rules.schemas import describe
from ..validate import LineChecker

Rotate = bool | Literal["auto"]


class BuildError(JsonlBatchError, ValueError):
    """A request (or a row) cannot be written: ``code`` names the rule it breaks.

    ``code`` is a problem code of the validator (``duplicate_custom_id``, ``invalid_body``,
    ``too_many_tasks``, ``token_limit_exceeded``, ...) or a build code (``missing_column``,
    ``null_value``, ``empty_value``, ``invalid_input``). ``param`` and ``value`` say where
    and what; ``row`` and ``column`` are set when the request came from a row of
    ``build_file``'s input.
    """

    code = "build_error"

    def __init__(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        value: Any = None,
        first: int | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.message = Exception.__str__(self)
        """The message in a Python caller's words (``worded`` gives another audience's)."""
        self.param, self.value = param, value
        self.first = first
        """For ``duplicate_custom_id``: the request (or row) number that used it first."""
        self.row, self.column = row, column

    def worded(self, words: Mapping[str, str]) -> str:
        return self._located(self.message if not self.hints else super().worded(words))

    def __str__(self) -> str:
        return self._located(self.message)

    def _located(self, message: str) -> str:
        where = ", ".join(
            x
            for x in (
                f"row {self.row}" if self.row is not None else "",
                f"column {self.column!r}" if self.column is not None else "",
            )
            if x
        )
        return f"{where + ': ' if where else ''}{message} ({self.code})"


NON_FINITE_HINT = "give a finite number, or text"


def non_finite(value: Any, where: str = "") -> tuple[str, float] | None:
    """The first NaN or infinite float in ``value`` (nested in lists and dicts) as
    ``(path, value)``, the path like ``.messages[0].x``; ``None`` if there is none."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (where, value)
    if isinstance(value, dict):
        items: Iterable[tuple[str, Any]] = ((f".{k}", v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for step, item in items:
        found = non_finite(item, where + step)
        if found is not None:
            return found
    return None


class BatchWriter(AbstractContextManager["BatchWriter"]):
    """Write requests to ``target`` (a path, or a binary stream) under a profile's rules.

    ``add(body, custom_id=None)`` appends one request, or raises ``BuildError`` and leaves
    the output as it was. A body without ``model`` gets ``model``; custom_ids default to
    ``request-1``, ``request-2``, ... Limits default to the profile's. ``max_tokens``
    (default: the profile's ``max_enqueued_tokens``) is a budget of estimated input tokens
    per file; counting them needs tiktoken (else ``TokensUnavailable``). ``rotate``:

    - ``False``: one file; a request that would break a limit raises ``BuildError``;
    - ``True``: parts ``name.part-001.jsonl``, ... (a new one whenever the next request would
      break a limit) and ``name.manifest.json``;
    - ``"auto"``: one file if everything fits, parts and a manifest otherwise.

    Files are written under temporary names and renamed together by ``close()``, which
    returns the ``Manifest``; leaving the ``with`` block by an exception removes them all.
    Existing outputs (the file, parts or a manifest of ``target``'s name) are only replaced
    with ``force=True``, and then whatever an earlier build left under that name and this one
    did not write is removed, so no stale part remains to be uploaded twice. ``keep``: the
    files the requests come from, never removed, and never replaced (an output named like
    one is ``OutputExists``, even with ``force``). A missing folder is a ``WriteError`` at
    once. A ``target`` named ``"-"`` (standard output), a character device or a FIFO is
    written through as a stream (``rotate=True`` is refused there, ``"auto"`` is one file).
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[bytes],
        endpoint: str,
        *,
        model: str | None = None,
        profile: str | Profile = "openai",
        rotate: Rotate = False,
        force: bool = False,
        write_manifest: bool = True,
        id_prefix: str = "request-",
        max_requests: int | None = None,
        max_bytes: int | None = None,
        max_embedding_inputs: int | None = None,
        max_tokens: int | None = None,
        keep: Iterable[str | os.PathLike[str]] = (),
    ) -> None:
        self.profile = get_profile(
            profile,
            max_requests=max_requests,
            max_bytes=max_bytes,
            max_embedding_inputs=max_embedding_inputs,
        )
        if endpoint not in self.profile.endpoints:
            raise UsageError(
                f"{endpoint!r} is not an endpoint of the {self.profile.name} profile "
                f"(choose from {', '.join(self.profile.endpoints)})"
            )
        self.limits = Limits.of(self.profile, max_tokens)
        self.max_tokens = self.limits.max_tokens
        self.endpoint, self.model, self.rotate, self.force = endpoint, model, rotate, force
        self.id_prefix, self.write_manifest = id_prefix, write_manifest
        self.stream: IO[bytes] | None = None
        self.path: Path | None = None
        self.outputs: OutputSet | None = None
        self._through = ExitStack()  # a device, a pipe or standard output, opened by name
        if isinstance(target, (str, os.PathLike)) and writes_through(target):
            if rotate is True:
                raise UsageError(f"{target}: parts need a file name to be written next to")
            target = self._through.enter_context(atomic_output(target, force=force, inputs=keep))
            rotate = self.rotate = False
        if isinstance(target, (str, os.PathLike)):
            self.path = path = Path(target)
            self.suffix = path.suffix or ".jsonl"
            self.outputs = OutputSet(
                path.parent,
                path.stem,
                force=force,
                suffix=self.suffix,
                whole=path,
                keep=keep,
                label=path,
                run="build",
                input=path,
            )
            self.outputs.check_folder()
            first = path.parent / part_name(path.stem, 1, suffix=self.suffix)
            self.outputs.check([path, manifest_path(path.parent, path.stem), first])
        else:
            if rotate:
                raise UsageError("rotation needs a path to write parts next to, not a stream")
            self.stream = target
        self.checker = LineChecker(
            self.profile, ("token_limit_exceeded",), endpoint
        )  # counted here
        self._count_tokens = _token_counter() if self.max_tokens is not None else None
        # what every provider takes: unique custom_ids (join tells results apart by them)
        # and one model per file
        strict = self.profile.replace(unique_custom_ids=True, one_model=True)
        self.rules = FileRules(strict, endpoint, model, first="by request")
        self.requests = 0
        self.parts: list[Part] = []
        self.manifest: Manifest | None = None
        self._part: Part | None = None
        self._totals = Totals()
        self._hash = sha256()
        self._out: IO[bytes] | None = None
        self._closed = False

    # -- adding requests

    def add(self, body: dict[str, Any], custom_id: str | None = None) -> str:
        """Append one request; return its custom_id. Raises ``BuildError`` (nothing written)."""
        if self._closed:
            raise UsageError("this BatchWriter is closed")
        if not isinstance(body, dict):
            raise BuildError(
                "invalid_type", f"body must be an object, found {describe(body)}.", param="body"
            )
        if "model" not in body and self.model is not None:
            body = {"model": self.model, **body}
        number = self.requests + 1
        if custom_id is None:
            custom_id = f"{self.id_prefix}{number}"
        line = request_line(self.profile, custom_id, self.endpoint, body)
        try:
            raw = orjson.dumps(line)
        except TypeError as exc:
            raise BuildError(
                "invalid_body", f"The body cannot be written as JSON: {exc}.", param="body"
            ) from None
        if b"null" in raw:  # orjson writes NaN and infinities as null: never silently
            found = non_finite(body)
            if found is not None:
                at = f"body{found[0]}"
                raise BuildError(
                    "invalid_body",
                    f"{at} is {found[1]!r}, a number JSON cannot hold: {NON_FINITE_HINT}.",
                    param=at,
                    value=found[1],
                )
        facts, findings = self.checker.check(raw)
        errors = [f for f in findings or () if CATALOGUE[f[0]].severity == "error"]
        if errors:
            code, _, param = errors[0]
            message = " ".join(m for _, m, _ in errors)
            raise BuildError(code, message, param=param, value=value_at(line, param))
        assert facts is not None  # the line is an object
        size, inputs = len(raw) + 1, facts.embedding_inputs
        count = self._count_tokens
        tokens = count(self.endpoint, line["body"]) if count is not None else 0
        alone = self.limits.alone(size, inputs, tokens)
        if alone is not None:
            raise BuildError(alone.code, alone.message, param=alone.param, value=alone.value)
        for code, message, param in self.rules.check(number, facts):
            first = self.rules.first_use(custom_id) if code == "duplicate_custom_id" else None
            value = custom_id if first is not None else value_at(line, param)
            raise BuildError(code, message, param=param, value=value, first=first)
        broken = self.limits.breaks(self._totals, size, inputs, tokens) if self._part else None
        if broken and not self.rotate:
            hint = "write parts instead (rotate=True, or jsonl-batch build -o FILE)"
            message = f"{broken.message}; {hint}."
            raise BuildError(broken.code, message, param=broken.param, value=custom_id)
        if broken:
            self._finish_part()
        self._write(raw, number, (size, inputs, tokens), facts)
        return custom_id

    # -- parts

    def _write(
        self, raw: bytes, number: int, amounts: tuple[int, int, int], facts: RequestFacts
    ) -> None:
        """Append the line to the current part; ``amounts``: its bytes, inputs, tokens."""
        size, inputs, tokens = amounts
        custom_id, model = facts.custom_id, facts.model
        part = self._part or self._open_part()
        data = raw + b"\n"
        assert self._out is not None
        try:
            self._out.write(data)
        except OSError as exc:
            raise WriteError(f"{self.path or part.path}: {exc.strerror or exc}") from None
        self._hash.update(data)
        totals = self._totals
        totals.requests += 1
        totals.bytes += size
        totals.inputs += inputs
        totals.tokens += tokens
        part.requests += 1
        part.lines += 1
        part.bytes += size
        part.embedding_inputs += inputs
        if part.input_tokens is not None:
            part.input_tokens += tokens
        part.first_custom_id = part.first_custom_id or custom_id
        part.last_custom_id = custom_id
        part.model = model
        self.rules.accept(number, facts)
        self.requests = number

    def _open_part(self) -> Part:
        if self.outputs is None:
            self._out = self.stream
            name = str(getattr(self.stream, "name", "<stream>"))
        else:
            assert self.path is not None
            name = self.path.name
            if self.rotate:
                name = part_name(self.path.stem, len(self.parts) + 1, suffix=self.suffix)
            self._out = self.outputs.open(name)
        self._hash = sha256()
        self._totals = Totals()
        tokens = 0 if self.max_tokens is not None else None
        self._part = Part(name, endpoint=self.endpoint, input_tokens=tokens)
        return self._part

    def _finish_part(self) -> None:
        part = self._part
        if part is None:
            return
        part.sha256 = self._hash.hexdigest()
        if self.outputs is not None:
            self.outputs.close(part.path)
        elif self._out is not None:
            self._out.flush()
        self.parts.append(part)
        self._part = self._out = None

    # -- finishing

    def close(self) -> Manifest:
        """Finish the last part, write the manifest (if parts were written), return it."""
        if self.manifest is not None:
            return self.manifest
        if self._closed:
            raise UsageError("this BatchWriter was aborted")
        if self.requests == 0:
            self.abort()
            raise BuildError("empty_file", "No requests were added; nothing was written.")
        try:
            self._finish_part()
            manifest = Manifest(
                parts=self.parts, profile=self.profile.name, limits=self.limits.to_dict()
            )
            outputs = self.outputs
            if outputs is not None and self.path is not None:
                if self.rotate == "auto" and len(self.parts) == 1:
                    outputs.rename(self.parts[0].path, self.path.name)
                    self.parts[0].path = self.path.name
                elif self.rotate and self.write_manifest:
                    outputs.add_manifest(manifest)
                outputs.commit()
            self._through.close()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self.manifest = manifest
        return manifest

    def abort(self) -> None:
        """Discard every file this writer wrote (earlier outputs stay as they were)."""
        if self.outputs is not None:
            self.outputs.discard()
        self._through.close()
        self._part = self._out = None
        self._closed = True

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        elif not self._closed:
            self.abort()


def _token_counter() -> Callable[[str, Any], int]:
    """``TokenCounter().count``, imported only when a budget needs it."""
    from ..tokens.counting import TokenCounter

    return TokenCounter().count


_PARAM = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def value_at(line: dict[str, Any], param: str | None) -> Any:
    """The value at ``body.messages[1].role`` in a line (``None`` if there is none)."""
    value: Any = line
    for name, index in _PARAM.findall(param or ""):
        try:
            value = value[int(index)] if index else value[name]
        except (KeyError, IndexError, TypeError):
            return None
    return value if param else None
