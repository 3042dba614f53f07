"""File names read from disk: a manifest, run.json or baked.json names its files, and a reader opens
only plain names inside that folder (no absolute paths, no `..`, no drive letters). Paths given by
the user are checked against the file system's name limits before any work (`check_path_length`)."""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from featvid.errors import ConfigError, FormatError

NAME_MAX_BYTES = 255  # one name (path component) in bytes: ext4, xfs, btrfs, tmpfs, APFS, NTFS (UTF-16 units)
PATH_MAX_BYTES = 4096  # a whole path in bytes (Linux PATH_MAX)
TEMP_MARGIN_BYTES = 32  # a new name leaves room for the temporary beside it (atomic.py: ".NAME.XXXXXXXX.tmp")


def safe_name(name: Any, what: str, source: str = "manifest") -> str:
    """`name` if it is a plain relative path inside its folder; FormatError naming `source` and
    `what` otherwise (the offending name is shown shortened, never the content it points to)."""
    if not isinstance(name, str) or not name:
        raise FormatError(f"{source}: {what} must be a file name, got {str(name)[:80]!r}")
    p = PurePosixPath(name)
    if (p.is_absolute() or name.startswith(("/", "\\")) or "\\" in name or ":" in name or "\0" in name
            or any(part in ("..", ".") for part in p.parts)
            or len(name) > NAME_MAX_BYTES
            or any(len(part.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES for part in p.parts)):
        raise FormatError(f"{source}: {what} {name[:80]!r} is not a plain name inside its folder")
    return name


def inside(folder: Path, name: Any, what: str, source: str) -> Path:
    """The path of a checked name inside `folder`."""
    return Path(folder) / safe_name(name, what, source)


def check_path_length(path: str | os.PathLike) -> Path:
    """`path` as a Path if the file system can hold its names; ConfigError otherwise.

    Every name must be at most NAME_MAX_BYTES bytes in the file system's encoding (UTF-8: 'é' is
    two bytes, a CJK character three, so 245 characters may be 405 bytes), the whole path at most
    PATH_MAX_BYTES. A last name that does not exist yet must also leave TEMP_MARGIN_BYTES for the
    temporary file an atomic write makes beside it.
    """
    p = Path(path)
    raw = os.fsencode(p)
    if len(raw) > PATH_MAX_BYTES:
        raise ConfigError(f"path of {len(raw)} bytes is longer than the {PATH_MAX_BYTES} the file system allows")
    parts = p.parts
    for i, part in enumerate(parts):
        n = len(os.fsencode(part))
        limit = NAME_MAX_BYTES
        if i == len(parts) - 1 and n <= NAME_MAX_BYTES and not os.path.lexists(p):
            limit = NAME_MAX_BYTES - TEMP_MARGIN_BYTES
        if n > limit:
            shown = part[:40] + "..." if len(part) > 40 else part
            raise ConfigError(f"name {shown!r} is {n} bytes ({len(part)} characters); the file system allows "
                              f"{NAME_MAX_BYTES} bytes a name" + ("" if limit == NAME_MAX_BYTES else
                              f", and a new one needs {TEMP_MARGIN_BYTES} to spare for its temporary file"))
    return p
