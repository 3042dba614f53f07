"""What a finished training did, from its run folder's log: the figures `featvid train` ends with."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from featvid.formats.run import Run


@dataclass(frozen=True)
class TrainSummary:
    """A trained run in a few figures."""

    path: Path
    frames: int
    gops: int
    refreshes: int  # keyframes after frame 0 (a frame that fell too far and was fitted again)
    warm_iters: float | None  # mean iterations of a warm-started frame; None: there was none
    last_psnr_test: float | None  # the last frame's held-out PSNR (dB); None: not evaluated

    @classmethod
    def of(cls, run: Run) -> "TrainSummary":
        records = run.log()
        last = records[-1] if records else {}
        warm = [r["iters"] for r in records if not r.get("keyframe") and "iters" in r]
        refreshes = sum(1 for r in records if r.get("keyframe") and r.get("frame", 0) > 0
                        and r.get("keyframe_reason") != "segment start")  # a segment's first frame: planned
        return cls(Path(run.path), run.num_frames, len(run.gops), refreshes,
                   sum(warm) / len(warm) if warm else None, last.get("psnr_test"))

    def __str__(self) -> str:
        text = f"trained {self.frames} frames into {self.path}"
        if self.last_psnr_test is not None:
            text += f" (last frame: {self.last_psnr_test:.2f} dB held-out)"
        text += f"; {self.gops} GOPs, {self.refreshes} keyframe refreshes"
        if self.warm_iters is not None:
            text += f", {self.warm_iters:.0f} iterations per warm frame"
        return text
