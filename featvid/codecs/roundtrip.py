"""The stream's codec as a function of float atlas planes: what a player decodes from a GOP made of
these frames (issue 27: the codec in the training loop).

`AtlasRoundTrip(preset)(planes, mapping, step_ratio, mlp)` takes the steps `encode_gop` takes and
the stream reader undoes, in the same functions: the feature basis (fitted here on these frames,
as `stream_basis` fits it on the bake's samples), the GOP's quantization ranges over the mapping's
used pixels, 8-bit codes, the preset's packing, its encoder with its options (a GOP: the first
frame a keyframe, the rest P-frames), the decoder, unpacking, dequantization, and the basis undone
(f = A^-1 g), so the values come back in the trainer's own feature coordinates.

The preset's QP offsets per plane are applied as the encoder applies them; its offsets per part of a
contracted grid's space are not (the round trip is given no grid space: the codec loop is for box
grids, see docs/training.md).

The trainer (featvid.train.codec_loop) is given one of these by the layer that starts it
(featvid.pipeline): `train` may not import `codecs` (docs/architecture.md). It is a frozen
dataclass of names, so it travels to a segment's worker with the rest of a task.
"""
from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from featvid.codecs import basis
from featvid.codecs.backends import DEFAULT_BACKEND, get_backend
from featvid.codecs.encode import gop_planes, quantized_gop
from featvid.codecs.pack import Mosaic, num_cells, pack, unpack
from featvid.codecs.regions import frame_regions
from featvid.codecs.presets import DEFAULT_PRESET, resolve_preset
from featvid.codecs.quantize import dequantize
from featvid.codecs.video import VideoSpec
from featvid.errors import CodecError
from featvid.field.mapping import Mapping
from featvid.field.mlp import TinyMLP
from featvid.formats.baked import Atlas, plane_ranges

FPS = 30.0  # the rate a round trip's video states; x264's crf coding does not depend on it


@dataclass(frozen=True)
class AtlasRoundTrip:
    """The codec of one preset (at `crf` when given, else the preset's rate) on `backend`;
    feature_basis: code features in the basis (None: as the preset does, as `featvid encode`)."""

    preset: str = DEFAULT_PRESET
    crf: float | None = None
    backend: str = DEFAULT_BACKEND
    feature_basis: bool | None = None

    def check(self) -> "AtlasRoundTrip":
        """Self, once the preset resolves and takes `crf` (ConfigError / CodecError otherwise): a
        run refuses a codec it cannot use before it trains anything."""
        resolve_preset(self.preset).encoder_options(self.crf)
        get_backend(self.backend)
        return self

    def __call__(self, planes: torch.Tensor, mapping: Mapping, step_ratio: float,
                 mlp: TinyMLP | None) -> torch.Tensor:
        """Float atlas planes [F, P, H, W] of one GOP's frames (plane 0 raw density, then C
        features; 0 at unused pixels) -> what the stream's decoder gives back for them, [F, P, H, W]
        float32. mlp: the MLP the feature basis is fitted for (None, or a preset without a basis:
        features coded as they are)."""
        p = resolve_preset(self.preset)
        F, P = planes.shape[:2]
        planes = planes.detach().float().cpu()
        A = None
        use_basis = p.feature_basis if self.feature_basis is None else self.feature_basis
        if use_basis and mlp is not None and P > 2:
            used = mapping.vertex_index() >= 0  # [H * W]
            values = planes.reshape(F, P, -1)[:, :, used].permute(0, 2, 1).reshape(-1, P)  # [F * U, P]
            if any(w.device.type != "cpu" for w in mlp.parameters()):  # the basis is fitted on the CPU
                mlp = copy.deepcopy(mlp).cpu()
            with torch.enable_grad():  # the MLP's Jacobian, whatever the caller's grad mode
                A = basis.fit_basis(values[:, 1:], basis.opacity(values[:, 0], step_ratio), mlp).float().double()
        coded, ranges = gop_planes(Atlas(planes, plane_ranges(planes, mapping)), mapping, step_ratio, A)
        codes = quantized_gop(coded, ranges, p)  # [F, P, H, W] uint16
        mosaic = Mosaic.layout(num_cells(P, p.packing), mapping.atlas_size)
        spec = VideoSpec(mosaic.width, mosaic.height, FPS, p.codec, p.pix_fmt, p.encoder_options(self.crf),
                         p.container_options, p.color_range, F, p.bitstream_filter,
                         frame_regions(mosaic, p.packing, P, p.plane_qp))  # box grids: no space offsets
        be = get_backend(self.backend)
        with tempfile.TemporaryDirectory(prefix="featvid-roundtrip-") as tmp:
            path = Path(tmp) / "gop.mp4"
            be.encode(path, (pack(c, p.packing, mosaic, p.pix_fmt, p.levels, p.bit_depth) for c in codes), spec)
            frames = [unpack(f, p.packing, mosaic, P) for f in be.decode(path)]  # F x [P, H, W]
        if len(frames) != F:
            raise CodecError(f"the round trip through {p.name} gave back {len(frames)} frames of {F}")
        out = torch.stack([dequantize(np.ascontiguousarray(f), ranges, p.levels) for f in frames])  # [F, P, H, W]
        if A is not None:  # back to the trainer's features: f = A^-1 g
            g = out[:, 1:].double()
            out[:, 1:] = torch.einsum("ij,fjhw->fihw", torch.linalg.inv(A), g).float()
        return out
