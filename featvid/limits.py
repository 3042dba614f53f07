"""Bounded reads: every size a file claims is checked before anything of that size is made.

A small file must not make work run away (a gzip that inflates to gigabytes, a header that claims
10^9 rows, JSON nested ten thousand deep). Readers go through these helpers, which refuse with
FormatError before they allocate:

    read_json(path | bytes, source)       JSON of at most MAX_JSON_BYTES; nesting too deep is a FormatError
    read_small(path, source, limit)       a file's bytes, its size checked first
    check_count(n, source, what, limit)   a count from a header against a stated ceiling
    gunzip(data, source, limit)           gzip inflated to at most `limit` bytes
    zstd_decompress(data, source, limit)  zstd decompressed to at most `limit` bytes (its stated size first)
    zstd_head(data, source, n)            the first n decompressed bytes of zstd (to read a header)
    read_npy(path, source, limit)         a NumPy .npy array, its header checked against the file's size
"""
from __future__ import annotations

import io
import json
import math
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from featvid.errors import FormatError

LEGACY_ENV = "FEATVID_LEGACY_READ"  # "1": read folders without file records (unverified, warned)
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


def gunzip(data: bytes, source: str, limit: int) -> bytes:
    """The inflated bytes of the gzip `data` (one member), at most `limit` of them: FormatError when
    it is not gzip, is cut short, holds more or has bytes after its end. Nothing past `limit + 1`
    bytes is ever inflated, whatever the file claims."""
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # a gzip header and trailer around deflate
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise FormatError(f"{source}: not a readable gzip file ({e})") from e
    if len(out) > limit:
        raise FormatError(f"{source}: inflates to more than the {limit} bytes such a file may hold")
    if not d.eof:
        raise FormatError(f"{source}: the gzip data is cut short")
    if d.unused_data:
        raise FormatError(f"{source}: {len(d.unused_data)} bytes after the end of the gzip data")
    return out


def _zstd_reader(data: bytes, source: str, limit: int):
    """A zstd stream reader over `data`, after checking the size its frame header states (when it
    states one) against `limit`."""
    import zstandard

    try:
        stated = zstandard.frame_content_size(data)  # -1: the frame does not say
    except zstandard.ZstdError as e:
        raise FormatError(f"{source}: not a readable zstd file ({e})") from e
    if stated > limit:
        raise FormatError(f"{source}: decompresses to {stated} bytes, more than the {limit} it may hold")
    return zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)


def _read_upto(reader, n: int) -> bytes:
    """Up to `n` bytes from a stream reader (fewer only at its end)."""
    parts, got = [], 0
    while got < n:
        chunk = reader.read(min(n - got, 1 << 24))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def zstd_decompress(data: bytes, source: str, limit: int) -> bytes:
    """The decompressed bytes of the zstd `data`, at most `limit` of them (FormatError otherwise,
    before more than `limit + 1` bytes are made)."""
    import zstandard

    try:
        with _zstd_reader(data, source, limit) as reader:
            out = _read_upto(reader, limit + 1)
    except zstandard.ZstdError as e:
        raise FormatError(f"{source}: not a readable zstd file ({e})") from e
    if len(out) > limit:
        raise FormatError(f"{source}: decompresses to more than the {limit} bytes it may hold")
    return out


def zstd_head(data: bytes, source: str, n: int) -> bytes:
    """The first `n` decompressed bytes of the zstd `data` (fewer when it holds fewer): a header
    read before the size of the rest is known."""
    import zstandard

    try:
        with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as reader:
            return _read_upto(reader, n)
    except zstandard.ZstdError as e:
        raise FormatError(f"{source}: not a readable zstd file ({e})") from e


def read_npy(path: str | os.PathLike, source: str, limit: int) -> np.ndarray:
    """A NumPy .npy file's array (no pickle): the file of at most `limit` bytes, its header's shape
    and dtype checked against the bytes that follow it before the array is made."""
    data = read_small(path, source, limit)
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"format version {version} is not read")
    except (ValueError, TypeError, SyntaxError, RecursionError) as e:
        raise FormatError(f"{source}: not a readable .npy file ({e})") from e
    if dtype.hasobject:
        raise FormatError(f"{source}: holds Python objects (not read: they would need unpickling)")
    count = math.prod(shape)
    if count * dtype.itemsize != len(data) - f.tell():
        raise FormatError(f"{source}: the header claims {list(shape)} of {dtype} ({count * dtype.itemsize} bytes), "
                          f"the file holds {len(data) - f.tell()} after it")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=f.tell())
    return arr.reshape(shape, order="F" if fortran else "C")
