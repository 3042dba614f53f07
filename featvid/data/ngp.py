"""Per-frame NGP JSON: a folder per frame, each an instant-ngp `transforms.json` (what the V^3 /
VideoGS and HiFi4G preprocessing writes).

```
DATASET/
  0/transforms.json   {"frames": [{"file_path": "images/0.png", "transform_matrix": [[...4x4...]],
                                   "fl_x", "fl_y", "cx", "cy", "w", "h",          (per view or top level)
                                   "k1", "k2", "p1", "p2" [, "k3"]               (optional distortion)
                                   [, "is_fisheye": true with "k1".."k4"]
                                   [, "mask_path": "masks/0.png"]}, ...],
                       "white_transparent": true  (optional: transparent pixels are white)}
  0/images/0.png ...  one image per view (RGB, or RGBA: alpha is the foreground)
  1/transforms.json, 1/images/ ...   every frame folder, numbered from its first without gaps
```

A static capture in instant-ngp's own layout (DATASET/transforms.json beside DATASET/images/, as
its `fox` sample and colmap2nerf.py write) reads as a video of one frame; its test views are every
8th view (0, 8, 16, ...: the LLFF convention) unless given.

- `transform_matrix` is camera-to-world in the OpenGL convention (x right, y up, z back), as in
  instant-ngp and NeRF; converted to OpenCV here. Translations are world units as written
  (instant-ngp's own `scale` / `offset` keys map a scene into its unit cube and are ignored).
- Intrinsics are per view (V^3 writes them per frame entry) or top level; `K` [[fx,0,cx],...] is
  read when `fl_x` is absent, then `camera_angle_x`. cx, cy: pixel centres at +0.5, as instant-ngp.
- Distortion (k1 k2 p1 p2 [k3], or fisheye k1..k4) is removed once per camera at load
  (featvid.data.undistort), never per iteration.
- Views are matched across frames by file name (`images/3.png` is view 3 in every frame); view 0
  (the first of frame 0's list) is held out for evaluation (a static capture: every 8th).
- featvid extension keys, optional, at the top level of any frame's JSON: `aabb`, `fps` (default
  30), `background` (RGB in [0, 1]; default white, black when `white_transparent` is false).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from featvid.data.cameras import Cameras, opengl_to_opencv
from featvid.data.capture import CameraStream, stream_readers
from featvid.data.files import (MAX_FOCAL, check_image_size, check_intrinsics, extension, extension_aabb, extension_background,
                                extension_fps, json_angle, json_number, json_pose, json_size, read_frames_json)
from featvid.data.frames import FrameSource, ImageFrames, image_size, natural_key, trailing_number
from featvid.data.masks import check_masks, find_masks
from featvid.data.undistort import Distortion, Undistorter
from featvid.data.video import MultiViewVideo, check_downscale, split_views
from featvid.errors import DatasetError

log = logging.getLogger(__name__)

JSON_NAME = "transforms.json"
DEFAULT_FPS = 30.0
STATIC_TEST_EVERY = 8  # a static capture's test views: 0, 8, 16, ...


def frame_folders(folder: Path) -> list[Path]:
    """Subfolders holding a transforms.json, in the order of the number their names end in; or the
    folder itself when it holds the transforms.json and no frame folders (a static capture)."""
    found = [p for p in folder.iterdir() if p.is_dir() and trailing_number(p.name) is not None
             and (p / JSON_NAME).is_file()]
    if not found and (folder / JSON_NAME).is_file():
        return [folder]
    return sorted(found, key=lambda p: (trailing_number(p.name), natural_key(p.name)))


def is_ngp(folder: Path) -> bool:
    """True if the folder holds numbered frame folders with a transforms.json each, or is a
    static instant-ngp capture (transforms.json beside its images)."""
    return bool(frame_folders(folder))


def _view_camera(meta: dict, view: dict, path: Path, image: Path) -> tuple[torch.Tensor, torch.Tensor, int, int,
                                                                            Distortion | None]:
    """(c2w [4, 4] OpenCV, K [3, 3], height, width, distortion or None) of one view entry."""
    m = json_pose(view, path, image)
    w, h = json_size(meta, view, "w", path), json_size(meta, view, "h", path)
    if w is None or h is None:
        h_img, w_img = image_size(image)
        check_image_size(h_img, w_img, str(image))
        w, h = w or w_img, h or h_img
    fx = json_number(meta, view, "fl_x", path, 0.0, MAX_FOCAL, open_range=True)
    fy = json_number(meta, view, "fl_y", path, 0.0, MAX_FOCAL, open_range=True)
    cx, cy = json_number(meta, view, "cx", path), json_number(meta, view, "cy", path)
    if fx is None and "K" in view:
        try:
            Kv = np.asarray(view["K"], dtype=np.float64)
            fx, fy, cx, cy = float(Kv[0, 0]), float(Kv[1, 1]), float(Kv[0, 2]), float(Kv[1, 2])
        except (TypeError, ValueError, IndexError) as e:
            raise DatasetError(f"{path}: {image.name}: \"K\" must be a 3x3 matrix") from e
    angle = json_angle(meta, view, "camera_angle_x", path)
    if fx is None and angle is not None:
        fx = 0.5 * w / math.tan(0.5 * angle)
    if fx is None:
        raise DatasetError(f"{path}: no focal length for {image.name}: need \"fl_x\", \"K\" or \"camera_angle_x\"")
    fy = fx if fy is None else fy
    cx = w / 2.0 if cx is None else cx
    cy = h / 2.0 if cy is None else cy
    check_intrinsics(fx, fy, cx, cy, h, w, f"{path}: {image.name}")
    K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)
    k = {name: json_number(meta, view, name, path) or 0.0 for name in ("k1", "k2", "k3", "k4", "p1", "p2")}
    if view.get("is_fisheye", meta.get("is_fisheye", False)):
        dist = Distortion("fisheye", (k["k1"], k["k2"], k["k3"], k["k4"]))
    elif k["k3"]:
        dist = Distortion("opencv", (k["k1"], k["k2"], k["p1"], k["p2"], k["k3"]))
    else:
        dist = Distortion("opencv", (k["k1"], k["k2"], k["p1"], k["p2"]))
    return opengl_to_opencv(m), K, int(h), int(w), None if dist.is_identity else dist


def load_ngp(folder: Path, *, aabb: torch.Tensor | None = None, downscale: float = 1.0, masks="auto",
             test_views: list[int] | None = None) -> MultiViewVideo:
    """Read a per-frame NGP JSON folder (see the module docstring) as a MultiViewVideo.

    aabb [2, 3] overrides the dataset's "aabb" key and the estimated box; downscale divides the
    image size; masks: "auto" (per-view "mask_path" or RGBA alpha), "none", or a folder of
    per-view masks named like the images; test_views defaults to [0].
    """
    folder = Path(folder)
    downscale = check_downscale(downscale)
    folders = frame_folders(folder)
    if not folders:
        raise DatasetError(f"{folder}: no numbered frame folders with a {JSON_NAME}")
    static = folders == [folder]  # one transforms.json at the top: a static capture, one frame
    numbers = [trailing_number(p.name) for p in folders]
    for a, b, p in zip(numbers, numbers[1:], folders[1:]):
        if b != a + 1:
            raise DatasetError(f"{p}: frame folders jump from {a} to {b} (a frame is missing)")

    metas: list[dict] = []
    keys: list[str] = []
    files: list[list[Path]] = []  # [view][frame]
    mask_files: list[list[Path]] = []
    cameras: list[Cameras] = []
    undistorters: dict[int, Undistorter] = {}
    size: tuple[int, int] | None = None
    for t, frame_dir in enumerate(folders):
        path = frame_dir / JSON_NAME
        meta = read_frames_json(path, allow_empty=False)
        metas.append(meta)
        entries: dict[str, tuple] = {}
        for i, view in enumerate(meta["frames"]):
            if not isinstance(view, dict) or not isinstance(view.get("file_path"), str):
                raise DatasetError(f"{path}: view {i} has no \"file_path\"")
            rel = PurePosixPath(view["file_path"])
            image = frame_dir / rel
            if not image.is_file():
                raise DatasetError(f"{path}: missing image {view['file_path']!r} ({image})")
            key = str(rel.with_suffix(""))
            if key in entries:
                raise DatasetError(f"{path}: image {view['file_path']!r} is listed twice")
            mask = view.get("mask_path")
            entries[key] = (image, _view_camera(meta, view, path, image), frame_dir / mask if mask else None)
        if t == 0:
            keys = list(entries)
            files = [[] for _ in keys]
            mask_files = [[] for _ in keys]
        elif set(entries) != set(keys):
            odd = sorted(set(entries) ^ set(keys))
            raise DatasetError(f"{path}: views {odd[:5]} are not in both this frame and {folders[0].name}/{JSON_NAME} "
                               f"(every frame needs the same views)")
        c2w, K = [], []
        for v, key in enumerate(keys):
            image, (pose, k, h, w, dist), mask = entries[key]
            if size is None:
                size = (h, w)
            elif (h, w) != size:
                raise DatasetError(f"{path}: {image.name} is {w}x{h}, the other views are {size[1]}x{size[0]}")
            files[v].append(image)
            mask_files[v].append(mask)
            c2w.append(pose)
            K.append(k)
            if dist is not None:
                if v not in undistorters:
                    undistorters[v] = Undistorter(k, dist, h, w)  # maps built once per view, here
                elif undistorters[v].distortion != dist:
                    raise DatasetError(f"{path}: view {key!r} changes its lens distortion between frames")
        cams = Cameras(torch.stack(K), torch.stack(c2w), size[0], size[1])
        if downscale != 1.0:
            cams = cams.scaled(1.0 / downscale)
        if cameras and torch.equal(cams.K, cameras[0].K) and torch.equal(cams.c2w, cameras[0].c2w):
            cams = cameras[0]  # a fixed rig shares one Cameras object across frames
        cameras.append(cams)

    sources: list[FrameSource] = [ImageFrames(f) for f in files]
    mask_sources = _masks(masks, folder, keys, mask_files, sources)
    white = extension(metas, "white_transparent", True)
    background = extension(metas, "background", (1.0, 1.0, 1.0) if white is not False else (0.0, 0.0, 0.0))
    background = extension_background(background, folders[0] / JSON_NAME)
    fps = extension_fps(extension(metas, "fps", DEFAULT_FPS), folders[0] / JSON_NAME)
    box = extension(metas, "aabb", None)
    box_source = "option" if aabb is not None else "dataset"
    if aabb is None and box is not None:
        aabb = extension_aabb(box, folders[0] / JSON_NAME)

    V = len(keys)
    if static and test_views is None:
        # a static capture is a set of photos around one scene: every 8th held out (the LLFF /
        # mip-NeRF 360 convention), so held-out figures compare with the field's
        test_views = list(range(0, V, STATIC_TEST_EVERY)) if V >= 2 * STATIC_TEST_EVERY else None
    train, test = split_views(V, test_views)
    out_size = (cameras[0].height, cameras[0].width)
    streams = [CameraStream(s, m, undistorters.get(v), background, out_size)
               for v, (s, m) in enumerate(zip(sources, mask_sources or [None] * V))]
    read_image, read_mask = stream_readers(streams)
    video = MultiViewVideo(source=folder, format="ngp", cameras=cameras, fps=float(fps), aabb=aabb,
                           box_source=box_source, background=background, train_views=train, test_views=test,
                           read_image=read_image, read_mask=read_mask,
                           options={"downscale": downscale, "mask_files": mask_sources is not None,
                                    "undistorted_views": len(undistorters)})
    log.info("loaded %r (%d views undistorted)", video, len(undistorters))
    return video


def _masks(option, folder: Path, keys: list[str], mask_files: list[list[Path | None]],
           sources: list[FrameSource]) -> list[FrameSource] | None:
    """Mask sources per view: the JSONs' "mask_path" entries (auto), or a folder (--masks)."""
    if option is None or str(option) == "none":
        return None
    if str(option) == "auto":
        listed = [[m is not None for m in per_view] for per_view in mask_files]
        if not any(any(x) for x in listed):
            return None
        for key, per_view in zip(keys, mask_files):
            if not all(m is not None for m in per_view):
                raise DatasetError(f"{folder}: view {key!r} has a \"mask_path\" in some frames but not in all")
            missing = next((m for m in per_view if not m.is_file()), None)
            if missing is not None:
                raise DatasetError(f"{missing}: missing mask image")
        found: list[FrameSource] = [ImageFrames(per_view) for per_view in mask_files]  # type: ignore[arg-type]
    else:
        found = find_masks(option, [], [PurePosixPath(k).name for k in keys])
    check_masks(sources, found, sources[0].info())
    return found
