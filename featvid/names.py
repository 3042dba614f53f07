"""File names read from disk: a manifest, run.json or baked.json names its files, and a reader opens
only plain names inside that folder (no absolute paths, no `..`, no drive letters)."""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from featvid.errors import StreamError


def safe_name(name: Any, what: str, source: str = "manifest") -> str:
    """`name` if it is a plain relative path inside its folder; StreamError naming `source` and
    `what` otherwise (the offending name is shown shortened, never the content it points to)."""
    if not isinstance(name, str) or not name:
        raise StreamError(f"{source}: {what} must be a file name, got {str(name)[:80]!r}")
    p = PurePosixPath(name)
    if (p.is_absolute() or name.startswith(("/", "\\")) or "\\" in name or ":" in name or "\0" in name
            or any(part in ("..", ".") for part in p.parts) or len(name) > 255):
        raise StreamError(f"{source}: {what} {name[:80]!r} is not a plain name inside its folder")
    return name


def inside(folder: Path, name: Any, what: str, source: str) -> Path:
    """The path of a checked name inside `folder`."""
    return Path(folder) / safe_name(name, what, source)
