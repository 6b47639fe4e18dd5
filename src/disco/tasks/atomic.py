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


def atomic_write_bytes(
    path: str | os.PathLike[str],
    data: bytes | bytearray | memoryview,
    sync_dir: bool = True,
) -> None:
    """Write `data` to `path` so that readers see either the previous file or all of `data`.

    `sync_dir=False` leaves the rename's durability to the caller's next `fsync_dir` of the
    same directory (one directory fsync for several files, when a crash that keeps only some
    of the renames is harmless)."""
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
    if sync_dir:
        fsync_dir(directory)


def dumps_json(obj: Any) -> bytes:
    """Canonical JSON bytes for files we write: UTF-8, compact, no NaN/Infinity (not JSON)."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Serialize `obj` first (so a bad value never touches the disk), then write it atomically."""
    atomic_write_bytes(path, dumps_json(obj))


def is_temp_file(name: str) -> bool:
    """True for leftovers of an interrupted `atomic_write_bytes` (safe to delete)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)
