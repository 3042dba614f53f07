"""The run folder: what the trainer writes and the baker reads.

```
RUN/
  run.json                 {"format": "featvid-run", "version": 1, ...}: config, scene, GOPs
  mlp.safetensors          the shared tiny MLP (featvid.render.mlp.TinyMLP)
  gop_00000.fvmap          one Mapping per GOP (featvid.bake.mapping)
  frames/00000.safetensors one SparseGrid per finished frame (written atomically, last)
  log.jsonl                one JSON line per finished frame (PSNR, loss terms, seconds)
```

A frame file exists only once the frame is finished, so "which frames are done" is "which frame
files exist": that is what makes training resumable.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from featvid.atomic import write_json
from featvid.bake.grid import SparseGrid
from featvid.bake.mapping import Mapping
from featvid.errors import StreamError
from featvid.render.mlp import TinyMLP
from featvid.render.volume import RenderSettings

RUN_FORMAT = "featvid-run"
RUN_VERSION = 1


@dataclass(frozen=True)
class Gop:
    """A group of frames [start, start + frames) sharing one mapping."""

    start: int
    frames: int
    mapping: str  # file name inside the run folder

    @property
    def end(self) -> int:
        return self.start + self.frames


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
        if self.meta.get("format") != RUN_FORMAT or self.meta.get("version") != RUN_VERSION:
            raise StreamError(f"{meta_path}: not a featvid run of version {RUN_VERSION}")

    # scene
    @property
    def num_frames(self) -> int:
        return int(self.meta["num_frames"])

    @property
    def fps(self) -> float:
        return float(self.meta["fps"])

    @property
    def aabb(self) -> torch.Tensor:
        return torch.tensor(self.meta["aabb"], dtype=torch.float32)

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["grid_shape"])  # type: ignore[return-value]

    @property
    def render_settings(self) -> RenderSettings:
        r = self.meta["render"]
        return RenderSettings(step_ratio=float(r["step_ratio"]), near=float(r["near"]),
                              background=tuple(float(c) for c in r["background"]))

    @property
    def gops(self) -> list[Gop]:
        return [Gop(int(g["start"]), int(g["frames"]), str(g["mapping"])) for g in self.meta.get("gops", [])]

    def gop_of(self, t: int) -> int:
        for i, g in enumerate(self.gops):
            if g.start <= t < g.end:
                return i
        raise StreamError(f"{self.path}: frame {t} is in no GOP")

    # files
    def frame_path(self, t: int) -> Path:
        return self.path / "frames" / f"{t:05d}.safetensors"

    def finished_frames(self) -> list[int]:
        return [t for t in range(self.num_frames) if self.frame_path(t).is_file()]

    def is_complete(self) -> bool:
        return len(self.finished_frames()) == self.num_frames and (self.path / "mlp.safetensors").is_file()

    def frame(self, t: int) -> SparseGrid:
        if not 0 <= t < self.num_frames:
            raise StreamError(f"{self.path}: frame {t} out of range 0..{self.num_frames - 1}")
        return SparseGrid.load(self.frame_path(t))

    def frames(self) -> Iterator[tuple[int, SparseGrid]]:
        for t in range(self.num_frames):
            yield t, self.frame(t)

    def mapping(self, gop: int) -> Mapping:
        return Mapping.load(self.path / self.gops[gop].mapping)

    def mlp(self, device: str | torch.device = "cpu") -> TinyMLP:
        return TinyMLP.load(self.path / "mlp.safetensors", device)

    def summary(self) -> dict[str, Any]:
        """What `featvid info RUN` shows: frames done, GOPs, grid, sizes in bytes."""
        done = self.finished_frames()
        grid_bytes = sum(self.frame_path(t).stat().st_size for t in done)
        C = int(self.meta.get("num_channels") or 0)
        fp16_bytes = sum(SparseGrid.float16_bytes(SparseGrid.file_vertices(self.frame_path(t)), C) for t in done)
        return {
            "kind": "run", "path": str(self.path), "frames": self.num_frames, "finished_frames": len(done),
            "fps": self.fps, "grid_shape": list(self.grid_shape), "channels": self.meta.get("num_channels"),
            "aabb": self.meta["aabb"], "gops": [[g.start, g.end] for g in self.gops],
            "grid_bytes_per_frame": grid_bytes / max(1, len(done)),
            "float16_grid_bytes_per_frame": fp16_bytes / max(1, len(done)), "dataset": self.meta.get("dataset"),
            "preset": self.meta.get("config", {}).get("preset"),
        }

    def log(self) -> list[dict]:
        p = self.path / "log.jsonl"
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.is_file() else []


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
