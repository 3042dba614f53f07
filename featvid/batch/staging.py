"""What a batch job keeps between a killed run and its resume, outside every output's own files.

An output folder (a stream NAME.fvv, a baked folder) gets a hidden sibling `.NAME.parts/`:

```
.NAME.parts/
  plan.json          {"fingerprint": ...}: what the output is made from and how (preset, options,
                     back end, feature basis, the bake's or the run's files)
  gop_00000.json     one GOP done: its entry (what the finishing task needs) and the size of
                     every file the GOP wrote, written by the worker after the GOP's files
```

A rerun with the same fingerprint keeps every GOP whose record is there and whose files still
have the recorded sizes, and redoes the others; another fingerprint starts the output over. The
finishing task removes the folder once the output is complete (its manifest or baked.json is
its mark from then on), so a finished output is exactly the files `featvid encode` or
`featvid bake` would write. Records are JSON: nothing here is unpickled.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import types
import typing
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from featvid.atomic import write_json
from featvid.formats.run import Run
from featvid.codecs.encode import EncodePlan
from featvid.errors import FormatError, StreamError
from featvid.limits import read_json

PLAN = "plan.json"


def staging_dir(out: Path) -> Path:
    """The hidden sibling folder of an output folder."""
    return out.parent / f".{out.name}.parts"


class Staging:
    """The staging folder of one output."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.path = staging_dir(self.out)

    def fingerprint(self) -> str | None:
        """The fingerprint the staged records belong to; None when there is none (or it is unreadable)."""
        try:
            return str(read_json(self.path / PLAN, str(self.path / PLAN))["fingerprint"])
        except (FormatError, ValueError, KeyError, TypeError):
            return None

    def start(self, fingerprint: str) -> None:
        """Forget every record and start one for `fingerprint`."""
        self.remove()
        write_json(self.path / PLAN, {"fingerprint": fingerprint})

    def record(self, g: int, entry: dict[str, Any], files: list[str]) -> None:
        """GOP g is done: its entry and the sizes of its files (names relative to the output folder)."""
        sizes = {f: (self.out / f).stat().st_size for f in files}
        write_json(self.path / f"gop_{g:05d}.json", {"gop": g, "entry": entry, "files": sizes}, compact=True)

    def kept(self, count: int) -> dict[int, dict[str, Any]]:
        """The GOPs below `count` whose record is readable and whose files still have their sizes:
        {g: entry dict}."""
        done = {}
        for g in range(count):
            try:
                rec = read_json(self.path / f"gop_{g:05d}.json", f"GOP {g} record")
                ok = rec["gop"] == g and all((self.out / f).is_file() and (self.out / f).stat().st_size == size
                                             for f, size in rec["files"].items())
            except (FormatError, ValueError, KeyError, TypeError, AttributeError):
                continue
            if ok:
                done[g] = rec["entry"]
        return done

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def sweep_temporaries(out: Path) -> None:
    """Remove what a killed atomic write left in `out` (featvid.atomic's `.NAME.xxxx.tmp`), so a
    finished output holds exactly its own files."""
    for p in Path(out).rglob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)


def gop_files(out: Path, folder: str) -> list[str]:
    """Every file an encoded GOP wrote in out/folder (names relative to `out`), temporaries left out."""
    base = Path(out) / folder
    return sorted(str(p.relative_to(out)) for p in base.rglob("*") if p.is_file() and not p.name.endswith(".tmp"))


# ---- GOP entries as JSON --------------------------------------------------------------------------
# A GOP entry (GopEntry of a stream, BakedGop of a bake) is a dataclass of plain values; JSON loses
# the difference between tuples and lists and the nested dataclasses, and its field types give
# them back. `round_trips` checks it for the entry at hand: one that does not come back equal (a
# field of a type this does not know) is simply not staged, and redone on a resume.

def entry_to_dict(entry: Any) -> dict[str, Any]:
    """A GOP entry as JSON data."""
    return asdict(entry)


def entry_from_dict(cls: type, d: Any) -> Any:
    """The GOP entry of dataclass `cls` that entry_to_dict gave `d` for."""
    return _typed(cls, d)


def _typed(tp: Any, v: Any) -> Any:
    """JSON value `v` as type `tp` (dataclasses, tuple[...], list[...], dict[str, ...], X | None)."""
    if is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _typed(hints[f.name], v[f.name]) for f in fields(tp) if f.init and f.name in v})
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(args[0], x) for x in v)
        return tuple(_typed(a, x) for a, x in zip(args, v, strict=True))
    if origin is list:
        return [_typed(args[0], x) for x in v]
    if origin is dict:
        return {k: _typed(args[1], x) for k, x in v.items()}
    if origin in (typing.Union, types.UnionType):
        if v is None:
            return None
        return _typed(next(a for a in args if a is not type(None)), v)
    if tp is float and isinstance(v, int):
        return float(v)
    return v


def round_trips(entry: Any) -> bool:
    """Whether `entry` comes back equal from its JSON record."""
    try:
        return entry_from_dict(type(entry), json.loads(json.dumps(entry_to_dict(entry)))) == entry
    except (TypeError, ValueError, KeyError, AttributeError, StopIteration):
        return False


# ---- fingerprints ---------------------------------------------------------------------------------

def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()[:24]


def stream_fingerprint(plan: EncodePlan) -> str:
    """What a stream is made from and how: every rendition's resolved preset (every field) and
    encoder options, the back end and its FFmpeg, the feature basis, and the bake's baked.json and MLP."""
    renditions = [{"name": r.name, "preset": asdict(r.preset), "options": r.options} for r in plan.renditions]
    how = json.dumps({"renditions": renditions, "backend": plan.backend.name, "ffmpeg": plan.backend.version()},
                     sort_keys=True, default=str).encode()
    A = b"none" if plan.basis is None else plan.basis.numpy().tobytes()
    return _sha(how, A, (plan.baked.path / "baked.json").read_bytes(), plan.baked.mlp_bytes())


def run_fingerprint(run: Run) -> str:
    """What a bake is made from: run.json, the MLP, and each frame file's name, size and time."""
    parts = [(run.path / "run.json").read_bytes(), (run.path / "mlp.safetensors").read_bytes()]
    for t in range(run.num_frames):
        p = run.frame_path(t)
        try:
            st = p.stat()
        except OSError as e:
            raise StreamError(f"{p}: frame file is missing ({e})") from e
        parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return _sha(*parts)
