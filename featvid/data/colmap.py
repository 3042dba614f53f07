"""A rig calibrated with COLMAP: a sparse model plus one video or image folder per camera.

```
DATASET/
  sparse/0/cameras.bin images.bin     the model (or .txt; or in sparse/, colmap/sparse/0, or DATASET/)
  cam00.mp4 cam01.mp4 ...             one video per camera (also in videos/ or images/), or
  images/cam00/0000.png ...           one image folder per camera, or
  images/<t>/cam00.png ...            one folder per frame holding every camera's image (HiFi4G)
  masks/cam00.mp4 ...                 optional foreground masks, named like the videos
```

Each registered image of the model is one camera of the rig. Its camera name is the first folder
of its NAME when it has one (`cam03/000000.png` -> `cam03`: look for an image folder `cam03/`
first), else NAME without extension (`cam03.png` -> `cam03`: look for `cam03.mp4`, then frame
folders holding `cam03.png`, then a folder `cam03/`). Two model images of one camera are an error.

Poses: COLMAP's world-to-camera quaternion and translation (OpenCV axes), inverted here.
Intrinsics and lens distortion come from the camera model (featvid.data.colmap_model); distortion
is removed once per camera at load. A video whose size differs from the calibration's but keeps
its aspect ratio has its intrinsics scaled (a rig calibrated from 4K stills, filmed in 1080p);
another aspect ratio is an error. The first camera in name order is held out for evaluation.
"""
from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

import torch

from featvid.data.cameras import Cameras
from featvid.data.capture import CameraStream, stream_readers
from featvid.data.colmap_model import ColmapImage, find_model, read_model
from featvid.data.files import check_pose
from featvid.data.frames import check_sources, find_camera_sources, natural_key
from featvid.data.masks import check_masks, find_masks
from featvid.data.undistort import Undistorter
from featvid.data.video import MultiViewVideo, check_downscale, split_views
from featvid.errors import DatasetError

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0
BACKGROUND = (1.0, 1.0, 1.0)
ROOTS = ("videos", "images", ".")


def is_colmap(folder: Path) -> bool:
    """True if the folder holds a COLMAP sparse model (see `find_model`)."""
    return find_model(folder) is not None


def camera_name(image: ColmapImage) -> tuple[str, bool]:
    """(camera name, whether the name is a folder) of a model image (see the module docstring)."""
    p = PurePosixPath(image.name)
    if len(p.parts) > 1:
        return p.parts[0], True
    return p.stem, False


def load_colmap(folder: Path, *, aabb: torch.Tensor | None = None, downscale: float = 1.0, masks="auto",
                test_views: list[int] | None = None) -> MultiViewVideo:
    """Read a COLMAP-calibrated rig (see the module docstring) as a MultiViewVideo.

    aabb [2, 3] overrides the estimated box; downscale divides the image size; masks: "auto"
    (masks/ or mask/ when present), "none", or a folder of per-camera masks; test_views
    defaults to [0].
    """
    folder = Path(folder)
    downscale = check_downscale(downscale)
    model_dir = find_model(folder)
    if model_dir is None:
        raise DatasetError(f"{folder}: no COLMAP model (cameras + images .bin or .txt in sparse/0, sparse, "
                           f"colmap/sparse/0 or the folder itself)")
    cams_by_id, images, images_path = read_model(model_dir)
    images = sorted(images, key=lambda im: natural_key(im.name))
    named = [camera_name(im) for im in images]
    names = [n for n, _ in named]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise DatasetError(f"{images_path}: images {images[names.index(n)].name} and {images[i].name} are "
                               f"both camera {n}: give the model one image per camera")
    as_folders = any(f for _, f in named)
    layouts = ("folder", "video", "frames") if as_folders else ("video", "frames", "folder")
    sources = None
    for root in ROOTS:
        try:
            sources = find_camera_sources(folder / root, names, layouts)
        except DatasetError as e:
            raise DatasetError(f"{images_path}: the model has {len(names)} cameras, but {e}") from e
        if sources is not None:
            break
    if sources is None:
        raise DatasetError(f"{folder}: no videos or image folders for the {len(names)} cameras of {images_path.name} "
                           f"(looked for {names[0]}.mp4, {names[0]}/ in {', '.join(ROOTS)})")
    info = check_sources(sources)
    mask_sources = find_masks(masks, [folder / "masks", folder / "mask"] if str(masks) == "auto" else [], names,
                              layouts)
    if mask_sources is not None:
        check_masks(sources, mask_sources, info)

    Ks, c2ws, undistorters = [], [], []
    for im, source in zip(images, sources):
        cam = cams_by_id[im.camera_id]
        K, dist = cam.intrinsics(images_path)
        if (cam.height, cam.width) != (info.height, info.width):
            ratio = (info.width / cam.width, info.height / cam.height)
            if abs(ratio[0] - ratio[1]) > 0.01 * ratio[0]:
                raise DatasetError(f"{source.path}: frames are {info.width}x{info.height}, camera {cam.camera_id} of "
                                   f"{images_path.name} was calibrated at {cam.width}x{cam.height} (another aspect ratio)")
            K = K.clone()
            K[0] *= ratio[0]
            K[1] *= ratio[1]
        Ks.append(K)
        try:
            c2w = im.c2w()
        except DatasetError as e:
            raise DatasetError(f"{images_path}: {e}") from e
        check_pose(c2w.double().numpy(), f"{images_path}: image {im.name}: pose")
        c2ws.append(c2w)
        undistorters.append(Undistorter(K, dist, info.height, info.width) if dist is not None else None)
    cams = Cameras(torch.stack(Ks), torch.stack(c2ws), info.height, info.width)
    if downscale != 1.0:
        cams = cams.scaled(1.0 / downscale)

    V = len(names)
    train, test = split_views(V, test_views)
    streams = [CameraStream(s, m, u, BACKGROUND, (cams.height, cams.width))
               for s, m, u in zip(sources, mask_sources or [None] * V, undistorters)]
    read_image, read_mask = stream_readers(streams)
    undistorted = sum(u is not None for u in undistorters)
    video = MultiViewVideo(source=folder, format="colmap", cameras=[cams] * info.frames,
                           fps=info.fps or DEFAULT_FPS, aabb=aabb, box_source="option", background=BACKGROUND,
                           train_views=train, test_views=test, read_image=read_image, read_mask=read_mask,
                           options={"downscale": downscale, "mask_files": mask_sources is not None,
                                    "undistorted_views": undistorted})
    log.info("loaded %r (%d views undistorted)", video, undistorted)
    return video
