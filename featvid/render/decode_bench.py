"""The decoder's speed on its own (`featvid play --decode-only`, benchmarks/playback.py): every GOP
decoded to dequantized vertex values on the playback device, as the player does, nothing rendered."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from featvid.device import resolve_device
from featvid.progress import progress_bar
from featvid.render.fast import synchronize
from featvid.render.source import PlayableStream, open_playable


@dataclass
class DecodeStats:
    """What a decode-only pass achieved: every frame of every GOP decoded to dequantized vertex
    values on `device`, nothing rendered. Times in milliseconds per stream frame."""

    frames: int  # stream frames decoded, all passes together
    passes: int  # whole passes over the stream
    seconds: float  # wall time of the timed passes
    device: str
    hwaccel: str
    stream_fps: float  # the stream's own frame rate

    @property
    def ms_per_frame(self) -> float:
        return 1000.0 * self.seconds / self.frames if self.frames else 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def x_real_time(self) -> float:
        return self.fps / self.stream_fps if self.stream_fps > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "ms_per_frame": self.ms_per_frame, "fps": self.fps, "x_real_time": self.x_real_time}

    def summary(self) -> str:
        return (f"decoded {self.frames} frames ({self.passes} pass{'es' if self.passes != 1 else ''}) on {self.device}, "
                f"hwaccel {self.hwaccel}: {self.ms_per_frame:.2f} ms/frame, {self.fps:.0f} fps "
                f"({self.x_real_time:.1f}x real time)")


def decode_only(stream: str | Path | PlayableStream, device: str | torch.device = "auto", hwaccel: str = "auto",
                min_seconds: float = 0.0, warmup: bool = True, progress: bool = False) -> DecodeStats:
    """Decode every GOP of `stream` (a .fvv folder or an opened stream) to dequantized vertex values
    on `device`, as playback does, and render nothing: the decoder's speed on its own.

    warmup: one untimed pass first (codec start-up, mapping tables). min_seconds: repeat whole
    passes until this much time has gone by (a short stream decodes in a fraction of a second)."""
    dev = resolve_device(device)
    s = open_playable(stream, hwaccel)
    if warmup:
        for g in range(s.num_gops):
            s.decode_gop(g, dev)
        synchronize(dev)
    frames = passes = 0
    bar = progress_bar(unit="frame", desc="decode", disable=not progress, leave=False)
    t0 = time.perf_counter()
    while passes == 0 or time.perf_counter() - t0 < min_seconds:
        for g in range(s.num_gops):
            n = len(s.decode_gop(g, dev))
            frames += n
            bar.update(n)
        passes += 1
    synchronize(dev)
    seconds = time.perf_counter() - t0
    bar.close()
    return DecodeStats(frames, passes, seconds, str(dev), s.hwaccel, float(s.fps))
