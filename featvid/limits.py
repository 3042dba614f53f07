"""Bounded reads: every size a file claims is checked before anything of that size is made.

A small file must not make work run away (a gzip that inflates to gigabytes, a header that claims
10^9 rows, JSON nested ten thousand deep). Readers go through these helpers, which refuse with
FormatError before they allocate:

    read_json(path | bytes, source)       JSON of at most MAX_JSON_BYTES; nesting too deep is a FormatError
    read_small(path, source, limit)       a file's bytes, its size checked first
    check_count(n, source, what, limit)   a count from a header against a stated ceiling
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from featvid.errors import FormatError

MAX_JSON_BYTES = 64 << 20  # run.json, baked.json, manifests, job files: far below this in practice


def read_small(path: str | os.PathLike, source: str, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; FormatError otherwise (before reading)."""
    path = Path(path)
    try:
        st = path.stat()
        if not path.is_file():
            raise FormatError(f"{source}: not a regular file")
        if st.st_size > limit:
            raise FormatError(f"{source}: {st.st_size} bytes, more than the {limit} such a file may hold")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise FormatError(f"{source}: unreadable ({e.strerror or e})") from e
    if len(data) > limit:
        raise FormatError(f"{source}: more than the {limit} bytes such a file may hold")
    return data


def read_json(data: str | bytes | os.PathLike, source: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parsed JSON from a path (read with its size checked first) or from text/bytes already read."""
    if isinstance(data, os.PathLike):
        data = read_small(data, source, max_bytes)
    if len(data) > max_bytes:
        raise FormatError(f"{source}: {len(data)} bytes of JSON, more than {max_bytes}")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as e:
        raise FormatError(f"{source}: not UTF-8 JSON ({e.reason})") from e
    try:
        return json.loads(text)
    except RecursionError as e:  # nested thousands deep: the parser's recursion, not ours
        raise FormatError(f"{source}: JSON nested too deep") from e
    except ValueError as e:
        raise FormatError(f"{source}: not valid JSON ({e})") from e


def check_count(n: int, source: str, what: str, limit: int) -> int:
    """`n` (a count or size read from a header) if 0 <= n <= limit, else FormatError."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0 or n > limit:
        raise FormatError(f"{source}: {what} {n!r} is outside 0..{limit}")
    return n
