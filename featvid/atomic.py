"""Atomic writes: write to a temporary name in the same folder, then rename over the target.

A killed job therefore leaves either the old file or the new one, never half of one. A write the
file system refuses (read-only, full, no permission) is an OutputError of one line, and a path that
holds a FIFO, a device or a socket is never replaced by a file.
"""
from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

from featvid.errors import OutputError


def special_kind(mode: int) -> str | None:
    """What a stat mode is when it is neither a regular file nor a folder ("a FIFO", ...), else None."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def write_failed(path: str | os.PathLike, e: OSError) -> OutputError:
    """The one line a refused write becomes (EROFS, ENOSPC, EACCES, ...)."""
    why = e.strerror or str(e) or type(e).__name__
    return OutputError(f"{path}: cannot write ({why})")


def make_dirs(path: str | os.PathLike) -> Path:
    """mkdir -p `path`, a refusal of the file system as an OutputError; returns the path."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_failed(path, e) from e
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on error removed.

    OutputError when `path` is something no file may replace (a folder, FIFO, device, socket) or
    when the file system refuses the write; the body's OSErrors (writing the temporary) count as
    refused writes too."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # follows a link: a link to a FIFO is refused too
    except FileNotFoundError:
        mode = None
    except OSError as e:
        raise write_failed(path, e) from e
    if mode is not None and not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else special_kind(mode)
        raise OutputError(f"{path}: is {what}, not a regular file; refusing to replace it")
    make_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise write_failed(path, e) from e
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as e:
        with contextlib.suppress(OSError):  # a full or failing disk must not hide the first error
            tmp_path.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise write_failed(path, e) from e
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, compact: bool = False) -> None:
    """Write `obj` as JSON to `path` atomically: indented, or without whitespace when `compact`."""
    text = json.dumps(obj, separators=(",", ":")) if compact else json.dumps(obj, indent=2, sort_keys=False)
    write_text(path, text + "\n")
