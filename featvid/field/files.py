"""File records: the size and SHA-256 of each file a folder consists of, checked before use.

Every folder featvid writes records its files this way -- a run (files.json, updated as each
frame is written), a baked folder (baked.json "files") and a stream (manifest.json "files") -- so a
file altered, cut or swapped after it was written is refused on read with one line naming it,
instead of being decoded into wrong numbers. Folders written before the records existed have
none: they still read, unverified, with a warning.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featvid.errors import FormatError
from featvid.field.schema import int_field
from featvid.limits import read_json
from featvid.names import safe_name

MAX_FILE_BYTES = 1 << 40  # what a record may claim (1 TiB)
MAX_RECORDS = 10_000_000  # entries a table may hold: a bound for an edited file
MAX_SAFETENSORS_HEADER = 1 << 20  # bytes of a safetensors JSON header: featvid's hold a few tensors, under 2 KB
# bytes per element of the safetensors dtypes featvid may meet (others are refused)
_ST_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FileRecord:
    """What a file must be: its size in bytes and the SHA-256 of its bytes (64 lower-case hex)."""

    bytes: int
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> "FileRecord":
        return cls(len(data), hashlib.sha256(data).hexdigest())

    @classmethod
    def of_file(cls, path: Path) -> "FileRecord":
        """The record of the file at `path`, hashed in chunks (a video can be large)."""
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256")
        return cls(Path(path).stat().st_size, digest.hexdigest())

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "sha256": self.sha256}


def read_records(d: Any, source: str) -> dict[str, FileRecord]:
    """A `files` table as JSON holds it -- plain names inside the folder -> {"bytes", "sha256"} --
    checked; {} when the folder has none (None: written before records existed)."""
    if d is None:
        return {}
    if not isinstance(d, dict) or not d or len(d) > MAX_RECORDS:
        raise FormatError(f"{source}: files must be an object of file name -> {{bytes, sha256}}")
    out = {}
    for name, rec in d.items():
        safe_name(name, "hashed file", source)
        where = f"{source}: files[{str(name)[:80]!r}]"
        sha = rec.get("sha256") if isinstance(rec, dict) else None
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise FormatError(f"{where}: sha256 must be 64 lower-case hex digits, got {str(sha)[:70]!r}")
        out[name] = FileRecord(int_field(rec, "bytes", where, hi=MAX_FILE_BYTES), sha)
    return out


def records_dict(records: dict[str, FileRecord]) -> dict[str, dict[str, Any]]:
    """The table as JSON data, names sorted (a table's bytes do not depend on write order)."""
    return {n: records[n].to_dict() for n in sorted(records)}


def check_record(path: Path, want: FileRecord, found: FileRecord, recorded_in: str,
                 error: type[FormatError] = FormatError) -> None:
    """`error` naming `path` when `found` (its size and hash) is not `want`, its record in
    `recorded_in` (e.g. "the manifest"; a stream passes FormatError)."""
    if found.bytes != want.bytes:
        raise error(f"{path}: {found.bytes} bytes, {recorded_in} records {want.bytes} (truncated or altered file)")
    if found.sha256 != want.sha256:
        raise error(f"{path}: SHA-256 differs from {recorded_in}'s record (corrupt or altered file)")


def read_checked(folder: Path, name: str, records: dict[str, FileRecord], recorded_in: str, what: str) -> bytes:
    """The bytes of `folder`/`name`, checked against its record when `records` holds any (a
    folder with records and none for this file is refused: a file slipped in is not trusted).

    Before anything is read: a link is resolved and refused when it leaves the folder, anything but
    a regular file (a FIFO, a device) is refused, and the size on disk must be the recorded one --
    so a file swapped for a larger one costs a stat, not a read of its bytes."""
    path = Path(folder) / name
    if not os.path.lexists(path):
        raise FormatError(f"{path}: {what} is missing")
    want = None
    if records:
        want = records.get(name)
        if want is None:
            raise FormatError(f"{path}: not listed in {recorded_in}'s file hashes")
    try:
        real = path.resolve(strict=True)
        if not real.is_relative_to(Path(folder).resolve(strict=True)):
            raise FormatError(f"{path}: a link to {real}, outside the folder (refused)")
        # non-blocking: opening a FIFO must not wait for a writer before fstat can refuse it
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as e:
        raise FormatError(f"{path}: {what} is missing (a link to nowhere)") from e
    except (OSError, RuntimeError) as e:  # RuntimeError: a loop of links
        raise FormatError(f"{path}: unreadable ({getattr(e, 'strerror', None) or e})") from e
    with open(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise FormatError(f"{path}: {what} is not a regular file")
        if want is not None and st.st_size != want.bytes:
            raise FormatError(f"{path}: {st.st_size} bytes, {recorded_in} records {want.bytes} "
                              "(truncated or altered file)")
        try:
            data = f.read(st.st_size + 1)  # one byte more: a file that grew since the stat shows
        except OSError as e:
            raise FormatError(f"{path}: unreadable ({e.strerror or e})") from e
    if want is not None:
        check_record(path, want, FileRecord.of(data), recorded_in, FormatError)
    return data


def safetensors_header(data: bytes, source: str, total: int | None = None) -> dict[str, Any]:
    """The JSON header of a safetensors file whose first bytes are `data` and whose full length is
    `total` (default len(data)): its length, each tensor's dtype, shape and data offsets checked
    against the bytes there are, before any tensor is made. FormatError otherwise."""
    total = len(data) if total is None else total
    if len(data) < 8:
        raise FormatError(f"{source}: {len(data)} bytes, too short for a safetensors header")
    n = int.from_bytes(data[:8], "little")
    if n > min(MAX_SAFETENSORS_HEADER, total - 8, len(data) - 8):
        raise FormatError(f"{source}: a safetensors header of {n} bytes, the file holds {total - 8} "
                          f"(and a header may hold {MAX_SAFETENSORS_HEADER})")
    header = read_json(data[8:8 + n], f"{source}: safetensors header")
    if not isinstance(header, dict):
        raise FormatError(f"{source}: the safetensors header is not an object")
    size = total - 8 - n  # bytes of tensor data
    for key, t in header.items():
        if key == "__metadata__":
            if not isinstance(t, dict) or not all(isinstance(v, str) for v in t.values()):
                raise FormatError(f"{source}: safetensors __metadata__ must map names to strings")
            continue
        where = f"{source}: tensor {str(key)[:40]!r}"
        shape, offsets = (t.get("shape"), t.get("data_offsets")) if isinstance(t, dict) else (None, None)
        itemsize = _ST_ITEMSIZE.get(t.get("dtype")) if isinstance(t, dict) else None
        if itemsize is None or not _naturals(shape) or not _naturals(offsets) or len(offsets) != 2:
            raise FormatError(f"{where}: needs a known dtype, a shape and two data offsets")
        begin, end = offsets
        if not begin <= end <= size or math.prod(shape) * itemsize != end - begin:
            raise FormatError(f"{where}: shape {shape[:6]} of {t['dtype']} at bytes {begin}..{end} does not fit "
                              f"the {size} bytes of data")
    return header


def safetensors_size(head: bytes, source: str) -> int:
    """The length in bytes of the safetensors file whose first bytes are `head` (at least its
    header), as its header states it -- checked as `safetensors_header` checks a whole file -- so a
    compressed file is decompressed to that length and no further."""
    if len(head) < 8:
        raise FormatError(f"{source}: {len(head)} bytes, too short for a safetensors header")
    n = int.from_bytes(head[:8], "little")
    if n > min(MAX_SAFETENSORS_HEADER, len(head) - 8):
        raise FormatError(f"{source}: a safetensors header of {n} bytes, more than the "
                          f"{min(MAX_SAFETENSORS_HEADER, len(head) - 8)} there are")
    header = read_json(head[8:8 + n], f"{source}: safetensors header")
    ends = [t["data_offsets"][1] for t in (header.values() if isinstance(header, dict) else ())
            if isinstance(t, dict) and _naturals(t.get("data_offsets")) and len(t["data_offsets"]) == 2]
    total = 8 + n + max(ends, default=0)
    safetensors_header(head[:8 + n], source, total)
    return total


def _naturals(v: Any) -> bool:
    """A list of non-negative integers (bools refused)."""
    return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)


def canonical_safetensors(data: bytes) -> bytes:
    """`data` (a safetensors file) with its JSON header's keys sorted, so that the same tensors and
    metadata always give the same bytes: the writer emits its `__metadata__` map in hash order,
    which changes from call to call (safetensors issue #584), and every writer here records the
    file's SHA-256. Offsets in the header are relative to the data, so the header may change length."""
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(safetensors_header(data, "safetensors data"), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header to 8 bytes with spaces
    return len(header).to_bytes(8, "little") + header + data[8 + n:]
