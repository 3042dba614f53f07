"""The codec in the loop (issue 27): the fine pass renders what the stream will decode.

After CATRF: the frame's vertex values go through the stream's real codec -- its quantization,
its encoder and decoder (a `RoundTrip`; featvid.codecs.roundtrip.AtlasRoundTrip, given by the
layer that starts the training, since `train` may not import `codecs`) -- and the renderer sees

    values + e,   e = decoded - values  (held fixed: the straight-through gradient)

so the loss is the decoded frame's, and its gradient reaches the values as if the codec were the
identity. A round trip costs an encode, so e is cached: it is made again every `refresh`
iterations, or sooner once the values have moved by more than `change` quantization steps on
average since the last one. A warm frame is coded as the stream codes it: a P-frame after the
GOP's earlier frames (at most GOP_CONTEXT of them: the round trip codes them first, so the
quantization ranges, the feature basis and the reference frame are near the stream's); a keyframe
alone, as an I-frame. A fit lets the codec in once `start` of its minimum iterations have run (a
keyframe learns its MLP from nothing first; the codec's error on a half-made frame says nothing).
Measured (benchmarks/codec_loop.py, docs/training.md): small gains, so off in every preset.
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from featvid.field.mapping import Mapping
from featvid.field.mlp import TinyMLP

RoundTrip = Callable[[torch.Tensor, Mapping, float, "TinyMLP | None"], torch.Tensor]
"""Float atlas planes [F, P, H, W] of a GOP's frames, their mapping, the step ratio and the MLP ->
what the stream's decoder gives back for them [F, P, H, W] (featvid.codecs.roundtrip)."""

CHECK_EVERY = 10  # iterations between two measures of how far the values moved (each reads every value)
GOP_CONTEXT = 8  # earlier frames of the GOP coded before a warm frame, at most (each costs the encoder a frame)


class CodecLoop:
    """One fit's codec in the loop: `offset(it, values, mlp)` -> e [N, 1 + C] to add to the values.

    Rows of the values table are the mapping's vertices in flat-index order (the fit's occupancy
    is `mapping.occupancy()`), so row r sits at atlas pixel `mapping.vertex_layout()[0][r]`.
    before: the GOP's earlier frames' atlas planes [F, 1 + C, H, W] in the same mapping
    (`Mapping.grid_to_atlas`; the last one its P-frame's reference), or None (a keyframe: an I-frame).
    """

    def __init__(self, round_trip: RoundTrip, mapping: Mapping, step_ratio: float, before: torch.Tensor | None,
                 refresh: int, start: int, change: float) -> None:
        self.round_trip, self.mapping, self.step_ratio = round_trip, mapping, step_ratio
        self.refresh, self.start, self.change = refresh, start, change
        self.pixels = mapping.vertex_layout()[0]  # [N] atlas pixel of each row
        self.before = None if before is None else before.detach().cpu().float()  # [F, P, H, W]
        self.error: torch.Tensor | None = None  # [N, 1 + C] decoded - values at the last round trip
        self.at: torch.Tensor | None = None  # [N, 1 + C] the values of the last round trip
        self.step: torch.Tensor | None = None  # [1 + C] a quantization step of each channel then
        self.last = 0  # the iteration of the last round trip
        self.trips = 0
        self.seconds = 0.0

    def _planes(self, values: torch.Tensor) -> torch.Tensor:
        """Values [N, 1 + C] -> atlas planes [1 + C, H, W] (0 at unused pixels, as the baker's)."""
        H, W = self.mapping.atlas_size
        planes = values.new_zeros(values.shape[1], H * W)
        planes[:, self.pixels.to(values.device)] = values.T
        return planes.view(-1, H, W)

    def _due(self, it: int, values: torch.Tensor) -> bool:
        if self.error is None or it - self.last >= self.refresh:
            return True
        if self.change <= 0 or (it - self.last) % CHECK_EVERY:
            return False
        moved = ((values - self.at).abs() / self.step).mean()  # in quantization steps
        return bool(moved > self.change)

    def offset(self, it: int, values: torch.Tensor, mlp: TinyMLP) -> torch.Tensor | None:
        """The codec's error to add to `values` [N, 1 + C] at iteration `it` (None before `start`)."""
        if it < self.start:
            return None
        values = values.detach()
        if self._due(it, values):
            started = time.perf_counter()
            self.at = values.clone()
            self.error = self.decoded(values, mlp) - values
            span = values.amax(dim=0) - values.amin(dim=0)  # [1 + C] the GOP's range, about
            self.step = (span / 255).clamp(min=1e-6)
            self.last = it
            self.trips += 1
            self.seconds += time.perf_counter() - started
        return self.error

    def decoded(self, values: torch.Tensor, mlp: TinyMLP | None) -> torch.Tensor:
        """What the stream's decoder gives back for `values` [N, 1 + C]: one round trip now, never
        cached (a finished frame is judged as the stream will show it) -> [N, 1 + C]."""
        planes = self._planes(values.detach().cpu().float())[None]  # [1, P, H, W]
        if self.before is not None:  # the GOP as the stream codes it: the earlier frames, then this one
            planes = torch.cat([self.before, planes])
        decoded = self.round_trip(planes, self.mapping, self.step_ratio, mlp)[-1]  # [P, H, W]
        return decoded.reshape(decoded.shape[0], -1)[:, self.pixels].T.to(values)

    def figures(self) -> dict[str, float]:
        """How many round trips the fit made and what they cost, for the run's log."""
        return {"codec_trips": float(self.trips), "codec_seconds": round(self.seconds, 3)}
