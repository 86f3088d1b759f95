"""Third-party output off the terminal and into the run folder's log.

torch's ONNX exporter, TensorFlow, absl, onnx2tf, ONNX Runtime and LiteRT print warnings,
banners and startup logs that are not the user's business, some from Python and some from
C++ straight to file descriptors 1 and 2. This module is the one place that decides where
they go:

* ``command_log`` (the CLI holds one for the length of a command) sends third-party Python
  warnings and log records to the command's log: ``RUN_FOLDER/mobile-compress.log``
  (appended, one header line per command), or ``$MOBILE_COMPRESS_CACHE/logs/`` (default
  ``~/.cache/mobile-compress/logs/``) for a command without a run folder.
* ``third_party_output`` goes around the calls whose C/C++ code prints (TensorFlow's import,
  onnx2tf, the exporter, LiteRT's delegates): descriptors 1 and 2 and the Python streams go
  to the log as well, and the text is kept for error messages.

Our own progress lines, tables, log records, warnings (categories defined in our packages)
and errors stay on the terminal. ``verbose`` filters nothing: Python warnings and logs show
as they always did, and captured output is printed as each call returns (and still logged).
Outside a command (the library called from Python) captured output is dropped.
"""
from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import shlex
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

LOG_NAME = "mobile-compress.log"
#: Our top-level packages: their warnings and log records are the user's business.
OUR_PACKAGES = ("models", "mobile_compress", "converters", "android_harness", "profiler", "workflows")
#: Set for a quiet command unless the user set them: TensorFlow's C++ INFO and WARNING lines.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}
_RECORD_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


@dataclass
class CommandLog:
    """One command's log, written on the first line it gets: a run folder holding only it counts as empty."""

    header: str
    folder: Path | None = None
    verbose: bool = False
    written: bool = False
    _pending: list[str] = field(default_factory=list)
    _file: TextIO | None = None
    _broken: bool = False
    _swapped: list[tuple[logging.StreamHandler, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)  # the profiler writes from several threads

    @property
    def path(self) -> Path:
        return (self.folder if self.folder is not None else fallback_folder()) / LOG_NAME

    def write(self, text: str) -> None:
        """Append ``text``; held in memory until the command's run folder is known. A log never fails a command."""
        if not text or self._broken:
            return
        with self._lock:
            self.written = True
            self._pending.append(text if text.endswith("\n") else text + "\n")
            if self.folder is not None:
                self._flush()

    def adopt(self, folder: Path) -> None:
        """The run folder the command claimed, unless it named one when it started."""
        with self._lock:
            if self.folder is None:
                self.folder = Path(folder)
                if self._pending:
                    self._flush()

    def close(self) -> None:
        with self._lock:
            if self._pending and not self._broken:
                if self.folder is None:
                    self.folder = fallback_folder()
                self._flush()
            if self._file is not None:
                self._file.close()
                self._file = None

    def _flush(self) -> None:
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8", errors="replace")
                self._file.write(self.header)
            self._file.write("".join(self._pending))
            self._file.flush()
        except OSError:
            self._broken = True
        self._pending.clear()


def fallback_folder() -> Path:
    """Where commands without a run folder log: ``logs/`` next to the image cache (one root for our caches)."""
    from mobile_compress.data.cache import default_cache_dir

    return default_cache_dir().parent / "logs"


_session: CommandLog | None = None


def current() -> CommandLog | None:
    """The running command's log (None outside a CLI command)."""
    return _session


def log_to_run_folder(folder: str | os.PathLike) -> None:
    """Called when a command claims its run folder: the log goes there if the command named no other."""
    if _session is not None:
        _session.adopt(Path(folder).expanduser())


@contextlib.contextmanager
def command_log(argv: Sequence[str], *, folder: str | os.PathLike | None = None,
                verbose: bool = False) -> Iterator[CommandLog]:
    """For the length of one command: third-party warnings and log records into its log, off the terminal."""
    global _session
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    header = f"===== {stamp} pid {os.getpid()}: mobile-compress {shlex.join(argv)}\n"
    log = CommandLog(header, Path(folder).expanduser() if folder else None, verbose)
    previous = _session
    _session = log
    try:
        with contextlib.ExitStack() as stack:
            if not verbose:
                stack.enter_context(_quiet_environment())
                stack.enter_context(_warnings_to(log))
                stack.enter_context(_records_to(log))
            yield log
    finally:
        _session = previous
        log.close()


@dataclass
class Captured:
    """What the third-party code in a ``third_party_output`` block printed (complete once the block ends)."""

    text: str = ""


@contextlib.contextmanager
def third_party_output() -> Iterator[Captured]:
    """Everything the code inside prints, from Python or C++ (fd 1 and 2), into the command's log.

    The text is also in the yielded ``Captured``. The redirection is process-wide, so only
    third-party calls belong inside: our own progress lines would be captured too.
    """
    captured = Captured()
    session = _session
    verbose = session is not None and session.verbose
    _flush_streams()
    saved: list[int] = []
    try:
        saved += [os.dup(1), os.dup(2)]
    except OSError:  # no standard descriptors to redirect (a daemon): nothing reaches a terminal anyway
        for copy in saved:
            os.close(copy)
        yield captured
        return
    text = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink, (contextlib.nullcontext() if verbose else _quiet_environment()):
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        swapped = _swap_console_handlers(text)
        try:
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield captured
        finally:
            _flush_streams()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
            _restore_handlers(swapped)
            _handlers_made_inside(text)
            if session is not None and not verbose:  # handlers a library added meanwhile (TensorFlow's on import)
                session._swapped += _swap_console_handlers(_LogStream(session))
            sink.seek(0)
            captured.text = text.getvalue() + sink.read().decode("utf-8", "replace")
            if session is not None:
                session.write(captured.text)
                if verbose and captured.text:
                    sys.stderr.write(captured.text)
                    sys.stderr.flush()


def ours(name: str) -> bool:
    """Whether a logger or module name belongs to our packages."""
    return name.split(".")[0] in OUR_PACKAGES


@contextlib.contextmanager
def _quiet_environment() -> Iterator[None]:
    """``QUIET_ENV`` for variables the user left unset (read by TensorFlow when it first logs)."""
    added = [k for k in QUIET_ENV if k not in os.environ]
    for key in added:
        os.environ[key] = QUIET_ENV[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@contextlib.contextmanager
def _warnings_to(log: CommandLog) -> Iterator[None]:
    """Third-party warnings into ``log``; ours (a category defined in our packages) shown as before."""
    shown = warnings.showwarning

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: TextIO | None = None,
             line: str | None = None) -> None:
        if ours(getattr(category, "__module__", "")):
            shown(message, category, filename, lineno, file, line)
        else:
            log.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = show
    try:
        yield
    finally:
        if warnings.showwarning is show:
            warnings.showwarning = shown


class _Router(logging.Handler):
    """On the root logger: third-party records into the log; ours on the terminal as Python would show them."""

    def __init__(self, log: CommandLog) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        if not ours(record.name):
            self.log.write(_RECORD_FORMAT.format(record))
        elif logging.lastResort is not None and not self._other_handlers(record.name):
            if record.levelno >= logging.lastResort.level:  # what Python does when no handler is configured
                logging.lastResort.handle(record)

    def _other_handlers(self, name: str) -> bool:
        logger: logging.Logger | None = logging.getLogger(name)
        while logger is not None:
            if any(h is not self for h in logger.handlers):
                return True
            logger = logger.parent if logger.propagate else None
        return False


class _LogStream:
    """A stream for third-party logging handlers that writes into the command's log."""

    def __init__(self, log: CommandLog) -> None:
        self.log = log

    def write(self, text: str) -> int:
        self.log.write(text)
        return len(text)

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def _records_to(log: CommandLog) -> Iterator[None]:
    """Third-party log records into ``log``: those that reach the root logger, and those of libraries
    (torch) whose own handlers write to the terminal."""
    router = _Router(log)
    root = logging.getLogger()
    root.addHandler(router)
    log._swapped = _swap_console_handlers(_LogStream(log))
    try:
        yield
    finally:
        _restore_handlers(log._swapped)
        root.removeHandler(router)


def _is_console(stream: Any) -> bool:
    if stream is None:
        return False
    if any(stream is s for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)):
        return True
    try:
        return stream.fileno() in (1, 2)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


def _swap_console_handlers(target: Any) -> list[tuple[logging.StreamHandler, Any]]:
    """Point third-party loggers' own terminal handlers at ``target``; returns what to restore."""
    swapped = []
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger) or ours(name):
            continue
        for handler in logger.handlers:
            if (isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
                    and _is_console(handler.stream)):
                swapped.append((handler, handler.setStream(target)))
    return swapped


def _handlers_made_inside(text: io.StringIO) -> None:
    """A handler a library made inside ``third_party_output`` holds its ``sys.stderr`` (TensorFlow's does):
    give it the real one, or everything it logs later would be lost."""
    for logger in [logging.getLogger(), *logging.root.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and handler.stream is text:
                handler.setStream(sys.stderr)


def _restore_handlers(swapped: list[tuple[logging.StreamHandler, Any]]) -> None:
    for handler, stream in reversed(swapped):
        handler.setStream(stream)


def _flush_streams() -> None:
    """Python's and C's buffered output, so that it lands on the side of the redirection it was written on."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)
