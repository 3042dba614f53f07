"""MultiViewVideo: frames x views of one capture, with images loaded lazily.

A loader (featvid.data.blender, featvid.data.n3dv) reads a dataset's metadata and hands this
class the cameras, the split and a function that reads one image; the images themselves are read
only when asked for and kept in a small LRU cache, so a long capture is never in memory at once.
`featvid.data.load.load_dataset` picks the loader from what the folder holds.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from featvid.data.cameras import Cameras
from featvid.errors import DatasetError

log = logging.getLogger(__name__)

# Decoded images kept in memory (float32 [H, W, 3]); enough for every view of a few frames.
DEFAULT_CACHE_BYTES = 512 * 2**20

# read_image(t, v) -> [H, W, 3] float32 in [0, 1], already composited and resized.
ImageReader = Callable[[int, int], torch.Tensor]


class MultiViewVideo:
    """frames x views of one capture, images loaded lazily (a long capture is never read into memory at once).

    Cameras use the OpenCV convention; every image has size (height, width) after any downscale.
    Frames are integer indices t = 0..num_frames-1 at `fps`; views are indices v = 0..num_views-1
    into the rig, split into `train_views` and `test_views` (empty for monocular data).
    """

    def __init__(self, *, source: Path, format: str, cameras: list[Cameras], fps: float,
                 aabb: torch.Tensor, background: tuple[float, float, float], train_views: list[int],
                 test_views: list[int], read_image: ImageReader,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        """cameras: one Cameras of all V views per frame (a fixed rig may pass the same object T times)."""
        if not cameras:
            raise DatasetError(f"{source}: no frames")
        V = len(cameras[0])
        for t, c in enumerate(cameras):
            if len(c) != V or (c.height, c.width) != (cameras[0].height, cameras[0].width):
                raise DatasetError(f"{source}: frame {t} has {len(c)} views of {c.height}x{c.width}, "
                                   f"frame 0 has {V} of {cameras[0].height}x{cameras[0].width}")
        aabb = torch.as_tensor(aabb, dtype=torch.float32)
        if aabb.shape != (2, 3) or not torch.isfinite(aabb).all() or not (aabb[0] < aabb[1]).all():
            raise DatasetError(f"{source}: bad scene box (aabb) {aabb.tolist()}: need [[x0,y0,z0],[x1,y1,z1]] with min < max")
        if not fps > 0:
            raise DatasetError(f"{source}: bad fps {fps}")
        if sorted(set(train_views) | set(test_views)) != list(range(V)) or set(train_views) & set(test_views):
            raise DatasetError(f"{source}: train views {train_views} and test views {test_views} "
                               f"do not split the {V} views")
        if not train_views:
            raise DatasetError(f"{source}: no training views")
        self.source = Path(source)
        self.format = format
        self._cameras = cameras
        self.num_frames = len(cameras)
        self.num_views = V
        self.fps = float(fps)
        self.height, self.width = cameras[0].height, cameras[0].width
        self.aabb = aabb  # [2, 3]
        self.background = tuple(float(x) for x in background)
        self.train_views = list(train_views)
        self.test_views = list(test_views)
        self._read_image = read_image
        bytes_per_image = self.height * self.width * 3 * 4
        self._cache_size = max(2, cache_bytes // bytes_per_image)
        self._cache: OrderedDict[tuple[int, int], torch.Tensor] = OrderedDict()

    def __repr__(self) -> str:
        return (f"MultiViewVideo({self.format} {self.source}, {self.num_frames} frames x {self.num_views} views, "
                f"{self.height}x{self.width})")

    def _check(self, t: int, v: int | None = None) -> None:
        if not 0 <= t < self.num_frames:
            raise DatasetError(f"{self.source}: frame {t} out of range 0..{self.num_frames - 1}")
        if v is not None and not 0 <= v < self.num_views:
            raise DatasetError(f"{self.source}: view {v} out of range 0..{self.num_views - 1}")

    def cameras_at(self, t: int) -> Cameras:
        """All V views' cameras at frame t (OpenCV convention); a fixed rig returns the same every t."""
        self._check(t)
        return self._cameras[t]

    def image(self, t: int, v: int) -> torch.Tensor:
        """Image of view v at frame t: [H, W, 3] float32 in [0, 1], alpha composited onto the background.

        Treat the result as read-only: it is shared with the cache.
        """
        self._check(t, v)
        key = (t, v)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        img = self._read_image(t, v)  # [H, W, 3]
        self._cache[key] = img
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return img

    def images(self, t: int, views: list[int]) -> torch.Tensor:
        """Images of several views at frame t: [len(views), H, W, 3] float32 in [0, 1]."""
        if len(views) == 0:
            return torch.zeros(0, self.height, self.width, 3)
        return torch.stack([self.image(t, v) for v in views])

    def summary(self) -> dict:
        """Facts for `featvid info DATASET` (plain JSON-able values; aabb in world units)."""
        return {
            "format": self.format,
            "source": str(self.source),
            "views": self.num_views,
            "frames": self.num_frames,
            "image_size": [self.height, self.width],
            "fps": self.fps,
            "duration_s": self.num_frames / self.fps,
            "aabb": [[round(float(x), 6) for x in row] for row in self.aabb.tolist()],
            "train_views": self.train_views,
            "test_views": self.test_views,
            "background": list(self.background),
            "fixed_rig": all(c is self._cameras[0] for c in self._cameras),
        }


def composite(rgba: np.ndarray, background: tuple[float, float, float]) -> torch.Tensor:
    """uint8 or uint16 image [H, W, 3 or 4] in RGB(A) order -> [H, W, 3] float32 in [0, 1], alpha over background."""
    peak = 65535.0 if rgba.dtype == np.uint16 else 255.0
    img = torch.from_numpy(np.ascontiguousarray(rgba).astype(np.float32)) / peak
    if img.shape[-1] == 4:
        a = img[..., 3:4]
        bg = torch.tensor(background, dtype=torch.float32)
        return img[..., :3] * a + bg * (1 - a)
    return img[..., :3].contiguous()


def resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-resize an image [H, W, C] to (height, width); no-op when it already has that size."""
    if img.shape[:2] == (height, width):
        return img
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


def check_downscale(downscale: float) -> float:
    """Validate a downscale factor (2 halves the image size)."""
    if not (np.isfinite(downscale) and downscale >= 1.0):
        raise DatasetError(f"downscale must be a number >= 1 (2 halves the image size), got {downscale}")
    return float(downscale)
