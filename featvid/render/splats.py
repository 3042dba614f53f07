"""Playing Gaussian streams (docs/gaussians.md): what the player needs beyond the grid path.

- `GaussianPlayable` wraps an opened Gaussian stream (featvid.codecs.stream.Stream whose
  `representation` is "gaussians") as a `PlayableStream` whose GOPs decode to lists of
  `Gaussians` (featvid.codecs.gaussians.decode_gaussians_gop) instead of SparseGrids; everything
  else (GOP ranges, renditions, bytes) is the stream's own, so the play loop, the decode-ahead
  buffer, the rendition choice and the decode benchmark run unchanged.
- `SplatRenderer` is the player's renderer for it: `render(gaussians, cams, index)` draws one
  frame with featvid.gaussians.raster (gsplat on CUDA where installed, else the torch reference)
  over the stream's background colour, as FastRenderer does for grids.

`featvid.render.source.open_playable` wraps Gaussian streams, and featvid.render.playback picks the
renderer with `renderer_for`, so `featvid play`, `featvid render` and `play --decode-only` take
either kind of stream.
"""
from __future__ import annotations

import torch

from featvid.data.cameras import Cameras
from featvid.device import resolve_device
from featvid.errors import RenderError, StreamError
from featvid.gaussians.model import Gaussians
from featvid.gaussians.raster import rasterize, resolve_backend

GAUSSIANS = "gaussians"  # the manifest's `representation` of a Gaussian stream


def is_gaussian_stream(stream: object) -> bool:
    """Whether a playable stream (what featvid.render.source.open_playable returns) holds Gaussians."""
    return isinstance(stream, GaussianPlayable)


def stream_background(stream: object) -> tuple[float, float, float]:
    """The background colour a Gaussian stream is meant to be seen on (manifest gaussians.background)."""
    info = getattr(getattr(stream, "manifest", None), "gaussians", None)
    return tuple(info.background) if info is not None else (1.0, 1.0, 1.0)


class GaussianPlayable:
    """A Gaussian stream as the player reads it: `decode_gop` gives every frame's Gaussians."""

    representation = GAUSSIANS

    def __init__(self, stream) -> None:
        if getattr(stream, "representation", "grids") != GAUSSIANS:
            raise RenderError(f"{type(stream).__name__} is not a Gaussian stream")
        self.stream = stream
        self.background = stream_background(stream)

    @property
    def num_frames(self) -> int:
        return self.stream.num_frames

    @property
    def fps(self) -> float:
        return self.stream.fps

    @property
    def num_gops(self) -> int:
        return self.stream.num_gops

    @property
    def hwaccel(self) -> str:
        return self.stream.hwaccel

    @property
    def aabb(self) -> torch.Tensor:
        return self.stream.aabb

    @property
    def renditions(self) -> list[str]:
        return self.stream.renditions

    @property
    def render_settings(self):
        raise StreamError("a Gaussian stream has no volume render settings (it is drawn by splatting)")

    def mlp(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        raise StreamError("a Gaussian stream has no MLP (it is drawn by splatting)")

    def gop_range(self, g: int) -> tuple[int, int]:
        return self.stream.gop_range(g)

    def available(self, g: int) -> list[str]:
        return self.stream.available(g)

    def resolve_rendition(self, g: int, rendition: str | None = None) -> tuple[str, bool]:
        return self.stream.resolve_rendition(g, rendition)

    def gop_bytes(self, g: int, rendition: str | None = None) -> int:
        return self.stream.gop_bytes(g, rendition)

    def decode_gop(self, g: int, device: str | torch.device = "cpu", rendition: str | None = None) -> list[Gaussians]:
        """Every frame of GOP g in `rendition` (default the main one) as Gaussians on `device`."""
        from featvid.codecs.gaussians import decode_gaussians_gop

        if rendition is None:
            return decode_gaussians_gop(self.stream, g, device)
        return decode_gaussians_gop(self.stream, g, device, rendition=rendition)

    def frames(self, device: str | torch.device = "cpu"):
        """Every frame's Gaussians in order (the main rendition)."""
        for g in range(self.num_gops):
            yield from self.decode_gop(g, device)


class SplatRenderer:
    """Renders frames (Gaussians) through cameras on one device, for playback, path videos and eval."""

    def __init__(self, device: str | torch.device = "auto", backend: str = "auto",
                 background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> None:
        self.device = resolve_device(device)
        self.backend = resolve_backend(backend, self.device)
        self.background = torch.tensor(background, dtype=torch.float32, device=self.device)

    def render(self, gaussians: Gaussians, cams: Cameras, index: int = 0) -> torch.Tensor:
        """Image [H, W, 3] float32 in [0, 1] (on the renderer's device) of one frame through one camera."""
        with torch.inference_mode():
            g = gaussians.to(self.device)
            image, _ = rasterize(g, cams, index, self.background, self.backend)
            return image.clamp(0, 1)


def renderer_for(stream: object, device: str | torch.device = "auto", backend: str = "auto") -> SplatRenderer:
    """The splat renderer for a Gaussian stream, on its background colour."""
    return SplatRenderer(device, backend, stream_background(getattr(stream, "stream", stream)))
