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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featvid.errors import StreamError
from featvid.field.schema import int_field
from featvid.names import safe_name

MAX_FILE_BYTES = 1 << 40  # what a record may claim (1 TiB)
MAX_RECORDS = 10_000_000  # entries a table may hold: a bound for an edited file
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
        raise StreamError(f"{source}: files must be an object of file name -> {{bytes, sha256}}")
    out = {}
    for name, rec in d.items():
        safe_name(name, "hashed file", source)
        where = f"{source}: files[{str(name)[:80]!r}]"
        sha = rec.get("sha256") if isinstance(rec, dict) else None
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise StreamError(f"{where}: sha256 must be 64 lower-case hex digits, got {str(sha)[:70]!r}")
        out[name] = FileRecord(int_field(rec, "bytes", where, hi=MAX_FILE_BYTES), sha)
    return out


def records_dict(records: dict[str, FileRecord]) -> dict[str, dict[str, Any]]:
    """The table as JSON data, names sorted (a table's bytes do not depend on write order)."""
    return {n: records[n].to_dict() for n in sorted(records)}


def check_record(path: Path, want: FileRecord, found: FileRecord, recorded_in: str) -> None:
    """StreamError naming `path` when `found` (its size and hash) is not `want`, its record in
    `recorded_in` (e.g. "the manifest")."""
    if found.bytes != want.bytes:
        raise StreamError(f"{path}: {found.bytes} bytes, {recorded_in} records {want.bytes} (truncated or altered file)")
    if found.sha256 != want.sha256:
        raise StreamError(f"{path}: SHA-256 differs from {recorded_in}'s record (corrupt or altered file)")


def read_checked(folder: Path, name: str, records: dict[str, FileRecord], recorded_in: str, what: str) -> bytes:
    """The bytes of `folder`/`name`, checked against its record when `records` holds any (a
    folder with records and none for this file is refused: a file slipped in is not trusted)."""
    path = Path(folder) / name
    if not path.is_file():
        raise StreamError(f"{path}: {what} is missing")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise StreamError(f"{path}: unreadable ({e.strerror or e})") from e
    if records:
        want = records.get(name)
        if want is None:
            raise StreamError(f"{path}: not listed in {recorded_in}'s file hashes")
        check_record(path, want, FileRecord.of(data), recorded_in)
    return data


def canonical_safetensors(data: bytes) -> bytes:
    """`data` (a safetensors file) with its JSON header's keys sorted, so that the same tensors and
    metadata always give the same bytes: the writer emits its `__metadata__` map in hash order,
    which changes from call to call (safetensors issue #584), and every writer here records the
    file's SHA-256. Offsets in the header are relative to the data, so the header may change length."""
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header to 8 bytes with spaces
    return len(header).to_bytes(8, "little") + header + data[8 + n:]
