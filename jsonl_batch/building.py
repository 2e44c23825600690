"""Writing batch files that are valid by construction: ``BatchWriter``.

Every line goes through the validator's own ``LineChecker`` and file rules before it is
written, so a line the writer accepts is a line ``validate`` accepts. With rotation on, the
writer opens a new part whenever the next line would break a limit (a token budget too: each
request's input tokens are then estimated with ``TokenCounter``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from hashlib import sha256
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from .errors import UsageError
from .manifests import Manifest, Part, manifest_path, writer_part_name
from .output import OutputExists, atomic_output, check_writable
from .problems import CATALOGUE
from .profiles import Profile, get_profile
from .rules import FileRules
from .schemas import describe
from .validation import LineChecker

Rotate = bool | Literal["auto"]


class BuildError(ValueError):
    """A request (or a row) cannot be written: ``code`` names the rule it breaks.

    ``code`` is a problem code of the validator (``duplicate_custom_id``, ``invalid_body``,
    ``too_many_tasks``, ``token_limit_exceeded``, ...) or a build code (``missing_column``,
    ``null_value``, ``empty_value``, ``invalid_input``). ``param`` and ``value`` say where
    and what; ``row`` and ``column`` are set when the request came from a row of
    ``build_file``'s input.
    """

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
        super().__init__(message)
        self.code, self.message, self.param, self.value = code, message, param, value
        self.first = first
        """For ``duplicate_custom_id``: the request (or row) number that used it first."""
        self.row, self.column = row, column

    def __str__(self) -> str:
        where = ", ".join(
            x
            for x in (
                f"row {self.row}" if self.row is not None else "",
                f"column {self.column!r}" if self.column is not None else "",
            )
            if x
        )
        return f"{where + ': ' if where else ''}{self.message} ({self.code})"


class _Abort(Exception):
    """Thrown into ``atomic_output`` to discard a part."""


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

    Files are written under temporary names and renamed when complete; leaving the ``with``
    block by an exception removes everything this writer wrote. ``close()`` returns the
    ``Manifest``. Existing outputs are only replaced with ``force=True``.
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
        self.max_tokens = max_tokens if max_tokens is not None else self.profile.max_enqueued_tokens
        p = self.profile
        for name, value in (
            ("max_requests", p.max_requests),
            ("max_bytes", p.max_bytes),
            ("max_embedding_inputs", p.max_embedding_inputs),
            ("max_tokens", self.max_tokens),
        ):
            if value is not None and value < 1:
                raise UsageError(f"{name} must be at least 1, not {value}")
        self.endpoint, self.model, self.rotate, self.force = endpoint, model, rotate, force
        self.id_prefix, self.write_manifest = id_prefix, write_manifest
        self.stream: IO[bytes] | None = None
        self.path: Path | None = None
        if isinstance(target, (str, os.PathLike)):
            self.path = Path(target)
            self._check_targets()
        else:
            if rotate:
                raise UsageError("rotation needs a path to write parts next to, not a stream")
            self.stream = target
        self.checker = LineChecker(self.profile, ("token_limit_exceeded",))  # counted here
        self._count_tokens = _token_counter() if self.max_tokens is not None else None
        self.rules = FileRules(self.profile, endpoint, model)
        self.requests = 0
        self.parts: list[Part] = []
        self.manifest: Manifest | None = None
        self._written: list[Path] = []
        self._part: Part | None = None
        self._hash = sha256()
        self._out: IO[bytes] | None = None
        self._cm: Any = None
        self._closed = False

    def _check_targets(self) -> None:
        """Refuse (before writing anything) to replace an output without ``force``."""
        assert self.path is not None
        if self.rotate is not True:
            check_writable(self.path, self.force)
        if not self.rotate:
            return
        check_writable(manifest_path(self.path.parent, self.path.stem), self.force)
        first = writer_part_name(self.path, 1)
        check_writable(first, self.force)
        pattern = re.compile(re.escape(first.name).replace("001", r"\d{3,}"))
        existing = [p for p in self.path.parent.glob("*") if pattern.fullmatch(p.name)]
        if existing and not self.force:
            raise OutputExists(f"{existing[0]} already exists; use --force to overwrite it")

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
        line = {"custom_id": custom_id, "method": "POST", "url": self.endpoint, "body": body}
        try:
            raw = orjson.dumps(line)
        except TypeError as exc:
            raise BuildError(
                "invalid_body", f"The body cannot be written as JSON: {exc}.", param="body"
            ) from None
        facts, findings = self.checker.check(raw)
        errors = [f for f in findings or () if CATALOGUE[f[0]].severity == "error"]
        if errors:
            code, _, param = errors[0]
            message = " ".join(m for _, m, _ in errors)
            raise BuildError(code, message, param=param, value=value_at(line, param))
        assert facts is not None  # the line is an object
        size, inputs = len(raw) + 1, facts[3]
        count = self._count_tokens
        tokens = count(self.endpoint, line["body"]) if count is not None else 0
        self._check_alone(size, inputs, tokens)
        self._check_model(number, facts[2])
        first = self.rules.first_use.get(custom_id)
        if first is not None:
            raise BuildError(
                "duplicate_custom_id",
                f"custom_id {custom_id!r} is already used by request {first}; "
                "custom_ids must be unique.",
                param="custom_id",
                value=custom_id,
                first=first,
            )
        broken = self._breaks(size, inputs, tokens)
        if broken and not self.rotate:
            raise BuildError(broken[0], broken[1], value=custom_id)
        if broken:
            self._finish_part()
        self._write(raw, custom_id, number, (size, inputs, tokens), facts[2])
        return custom_id

    def _check_alone(self, size: int, inputs: int, tokens: int) -> None:
        p = self.profile
        if p.max_bytes is not None and size > p.max_bytes:
            raise BuildError(
                "file_too_large",
                f"This request alone is {size:,} bytes, more than the limit of {p.max_bytes:,} "
                "bytes per file.",
                value=size,
            )
        limit = p.max_embedding_inputs
        if limit is not None and inputs > limit:
            raise BuildError(
                "too_many_embedding_inputs",
                f"This request alone has {inputs:,} embedding inputs, more than the limit of "
                f"{limit:,} per file.",
                param="body.input",
                value=inputs,
            )
        if self.max_tokens is not None and tokens > self.max_tokens:
            raise BuildError(
                "token_limit_exceeded",
                f"This request alone has an estimated {tokens:,} input tokens, more than the "
                f"budget of {self.max_tokens:,} per file.",
                value=tokens,
            )

    def _check_model(self, number: int, model: str | None) -> None:
        if model is None or self.rules.model is None or model == self.rules.model:
            return
        found = self.rules.other_model(number, model)
        assert found is not None
        raise BuildError(found[0], found[1], param=found[2], value=model)

    def _breaks(self, size: int, inputs: int, tokens: int) -> tuple[str, str] | None:
        """``(code, message)`` if adding the line to the current part breaks a limit."""
        part, p = self._part, self.profile
        if part is None:
            return None
        hint = "; write parts instead (rotate=True, or jsonl-batch build -o FILE)"
        if p.max_requests is not None and part.requests + 1 > p.max_requests:
            return "too_many_tasks", (
                f"The file already has the limit of {p.max_requests:,} requests{hint}."
            )
        if p.max_bytes is not None and part.bytes + size > p.max_bytes:
            return "file_too_large", (
                f"This request ({size:,} bytes) would take the file past the limit of "
                f"{p.max_bytes:,} bytes{hint}."
            )
        limit = p.max_embedding_inputs
        if limit is not None and part.embedding_inputs + inputs > limit:
            return "too_many_embedding_inputs", (
                f"This request's {inputs:,} embedding inputs would take the file past the "
                f"limit of {limit:,}{hint}."
            )
        budget, used = self.max_tokens, part.input_tokens or 0
        if budget is not None and used + tokens > budget:
            return "token_limit_exceeded", (
                f"This request's estimated {tokens:,} input tokens would take the file past "
                f"the budget of {budget:,} (it has {used:,}){hint}."
            )
        return None

    # -- parts

    def _write(
        self,
        raw: bytes,
        custom_id: str,
        number: int,
        amounts: tuple[int, int, int],
        model: str | None,
    ) -> None:
        """Append the line to the current part; ``amounts``: its bytes, inputs, tokens."""
        size, inputs, tokens = amounts
        part = self._part or self._open_part()
        data = raw + b"\n"
        assert self._out is not None
        self._out.write(data)
        self._hash.update(data)
        part.requests += 1
        part.lines += 1
        part.bytes += size
        part.embedding_inputs += inputs
        if part.input_tokens is not None:
            part.input_tokens += tokens
        part.first_custom_id = part.first_custom_id or custom_id
        part.last_custom_id = custom_id
        part.model = model
        self.rules.first_use[custom_id] = number
        if self.rules.model is None:
            self.rules.model, self.rules.model_line = model, number
        self.requests = number

    def _open_part(self) -> Part:
        if self.stream is not None:
            self._out = self.stream
            name = str(getattr(self.stream, "name", "<stream>"))
        else:
            assert self.path is not None
            target = writer_part_name(self.path, len(self.parts) + 1) if self.rotate else self.path
            self._cm = atomic_output(target, force=self.force)
            self._out = self._cm.__enter__()
            name = target.name
        self._hash = sha256()
        tokens = 0 if self.max_tokens is not None else None
        self._part = Part(name, endpoint=self.endpoint, input_tokens=tokens)
        return self._part

    def _finish_part(self) -> None:
        part = self._part
        if part is None:
            return
        part.sha256 = self._hash.hexdigest()
        if self._cm is not None:
            cm, self._cm = self._cm, None
            cm.__exit__(None, None, None)
            assert self.path is not None
            self._written.append(self.path.parent / part.path)
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
                parts=self.parts,
                profile=self.profile.name,
                limits={
                    "max_requests": self.profile.max_requests,
                    "max_bytes": self.profile.max_bytes,
                    "max_embedding_inputs": self.profile.max_embedding_inputs,
                },
            )
            if self.max_tokens is not None:
                manifest.limits["max_tokens"] = self.max_tokens
            if self.path is not None and self.rotate:
                if self.rotate == "auto" and len(self.parts) == 1:
                    os.replace(self._written[0], self.path)
                    self._written[0] = self.path
                    self.parts[0].path = self.path.name
                elif self.write_manifest:
                    where = manifest_path(self.path.parent, self.path.stem)
                    manifest.write(where, force=self.force)
                    self._written.append(where)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self.manifest = manifest
        return manifest

    def abort(self) -> None:
        """Discard the part being written and remove every file this writer wrote."""
        if self._cm is not None:
            cm, self._cm = self._cm, None
            cm.__exit__(_Abort, _Abort(), None)
        for path in self._written:
            path.unlink(missing_ok=True)
        self._written.clear()
        self._part = self._out = None
        self._closed = True

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        elif not self._closed:
            self.abort()


def _token_counter() -> Callable[[str, Any], int]:
    """``TokenCounter().count``, imported only when a budget needs it."""
    from .tokens import TokenCounter

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
