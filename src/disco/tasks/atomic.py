"""Crash-safe file writes: a file under its final name is always complete, old or new.

The recipe: write a temporary file in the same directory, flush and fsync it, `os.replace` it
over the final name (atomic on POSIX within one file system), then fsync the directory so the
rename itself survives a power loss.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make renames and new entries in `directory` durable (a no-op where unsupported)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories; nothing more can be done
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> None:
    """Write `data` to `path` so that readers see either the previous file or all of `data`."""
    target = Path(path)
    directory = target.parent
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_dir(directory)


Content = bytes | bytearray | memoryview


def atomic_write_together(
    directory: str | os.PathLike[str], files: Sequence[tuple[str, Callable[[], Content]]]
) -> None:
    """Write several files of `directory` crash-safely for the latency of one fsync.

    Each `(name, content)` in turn: `content()` (called only once the files before it are
    written: it may wait on something computed meanwhile) goes to a temporary file whose fsync
    starts at once, in a thread of its own. Once every file is durable they are renamed over
    their names, in order, and the directory is fsynced once. A crash before that directory
    fsync may keep any subset of the renames: files that refer to each other must allow it
    (the task store's load falls back to the previous model when the current one is missing).
    """
    folder = Path(directory)
    written: list[tuple[str, str]] = []  # (temporary, final) names
    syncs: list[threading.Thread] = []
    errors: list[BaseException] = []

    def sync(fd: int) -> None:
        try:
            os.fsync(fd)
        except BaseException as error:  # reported by the caller's thread
            errors.append(error)
        finally:
            os.close(fd)

    try:
        for name, content in files:
            fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=TEMP_SUFFIX)
            written.append((tmp_name, str(folder / name)))
            try:
                with os.fdopen(os.dup(fd), "wb") as handle:
                    handle.write(content())
            except BaseException:
                os.close(fd)
                raise
            thread = threading.Thread(target=sync, args=(fd,), daemon=True)
            thread.start()
            syncs.append(thread)
        for thread in syncs:
            thread.join()
        if errors:
            raise errors[0]
        for tmp_name, final in written:
            os.replace(tmp_name, final)
    except BaseException:
        for thread in syncs:
            thread.join()
        for tmp_name, _ in written:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
        raise
    fsync_dir(folder)


def dumps_json(obj: Any) -> bytes:
    """Canonical JSON bytes for files we write: UTF-8, compact, no NaN/Infinity (not JSON)."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Serialize `obj` first (so a bad value never touches the disk), then write it atomically."""
    atomic_write_bytes(path, dumps_json(obj))


def is_temp_file(name: str) -> bool:
    """True for leftovers of an interrupted `atomic_write_bytes` (safe to delete)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)
