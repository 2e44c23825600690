"""Ctrl-C at any moment ends the command with one line, ``Interrupted.``, and exit status 130.

Two regimes. While modules load (and after the command ends), there is nothing to clean up,
so SIGINT prints the line and leaves at once (``exit_now``). While a command runs, SIGINT
raises ``KeyboardInterrupt`` so that ``finally`` blocks remove temporary files; the CLI turns
it into the same line and status (``raising``), even when a library caught it and raised
something else (``interrupted()`` says a SIGINT arrived); a clean-up stuck for ``GRACE``
seconds (a worker pool's shutdown can deadlock) ends the process anyway. Except while a
native module initializes (orjson, pyarrow's parts: their set-up runs Python code, and an
exception they do not expect crashes the process): then the line and exit at once, as while
loading; a temporary file left behind is removed by the next run (``output.recover``). This
module imports only what the interpreter has already loaded: ``launch`` installs the handler
before anything else loads.
"""

from __future__ import annotations

import _signal as signal  # the C module: ``signal`` would import ``enum`` first
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType, TracebackType

    Handler = Callable[[int, FrameType | None], object]

EXIT_INTERRUPTED = 130
"""The exit status after Ctrl-C (128 + SIGINT), as shells report it."""
MESSAGE = "Interrupted."

_seen = False


def exit_now(signum: int = 2, frame: FrameType | None = None) -> None:
    """The SIGINT handler outside a command: the line, then exit 130 without unwinding."""
    try:
        os.write(2, f"{MESSAGE}\n".encode())
    finally:
        os._exit(EXIT_INTERRUPTED)


GRACE = 5.0
"""Seconds the clean-up after Ctrl-C may take (``finally`` blocks, worker pools); past them
the process ends anyway, as ``exit_now`` does (a stuck clean-up must not hang it)."""


def _raise(signum: int, frame: FrameType | None) -> None:
    global _seen
    if _loading_native(frame):
        exit_now()
    if not _seen:
        import threading

        watchdog = threading.Timer(GRACE, exit_now)
        watchdog.daemon = True
        watchdog.start()
    _seen = True
    raise KeyboardInterrupt


def _loading_native(frame: FrameType | None) -> bool:
    """True if ``frame`` runs (maybe deep down) inside the initialization of an extension
    module, which cannot be unwound by an exception."""
    while frame is not None:
        if frame.f_code.co_qualname.startswith("ExtensionFileLoader."):
            return True
        frame = frame.f_back
    return False


def interrupted() -> bool:
    """True once a SIGINT arrived during a command (``raising``)."""
    return _seen


def settle() -> None:
    """After an interrupt was caught: a second Ctrl-C (while the line is printed, or while
    the interpreter shuts down) ends the process at once instead of raising again."""
    _install(exit_now)


class handler:
    """``function`` handles SIGINT while the block runs, then the previous handler again.
    Outside the main thread (where handlers cannot be set) it does nothing."""

    def __init__(self, function: Handler) -> None:
        self.function = function
        self.previous: object = None

    def __enter__(self) -> None:
        self.previous = _install(self.function)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.previous is not None:
            _install(self.previous)  # type: ignore[arg-type]


def raising() -> handler:
    """While the block runs, SIGINT raises ``KeyboardInterrupt`` and ``interrupted()`` turns
    true; the previous handler is restored after."""
    global _seen
    _seen = False
    return handler(_raise)


def _install(function: Handler) -> object:
    """Set the SIGINT handler; the previous one, or None if it cannot be set here."""
    try:
        return signal.signal(signal.SIGINT, function)  # type: ignore[arg-type]
    except ValueError:  # not the main thread
        return None


def launch() -> None:
    """The ``jsonl-batch`` program: SIGINT handled from the first instruction, then the CLI
    in a process that is its own (``lines.parallel.own_process``)."""
    _install(exit_now)
    from .cli import main
    from .lines.parallel import own_process

    own_process()

    main()
