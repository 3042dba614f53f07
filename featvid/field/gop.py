"""Gop: a run of consecutive frames that share one mapping, the unit every stage works in.

The trainer forms GOPs, the baker writes one atlas file per GOP, the encoder one video per GOP,
and a player switches and seeks at GOP boundaries. Run, baked folder and stream each describe
their GOPs with more fields (file names, ranges, sizes); all of them are a `Gop` first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from featvid.errors import FormatError
from featvid.field.schema import int_field


@dataclass(frozen=True)
class Gop:
    """Frames [start, start + frames) of a sequence."""

    start: int
    frames: int

    @property
    def end(self) -> int:
        """One past the last frame."""
        return self.start + self.frames

    def __contains__(self, t: int) -> bool:
        return self.start <= t < self.end

    def span(self) -> dict[str, int]:
        """{"start", "frames"}: how every format writes a GOP's frames."""
        return {"start": self.start, "frames": self.frames}


def span_from(d: Any, source: str) -> tuple[int, int]:
    """(start, frames) of a GOP record, checked."""
    if not isinstance(d, dict):
        raise FormatError(f"{source}: a GOP entry must be a JSON object")
    return int_field(d, "start", source), int_field(d, "frames", source, lo=1)


def check_tiling(gops: Sequence[Gop], num_frames: int, source: str) -> None:
    """GOPs must cover frames 0..num_frames-1 in order, without gaps or overlaps."""
    t = 0
    for i, g in enumerate(gops):
        if g.start != t or g.frames < 1:
            raise FormatError(f"{source}: GOP {i} starts at frame {g.start}, expected {t}")
        t = g.end
    if t != num_frames:
        raise FormatError(f"{source}: the GOPs cover {t} frames, the sequence has {num_frames}")


def gop_index(gops: Sequence[Gop], t: int, source: str = "sequence") -> int:
    """Index of the GOP holding frame t (GOPs in order; binary search)."""
    lo, hi = 0, len(gops)
    while lo < hi:
        mid = (lo + hi) // 2
        if gops[mid].end <= t:
            lo = mid + 1
        else:
            hi = mid
    if lo == len(gops) or t not in gops[lo]:
        raise FormatError(f"{source}: frame {t} is in no GOP")
    return lo
