"""The stream reader: open a NAME.fvv folder, decode GOPs back to per-frame SparseGrids.

Decoding runs PyAV in process (threaded; CUDA hwaccel when asked and present, software
otherwise, never a crash). Every GOP's video starts with a keyframe, so a random frame t costs
decoding its GOP from the start up to t.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from featvid.bake.grid import SparseGrid
from featvid.bake.mapping import Mapping
from featvid.codecs import ffmpeg_backend, pyav_backend
from featvid.codecs.basis import BASIS_TENSOR
from featvid.codecs.manifest import MANIFEST, Manifest
from featvid.codecs.pack import Mosaic, unpack
from featvid.codecs.quantize import dequantize
from featvid.errors import ConfigError, StreamError
from featvid.render.mlp import TinyMLP
from featvid.render.volume import RenderSettings

log = logging.getLogger(__name__)

HWACCELS = ("auto", "cuda", "none")
DECODERS = ("pyav", "ffmpeg")


def _hwaccel_choice(hwaccel: str) -> str:
    """What to try: 'cuda' only when asked, or on auto when torch sees a CUDA device."""
    if hwaccel not in HWACCELS:
        raise ConfigError(f"unknown hwaccel {hwaccel!r}; choose one of {', '.join(HWACCELS)}")
    if hwaccel == "auto":
        return "auto" if torch.cuda.is_available() else "none"
    return hwaccel


class Stream:
    """A finished stream folder, opened and validated (see `open_stream`)."""

    def __init__(self, path: str | Path, hwaccel: str = "auto", decoder: str = "pyav") -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise StreamError(f"{self.path}: stream folder is missing")
        if decoder not in DECODERS:
            raise ConfigError(f"unknown decoder {decoder!r}; known: {', '.join(DECODERS)}")
        self.manifest = Manifest.read(self.path / MANIFEST)
        self.hwaccel = _hwaccel_choice(hwaccel)
        self.decoder = decoder
        m = self.manifest
        self.num_frames: int = m.frames
        self.fps: float = m.fps
        self.aabb: torch.Tensor = torch.tensor(m.aabb, dtype=torch.float32)  # [2, 3]
        self.grid_shape: tuple[int, int, int] = tuple(m.grid_shape)  # type: ignore[assignment]
        self.num_gops: int = len(m.gops)
        r = m.render
        self.render_settings = RenderSettings(step_ratio=float(r["step_ratio"]), near=float(r["near"]),
                                              background=tuple(float(c) for c in r["background"]))  # type: ignore[arg-type]
        for g in m.gops:  # every named file present before anything is decoded
            for name in (g.mapping, g.video):
                if not (self.path / name).is_file():
                    raise StreamError(f"{self.path}: file {name} named in the manifest is missing")
        if not (self.path / m.mlp["file"]).is_file():
            raise StreamError(f"{self.path}: file {m.mlp['file']} named in the manifest is missing")
        self._mappings: dict[int, Mapping] = {}  # g -> Mapping (it caches its own vertex layout)

    def __repr__(self) -> str:
        return f"Stream({str(self.path)!r}, frames={self.num_frames}, gops={self.num_gops}, preset={self.manifest.codec.preset!r})"

    # -- structure -----------------------------------------------------------------------------
    def gop_range(self, g: int) -> tuple[int, int]:
        """Frames [start, end) of GOP g."""
        if not 0 <= g < self.num_gops:
            raise StreamError(f"{self.path}: GOP {g} out of range 0..{self.num_gops - 1}")
        e = self.manifest.gops[g]
        return e.start, e.start + e.frames

    def gop_of(self, t: int) -> int:
        """The GOP holding frame t."""
        if not 0 <= t < self.num_frames:
            raise StreamError(f"{self.path}: frame {t} out of range 0..{self.num_frames - 1}")
        for g, e in enumerate(self.manifest.gops):
            if e.start <= t < e.start + e.frames:
                return g
        raise StreamError(f"{self.path}: frame {t} is in no GOP")  # unreachable after Manifest.check

    def mlp(self, device: str | torch.device = "cpu") -> TinyMLP:
        """The stream's MLP: it takes the decoded features (in the stream's feature basis, if any)."""
        return TinyMLP.load(self.path / self.manifest.mlp["file"], device)

    def feature_basis(self) -> torch.Tensor | None:
        """A [C, C] with decoded features g = A f of the run's features f (featvid.codecs.basis),
        None when the stream codes the run's features as they are."""
        if self.manifest.mlp.get("feature_basis", "none") == "none":
            return None
        from safetensors import safe_open

        path = self.path / self.manifest.mlp["file"]
        try:
            with safe_open(str(path), framework="pt") as f:
                A = f.get_tensor(BASIS_TENSOR).double()
        except Exception as e:
            raise StreamError(f"{path}: the manifest names a feature basis the MLP file does not hold ({e})") from e
        C = self.manifest.channels - 1
        if tuple(A.shape) != (C, C) or not torch.isfinite(A).all():
            raise StreamError(f"{path}: feature basis of shape {tuple(A.shape)}, expected ({C}, {C})")
        return A

    def mapping(self, g: int) -> Mapping:
        self.gop_range(g)
        if g not in self._mappings:
            e = self.manifest.gops[g]
            mapping = Mapping.load(self.path / e.mapping)
            if tuple(mapping.grid_shape) != self.grid_shape or mapping.atlas_size != tuple(e.atlas):
                raise StreamError(f"{self.path / e.mapping}: mapping does not match the manifest "
                                  f"(grid {mapping.grid_shape}, atlas {mapping.atlas_size})")
            self._mappings[g] = mapping
        return self._mappings[g]

    # -- decoding ------------------------------------------------------------------------------
    def _frames_planes(self, g: int) -> Iterator[list[np.ndarray]]:
        e = self.manifest.gops[g]
        video = self.path / e.video
        if self.decoder == "ffmpeg":
            yield from ffmpeg_backend.decode_video(video, self.hwaccel)
        else:
            yield from pyav_backend.decode_video(video, self.hwaccel)

    def decode_codes(self, g: int, stop: int | None = None) -> np.ndarray:
        """Quantized codes of GOP g as decoded [F, P, H_a, W_a] uint16 (frames start..stop when stop is given)."""
        start, end = self.gop_range(g)
        want = (end if stop is None else stop) - start
        e = self.manifest.gops[g]
        mosaic = Mosaic.from_json(e.atlas, e.mosaic)
        out = []
        for planes in self._frames_planes(g):
            if planes[0].shape != (mosaic.height, mosaic.width):
                raise StreamError(f"{self.path / e.video}: frames are {planes[0].shape[::-1]}, "
                                  f"manifest says {mosaic.width}x{mosaic.height}")
            out.append(unpack(planes, self.manifest.codec.packing, mosaic, self.manifest.channels))
            if len(out) == want:
                break
        if len(out) < want:
            raise StreamError(f"{self.path / e.video}: {len(out)} frames decoded, the GOP has {e.frames} "
                              "(truncated video?)")
        return np.stack(out)

    def _grid(self, g: int, codes: np.ndarray) -> SparseGrid:
        """One frame's codes [P, H, W] -> its SparseGrid (every vertex of the GOP's blocks)."""
        e = self.manifest.gops[g]
        pix, coords = self.mapping(g).vertex_layout()
        used = codes.reshape(codes.shape[0], -1)[:, pix.numpy()]  # [P, N]
        values = dequantize(used, e.ranges, self.manifest.codec.levels)  # [P, N]
        return SparseGrid(self.aabb.clone(), self.grid_shape, coords, values[0].contiguous(), values[1:].T.contiguous())

    def decode_gop(self, g: int) -> list[SparseGrid]:
        """All frames of GOP g, dequantized."""
        return [self._grid(g, c) for c in self.decode_codes(g)]

    def frames(self) -> Iterator[SparseGrid]:
        """Every frame in order."""
        for g in range(self.num_gops):
            yield from self.decode_gop(g)

    def frame(self, t: int) -> SparseGrid:
        """Frame t: decode its GOP from the keyframe up to t."""
        g = self.gop_of(t)
        return self._grid(g, self.decode_codes(g, stop=t + 1)[-1])

    # -- report --------------------------------------------------------------------------------
    def summary(self) -> dict:
        """Frames, GOPs, codec, preset, and bytes per frame in total and by part (files on disk)."""
        m = self.manifest
        size = lambda name: (self.path / name).stat().st_size  # noqa: E731
        video = sum(size(g.video) for g in m.gops)
        mapping = sum(size(g.mapping) for g in m.gops)
        mlp = size(m.mlp["file"])
        manifest = size(MANIFEST)
        total = video + mapping + mlp + manifest
        T = max(1, self.num_frames)
        e0 = m.gops[0] if m.gops else None
        return {
            "path": str(self.path), "frames": self.num_frames, "fps": self.fps, "gops": self.num_gops,
            "grid_shape": list(self.grid_shape), "channels": m.channels,
            "codec": m.codec.codec, "preset": m.codec.preset, "backend": m.codec.backend,
            "pix_fmt": m.codec.pix_fmt, "bit_depth": m.codec.bit_depth, "packing": m.codec.packing,
            "options": dict(m.codec.options), "feature_basis": m.mlp.get("feature_basis", "none"),
            "frame_size": [e0.mosaic["width"], e0.mosaic["height"]] if e0 else None,
            "bytes": {"total": total, "video": video, "mapping": mapping, "mlp": mlp, "manifest": manifest},
            "bytes_per_frame": {"total": total / T, "video": video / T, "mapping": mapping / T, "mlp": mlp / T,
                                "manifest": manifest / T},
            "kbit_per_second": total * 8 / 1000 / (T / self.fps) if self.fps > 0 else math.nan,
        }


def open_stream(path: str | Path, hwaccel: str = "auto", decoder: str = "pyav") -> Stream:
    """Open and validate the stream folder `path` (format, version, file names, files present).

    hwaccel: "auto" (CUDA when a device is there), "cuda" (warns and decodes in software when it
    cannot), "none". decoder: "pyav" (default) or "ffmpeg" (the command line, for cross-checks).
    StreamError for a missing, foreign, newer or unfinished (no manifest) stream.
    """
    return Stream(path, hwaccel, decoder)
