"""The run folder: what the trainer writes and the baker reads.

```
RUN/
  run.json                 {"format": "featvid-run", "version": 1, ...}: config, scene, GOPs
  mlp.safetensors          the shared tiny MLP (featvid.field.mlp.TinyMLP)
  gop_00000.fvmap          one Mapping per GOP (featvid.field.mapping)
  frames/00000.safetensors one SparseGrid per finished frame (written atomically, last)
  log.jsonl                one JSON line per finished frame (PSNR, loss terms, seconds)
```

A frame file exists only once the frame is finished, so "which frames are done" is "which frame
files exist": that is what makes training resumable.

`Run` reads run.json once and checks what every reader relies on (frame count, box, grid shape,
channels, render settings, GOPs tiling the frames, file names inside the folder); a frame file is
checked against it when it is read.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from featvid.atomic import write_json
from featvid.errors import StreamError
from featvid.field.gop import Gop, check_tiling, gop_index, span_from
from featvid.field.grid import SparseGrid
from featvid.field.mapping import Mapping
from featvid.field.mlp import MLPConfig, TinyMLP
from featvid.field.schema import int_field, number_field, read_aabb, read_grid_shape
from featvid.field.volume import RenderSettings
from featvid.names import safe_name

RUN_FORMAT = "featvid-run"
RUN_VERSION = 1
MAX_FRAMES = 1_000_000  # a bound on what run.json may claim, so an edited number cannot run away


@dataclass(frozen=True)
class RunGop(Gop):
    """A GOP of a run: its frames and its mapping file (a plain name inside the run folder)."""

    mapping: str = ""
    blocks: int = 0  # mapped 4^3 blocks (for logs and `featvid info`)

    def to_dict(self) -> dict[str, Any]:
        return {**self.span(), "mapping": self.mapping, "blocks": self.blocks}


class Run:
    """Read access to a run folder (finished or in progress)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "run.json"
        if not meta_path.is_file():
            raise StreamError(f"{self.path}: not a featvid run folder (no run.json)")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise StreamError(f"{meta_path}: unreadable ({e})") from e
        if not isinstance(self.meta, dict) or self.meta.get("format") != RUN_FORMAT \
                or self.meta.get("version") != RUN_VERSION:
            raise StreamError(f"{meta_path}: not a featvid run of version {RUN_VERSION}")
        src = str(meta_path)
        m = self.meta
        self.num_frames = int_field(m, "num_frames", src, lo=1, hi=MAX_FRAMES)
        self.fps = number_field(m, "fps", src, 0, 1000, lo_open=True)
        self.aabb = read_aabb(m.get("aabb"), src)  # [2, 3]
        self.grid_shape = read_grid_shape(m.get("grid_shape"), src)
        self.num_channels = int_field(m, "num_channels", src, lo=1, hi=64)
        self.render_settings = RenderSettings.from_dict(m.get("render"), src)
        gops = m.get("gops", [])
        if not isinstance(gops, list):
            raise StreamError(f"{src}: gops must be a list")
        self.gops: list[RunGop] = []
        for i, g in enumerate(gops):
            start, frames = span_from(g, f"{src}: GOP {i}")
            self.gops.append(RunGop(start, frames, safe_name(g.get("mapping"), f"GOP {i} mapping", src),
                                    int(g.get("blocks", 0)) if isinstance(g.get("blocks", 0), int) else 0))
        if self.gops:  # an unfinished coarse pass writes run.json without GOPs first
            check_tiling(self.gops, self.num_frames, src)

    def gop_of(self, t: int) -> int:
        return gop_index(self.gops, t, str(self.path))

    @property
    def mlp_config(self) -> MLPConfig | None:
        """The MLP's architecture as run.json records it ("mlp"; older runs: from the training
        config), None when the run does not say (its MLP file is then trusted for it)."""
        src = str(self.path / "run.json")
        if isinstance(self.meta.get("mlp"), dict):
            return MLPConfig.from_dict(self.meta["mlp"], src)
        c = self.meta.get("config")
        if isinstance(c, dict) and "mlp_hidden" in c:
            return MLPConfig.from_dict({"in_features": self.num_channels, "hidden": c.get("mlp_hidden"),
                                        "layers": c.get("mlp_layers"), "view_freqs": c.get("view_freqs")}, src)
        return None

    # files
    def frame_path(self, t: int) -> Path:
        return self.path / "frames" / f"{t:05d}.safetensors"

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
            raise StreamError(f"{self.path}: frame {t} out of range 0..{self.num_frames - 1}")
        path = self.frame_path(t)
        grid = SparseGrid.load(path)
        if tuple(grid.shape) != self.grid_shape or grid.num_channels != self.num_channels \
                or not torch.allclose(grid.aabb.float(), self.aabb, atol=1e-6):
            raise StreamError(f"{path}: grid {tuple(grid.shape)} with {grid.num_channels} channels in box "
                              f"{grid.aabb.tolist()} does not match run.json ({self.grid_shape}, "
                              f"{self.num_channels} channels, {self.aabb.tolist()})")
        return grid

    def frames(self) -> Iterator[tuple[int, SparseGrid]]:
        for t in range(self.num_frames):
            yield t, self.frame(t)

    def mapping(self, gop: int) -> Mapping:
        """GOP `gop`'s mapping, checked against the run's grid shape."""
        path = self.path / self.gops[gop].mapping
        mapping = Mapping.load(path)
        if tuple(mapping.grid_shape) != self.grid_shape:
            raise StreamError(f"{path}: mapping is for grid {mapping.grid_shape}, the run has {self.grid_shape}")
        return mapping

    def mlp(self, device: str | torch.device = "cpu") -> TinyMLP:
        return TinyMLP.load(self.path / "mlp.safetensors", device, expect=self.mlp_config)

    def summary(self) -> dict[str, Any]:
        """What `featvid info RUN` shows: frames done, GOPs, grid, sizes in bytes."""
        done = self.finished_frames()
        grid_bytes = sum(self.frame_path(t).stat().st_size for t in done)
        C = self.num_channels
        fp16_bytes = sum(SparseGrid.float16_bytes(SparseGrid.file_vertices(self.frame_path(t)), C) for t in done)
        return {
            "kind": "run", "path": str(self.path), "frames": self.num_frames, "finished_frames": len(done),
            "fps": self.fps, "grid_shape": list(self.grid_shape), "channels": C,
            "aabb": self.aabb.tolist(), "gops": [[g.start, g.end] for g in self.gops],
            "grid_bytes_per_frame": grid_bytes / max(1, len(done)),
            "float16_grid_bytes_per_frame": fp16_bytes / max(1, len(done)), "dataset": self.meta.get("dataset"),
            "preset": (self.meta.get("config") or {}).get("preset"),
        }

    def log(self) -> list[dict]:
        """log.jsonl's records; a line that is not a JSON object (a cut write, an edit) is skipped."""
        p = self.path / "log.jsonl"
        if not p.is_file():
            return []
        out = []
        for line in p.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out


def recorded_config(path: str | Path) -> dict[str, Any] | None:
    """The training config recorded in the run folder `path`; None where there is no readable run."""
    if not (Path(path) / "run.json").is_file():
        return None
    try:
        return Run(path).meta.get("config")
    except StreamError:
        return None


def write_run_meta(path: str | Path, meta: dict[str, Any]) -> None:
    """Write run.json (format and version added) atomically."""
    write_json(Path(path) / "run.json", {"format": RUN_FORMAT, "version": RUN_VERSION, **meta})
