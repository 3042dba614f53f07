"""The run folder: what the trainer writes and the baker reads.

```
RUN/
  run.json                 {"format": "featvid-run", "version": 1, ...}: config, scene, GOPs
  mlp.safetensors          the shared tiny MLP (featvid.field.mlp.TinyMLP)
  gop_00000.fvmap          one Mapping per GOP (featvid.field.mapping)
  frames/00000.safetensors one SparseGrid per finished frame (written atomically, last)
  log.jsonl                one JSON line per finished frame (PSNR, loss terms, seconds)
  files.json               size and SHA-256 of every file above but run.json and log.jsonl
                           (featvid.field.files), each recorded as the file is written
```

A frame file exists only once the frame is finished, so "which frames are done" is "which frame
files exist": that is what makes training resumable.

`Run` reads run.json once and checks what every reader relies on (frame count, box, grid shape,
channels, render settings, GOPs tiling the frames, file names inside the folder); a frame file is
checked against it when it is read, and every file against its record in files.json (a run from
an older featvid has no files.json: it is refused unless read with legacy=True / `featvid
--legacy-read`, which reads it unverified with a warning; featvid.formats.folder).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from featvid.atomic import write_bytes, write_json
from featvid.errors import FormatError
from featvid.field.files import FileRecord, read_checked, read_records, records_dict
from featvid.field.gop import Gop, check_tiling, gop_index, span_from
from featvid.field.grid import SparseGrid
from featvid.field.mapping import Mapping
from featvid.field.mlp import MLPConfig, TinyMLP
from featvid.field.schema import int_field
from featvid.formats.folder import MAX_FRAMES, Common, FolderFormat, legacy_read, read_meta
from featvid.limits import read_json
from featvid.names import safe_name

log = logging.getLogger(__name__)

RUN_FORMAT = "featvid-run"
RUN_VERSION = 1
FILES = "files.json"  # the run's file records
FILES_FORMAT = "featvid-files"
COARSE_DIR = "coarse"  # the coarse pass's grids, one a frame (written by the trainer)


@dataclass(frozen=True)
class RunGop(Gop):
    """A GOP of a run: its frames and its mapping file (a plain name inside the run folder)."""

    mapping: str = ""
    blocks: int = 0  # mapped 4^3 blocks (for logs and `featvid info`)
    refresh: bool = False  # started by a keyframe refresh (split from the GOP before), not by the coarse pass

    def to_dict(self) -> dict[str, Any]:
        return {**self.span(), "mapping": self.mapping, "blocks": self.blocks, **({"refresh": True} if self.refresh else {})}


class Run(FolderFormat):
    """Read access to a run folder (finished or in progress). legacy: read a run without
    files.json (an older featvid) unverified; default FEATVID_LEGACY_READ (featvid.formats.folder)."""

    kind = "run"
    records_in = FILES

    def __init__(self, path: str | Path, legacy: bool | None = None) -> None:
        self.path = Path(path)
        self.legacy = legacy_read(legacy)
        meta_path = self.path / "run.json"
        self.meta: dict[str, Any] = read_meta(meta_path, RUN_FORMAT, (RUN_VERSION,), "a featvid run folder")
        src = str(meta_path)
        m = self.meta
        # run.json states C, the features ("num_channels"); a run trained on part of a capture
        # starts at dataset frame `frame_start`
        self._set_common(Common.read(m, src, "num_frames", "num_channels", planes_offset=1))
        self.frame_start = int_field(m, "frame_start", src, lo=0, hi=MAX_FRAMES) if "frame_start" in m else 0
        gops = m.get("gops", [])
        if not isinstance(gops, list):
            raise FormatError(f"{src}: gops must be a list")
        self.gops: list[RunGop] = []
        for i, g in enumerate(gops):
            start, frames = span_from(g, f"{src}: GOP {i}")
            self.gops.append(RunGop(start, frames, safe_name(g.get("mapping"), f"GOP {i} mapping", src),
                                    int(g.get("blocks", 0)) if isinstance(g.get("blocks", 0), int) else 0,
                                    g.get("refresh") is True and i > 0))
        if self.gops:  # an unfinished coarse pass writes run.json without GOPs first
            check_tiling(self.gops, self.num_frames, src)
        # a run records each file as it is written: an empty table is a run just begun, and a
        # file it does not list is refused on read (read_file)
        self._set_records(read_run_records(self.path), [], str(self.path / FILES), empty_ok=True)

    def gop_of(self, t: int) -> int:
        return gop_index(self.gops, t, str(self.path))

    def resume_at(self, first: int) -> "Run":
        """The run as it stood before its first unfinished frame `first` began: a keyframe refresh
        splits the GOP (run.json, a new mapping) before the refitted frame is written, so a kill
        in that refit left the split of a frame that is not finished. It is undone here (the
        GOPs joined again) and the frame decides it again, as the uninterrupted run did."""
        g = next((i for i, x in enumerate(self.gops) if x.start == first and x.refresh), None)
        if g is None:
            return self
        head, tail = self.gops[g - 1], self.gops[g]
        log.info("%s: frame %d's keyframe refresh was not finished: its GOP split is undone", self.path, first)
        gops = [*self.gops[:g - 1], RunGop(head.start, head.frames + tail.frames, head.mapping, head.blocks, head.refresh),
                *self.gops[g + 1:]]
        meta = {k: v for k, v in self.meta.items() if k not in ("format", "version")}
        write_run_meta(self.path, {**meta, "gops": [x.to_dict() for x in gops]})
        return Run(self.path, self.legacy)

    @property
    def mlp_config(self) -> MLPConfig | None:
        """The MLP's architecture as run.json records it ("mlp"; older runs: from the training
        config), None when the run does not say (its MLP file is then trusted for it)."""
        src = str(self.path / "run.json")
        if isinstance(self.meta.get("mlp"), dict):
            return MLPConfig.from_dict(self.meta["mlp"], src)
        c = self.meta.get("config")
        if isinstance(c, dict) and "mlp_hidden" in c:
            return MLPConfig.from_dict({"in_features": self.num_features, "hidden": c.get("mlp_hidden"),
                                        "layers": c.get("mlp_layers"), "view_freqs": c.get("view_freqs")}, src)
        return None

    # files
    def frame_path(self, t: int) -> Path:
        return self.path / frame_name(t)

    def read_file(self, name: str, what: str) -> bytes:
        """The bytes of the run's file `name`, checked against its record in files.json."""
        try:
            return super().read_file(name, what)
        except FormatError:
            # files.json is read once, and a run in training records a file as it writes it: look again
            fresh = read_run_records(self.path)
            if fresh is None or fresh == self.files:
                raise
            self.files = fresh
            return super().read_file(name, what)

    def finished_frames(self) -> list[int]:
        frames = self.path / "frames"
        if not frames.is_dir():
            return []
        done = []
        for p in frames.glob("*.safetensors"):  # bounded by the files there, not by num_frames
            if p.stem.isdigit() and int(p.stem) < self.num_frames and p.name == f"{int(p.stem):05d}.safetensors":
                done.append(int(p.stem))
        return sorted(done)

    def is_complete(self) -> bool:
        return len(self.finished_frames()) == self.num_frames and (self.path / "mlp.safetensors").is_file()

    def frame(self, t: int) -> SparseGrid:
        """Frame t's grid, checked against the run: grid shape, box and channels."""
        if not 0 <= t < self.num_frames:
            raise FormatError(f"{self.path}: frame {t} out of range 0..{self.num_frames - 1}")
        path = self.frame_path(t)
        grid = SparseGrid.from_bytes(self.read_file(frame_name(t), "grid file"), str(path))
        if tuple(grid.shape) != self.grid_shape or grid.num_channels != self.num_features \
                or not torch.allclose(grid.aabb.float(), self.aabb, atol=1e-6):
            raise FormatError(f"{path}: grid {tuple(grid.shape)} with {grid.num_channels} features in box "
                              f"{grid.aabb.tolist()} does not match run.json ({self.grid_shape}, "
                              f"{self.num_features} features, {self.aabb.tolist()})")
        return grid

    def frames(self) -> Iterator[tuple[int, SparseGrid]]:
        for t in range(self.num_frames):
            yield t, self.frame(t)

    def mapping(self, gop: int) -> Mapping:
        """GOP `gop`'s mapping, checked against the run's grid shape."""
        path = self.path / self.gops[gop].mapping
        mapping = Mapping.from_bytes(self.read_file(self.gops[gop].mapping, "mapping file"), str(path))
        if tuple(mapping.grid_shape) != self.grid_shape:
            raise FormatError(f"{path}: mapping is for grid {mapping.grid_shape}, the run has {self.grid_shape}")
        return mapping

    def mlp(self, device: str | torch.device = "cpu") -> TinyMLP:
        data = self.read_file("mlp.safetensors", "MLP file")
        return TinyMLP.from_bytes(data, str(self.path / "mlp.safetensors"), self.mlp_config).to(device)

    def recorded_names(self) -> list[str]:
        """Every recorded file but a frame recorded and then killed before it was written (an
        unfinished frame: the record is written first)."""
        return [n for n in sorted(self.files) if not (n.startswith("frames/") and not (self.path / n).is_file())]

    def summary(self) -> dict[str, Any]:
        """What `featvid info RUN` shows: frames done, GOPs, grid, sizes in bytes."""
        done = self.finished_frames()
        grid_bytes = sum(self.frame_path(t).stat().st_size for t in done)
        C = self.num_features
        fp16_bytes = sum(SparseGrid.float16_bytes(SparseGrid.file_vertices(self.frame_path(t)), C) for t in done)
        return {
            **super().summary(), "finished_frames": len(done), "gops": [[g.start, g.end] for g in self.gops],
            "grid_bytes_per_frame": grid_bytes / max(1, len(done)),
            "float16_grid_bytes_per_frame": fp16_bytes / max(1, len(done)), "dataset": self.meta.get("dataset"),
            "preset": (self.meta.get("config") or {}).get("preset"),
        }

    def log(self) -> list[dict]:
        """log.jsonl's records; a line that is not a frame record (a JSON object with an integer
        "frame"; a cut write, an edit) is skipped with a warning."""
        p = self.path / "log.jsonl"
        if not p.is_file():
            return []
        out, junk = [], []
        for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if _is_frame_record(rec, self.num_frames):
                out.append(rec)
            elif line.strip():
                junk.append(i)
        if junk:
            log.warning("%s: %d line(s) that are not frame records skipped (line %s)", p, len(junk),
                        ", ".join(map(str, junk[:5])))
        return out


def _is_frame_record(rec: Any, num_frames: int) -> bool:
    """Whether `rec` is a frame's log record as far as the trainer reads it on resume: an integer
    frame of the run, `keyframe` a bool and the quality scores numbers (or null) where present."""
    if not isinstance(rec, dict):
        return False
    frame = rec.get("frame")
    if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < num_frames:
        return False
    if not isinstance(rec.get("keyframe", False), bool):
        return False
    return all(rec.get(k) is None or (isinstance(rec[k], (int, float)) and not isinstance(rec[k], bool))
               for k in ("psnr_val", "psnr_fit", "psnr_train", "psnr_test"))


def recorded_config(path: str | Path) -> dict[str, Any] | None:
    """The training config recorded in the run folder `path`; None where there is no readable run."""
    if not (Path(path) / "run.json").is_file():
        return None
    try:
        return Run(path).meta.get("config")
    except FormatError:
        return None


def write_run_meta(path: str | Path, meta: dict[str, Any]) -> None:
    """Write run.json (format and version added) atomically; a new run folder also gets its (empty)
    file records, so that every file written into it is recorded."""
    path = Path(path)
    if read_run_records(path) is None and not _run_files_on_disk(path):
        _write_records(path, {})
    write_json(path / "run.json", {"format": RUN_FORMAT, "version": RUN_VERSION, **meta})


def frame_name(t: int) -> str:
    """Frame t's grid file, relative to the run folder."""
    return f"frames/{t:05d}.safetensors"


def coarse_name(t: int) -> str:
    """Frame t's coarse grid file, relative to the run folder."""
    return f"{COARSE_DIR}/{t:05d}.safetensors"


def write_run_file(path: str | Path, name: str, data: bytes) -> None:
    """Write the run's file `name` (relative, e.g. frame_name(t)) and record its size and SHA-256
    in files.json. The record is written first: a kill in between leaves a record of a file that
    is not there yet (an unfinished frame, trained again on resume), never a file without one."""
    path = Path(path)
    records = read_run_records(path)
    if records is None:  # a run of an older featvid, resumed: its files as they are, recorded once
        records = {n: FileRecord.of_file(path / n) for n in _run_files_on_disk(path)}
        log.warning("%s: recording the size and SHA-256 of the %d files already in this older run", path,
                    len(records))
    records[name] = FileRecord.of(data)
    _write_records(path, records)
    write_bytes(path / name, data)


def read_run_file(path: str | Path, name: str, what: str, legacy: bool | None = None) -> bytes:
    """The bytes of file `name` of the run folder `path`, checked against files.json (for readers
    that hold no `Run`, e.g. the trainer's coarse grids); a file it does not record is refused
    unless this is a legacy read of a run without records."""
    records = read_run_records(path)
    if (records is None or name not in records) and not (legacy_read(legacy) and not records):
        hint = " (the run records none: read it with `featvid --legacy-read`)" if records is None else ""
        raise FormatError(f"{Path(path) / name}: not listed in {FILES}'s file hashes{hint}")
    return read_checked(Path(path), name, records or {}, FILES, what)


def read_run_records(path: str | Path) -> dict[str, FileRecord] | None:
    """files.json's records of the run folder `path`; None when it has none (an older featvid)."""
    p = Path(path) / FILES
    if not p.is_file():
        return None
    d = read_json(p, str(p))
    if not isinstance(d, dict) or d.get("format") != FILES_FORMAT or not isinstance(d.get("files"), dict):
        raise FormatError(f"{p}: not a featvid file table")
    return read_records(d["files"], str(p)) if d["files"] else {}


def _write_records(path: Path, records: dict[str, FileRecord]) -> None:
    write_json(path / FILES, {"format": FILES_FORMAT, "version": 1, "files": records_dict(records)})


def _run_files_on_disk(path: Path) -> list[str]:
    """The trainer's files present in `path` (what files.json records), sorted."""
    names = ["mlp.safetensors"] if (path / "mlp.safetensors").is_file() else []
    names += sorted(p.name for p in path.glob("gop_*.fvmap"))
    for sub in ("frames", COARSE_DIR):
        names += sorted(f"{sub}/{p.name}" for p in (path / sub).glob("*.safetensors")) if (path / sub).is_dir() else []
    return names
