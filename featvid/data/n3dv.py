"""N3DV / DyNeRF multi-view videos (Li et al. 2022, "Neural 3D Video Synthesis").

```
DATASET/
  poses_bounds.npy    [N, 17] float: per camera a 3x5 block [R | t | (H, W, f)] in LLFF order
                      (columns down, right, back, translation, hwf), then near and far depth
  cam00.mp4 ... camNN.mp4   one synchronised video per camera; row i of the poses is the i-th
                      video in camera-number order (N3DV ships 2704x2028 at 30 fps, 300 frames)
  (or cam00/ ... camNN/  one image folder per camera, e.g. frames extracted to camNN/images/)
  masks/cam00.mp4 ... optional foreground masks (or masks/camNN/ image folders)
```

Frames are decoded on demand (featvid.data.frames), so a capture is never decoded whole. cam00
is the held-out test view, as in the paper. Every camera must have the same frame count and
frame rate. The focal length in hwf is for images of size (H, W) and is scaled to the videos'
size; the principal point is the image centre. Without --aabb, the scene box is the space the
cameras see between the near and far bounds (featvid.data.scene_box), tightened by the masks
when there are any (else by `featvid.train.scene_box`'s density pass on the command line).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch

from featvid.data.cameras import Cameras, llff_to_opencv
from featvid.data.capture import CameraStream, stream_readers
from featvid.data.files import MAX_FOCAL, MAX_IMAGE_SIDE, MAX_WORLD, check_pose
from featvid.data.frames import check_sources, find_camera_sources, is_video
from featvid.data.masks import check_masks, find_masks
from featvid.data.video import MultiViewVideo, check_downscale, split_views
from featvid.errors import DatasetError, FormatError
from featvid.limits import read_npy

log = logging.getLogger(__name__)

POSES_FILE = "poses_bounds.npy"
MAX_POSES_BYTES = 1 << 24  # poses_bounds.npy: 17 float64 a camera, so 120,000 cameras (N3DV rigs have 21)
_CAMERA_NAME = re.compile(r"^cam(\d+)$")


def is_n3dv(folder: Path) -> bool:
    """True if the folder holds `poses_bounds.npy` (camNN.mp4 videos alone are also what a COLMAP
    rig may hold: `load_dataset` only mentions N3DV for them when nothing else matches)."""
    return (folder / POSES_FILE).is_file()


def camera_names(folder: Path) -> list[str]:
    """The folder's camNN videos (or camNN/ image folders), as names in camera-number order."""
    names = {p.stem for p in folder.iterdir()
             if _CAMERA_NAME.match(p.stem) and ((p.is_file() and is_video(p)) or p.is_dir())}
    return sorted(names, key=lambda n: int(n[3:]))


def read_poses_bounds(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """poses_bounds.npy -> (c2w [N, 4, 4] OpenCV, hwf [N, 3] (height, width, focal in pixels), bounds [N, 2])."""
    try:
        arr = read_npy(path, str(path), MAX_POSES_BYTES)  # its header checked against its size first
    except FormatError as e:
        raise DatasetError(f"{path}: cannot read as a numeric .npy array: {str(e).removeprefix(f'{path}: ')}") from e
    if arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] == 0:
        raise DatasetError(f"{path}: expected an array of shape [cameras, 17] (3x5 pose + near, far), got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DatasetError(f"{path}: non-numeric values ({arr.dtype})")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise DatasetError(f"{path}: camera {int(np.argmax(bad))} (row {int(np.argmax(bad))}) has a NaN or "
                           f"infinite pose or bound")
    arr = arr.astype(np.float64)
    block = arr[:, :15].reshape(-1, 3, 5)
    c2w = llff_to_opencv(block[:, :, :4])  # [N, 4, 4]
    hwf = torch.as_tensor(block[:, :, 4], dtype=torch.float32)  # [N, 3]
    bounds = torch.as_tensor(arr[:, 15:17], dtype=torch.float32)  # [N, 2]
    for i in range(len(arr)):
        h, w, f = hwf[i].tolist()
        if not (1 <= h <= MAX_IMAGE_SIDE and 1 <= w <= MAX_IMAGE_SIDE and 0 < f <= MAX_FOCAL):
            raise DatasetError(f"{path}: camera {i} (row {i}): image height and width must be in 1..{MAX_IMAGE_SIDE} "
                               f"pixels and the focal length in (0, {MAX_FOCAL:g}], got hwf {[h, w, f]}")
        check_pose(c2w[i].numpy(), f"{path}: camera {i} (row {i}) pose")
        near, far = bounds[i].tolist()
        if not 0 <= near < far <= MAX_WORLD:
            raise DatasetError(f"{path}: camera {i} (row {i}): near and far bounds must satisfy "
                               f"0 <= near < far <= {MAX_WORLD:g}, got {near:g}, {far:g}")
    return c2w, hwf, bounds


def load_n3dv(folder: Path, *, aabb: torch.Tensor | None = None, downscale: float = 1.0, masks="auto",
              test_views: list[int] | None = None) -> MultiViewVideo:
    """Read an N3DV folder (see the module docstring) as a MultiViewVideo.

    aabb [2, 3] overrides the estimated box; downscale divides the image size; masks: "auto"
    (masks/ or mask/ when present), "none", or a folder of per-camera masks; test_views
    defaults to [0] (cam00 held out, as in the paper).
    """
    folder = Path(folder)
    downscale = check_downscale(downscale)
    poses_path = folder / POSES_FILE
    if not poses_path.is_file():
        raise DatasetError(f"{folder}: no {POSES_FILE} (N3DV camera poses)")
    names = camera_names(folder)
    if not names:
        raise DatasetError(f"{folder}: no camNN.mp4 videos (or camNN/ image folders) beside {POSES_FILE}")
    c2w, hwf, bounds = read_poses_bounds(poses_path)
    if len(c2w) != len(names):
        raise DatasetError(f"{poses_path}: {len(c2w)} camera poses but {len(names)} camNN.mp4 videos (or camNN/ image folders) in {folder}")

    sources = find_camera_sources(folder, names, ("video", "folder"))
    info = check_sources(sources)
    mask_sources = find_masks(masks, [folder / "masks", folder / "mask"], names, ("video", "folder"))
    if mask_sources is not None:
        check_masks(sources, mask_sources, info)
    fps = info.fps or 30.0
    height, width = info.height, info.width

    # hwf describes the images the poses were made for; scale the focal length to the videos' size
    K = torch.zeros(len(c2w), 3, 3)
    K[:, 0, 0] = hwf[:, 2] * (width / hwf[:, 1])
    K[:, 1, 1] = hwf[:, 2] * (height / hwf[:, 0])
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = width / 2.0, height / 2.0, 1.0
    cams = Cameras(K, c2w, height, width)
    if downscale != 1.0:
        cams = cams.scaled(1.0 / downscale)

    train, test = split_views(len(names), test_views)
    background = (1.0, 1.0, 1.0)
    streams = [CameraStream(s, m, None, background, (cams.height, cams.width))
               for s, m in zip(sources, mask_sources or [None] * len(sources))]
    read_image, read_mask = stream_readers(streams)
    video = MultiViewVideo(source=folder, format="n3dv", cameras=[cams] * info.frames, fps=fps, aabb=aabb,
                           box_source="option", background=background, train_views=train, test_views=test,
                           read_image=read_image, read_mask=read_mask, depth_bounds=bounds,
                           options={"downscale": downscale, "mask_files": mask_sources is not None})
    log.info("loaded %r", video)
    return video
