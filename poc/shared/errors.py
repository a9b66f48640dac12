"""One-line errors for bad input, writes that never leave a half-made file behind, and the guard that keeps a
stage from writing over its own inputs."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
from pathlib import Path

from poc.config import EXIT_BAD_INPUT


class InputError(Exception):
    """Bad input: a file that is missing, malformed or refused. Printed as one line, exit code 2."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class StageError(Exception):
    """The stage itself failed (an Ascend tool missing or failing, an export check): one line, exit code 1."""


class ToolError(StageError):
    """An Ascend tool is missing when forced, or failed."""


def first_line(err: BaseException, limit: int = 160) -> str:
    """An exception's message, cut to its first line (its type name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__


def _terminate(signum, frame):
    raise KeyboardInterrupt


def run_main(main) -> None:
    """Run a command line's main() so that every failure is one line: InputError and any OS-level file error
    (a read-only folder, a path through a regular file, a symlink loop...) exit 2, StageError exits 1, an
    interrupt (SIGINT or SIGTERM) 130 after the stage has cleaned up its temporaries."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = main()
    except InputError as err:
        _die(str(err), EXIT_BAD_INPUT)
    except StageError as err:
        _die(str(err), 1)
    except OSError as err:
        _die(f"{err.filename}: {err.strerror or err}" if err.filename is not None else (err.strerror or str(err)),
             EXIT_BAD_INPUT)
    except (MemoryError, RecursionError) as err:
        _die(f"input too large or too deeply nested to process ({type(err).__name__})", EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        _die("interrupted", 130)
    sys.exit(code or 0)


def _die(message: str, code: int) -> None:
    print(f"error: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
    sys.exit(code)


# --- reading: regular files only, and no more than a file of its kind can hold -----------------------------

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)  # a FIFO opens without blocking, then is refused


def _check_stat(path, st: os.stat_result, what: str, max_bytes: int | None) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise InputError(path, f"is a folder ({what} expected)")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(path, f"not a regular file (a FIFO, device or socket; {what} expected)")
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputError(path, f"{st.st_size} bytes: more than the {max_bytes} allowed for the {what}")


def regular_file(path, what: str, max_bytes: int | None = None) -> Path:
    """``path``, if it is a regular file (through links) of at most ``max_bytes``; else one InputError. For libraries
    that open a path themselves: a FIFO would block them forever, a device never end."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(path, f"no such {what}") from None
    except OSError as err:
        raise InputError(path, f"cannot be read ({err.strerror})") from None
    _check_stat(path, st, what, max_bytes)
    return Path(path)


def read_regular(path, what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``. Opened without blocking and checked on the open file
    (no window for a swap); read by the size it has then, and refused if it grows meanwhile."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(path, f"no such {what}") from None
    except IsADirectoryError:
        raise InputError(path, f"is a folder ({what} expected)") from None
    except OSError as err:
        raise InputError(path, f"cannot be read ({err.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        _check_stat(path, st, what, max_bytes)
        data = f.read(st.st_size + 1)  # read() sizes its buffer by the request: the file's size, never the bound
    if len(data) > st.st_size:
        raise InputError(path, "grew while it was read")
    return data


@contextlib.contextmanager
def naming(path):
    """An OSError without a file name raised in the block (a full disk, a quota) names ``path``."""
    try:
        yield
    except OSError as err:
        if err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror or os.strerror(err.errno), str(path)) from None
        raise


# --- the output guard -------------------------------------------------------------------------------------

def resolved(path) -> Path:
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as err:  # a symlink loop
        raise InputError(path, f"cannot be resolved ({err})") from None


def _overlap(a: Path, b: Path) -> str | None:
    if a == b:
        return "is"
    if b in a.parents:
        return "lies inside"
    if a in b.parents:
        return "contains"
    return None


def check_outputs(outputs: dict[str, object], inputs: dict[str, object]) -> None:
    """Refuse, before anything is written, an output that is, contains or lies inside an input or another
    output of the same run. ``outputs`` / ``inputs``: {what it is (e.g. '--bin_path'): path}."""
    outs = [(what, resolved(p)) for what, p in outputs.items() if p is not None]
    ins = [(what, resolved(p)) for what, p in inputs.items() if p is not None]
    for i, (what, out) in enumerate(outs):
        for other, path in ins + outs[:i]:
            how = _overlap(out, path)
            if how:
                raise InputError(outputs[what], f"{what} {how} {other} ({path}): refused, it would be overwritten")


# --- atomic writes ----------------------------------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _parent_folder(path: Path) -> Path:
    """Make ``path``'s parent folder; a parent that is a regular file or not writable is bad input."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(path, "cannot be written: a parent is a regular file") from None
    if not parent.is_dir():
        raise InputError(path, "cannot be written: a parent is not a folder")
    return parent


def _file_to_write(path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a folder, expected a file to write")
    return path


@contextlib.contextmanager
def _replaced_on_success(tmp, path: Path):
    """Rename ``tmp`` onto ``path`` if the block succeeds; remove it if not."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_file(path, mode: str = "wb"):
    """Yield a temporary file beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = _file_to_write(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=_parent_folder(path))
    with _replaced_on_success(tmp, path):
        with naming(path), os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path for a library to write to, renamed onto ``path`` on success. The temporary file has
    ``path``'s own name (in a scratch folder beside it): a writer that records its file's name (torch.save names its
    archive after it) writes the same bytes as it would at ``path``."""
    path = _file_to_write(path)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=_parent_folder(path)))
    try:
        with _replaced_on_success(scratch / path.name, path):
            yield scratch / path.name
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def signals_deferred():
    """SIGINT and SIGTERM wait until the block is over, so a swap of several outputs is never cut halfway.
    (Python runs signal handlers on the main thread only, so deferring them there covers every thread.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if pending:
            raise KeyboardInterrupt


class OutputSet:
    """A stage's outputs, built under temporary names beside their targets and swapped in together.

    ``folder(path, owned)`` gives an empty temporary folder. At the end the target folder is replaced whole by
    it, after the target's entries that do not match ``owned`` (the stage's own naming pattern) are carried
    over: a user's other files survive, stale files of the stage's own pattern from a larger earlier run do
    not. ``file(path)`` gives a temporary path renamed onto ``path``. The swaps run with SIGINT/SIGTERM
    deferred, so an interrupt leaves the complete old outputs or the complete new ones; a failure before the end
    removes every temporary and leaves the old outputs untouched.
    """

    def __init__(self, outputs: dict[str, object], inputs: dict[str, object]):
        check_outputs(outputs, inputs)
        self._swaps: list[tuple[Path, Path, re.Pattern | None]] = []
        self._swaps_named = ", ".join(str(p) for p in outputs.values() if p is not None)

    def folder(self, path, owned: str) -> Path:
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise InputError(path, "is a file, expected a folder")
        with signals_deferred():  # made and registered together: an interrupt between the two would leave it behind
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=_parent_folder(path)))
            self._swaps.append((path, tmp, re.compile(owned)))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; give it the mode mkdir would
        return tmp

    def file(self, path) -> Path:
        path = Path(path)
        if path.is_dir():
            raise InputError(path, "is a folder, expected a file to write")
        with signals_deferred():  # made and registered together (see folder)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=_parent_folder(path))
            self._swaps.append((path, Path(tmp), None))
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
        return Path(tmp)

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
            return
        swaps = list(self._swaps)
        self.discard()
        if isinstance(exc, OSError) and exc.errno is not None:  # a full disk, a quota: name the output, not a temporary
            where = self._swaps_named if exc.filename is None else str(exc.filename)
            for path, tmp, _ in swaps:
                if where == str(tmp) or where.startswith(os.path.join(str(tmp), "")):
                    where = str(path) + where[len(str(tmp)):]
            if where != exc.filename:
                raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), where) from None

    def discard(self) -> None:
        with signals_deferred():  # a second Ctrl-C does not leave half the temporaries behind
            for _, tmp, owned in self._swaps:
                if owned is None:
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
                else:
                    shutil.rmtree(tmp, ignore_errors=True)
            self._swaps.clear()

    def commit(self) -> None:
        old_folders = []
        try:
            for path, tmp, owned in self._swaps:  # carry the user's files over (hard links: nothing copied)
                if owned is not None and path.is_dir():
                    for entry in path.iterdir():
                        if not owned.fullmatch(entry.name) and not entry.name.startswith(f".{path.name}."):
                            _carry(entry, tmp / entry.name)
            with signals_deferred():
                for path, tmp, owned in self._swaps:
                    if owned is not None and (path.exists() or path.is_symlink()):
                        aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
                        os.replace(path, aside / "previous")
                        old_folders.append((path, aside))
                    os.replace(tmp, path)
        except BaseException:
            with signals_deferred():
                for path, aside in old_folders:  # put back a folder whose replacement did not arrive
                    if not path.exists():
                        os.replace(aside / "previous", path)
            self.discard()
            raise
        finally:
            with signals_deferred():  # removing a 60,000-file old folder takes a while: not cut by a Ctrl-C
                for _, aside in old_folders:
                    shutil.rmtree(aside, ignore_errors=True)
        self._swaps.clear()


def _carry(src: Path, dst: Path) -> None:
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    elif src.is_symlink():
        os.symlink(os.readlink(src), dst)
    else:
        _link_or_copy(src, dst)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
