"""Gaussian streams: a Gaussian bake's planes <-> codes, and a stream's frames back to Gaussians.

The format is docs/gaussians.md. Encoding (`gaussian_ranges`, `gaussian_codes`,
`stream_layout_bytes`, called by featvid.codecs.encode for a bake whose representation is
"gaussians"): every plane is quantized by the grid rule over its GOP range, except positions:
16 bits an axis, the high byte lossless in the GOP's layout file (shared by every rendition), the
low byte (folded where the high byte is odd) a video plane. Decoding (`decode_gaussians`,
`decode_gaussians_gop`): each frame's codes are gathered at the GOP's N used pixels (the
morton2d curve) straight out of the decoded images, positions rejoined, and the rest
dequantized; quaternions come back renormalised (unit, w >= 0).
"""
from __future__ import annotations

import numpy as np
import torch

from featvid.codecs.pack import CodeIndex
from featvid.codecs.quantize import dequantize, fix_range, quantize
from featvid.codecs.stream import Stream
from featvid.errors import FormatError, StreamError
from featvid.gaussians.layout import (GaussianLayout, StreamLayout, curve_pixels, from_planes, join_position_codes,
                                      normalized_quats, position_codes)
from featvid.gaussians.model import Gaussians

POSITION_PLANES = 3  # x, y, z: the first baked planes; the stream's first 3 planes are their low bytes
LOW_RANGE = (0.0, 255.0)  # what a low-byte plane's codes carry (its manifest range is the axis's)


def gaussian_ranges(baked_ranges) -> list[tuple[float, float]]:
    """The stream's ranges [P_s = P_b] from the bake's: every plane's (constant ones widened by
    fix_range); for x_lo, y_lo, z_lo the axis's range, which the position code spans."""
    return [fix_range(lo, hi) for lo, hi in baked_ranges]


def gaussian_codes(planes: torch.Tensor, baked_ranges, levels: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One GOP's codes: baked float planes [F, P_b, H, W] -> (video codes uint16 [F, P_s, H, W],
    the positions' high bytes uint8 [F, 3, H, W] for the layout file)."""
    ranges = gaussian_ranges(baked_ranges)
    video, high = [], []
    for f in range(planes.shape[0]):
        h, low = position_codes(planes[f, :POSITION_PLANES], ranges)  # [3, H, W] each
        low_codes = quantize(torch.from_numpy(low.astype(np.float32)), [LOW_RANGE] * POSITION_PLANES, levels)
        rest = quantize(planes[f, POSITION_PLANES:], ranges[POSITION_PLANES:], levels)  # [P_b - 3, H, W]
        video.append(np.concatenate([low_codes, rest]))
        high.append(h)
    return np.stack(video), np.stack(high)


def stream_layout_bytes(count: int, atlas: tuple[int, int], high: np.ndarray) -> bytes:
    """A stream GOP's layout file: high bytes [F, 3, H, W] at the GOP's used pixels, delta coded."""
    pix = curve_pixels(*atlas)[:count]
    return StreamLayout(GaussianLayout(count, atlas), high.reshape(*high.shape[:2], -1)[:, :, pix]).to_bytes()


def layout(stream: Stream, g: int) -> StreamLayout:
    """GOP g's layout file (count, atlas, positions' high bytes), checked against its record and the manifest."""
    _check(stream)
    stream.gop_range(g)
    e = stream.manifest.gops[g]
    try:
        return StreamLayout.from_bytes(stream.read_verified(e.mapping), str(stream.path / e.mapping),
                                       tuple(e.atlas), e.frames)
    except StreamError:
        raise
    except FormatError as err:
        raise StreamError(str(err)) from err


def _check(stream: Stream) -> None:
    if stream.manifest.gaussians is None:
        raise StreamError(f"{stream.path}: not a Gaussian stream (it holds {stream.manifest.representation})")


def decode_gaussians_gop(stream: Stream, g: int, device: str | torch.device = "cpu", rendition: str | None = None,
                         stop: int | None = None) -> list[Gaussians]:
    """The frames of GOP g (start..stop when given) as Gaussians on `device`, in stream order."""
    lay = layout(stream, g)
    count = lay.layout.count
    start, end = stream.gop_range(g)
    want = (end if stop is None else stop) - start
    name = stream._rendition(g, rendition)  # the rendition, or the nearest one where it is missing
    codec = stream.manifest.rendition(name).codec
    P = stream.num_planes
    index = CodeIndex(curve_pixels(*lay.layout.atlas)[:count], stream._mosaic(g, name), codec.packing, P)
    # [P, F, N] in the decoded samples' type (uint8 for 8-bit video: dequantized without a clip);
    # `want` is bounded by the GOP's frames, and the video must hold them (_decoded raises otherwise)
    codes = np.empty((P, want, count), dtype=np.uint8 if codec.bit_depth == 8 else np.uint16)
    for f, planes in enumerate(stream._decoded(g, want, name)):
        index.gather(planes, codes[:, f])
    ranges = stream.manifest.gops[g].ranges
    low = dequantize(codes[:POSITION_PLANES], [LOW_RANGE] * POSITION_PLANES, codec.levels)  # [3, F, N]
    pos = join_position_codes(lay.high[:want].transpose(1, 0, 2), low, ranges)  # [3, F, N]
    rest = dequantize(codes[POSITION_PLANES:], ranges[POSITION_PLANES:], codec.levels)  # [P_b - 3, F, N]
    values = torch.cat([pos, rest])  # [P_b, F, N]
    degree = stream.manifest.gaussians.sh_degree  # type: ignore[union-attr]
    out = []
    for t in range(want):
        gs = from_planes(values[:, t], degree)
        gs.quats = normalized_quats(gs.quats)
        out.append(gs.to(device))
    return out


def decode_gaussians(stream: Stream, t: int, device: str | torch.device = "cpu",
                     rendition: str | None = None) -> Gaussians:
    """Frame t of a Gaussian stream: its GOP decoded from the keyframe up to t."""
    _check(stream)
    g = stream.gop_of(t)
    return decode_gaussians_gop(stream, g, device, rendition, stop=t + 1)[-1]
