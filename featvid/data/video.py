"""MultiViewVideo: frames x views of one capture, with images loaded lazily.

A loader (featvid.data.blender, n3dv, nhr, ngp, colmap) reads a dataset's metadata and hands this
class the cameras, the split and a function that reads one image (and one that reads a view's
foreground mask, when the dataset has masks or RGBA images); the images themselves are read only
when asked for and kept in a small LRU cache, so a long capture is never in memory at once.
`featvid.data.load.load_dataset` picks the loader from what the folder holds.

The scene box is the dataset's own (or the caller's) when it states one, else it is estimated on
first use from the cameras and the masks (`featvid.data.scene_box`): a loader never pays for that
when nothing asks for the box.
"""
from __future__ import annotations

import copy
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
# ... and never fewer than this many whole frames (every view): the trainer reads frame t and its
# neighbours t-2..t+2 (importance sampling), and a frame evicted and read again would make the
# video decoders seek back to a keyframe.
CACHE_FRAMES = 6

# read_image(t, v) -> [H, W, 3] float32 in [0, 1], already composited and resized.
ImageReader = Callable[[int, int], torch.Tensor]
# read_mask(t, v) -> [H, W] float32 in [0, 1] foreground coverage, or None when the view has none.
MaskReader = Callable[[int, int], "torch.Tensor | None"]


class MultiViewVideo:
    """frames x views of one capture, images loaded lazily (a long capture is never read into memory at once).

    Cameras use the OpenCV convention; every image has size (height, width) after any downscale.
    Frames are integer indices t = 0..num_frames-1 at `fps`; views are indices v = 0..num_views-1
    into the rig, split into `train_views` and `test_views` (empty for monocular data).
    """

    def __init__(self, *, source: Path, format: str, cameras: list[Cameras], fps: float,
                 aabb: torch.Tensor | None, background: tuple[float, float, float], train_views: list[int],
                 test_views: list[int], read_image: ImageReader, read_mask: MaskReader | None = None,
                 read_score_mask: MaskReader | None = None, box_source: str = "dataset", box_reason: str = "", depth_bounds: torch.Tensor | None = None,
                 options: dict | None = None, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        """cameras: one Cameras of all V views per frame (a fixed rig may pass the same object T times).

        aabb: [2, 3] scene box the dataset states (box_source "dataset") or the caller gave
        ("option"); None: estimated on first use (featvid.data.scene_box). depth_bounds: [V, 2]
        near and far depth per view, when the dataset has them (they bound the estimate).
        options: how the loader was called (downscale, masks, ...), shown by `summary`.
        read_score_mask: the subject's foreground for scoring only (`featvid eval`'s PSNR inside
        the foreground); unlike read_mask it neither composites the images nor bounds the box.
        """
        from featvid.data.scene_box import SceneBox, format_box

        if not cameras:
            raise DatasetError(f"{source}: no frames")
        V = len(cameras[0])
        for t, c in enumerate(cameras):
            if len(c) != V or (c.height, c.width) != (cameras[0].height, cameras[0].width):
                raise DatasetError(f"{source}: frame {t} has {len(c)} views of {c.height}x{c.width}, "
                                   f"frame 0 has {V} of {cameras[0].height}x{cameras[0].width}")
        self._box: SceneBox | None = None
        if aabb is not None:
            aabb = torch.as_tensor(aabb, dtype=torch.float32)
            if aabb.shape != (2, 3) or not torch.isfinite(aabb).all() or not (aabb[0] < aabb[1]).all():
                raise DatasetError(f"{source}: bad scene box (aabb) {aabb.tolist()}: need [[x0,y0,z0],[x1,y1,z1]] "
                                   f"with min < max")
            reason = box_reason or ("given with --aabb" if box_source == "option" else "the dataset's own box")
            self._box = SceneBox(aabb, box_source, reason)
            log.info("%s: scene box %s (%s)", source, format_box(aabb), reason)
        if not fps > 0:
            raise DatasetError(f"{source}: bad fps {fps}")
        if sorted(set(train_views) | set(test_views)) != list(range(V)) or set(train_views) & set(test_views):
            raise DatasetError(f"{source}: train views {train_views} and test views {test_views} "
                               f"do not split the {V} views")
        if not train_views:
            raise DatasetError(f"{source}: no training views")
        if depth_bounds is not None and tuple(depth_bounds.shape) != (V, 2):
            raise DatasetError(f"{source}: depth bounds of shape {tuple(depth_bounds.shape)} for {V} views")
        self.source = Path(source)
        self.format = format
        self._cameras = cameras
        self.num_frames = len(cameras)
        self.num_views = V
        self.fps = float(fps)
        self.height, self.width = cameras[0].height, cameras[0].width
        self.background = tuple(float(x) for x in background)
        self.train_views = list(train_views)
        self.test_views = list(test_views)
        self.depth_bounds = depth_bounds
        self.options = dict(options or {})
        self._read_image = read_image
        self._read_mask = read_mask
        self._read_score_mask = read_score_mask
        self._auto: SceneBox | None = None
        bytes_per_image = self.height * self.width * 3 * 4
        self._cache_size = max(2, cache_bytes // bytes_per_image, CACHE_FRAMES * V)
        self._cache: OrderedDict[tuple[int, int], torch.Tensor] = OrderedDict()

    # ---- the scene box ------------------------------------------------------------------------

    @property
    def box(self):
        """The scene box in use (a featvid.data.scene_box.SceneBox: aabb, source, reason)."""
        if self._box is None:
            self._box = self.auto_box()
        return self._box

    @property
    def aabb(self) -> torch.Tensor:
        """Scene box [2, 3] in world units: [[x0, y0, z0], [x1, y1, z1]]."""
        return self.box.aabb

    def auto_box(self):
        """The box estimated from the cameras, tightened by the masks when there are any
        (computed once; see featvid.data.scene_box), whatever box is in use."""
        if self._auto is None:
            from featvid.data.scene_box import mask_box, one_cpu_thread, seen_box

            with one_cpu_thread():
                every = self._all_cameras()
                seen = seen_box(every, self.depth_bounds if len(every) == self.num_views else None)
                hull = mask_box(self, seen) if self.has_masks else None
            self._auto = hull or seen
            log.info("%s: estimated scene box %s (%s)", self.source, self._auto.aabb.tolist(), self._auto.reason)
        return self._auto

    def box_source_is(self, source: str) -> bool:
        """Whether the box in use came from `source` ("option", "dataset", ...), without estimating one."""
        return self._box is not None and self._box.source == source

    def with_box(self, box) -> "MultiViewVideo":
        """The same capture (sharing its readers and cache) with another scene box (a SceneBox)."""
        other = copy.copy(self)
        other._box = box
        return other

    def _all_cameras(self) -> Cameras:
        """Every distinct camera of the capture (a moving camera contributes one per frame)."""
        if all(c is self._cameras[0] for c in self._cameras):
            return self._cameras[0]
        K = torch.cat([c.K for c in self._cameras])
        c2w = torch.cat([c.c2w for c in self._cameras])
        return Cameras(K, c2w, self.height, self.width)

    @property
    def has_masks(self) -> bool:
        """Whether the views carry foreground masks (mask files, or RGBA images)."""
        if self._read_mask is None:
            return False
        if not hasattr(self, "_has_masks"):
            self._has_masks = self._read_mask(0, self.train_views[0]) is not None
        return self._has_masks

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

    def mask(self, t: int, v: int) -> torch.Tensor | None:
        """Foreground coverage of view v at frame t: [H, W] float32 in [0, 1] (1 = subject), or None
        when the dataset has no masks. Not cached: only the scene-box estimate reads masks."""
        self._check(t, v)
        return self._read_mask(t, v) if self._read_mask is not None else None

    def score_mask(self, t: int, v: int) -> torch.Tensor | None:
        """The subject's foreground in view v at frame t for scoring only: [H, W] float32 in [0, 1]
        (1 = subject), or None when the dataset has no scoring masks. Not cached."""
        self._check(t, v)
        return self._read_score_mask(t, v) if self._read_score_mask is not None else None

    def images(self, t: int, views: list[int]) -> torch.Tensor:
        """Images of several views at frame t: [len(views), H, W, 3] float32 in [0, 1]."""
        if len(views) == 0:
            return torch.zeros(0, self.height, self.width, 3)
        return torch.stack([self.image(t, v) for v in views])

    def summary(self) -> dict:
        """Facts for `featvid info DATASET` (plain JSON-able values; aabb in world units).

        Asking for it estimates the scene box when the dataset states none.
        """
        box = self.box
        out = {
            "format": self.format,
            "source": str(self.source),
            "views": self.num_views,
            "frames": self.num_frames,
            "image_size": [self.height, self.width],
            "fps": self.fps,
            "duration_s": self.num_frames / self.fps,
            "aabb": box.to_dict()["aabb"],
            "aabb_source": box.source,
            "aabb_reason": box.reason,
            "train_views": self.train_views,
            "test_views": self.test_views,
            "background": list(self.background),
            "masks": self.has_masks,
            "fixed_rig": all(c is self._cameras[0] for c in self._cameras),
        }
        out.update(self.options)
        return out


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


def split_views(num_views: int, test_views: list[int] | None) -> tuple[list[int], list[int]]:
    """(train views, test views) of a rig of `num_views` cameras: `test_views` held out (default
    view 0), none when there is a single camera (it cannot spare a view); the rest train."""
    test = [0] if test_views is None else list(test_views)
    if num_views == 1:
        test = []
    return [v for v in range(num_views) if v not in test], test


def check_downscale(downscale: float) -> float:
    """Validate a downscale factor (2 halves the image size)."""
    if not (np.isfinite(downscale) and downscale >= 1.0):
        raise DatasetError(f"downscale must be a number >= 1 (2 halves the image size), got {downscale}")
    return float(downscale)
