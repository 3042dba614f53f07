"""What the player reads from a stream: the `PlayableStream` protocol, and opening one.

`featvid.codecs.stream.Stream` (what `featvid.codecs.open_stream` returns) satisfies it; so can a
test's stand-in or another reader, as long as it offers these members and nothing more is needed.
The render side names only these, so a change to the stream reader that keeps them cannot break
playback (tests/render/test_source.py holds `Stream` to them).
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from featvid.errors import RenderError
from featvid.field.grid import SparseGrid
from featvid.field.volume import RenderSettings


@runtime_checkable
class PlayableStream(Protocol):
    """The members of a stream the player, the rendition choice and the decode benchmark use.

    A rendition is one encode of every GOP (adaptive streaming); the first of `renditions` is the
    main one, which every `rendition=None` means."""

    @property
    def num_frames(self) -> int: ...  # stream frames T

    @property
    def fps(self) -> float: ...  # the stream's own frame rate

    @property
    def num_gops(self) -> int: ...

    @property
    def hwaccel(self) -> str: ...  # the video decoding it uses: "auto", "cuda" or "none"

    @property
    def aabb(self) -> torch.Tensor: ...  # [2, 3] scene box, world units

    @property
    def render_settings(self) -> RenderSettings: ...

    @property
    def renditions(self) -> list[str]: ...  # names, the main one first

    def gop_range(self, g: int) -> tuple[int, int]:
        """Frames [start, end) of GOP g."""
        ...

    def available(self, g: int) -> list[str]:
        """The renditions GOP g can be decoded in (its video is on disk)."""
        ...

    def resolve_rendition(self, g: int, rendition: str | None = None) -> tuple[str, bool]:
        """(the rendition GOP g is decoded in when `rendition` is asked for, whether that is a
        fallback); a StreamError for a name the stream does not have."""
        ...

    def gop_bytes(self, g: int, rendition: str | None = None) -> int:
        """Bytes a player fetches for GOP g in `rendition`: its video and its mapping."""
        ...

    def decode_gop(self, g: int, device: str | torch.device = "cpu",
                   rendition: str | None = None) -> list[SparseGrid]:
        """Every frame of GOP g in `rendition`, dequantized on `device`."""
        ...

    def mlp(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The stream's MLP (decoded features -> density and colour)."""
        ...


def open_playable(stream: str | Path | PlayableStream, hwaccel: str = "auto") -> PlayableStream:
    """`stream` as a PlayableStream: a .fvv folder is opened (`hwaccel`: "auto", "cuda", "none"),
    an opened stream is taken as it is (a Gaussian stream wrapped in featvid.render.splats.
    GaussianPlayable); RenderError for an object that is neither."""
    if isinstance(stream, (str, Path)):
        from featvid.codecs import open_stream

        opened = open_stream(stream, hwaccel=hwaccel)
        return _gaussian_playable(opened) or opened
    gaussian = _gaussian_playable(stream)
    if gaussian is not None:
        return gaussian
    if not isinstance(stream, PlayableStream):
        raise RenderError(f"{type(stream).__name__} is not a playable stream: it lacks members of "
                          "featvid.render.source.PlayableStream")
    return stream


def _gaussian_playable(stream: object) -> PlayableStream | None:
    """A Gaussian stream as one whose GOPs decode to Gaussians (featvid.render.splats); None for
    anything else (asked of nothing but its type, so a stand-in sees no stray attribute lookups)."""
    from featvid.codecs.stream import Stream
    from featvid.render.splats import GaussianPlayable

    if isinstance(stream, GaussianPlayable):
        return stream
    if isinstance(stream, Stream) and stream.representation == "gaussians":
        return GaussianPlayable(stream)
    return None
