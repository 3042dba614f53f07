"""When a keyframe refresh pays (issue 27): its gain in quality against what its keyframe costs.

A frame that falls more than `refresh.margin` dB below its reference is a candidate for a refresh:
fitted again as a keyframe, it starts a new GOP. The keyframe is an I-frame (several P-frames'
bytes) and the new GOP carries a mapping and a manifest entry. Whether that pays is a
rate-distortion question: the same bytes could instead go to every frame of the clip through a
finer quantizer. With the stream's slope s (dB of mean PSNR per doubling of its bytes, measured
on our streams at the default preset), the refresh pays when

    gain_db x frames  >  s x clip_frames x log2(1 + extra_bytes / (clip_frames x mean_bytes))

left: the clip's summed PSNR gain (the refreshed frame's gain, held by the frames left in its
planned GOP, which start from it; a keyframe's own fit is tighter on its fitted views than
held-out views see, so a refit is judged less the run's keyframe tightness and its gain counts
up to the reference only: featvid.train.train._keyframe_tightness); right: what the extra bytes
would buy every frame of the clip instead. mean_bytes is the mean estimated bytes of a frame so
far. Bytes are estimates (featvid.train.rate, scaled by what x264 really spent per estimated
byte: REAL_PER_ESTIMATE); the judge is the fitted views' (or validation views') PSNR, never the
test views. benchmarks/codec_loop.py measures the rule (BENCHMARKS.md, "GOP decisions that
count bytes").
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from featvid.field.grid import SparseGrid
from featvid.field.mapping import Mapping
from featvid.train import losses
from featvid.train.config import TrainConfig
from featvid.train.sparse_field import SparseField

# What x264 spent per estimated byte, median over frames of the default stream (feature basis
# and all) at crf 16.5: 47 I- and 113 P-frames of 26 runs of dancer, crossing and orbits, 4-12
# frames, `fast` (benchmarks/refresh_bytes.py, results/refresh_bytes.md; quartiles 1.00-1.54 and
# 0.81-1.18)
REAL_PER_ESTIMATE = {"I": 1.06, "P": 0.96}
# What a GOP costs beyond its video (benchmarks/results/fixed_costs.md, a 12-frame 2-GOP stream:
# its manifest entry ~385 B and its mapping ~220 B)
GOP_BYTES = 600


def frame_bytes(grid: SparseGrid, previous: SparseGrid | None, mapping: Mapping, config: TrainConfig) -> float:
    """Estimated bytes the stream spends on `grid` coded on `mapping`: an I-frame without
    `previous`, else a P-frame after it (the stream codes a frame after the one before as it is)."""
    occupancy = mapping.occupancy()  # [nx, ny, nz]
    field = SparseField(occupancy, grid.aabb, "cpu")
    tiles = losses.atlas_tiles(mapping, field.row_of)
    occ = occupancy.to(grid.density.device)
    values = torch.cat([grid.density[:, None], grid.features], dim=1).float()  # [N, 1 + C], occupancy order
    before = None if previous is None else previous.to_dense("cpu")[:, occ].T.contiguous().float()  # [N, 1 + C]
    with torch.no_grad():
        bits = float(losses.atlas_bits(values, before, tiles, config.optim.feature_range, config.losses.rate_qp))
    return bits / 8 * REAL_PER_ESTIMATE["I" if previous is None else "P"]


@dataclass(frozen=True)
class RefreshCost:
    """A refresh's gain and cost, as the log records them (the module docstring says how they weigh)."""

    gain_db: float
    """The refreshed frame's quality, at most the reference's, minus the warm frame's (predicted:
    the reference's minus it): a keyframe's own tighter fit above the reference does not count."""
    frames: int
    """Frames that hold the gain: the refreshed frame and the rest of its planned GOP."""
    extra_bytes: float
    """The keyframe's estimated bytes and a GOP's fixed bytes, minus the warm frame's."""
    mean_bytes: float
    """Mean estimated bytes of a frame so far (keyframes included)."""
    clip_frames: int

    def pays(self, slope: float) -> bool:
        """True when the gain beats what the extra bytes would buy every frame (slope 0: any gain)."""
        clip_bytes = self.clip_frames * max(self.mean_bytes, 1.0)
        spread = self.clip_frames * math.log2(1 + max(0.0, self.extra_bytes) / clip_bytes)  # frames x doublings
        return self.gain_db * self.frames > slope * spread

    def to_dict(self) -> dict[str, float]:
        return {"gain_db": round(self.gain_db, 4), "frames": self.frames, "extra_bytes": round(self.extra_bytes),
                "mean_bytes": round(self.mean_bytes)}


def refresh_cost(gain_db: float, key_bytes: float, warm_bytes: float, starts_gop: bool, frames: int,
                 records: list[dict], clip_frames: int) -> RefreshCost:
    """The cost of refreshing a frame whose warm fit is estimated at `warm_bytes`, by a keyframe
    of `key_bytes`: a new GOP's fixed bytes too, unless the frame starts a GOP (an I-frame already)."""
    extra = key_bytes - warm_bytes + (0 if starts_gop else GOP_BYTES)
    return RefreshCost(gain_db, frames, extra, mean_bytes(records, warm_bytes), clip_frames)


def mean_bytes(records: list[dict], current: float) -> float:
    """Mean estimated bytes of a frame over the records so far and the current frame (`current`)."""
    known = [r["bytes_estimate"] for r in records if "bytes_estimate" in r] + [current]
    return sum(known) / len(known)


def last_keyframe_bytes(records: list[dict]) -> float | None:
    """The estimated bytes of the last keyframe recorded (what a refresh's keyframe will cost, as
    a prediction), None when no record has them."""
    for r in reversed(records):
        if r.get("keyframe") and "bytes_estimate" in r:
            return float(r["bytes_estimate"])
    return None
