"""What a folder of featvid outputs holds, as one comparable value: {file: SHA-256 of its content}.

Two runs of a job (one executor against another, one machine against another) made the same
outputs when their digests are equal. Only safetensors headers are normalised: safetensors writes
its __metadata__ in a random order on every save (safetensors issue #584), the one part of a
featvid output that is not the same bytes from run to run.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import zstandard


def _safetensors_content(raw: bytes) -> bytes:
    """A safetensors file with its header's keys sorted."""
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    return json.dumps(header, sort_keys=True).encode() + raw[8 + n:]


def content_digest(folder: str | Path) -> dict[str, str]:
    """{relative file name: sha256} of every file below `folder`: the raw bytes, except that
    safetensors headers (MLP files, zstd-compressed bake planes) are taken with sorted keys."""
    folder = Path(folder)
    out = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        raw = p.read_bytes()
        if p.name.endswith(".planes.zst"):
            raw = _safetensors_content(zstandard.ZstdDecompressor().decompress(raw))
        elif p.suffix == ".safetensors":
            raw = _safetensors_content(raw)
        out[str(p.relative_to(folder))] = hashlib.sha256(raw).hexdigest()
    return out
