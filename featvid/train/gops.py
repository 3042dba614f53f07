"""How the trainer groups frames into GOPs, each with one mapping from the union of its frames'
occupancies.

Two moments decide a GOP boundary:
1. the coarse pass (`GopBuilder`): fixed length, or "auto" -- a new GOP when it costs fewer bytes
   than growing the union (`grows_dearer`), once the union has `gop_growth` more blocks than its
   first frame (what a player decodes and samples), or after `max_gop` frames;
2. the fine pass (`split_gop`): a keyframe refresh starts a new GOP at the refreshed frame. The
   GOP's first part keeps its mapping (its frames are trained on it already, and it covers them);
   the new GOP gets the union of its own frames' occupancies.
"""
from __future__ import annotations

from typing import Callable

import torch

from featvid.train.config import TrainConfig
from featvid.formats.run import RunGop
from featvid.errors import TrainingError
from featvid.field.gop import Gop
from featvid.field.mapping import Mapping


# What a GOP boundary and a grown union cost a stream: an I-frame spends KEYFRAME_BLOCK_BYTES more
# per block of its mapping than the GOP's P-frames do (median of 68 GOPs of 36 trained runs,
# quartiles 13.9-36.4), and a block of the union that a frame leaves empty costs that frame
# EMPTY_BLOCK_BYTES (median of the same runs, 0.7-2.9: a tile of one flat value, skipped in
# P-frames). H.264 at crf 16.5, the default stream; measured by benchmarks/gop_blocks.py.
KEYFRAME_BLOCK_BYTES = 24.4
EMPTY_BLOCK_BYTES = 1.4


def grows_dearer(new_blocks: int, frames: int, own_blocks: int) -> bool:
    """Whether adding a frame to an open GOP costs more bytes than starting a new GOP with it:
    the `new_blocks` it adds to the union sit empty in the GOP's `frames` frames so far, against
    the keyframe premium of a new GOP's mapping of the frame's own `own_blocks` blocks."""
    return EMPTY_BLOCK_BYTES * new_blocks * frames > KEYFRAME_BLOCK_BYTES * own_blocks


def mapping_name(start: int) -> str:
    """The mapping file of the GOP that starts at frame `start` (unique within a run)."""
    return f"gop_{start:05d}.fvmap"


class GopBuilder:
    """Groups frames into GOPs as their occupancies arrive, keeping only the current GOP's union."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.gops: list[tuple[Gop, Mapping]] = []
        self._start = 0
        self._count = 0
        self._union: torch.Tensor | None = None
        self._first_blocks = 0
        self._union_blocks = 0  # auto GOPs: blocks of the union so far
        self._grown_blocks = 0  # auto GOPs: blocks of the union with the frame `_should_close` weighed

    def add(self, t: int, occupancy: torch.Tensor) -> None:
        """Frame t's fine-grid occupancy [nx, ny, nz] bool (frames must come in order)."""
        occupancy = occupancy.cpu()
        if self._union is not None and self._should_close(occupancy):
            self._close()
        if self._union is None:
            self._start, self._count, self._union = t, 0, occupancy.clone()
            self._first_blocks = self._union_blocks = Mapping.from_occupancy(occupancy).num_blocks
        else:
            self._union |= occupancy
            self._union_blocks = self._grown_blocks
        self._count += 1

    def _should_close(self, occupancy: torch.Tensor) -> bool:
        gop = self.config.gop.length
        if gop != "auto":
            return self._count >= int(gop)
        if self._count >= self.config.gop.max_length:
            return True
        blocks = self._grown_blocks = Mapping.from_occupancy(self._union | occupancy).num_blocks
        if blocks > (1 + self.config.gop.growth) * max(1, self._first_blocks):
            return True
        return grows_dearer(blocks - self._union_blocks, self._count, Mapping.from_occupancy(occupancy).num_blocks)

    def _close(self) -> None:
        self.gops.append((Gop(self._start, self._count), Mapping.from_occupancy(self._union)))
        self._union = None

    def finish(self) -> list[tuple[Gop, Mapping]]:
        if self._union is not None:
            self._close()
        return self.gops


def split_gop(gops: list[RunGop], g: int, t: int, occupancy_of: Callable[[int], torch.Tensor]) -> tuple[list[RunGop], Mapping]:
    """GOP g of `gops` split at frame t (start < t < end): (the new GOP list, the new GOP's mapping,
    built from occupancy_of(s) [nx, ny, nz] for its frames s)."""
    old = gops[g]
    if not old.start < t < old.end:
        raise TrainingError(f"frame {t} does not split GOP {old.start}..{old.end - 1}")
    union = occupancy_of(t).clone()
    for s in range(t + 1, old.end):
        union |= occupancy_of(s)
    mapping = Mapping.from_occupancy(union)
    head = RunGop(old.start, t - old.start, old.mapping, old.blocks)
    tail = RunGop(t, old.end - t, mapping_name(t), mapping.num_blocks, refresh=True)  # undone if t is not finished
    return gops[:g] + [head, tail] + gops[g + 1:], mapping
