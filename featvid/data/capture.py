"""One camera of a capture turned into the images the package uses.

`CameraStream` chains, per frame: decode (a `FrameSource`: video or image files) -> undistort
(maps built once, `featvid.data.undistort`) -> foreground (alpha of RGBA images times the
camera's mask, binary or 8-bit) composited onto the dataset's background -> area-resized to the
output size. Loaders build one per camera and give `MultiViewVideo` its `image` / `mask` readers.

Masks (featvid.data.masks): a mask frame is one channel, 8- or 16-bit; 0 is background, the
peak value foreground.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from featvid.data.frames import FrameSource
from featvid.data.masks import mask_to_float
from featvid.data.undistort import Undistorter
from featvid.data.video import resize
from featvid.errors import DatasetError


class CameraStream:
    """Images (and foreground masks) of one camera at the output size, from its sources on disk.

    images: the camera's frames; masks: its mask frames or None; undistorter: None for a pinhole;
    background: RGB in [0, 1] the foreground is composited onto; size: output (height, width).
    """

    def __init__(self, images: FrameSource, masks: FrameSource | None, undistorter: Undistorter | None,
                 background: tuple[float, float, float], size: tuple[int, int]) -> None:
        self.images = images
        self.masks = masks
        self.undistorter = undistorter
        self.background = np.asarray(background, dtype=np.float32)
        self.height, self.width = size

    @property
    def path(self) -> Path:
        return self.images.path

    def _foreground(self, t: int, rgba: np.ndarray) -> np.ndarray | None:
        """Coverage [H, W] float32 in [0, 1] at the source size: alpha times the mask, None if neither."""
        alpha = None
        if rgba.shape[-1] == 4:
            peak = 65535.0 if rgba.dtype == np.uint16 else 255.0
            alpha = rgba[..., 3].astype(np.float32) / peak
        if self.masks is not None:
            gray = self.masks.gray(t)
            if gray.shape != rgba.shape[:2]:
                raise DatasetError(f"{self.masks.path}: mask frame {t} is {gray.shape[1]}x{gray.shape[0]}, "
                                   f"the image is {rgba.shape[1]}x{rgba.shape[0]}")
            m = mask_to_float(gray)
            if self.undistorter is not None:
                m = self.undistorter(m)
            alpha = m if alpha is None else alpha * m
        return alpha

    def image(self, t: int) -> torch.Tensor:
        """Frame t: [h, w, 3] float32 in [0, 1], foreground over the background, undistorted and resized."""
        rgba = self.images.frame(t)  # [H, W, 3|4] uint8/uint16
        if self.undistorter is not None:
            rgba = self.undistorter(rgba)
        alpha = self._foreground(t, rgba)
        if alpha is None and rgba.dtype == np.uint8:
            # no compositing: resize the bytes first (a quarter of the float work at downscale 2)
            small = resize(np.ascontiguousarray(rgba[..., :3]), self.height, self.width)
            return torch.from_numpy(small.astype(np.float32) / 255.0)
        peak = 65535.0 if rgba.dtype == np.uint16 else 255.0
        rgb = rgba[..., :3].astype(np.float32) / peak
        if alpha is not None:
            a = alpha[..., None]
            rgb = rgb * a + self.background * (1.0 - a)  # composited before resampling
        return torch.from_numpy(np.ascontiguousarray(resize(rgb, self.height, self.width)))

    def mask(self, t: int) -> torch.Tensor | None:
        """Foreground coverage of frame t: the camera's mask if it has one, else the alpha of RGBA
        images; [h, w] float32 in [0, 1], None without either."""
        rgba = self.images.frame(t) if self.masks is None else None
        if rgba is not None and rgba.shape[-1] != 4:
            return None  # RGB images and no mask: nothing says what is foreground
        if rgba is None:
            gray = self.masks.gray(t)
            m = mask_to_float(gray)
            if self.undistorter is not None:
                m = self.undistorter(m)
        else:
            if self.undistorter is not None:
                rgba = self.undistorter(rgba)
            m = self._foreground(t, rgba)
        m = resize(np.ascontiguousarray(m), self.height, self.width)
        return torch.from_numpy(np.ascontiguousarray(m))


def stream_readers(streams: list[CameraStream]):
    """MultiViewVideo's (read_image, read_mask) over one CameraStream per view."""

    def read_image(t: int, v: int) -> torch.Tensor:
        return streams[v].image(t)

    def read_mask(t: int, v: int) -> torch.Tensor | None:
        return streams[v].mask(t)

    return read_image, read_mask
