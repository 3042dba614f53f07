"""Foreground masks: where a loader finds them, and what their pixels mean.

A mask is one video or one image folder per camera (`featvid.data.frames` layouts), binary or
8-bit (16-bit images are read too): 0 is background, the peak value (255, 65535) is the subject,
values between are partial coverage (soft edges). Binary masks stored as 0/1 are recognised (a
uint8 frame whose maximum is 1) and scaled. Masks composite each image onto the dataset's
background (`featvid.data.capture`) and tighten the scene box (`featvid.data.scene_box`).

`--masks` on the command line: `auto` (default) uses the masks the dataset's layout has, `none`
ignores them, and a folder path reads one mask video or image folder per camera from that folder,
named like the cameras (a camera `cam03` also matches `03.mp4` or `cam3/`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from featvid.data.frames import LAYOUTS, FrameSource, SourceInfo, find_camera_sources
from featvid.errors import DatasetError



def mask_to_float(gray: np.ndarray) -> np.ndarray:
    """A mask frame [H, W] uint8/uint16 -> float32 [H, W] in [0, 1] (0/1 binary masks scaled)."""
    if gray.dtype == np.uint16:
        return gray.astype(np.float32) / 65535.0
    m = gray.astype(np.float32)
    return m if m.max() <= 1.0 else m / 255.0


def find_masks(option, auto_roots: list[Path], names: list[str],
               layouts: tuple[str, ...] = LAYOUTS) -> list[FrameSource] | None:
    """Mask sources, one per camera in `names`, or None.

    option: "auto" looks in `auto_roots` (the dataset layout's mask folders), "none" or None uses
    no masks, a folder path must hold every camera's mask.
    """
    if option is None or str(option) == "none":
        return None
    if str(option) == "auto":
        for root in auto_roots:
            found = find_camera_sources(root, names, layouts, what="masks")
            if found is not None:
                return found
        return None
    folder = Path(option)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such mask folder (--masks takes auto, none or a folder)")
    found = find_camera_sources(folder, names, layouts, what="masks")
    if found is None:
        raise DatasetError(f"{folder}: holds no mask videos or mask folders named like the cameras "
                           f"({', '.join(names[:3])}{' ...' if len(names) > 3 else ''})")
    return found


def check_masks(images: list[FrameSource], masks: list[FrameSource], image_info: SourceInfo) -> None:
    """Every mask source must have the images' size and frame count; an error names the mask file."""
    for img, mask in zip(images, masks):
        m = mask.info()
        if (m.height, m.width) != (image_info.height, image_info.width):
            raise DatasetError(f"{mask.path}: mask is {m.width}x{m.height}, the images ({img.path.name}) are "
                               f"{image_info.width}x{image_info.height}")
        if m.frames != image_info.frames:
            raise DatasetError(f"{mask.path}: mask has {m.frames} frames, the images ({img.path.name}) have "
                               f"{image_info.frames}")
