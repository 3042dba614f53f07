"""NHR / ReRF multi-view captures (the layout of the NHR, ReRF and TeTriRF datasets).

```
DATASET/
  CamPose.inf     one camera a line, 12 floats: the camera-to-world matrix [R | T] written by
                  columns in the order 3rd, 1st, 2nd, 4th (z axis, x axis, y axis, centre), where
                  R X_camera + T = X_world and the camera axes are OpenCV's (x right, y down,
                  z forward)
  Intrinsic.inf   per camera, in the same order: a line with its index (from 0), three lines
                  "fx 0 cx" / "0 fy cy" / "0 0 1", a blank line
  image/000.mp4 ...            ReRF: one video per camera (camera i = line i of CamPose.inf)
  mask/000.mp4 ...             ReRF: optional foreground mask videos
  img/<t>/img_0000.jpg ...     NHR: one folder per frame t (from 0), one image per camera
  img/<t>/mask/img_0000.jpg    NHR: optional masks beside them
  image/<t>/img_0000.png       ReRF decoded by TeTriRF's tools; masks in mask/<t>/img_0000.png
```

Where the convention comes from: NHR's README (github.com/wuminye/NHR, "CamPose.inf ... the 3x4
[R T] matrix is displayed in columns, with the third column followed by columns 1, 2, and 4,
where R*X^{camera}+T=X^{world}"; "Intrinsic.inf ... idx \\n fx 0 cx \\n 0 fy cy \\n 0 0 1 \\n \\n"),
`campose_to_extrinsic` / `read_intrinsics` in ReRF's `data_util.py` and TeTriRF's
`tools/rerf_to_nhr_conversion.py` (which also fix the image/ and mask/ video naming, %03d.mp4),
and TeTriRF's NHR configs, which cast rays with `inverse_y=True` (OpenCV axes) through pixel
centres at +0.5 with K as written -- featvid's own convention, so K is used as is.

The images are undistorted already (NHR's README says so). Camera 0 is held out for evaluation.
Background: white (TeTriRF trains these datasets with `white_bkgd=True`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from featvid.data.cameras import Cameras
from featvid.data.capture import CameraStream, stream_readers
from featvid.data.files import check_pose, parse_floats, read_lines
from featvid.data.frames import (
    FrameSource,
    check_sources,
    find_camera_sources,
    frame_major_sources,
    image_files,
    is_video,
    trailing_number,
)
from featvid.data.masks import check_masks, find_masks
from featvid.data.video import MultiViewVideo, check_downscale, split_views
from featvid.errors import DatasetError

log = logging.getLogger(__name__)

POSE_FILE = "CamPose.inf"
INTRINSIC_FILE = "Intrinsic.inf"
IMAGE_FOLDERS = ("image", "img")
DEFAULT_FPS = 30.0  # image folders carry no frame rate
BACKGROUND = (1.0, 1.0, 1.0)


def is_nhr(folder: Path) -> bool:
    """True if the folder holds CamPose.inf."""
    return (folder / POSE_FILE).is_file()


def read_campose(path: Path) -> torch.Tensor:
    """CamPose.inf -> camera-to-world [N, 4, 4] (OpenCV axes), one camera a non-empty line."""
    poses = []
    for i, line in enumerate(read_lines(path), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 12:
            raise DatasetError(f"{path}: line {i}: {len(tokens)} numbers, expected 12 (columns z, x, y, t of [R | T])")
        v = np.asarray(parse_floats(path, i, tokens), dtype=np.float64)
        c2w = np.eye(4)
        c2w[:3, 2], c2w[:3, 0], c2w[:3, 1], c2w[:3, 3] = v[0:3], v[3:6], v[6:9], v[9:12]
        R = c2w[:3, :3]
        if not (np.allclose(R.T @ R, np.eye(3), atol=1e-3) and np.linalg.det(R) > 0):
            raise DatasetError(f"{path}: line {i}: columns are not a rotation (det {np.linalg.det(R):.4f}); "
                               f"expected R's columns 3, 1, 2 then T")
        check_pose(c2w, f"{path}: line {i}")  # and the camera within the world's bounds
        poses.append(c2w)
    if not poses:
        raise DatasetError(f"{path}: no camera poses")
    return torch.tensor(np.stack(poses), dtype=torch.float32)


def read_intrinsic(path: Path) -> torch.Tensor:
    """Intrinsic.inf -> K [N, 3, 3]: blocks of an index line and three rows of K."""
    lines = [(i, ln.split()) for i, ln in enumerate(read_lines(path), start=1)]
    Ks: list[np.ndarray] = []
    j = 0
    while j < len(lines):
        i, tokens = lines[j]
        if not tokens:
            j += 1
            continue
        if len(tokens) == 1:
            if tokens[0] != str(len(Ks)):
                raise DatasetError(f"{path}: line {i}: camera index {tokens[0]!r}, expected {len(Ks)}")
            j += 1
            continue
        rows = lines[j:j + 3]
        if len(rows) < 3 or any(len(t) != 3 for _, t in rows):
            raise DatasetError(f"{path}: line {i}: expected three lines of 3 numbers (fx 0 cx / 0 fy cy / 0 0 1)")
        K = np.asarray([parse_floats(path, n, t) for n, t in rows])
        if not (np.allclose(K[2], [0, 0, 1]) and K[0, 0] > 0 and K[1, 1] > 0 and K[1, 0] == 0):
            raise DatasetError(f"{path}: line {i}: camera {len(Ks)} is not a pinhole K (fx 0 cx / 0 fy cy / 0 0 1)")
        Ks.append(K)
        j += 3
    if not Ks:
        raise DatasetError(f"{path}: no intrinsics")
    return torch.tensor(np.stack(Ks), dtype=torch.float32)


def _count_cameras(root: Path) -> int:
    """How many cameras a folder holds: videos, or images in the first frame folder."""
    videos = [p for p in root.iterdir() if p.is_file() and is_video(p) and trailing_number(p.stem) is not None]
    if videos:
        return len(videos)
    frames = sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    if frames:
        return sum(1 for p in image_files(frames[0]) if trailing_number(p.stem) is not None)
    return 0


def _image_sources(folder: Path, names: list[str], poses_path: Path) -> tuple[Path, list[FrameSource]]:
    for sub in IMAGE_FOLDERS:
        root = folder / sub
        if not root.is_dir():
            continue
        found = _count_cameras(root)
        if found and found != len(names):
            raise DatasetError(f"{poses_path}: {len(names)} camera poses but {found} cameras' images in {root}")
        sources = find_camera_sources(root, names, ("video", "frames"))
        if sources is not None:
            return root, sources
    raise DatasetError(f"{folder}: no camera videos (image/000.mp4 ...) or frame folders (img/0/img_0000.jpg ...) "
                       f"beside {POSE_FILE}")


def _mask_sources(folder: Path, image_root: Path, names: list[str], masks) -> list[FrameSource] | None:
    if str(masks) == "auto":
        nhr = frame_major_sources(image_root, names, "masks", subfolder="mask")  # img/<t>/mask/
        if nhr is not None:
            return nhr
        return find_masks("auto", [folder / "mask", folder / "masks"], names, ("video", "frames"))
    return find_masks(masks, [], names, ("video", "folder", "frames"))


def load_nhr(folder: Path, *, aabb: torch.Tensor | None = None, downscale: float = 1.0, masks="auto",
             test_views: list[int] | None = None) -> MultiViewVideo:
    """Read an NHR / ReRF folder (see the module docstring) as a MultiViewVideo.

    aabb [2, 3] overrides the estimated box; downscale divides the image size; masks: "auto"
    (the layout's mask videos or folders), "none", or a folder of per-camera masks;
    test_views defaults to [0].
    """
    folder = Path(folder)
    downscale = check_downscale(downscale)
    poses_path, intrinsic_path = folder / POSE_FILE, folder / INTRINSIC_FILE
    c2w = read_campose(poses_path)
    if not intrinsic_path.is_file():
        raise DatasetError(f"{folder}: no {INTRINSIC_FILE} beside {POSE_FILE}")
    K = read_intrinsic(intrinsic_path)
    if len(K) != len(c2w):
        raise DatasetError(f"{intrinsic_path}: {len(K)} cameras, {POSE_FILE} has {len(c2w)}")
    names = [str(i) for i in range(len(c2w))]
    image_root, sources = _image_sources(folder, names, poses_path)
    info = check_sources(sources)
    mask_sources = _mask_sources(folder, image_root, names, masks)
    if mask_sources is not None:
        check_masks(sources, mask_sources, info)

    cams = Cameras(K, c2w, info.height, info.width)
    if downscale != 1.0:
        cams = cams.scaled(1.0 / downscale)
    train, test = split_views(len(names), test_views)
    streams = [CameraStream(s, m, None, BACKGROUND, (cams.height, cams.width))
               for s, m in zip(sources, mask_sources or [None] * len(sources))]
    read_image, read_mask = stream_readers(streams)
    video = MultiViewVideo(source=folder, format="nhr", cameras=[cams] * info.frames, fps=info.fps or DEFAULT_FPS,
                           aabb=aabb, box_source="option", background=BACKGROUND, train_views=train,
                           test_views=test, read_image=read_image, read_mask=read_mask,
                           options={"downscale": downscale, "mask_files": mask_sources is not None})
    log.info("loaded %r", video)
    return video
