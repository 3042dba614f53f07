"""The stream protocol of the player (featvid.render.source.PlayableStream): the codec stage's Stream
satisfies it, and the player's entry points need nothing of a stream beyond it."""
from __future__ import annotations

import inspect

import pytest
import torch

from featvid.codecs import open_stream
from featvid.codecs.stream import Stream
from featvid.errors import RenderError, StreamError
from featvid.field.grid import SparseGrid
from featvid.field.mlp import MLPConfig, TinyMLP
from featvid.field.volume import RenderSettings
from featvid.render.decode_bench import decode_only
from featvid.render.playback import play_stream, render_path_video
from featvid.render.renditions import by_bitrate, choose_renditions
from featvid.render.source import PlayableStream, open_playable
from featvid.render.video import probe_mp4

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
C = 4
MEMBERS = sorted(n for n in vars(PlayableStream) if not n.startswith("_"))


class ProtocolOnly:
    """Exactly PlayableStream's members: 3 GOPs of 2 frames in renditions "hi" (the main one, 4000
    bytes a GOP) and "lo" (1000 bytes; its video missing in GOP 1). Any other attribute a caller
    asks for, even through getattr with a default, is recorded in `strays`."""

    num_frames, fps, num_gops, hwaccel = 6, 30.0, 3, "none"
    aabb = AABB
    render_settings = RenderSettings()
    renditions = ["hi", "lo"]

    def __init__(self) -> None:
        self.strays: list[str] = []
        self.decoded: list[tuple[int, str | None]] = []
        occ = torch.zeros(8, 8, 8, dtype=torch.bool)
        occ[2:6, 2:6, 2:6] = True
        self._coords = occ.nonzero().to(torch.int32)

    def __getattr__(self, name: str):
        self.strays.append(name)
        raise AttributeError(name)

    def gop_range(self, g: int) -> tuple[int, int]:
        if not 0 <= g < self.num_gops:
            raise StreamError(f"GOP {g} out of range")
        return 2 * g, 2 * g + 2

    def available(self, g: int) -> list[str]:
        return ["hi"] if g == 1 else ["hi", "lo"]

    def resolve_rendition(self, g: int, rendition: str | None = None) -> tuple[str, bool]:
        want = rendition or "hi"
        if want not in self.renditions:
            raise StreamError(f"no rendition {want!r}")
        return (want, False) if want in self.available(g) else ("hi", True)

    def gop_bytes(self, g: int, rendition: str | None = None) -> int:
        return {"hi": 4000, "lo": 1000}[rendition or "hi"]

    def decode_gop(self, g: int, device: str | torch.device = "cpu", rendition: str | None = None) -> list[SparseGrid]:
        self.decoded.append((g, rendition))
        n = len(self._coords)
        return [SparseGrid(AABB, (8, 8, 8), self._coords, torch.full((n,), 5.0 + g + f), torch.randn(n, C))
                for f in range(2)]

    def mlp(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        torch.manual_seed(0)
        return TinyMLP(MLPConfig(in_features=C, hidden=16)).to(device).eval()


class NoRenditions:
    """A stream-like object of the play loop's members only: not a PlayableStream."""

    num_frames, fps, num_gops, hwaccel = 2, 30.0, 1, "none"
    aabb, render_settings = AABB, RenderSettings()

    def gop_range(self, g):
        return 0, 2

    def decode_gop(self, g, device="cpu", rendition=None):
        raise AssertionError("not to be decoded")

    def mlp(self, device="cpu"):
        return TinyMLP(MLPConfig(in_features=C, hidden=16))


def test_the_protocol_lists_the_players_members():
    """What the render side reads of a stream, renditions included; a member added or dropped shows here."""
    assert set(MEMBERS) == {"aabb", "available", "decode_gop", "fps", "gop_bytes", "gop_range", "hwaccel", "mlp",
                            "num_frames", "num_gops", "render_settings", "renditions", "resolve_rendition"}


def test_stream_methods_have_the_protocols_signatures():
    """Static shape: every method of the protocol is a method of Stream taking the same parameters
    (names, order, defaults), so a call the player makes through the protocol is valid on a Stream."""
    for name in MEMBERS:
        proto = vars(PlayableStream)[name]
        if isinstance(proto, property):
            continue  # data members: checked on an opened stream below
        ours = inspect.signature(getattr(Stream, name)).parameters
        want = inspect.signature(proto).parameters
        assert [(p.name, p.default) for p in ours.values()] == [(p.name, p.default) for p in want.values()], name


def test_an_opened_stream_is_a_playable_stream(ladder_stream):
    s = open_stream(ladder_stream, hwaccel="none")
    assert isinstance(s, PlayableStream)
    assert open_playable(s) is s
    opened = open_playable(ladder_stream, "none")
    assert isinstance(opened, Stream) and opened.num_frames == s.num_frames and opened.hwaccel == "none"


def test_the_player_needs_nothing_beyond_the_protocol(tmp_path):
    """Every entry point - real-time play with a forced rendition and over a simulated link, the
    MP4 render, the decode benchmark, the ABR order - on an object of the protocol's members only."""
    s = ProtocolOnly()
    assert isinstance(s, PlayableStream)
    assert by_bitrate(s) == ["lo", "hi"]  # by bytes, not by the stream's order

    stats = play_stream(s, "orbit", size=(8, 8), frames=6, device="cpu", progress=False, rendition="lo")
    assert stats.frames_shown + stats.frames_dropped == 6 and stats.renditions == ["lo", "hi", "lo"]
    assert stats.fallbacks == ["GOP 1: rendition lo is missing, played hi instead"]
    assert s.decoded == [(0, "lo"), (1, "hi"), (2, "lo")]

    fast = play_stream(s, "orbit", size=(8, 8), frames=6, device="cpu", progress=False, bandwidth=100_000)
    assert fast.link is not None and fast.renditions == ["lo", "hi", "hi"]  # starts low, then what the link carries

    out = tmp_path / "path.mp4"
    shown = render_path_video(s, "orbit", out, size=(8, 8), frames=4, device="cpu", progress=False)
    assert shown.frames_shown == 4 and probe_mp4(out)["frames"] == 4

    s.decoded.clear()
    decoded = decode_only(s, "cpu", min_seconds=0.0)
    assert decoded.frames == 6 and decoded.passes == 1 and decoded.hwaccel == "none"
    assert s.decoded == [(g, None) for g in range(3)] * 2  # the warm-up pass, then the timed one
    assert s.strays == []


def test_an_object_without_renditions_is_refused(tmp_path):
    s = NoRenditions()
    assert not isinstance(s, PlayableStream)
    with pytest.raises(RenderError, match="NoRenditions is not a playable stream"):
        play_stream(s, "orbit", size=(8, 8), frames=2, device="cpu", progress=False)
    with pytest.raises(RenderError, match="not a playable stream"):
        render_path_video(s, "orbit", tmp_path / "x.mp4", size=(8, 8), device="cpu", progress=False)
    assert not (tmp_path / "x.mp4").exists()
    with pytest.raises(StreamError, match="no rendition 'nope'"):
        choose_renditions(ProtocolOnly(), [0, 1], 30.0, rendition="nope")
