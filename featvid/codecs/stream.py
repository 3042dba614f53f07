"""The stream reader: open a NAME.fvv folder, decode GOPs back to per-frame SparseGrids.

Decoding runs a codec back end (PyAV in process by default: threaded; CUDA hwaccel when asked and
present, software otherwise, never a crash). Every GOP's video starts with a keyframe, so a random
frame t costs decoding its GOP from the start up to t.

The short path from video to grid (`decode_gop`): each decoded frame's codes are gathered straight
out of its image planes at the vertices' pixels (no atlas is unpacked), the GOP's codes go to the
target device once (1 or 2 bytes a value), and they are dequantized there; the frames' grids are
views of that one tensor and share one coordinate tensor, so a renderer on the device scatters
them without another copy.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from featvid.codecs.backends import DEFAULT_BACKEND, get_backend
from featvid.codecs.basis import BASIS_TENSOR
from featvid.codecs.manifest import MANIFEST, Manifest
from featvid.codecs.pack import CodeIndex, Mosaic, unpack
from featvid.codecs.quantize import dequantize
from featvid.errors import ConfigError, StreamError
from featvid.field.gop import gop_index
from featvid.field.grid import SparseGrid
from featvid.field.mapping import Mapping
from featvid.field.mlp import TinyMLP

log = logging.getLogger(__name__)

HWACCELS = ("auto", "cuda", "none")


def _hwaccel_choice(hwaccel: str) -> str:
    """What to try: 'cuda' only when asked, or on auto when torch sees a CUDA device."""
    if hwaccel not in HWACCELS:
        raise ConfigError(f"unknown hwaccel {hwaccel!r}; choose one of {', '.join(HWACCELS)}")
    if hwaccel == "auto":
        return "auto" if torch.cuda.is_available() else "none"
    return hwaccel


class Stream:
    """A finished stream folder, opened and validated (see `open_stream`)."""

    def __init__(self, path: str | Path, hwaccel: str = "auto", decoder: str = DEFAULT_BACKEND) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise StreamError(f"{self.path}: stream folder is missing")
        self.backend = get_backend(decoder)
        self.manifest = Manifest.read(self.path / MANIFEST)
        self.hwaccel = _hwaccel_choice(hwaccel)
        m = self.manifest
        self.num_frames: int = m.frames
        self.fps: float = m.fps
        self.aabb: torch.Tensor = torch.tensor(m.aabb, dtype=torch.float32)  # [2, 3]
        self.grid_shape: tuple[int, int, int] = tuple(m.grid_shape)  # type: ignore[assignment]
        self.num_gops: int = len(m.gops)
        self.render_settings = m.render
        for g in m.gops:  # every named file present before anything is decoded
            for name in (g.mapping, g.video):
                if not (self.path / name).is_file():
                    raise StreamError(f"{self.path}: file {name} named in the manifest is missing")
        if not (self.path / m.mlp["file"]).is_file():
            raise StreamError(f"{self.path}: file {m.mlp['file']} named in the manifest is missing")
        self._mappings: dict[int, Mapping] = {}  # g -> Mapping (it caches its own vertex layout)
        self._index: dict[int, CodeIndex] = {}  # g -> where its codes sit in a decoded frame

    @property
    def decoder(self) -> str:
        return self.backend.name

    def __repr__(self) -> str:
        return f"Stream({str(self.path)!r}, frames={self.num_frames}, gops={self.num_gops}, preset={self.manifest.codec.preset!r})"

    # -- structure -----------------------------------------------------------------------------
    def gop_range(self, g: int) -> tuple[int, int]:
        """Frames [start, end) of GOP g."""
        if not 0 <= g < self.num_gops:
            raise StreamError(f"{self.path}: GOP {g} out of range 0..{self.num_gops - 1}")
        e = self.manifest.gops[g]
        return e.start, e.end

    def gop_of(self, t: int) -> int:
        """The GOP holding frame t."""
        if not 0 <= t < self.num_frames:
            raise StreamError(f"{self.path}: frame {t} out of range 0..{self.num_frames - 1}")
        return gop_index(self.manifest.gops, t, str(self.path))

    def mlp(self, device: str | torch.device = "cpu") -> TinyMLP:
        """The stream's MLP: it takes the decoded features (in the stream's feature basis, if any)."""
        return TinyMLP.load(self.path / self.manifest.mlp["file"], device, expect=self.manifest.mlp_config)

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

    def _mosaic(self, g: int) -> Mosaic:
        e = self.manifest.gops[g]
        try:
            return Mosaic.from_json(e.atlas, e.mosaic)
        except (KeyError, TypeError, ValueError) as err:
            raise StreamError(f"{self.path}: GOP {g} has a malformed mosaic {e.mosaic} ({err})") from err

    # -- decoding ------------------------------------------------------------------------------
    def _decoded(self, g: int, want: int) -> Iterator[list[np.ndarray]]:
        """The first `want` decoded frames of GOP g (image planes), each checked against the mosaic;
        StreamError when the video holds fewer."""
        e = self.manifest.gops[g]
        mosaic = self._mosaic(g)
        n = 0
        if want > 0:
            for planes in self.backend.decode(self.path / e.video, self.hwaccel):
                if planes[0].shape != (mosaic.height, mosaic.width):
                    raise StreamError(f"{self.path / e.video}: frames are {planes[0].shape[::-1]}, "
                                      f"manifest says {mosaic.width}x{mosaic.height}")
                if self.manifest.codec.packing == "yuv444-triplets" and (len(planes) < 3 or planes[1].shape != planes[0].shape):
                    raise StreamError(f"{self.path / e.video}: yuv444-triplets stream decoded without full-size chroma")
                yield planes
                n += 1
                if n == want:
                    break
        if n < want:
            raise StreamError(f"{self.path / e.video}: {n} frames decoded, the GOP has {e.frames} (truncated video?)")

    def decode_codes(self, g: int, stop: int | None = None) -> np.ndarray:
        """Quantized codes of GOP g as decoded atlases [F, P, H_a, W_a] uint16 (frames start..stop
        when stop is given): the codec's output before dequantization, for checks and tests."""
        start, end = self.gop_range(g)
        mosaic, P = self._mosaic(g), self.manifest.channels
        out = [unpack(planes, self.manifest.codec.packing, mosaic, P)
               for planes in self._decoded(g, (end if stop is None else stop) - start)]
        return np.stack(out).astype(np.uint16)

    def _code_index(self, g: int) -> CodeIndex:
        if g not in self._index:
            pix, _ = self.mapping(g).vertex_layout()
            self._index = {g: CodeIndex(pix.numpy(), self._mosaic(g), self.manifest.codec.packing,
                                        self.manifest.channels)}  # one GOP's at a time
        return self._index[g]

    def decode_values(self, g: int, device: str | torch.device = "cpu", stop: int | None = None) -> torch.Tensor:
        """GOP g's dequantized vertex values [F, P, N] float32 on `device` (frames start..stop), in
        the order of the mapping's vertex layout: plane 0 raw density, then features."""
        start, end = self.gop_range(g)
        want = (end if stop is None else stop) - start
        index = self._code_index(g)
        codes = None  # [P, F, N]: every frame's codes gathered into one array, moved to the device once
        for f, planes in enumerate(self._decoded(g, want)):
            if codes is None:
                codes = np.empty((index.shape[0], want, index.shape[1]), dtype=planes[0].dtype)
            index.gather(planes, codes[:, f])
        e = self.manifest.gops[g]
        return dequantize(codes, e.ranges, self.manifest.codec.levels, device).permute(1, 0, 2)  # [F, P, N]

    def _grids(self, g: int, values: torch.Tensor) -> list[SparseGrid]:
        """Frames' SparseGrids from values [F, P, N]: views of `values`, one shared coordinate tensor."""
        _, coords = self.mapping(g).vertex_layout()
        coords = coords.to(values.device)
        aabb = self.aabb.to(values.device)
        return [SparseGrid(aabb, self.grid_shape, coords, v[0], v[1:].T) for v in values]

    def decode_gop(self, g: int, device: str | torch.device = "cpu") -> list[SparseGrid]:
        """All frames of GOP g, dequantized on `device` (see the module docstring)."""
        return self._grids(g, self.decode_values(g, device))

    def frames(self, device: str | torch.device = "cpu") -> Iterator[SparseGrid]:
        """Every frame in order."""
        for g in range(self.num_gops):
            yield from self.decode_gop(g, device)

    def frame(self, t: int, device: str | torch.device = "cpu") -> SparseGrid:
        """Frame t: decode its GOP from the keyframe up to t."""
        g = self.gop_of(t)
        return self._grids(g, self.decode_values(g, device, stop=t + 1)[-1:])[0]

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


def open_stream(path: str | Path, hwaccel: str = "auto", decoder: str = DEFAULT_BACKEND) -> Stream:
    """Open and validate the stream folder `path` (format, version, file names, files present).

    hwaccel: "auto" (CUDA when a device is there), "cuda" (warns and decodes in software when it
    cannot), "none". decoder: a back end of featvid.codecs.backends ("pyav" default, "ffmpeg").
    StreamError for a missing, foreign, newer or unfinished (no manifest) stream.
    """
    return Stream(path, hwaccel, decoder)
