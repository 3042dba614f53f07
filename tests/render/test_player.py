"""The streaming player: bounded memory over long streams, frame dropping, clean failure."""
import threading
import time
import weakref

import pytest
import torch

from featvid.errors import RenderError, StreamError
from featvid.field.grid import SparseGrid
from featvid.field.mlp import MLPConfig, TinyMLP
from featvid.field.volume import RenderSettings
from featvid.render.fast import FastRenderer
from featvid.render.paths import orbit
from featvid.render.gops import gop_order, gop_table
from featvid.render.player import PlaybackStats, play

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
C = 4


class FakeStream:
    """A stream-like object of `num_gops` GOPs of `gop` frames, made of small SparseGrids.

    decode_gop records how many decoded GOPs are still alive (weakrefs to their grids) when it
    is called, and can fail at GOP `fail_at`, sleep `delay` s, or block until `release` is set.
    """

    def __init__(self, num_gops=30, gop=3, R=10, delay=0.0, fail_at=None, block_at=None):
        self.num_gops, self.gop, self.num_frames, self.fps = num_gops, gop, num_gops * gop, 30.0
        self.aabb, self.grid_shape = AABB, (R, R, R)
        self.render_settings = RenderSettings()
        self.delay, self.fail_at, self.block_at = delay, fail_at, block_at
        self.release = threading.Event()
        self.refs: dict[int, list] = {}
        self.alive_at_decode: list[int] = []
        self.decoded: list[int] = []
        occ = torch.zeros(R, R, R, dtype=torch.bool)
        occ[3:7, 2:8, 3:6] = True
        self._coords = occ.nonzero().to(torch.int32)

    def alive(self) -> int:
        return sum(any(r() is not None for r in refs) for refs in self.refs.values())

    def gop_range(self, g):
        return g * self.gop, (g + 1) * self.gop

    def mlp(self, device="cpu"):
        torch.manual_seed(0)
        return TinyMLP(MLPConfig(in_features=C, hidden=16)).to(device).eval()

    def decode_gop(self, g, device="cpu"):
        self.alive_at_decode.append(self.alive())
        if g == self.fail_at:
            raise StreamError(f"gop_{g:05d}/atlas.mp4: 1 frames decoded, the GOP has 3 (truncated video?)")
        if g == self.block_at:
            self.release.wait(30)
        time.sleep(self.delay)
        n = len(self._coords)
        grids = [SparseGrid(AABB, self.grid_shape, self._coords, torch.full((n,), 5.0 + g + f),
                            torch.randn(n, C)) for f in range(self.gop)]
        self.refs[g] = [weakref.ref(x) for x in grids]
        self.decoded.append(g)
        return grids


def _renderer(stream):
    return FastRenderer(stream.mlp(), stream.render_settings, "cpu")


def test_gop_order_and_table():
    s = FakeStream(num_gops=4, gop=3)
    owner = gop_table(s)
    assert owner == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert gop_order([i % 12 for i in range(30)], owner) == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert gop_order([5, 4, 0, 11, 10], owner) == [1, 0, 3]


def test_long_stream_keeps_memory_bounded():
    s = FakeStream(num_gops=20, gop=3, delay=0.002)
    path = orbit(AABB, s.num_frames, s.num_frames, 8, 8)
    seen = []
    alive_when_shown = []

    def on_frame(i, t, img):
        seen.append(t)
        alive_when_shown.append(s.alive())
        assert img.shape == (8, 8, 3)

    stats = play(s, path, _renderer(s), fps=None, on_frame=on_frame)
    assert seen == list(range(60)) and s.decoded == list(range(20))
    assert stats.frames_shown == 60 and stats.frames_dropped == 0 and stats.frames_decoded == 60
    # the GOP on screen plus the next one, whatever the stream's length
    assert max(s.alive_at_decode) <= 1, s.alive_at_decode  # before decoding a GOP: only the one on screen
    assert max(alive_when_shown) <= 2
    assert stats.max_gops_alive <= 2
    assert stats.decode_ms_per_frame > 0 and stats.render_ms_per_frame > 0 and stats.achieved_fps > 0


def test_late_frames_are_dropped_and_time_is_kept():
    # decoding runs at ~30 fps (0.1 s per 3-frame GOP) while playback asks for 100 fps
    s = FakeStream(num_gops=5, gop=3, delay=0.1)
    path = orbit(AABB, 15, 15, 8, 8)
    shown = []
    stats = play(s, path, _renderer(s), fps=100.0, on_frame=lambda i, t, img: shown.append(i))
    assert stats.frames_dropped > 0 and stats.frames_shown + stats.frames_dropped == 15
    assert len(shown) == stats.frames_shown and shown == sorted(shown)
    assert stats.achieved_fps <= 100.0 * 1.05
    assert "dropped" in stats.summary()


def test_decode_failure_stops_cleanly_with_what_was_shown():
    s = FakeStream(num_gops=10, gop=3, fail_at=3)
    path = orbit(AABB, 30, 30, 8, 8)
    shown = []
    before = threading.active_count()
    with pytest.raises(StreamError, match="after 9 frames shown.*truncated") as err:
        play(s, path, _renderer(s), fps=None, on_frame=lambda i, t, img: shown.append(t))
    assert shown == list(range(9))
    assert isinstance(err.value.stats, PlaybackStats) and err.value.stats.frames_shown == 9
    time.sleep(0.2)
    assert threading.active_count() <= before, "the decode thread must have ended"


def test_render_side_failure_stops_the_decoder():
    s = FakeStream(num_gops=10, gop=3)
    path = orbit(AABB, 30, 30, 8, 8)

    def on_frame(i, t, img):
        if i == 4:
            raise ValueError("display went away")

    before = threading.active_count()
    with pytest.raises(RenderError, match="after 4 frames shown.*display went away"):
        play(s, path, _renderer(s), fps=None, on_frame=on_frame)
    time.sleep(0.2)
    assert threading.active_count() <= before
    assert len(s.decoded) <= 3  # it did not race on to the end of the stream


def test_stalled_decoder_times_out_instead_of_hanging():
    s = FakeStream(num_gops=4, gop=3, block_at=1)
    path = orbit(AABB, 12, 12, 8, 8)
    t0 = time.perf_counter()
    try:
        with pytest.raises(RenderError, match="after 3 frames shown.*no GOP decoded within"):
            play(s, path, _renderer(s), fps=None, timeout_s=0.5)
    finally:
        s.release.set()
    assert time.perf_counter() - t0 < 10


def test_path_outside_the_stream_is_refused():
    s = FakeStream(num_gops=2, gop=3)
    path = orbit(AABB, 10, 10, 8, 8)  # frames 6..9 do not exist
    with pytest.raises(RenderError, match="frame 6"):
        play(s, path, _renderer(s), fps=None)
