"""D-NeRF / Blender / nerfstudio-style JSON datasets.

```
DATASET/
  transforms_train.json    {"camera_angle_x": ..., "frames": [{"file_path", "transform_matrix", "time"}, ...]}
  transforms_test.json     optional: held-out views
  transforms_val.json      optional, not used
  train/..., test/...      images (PNG, RGBA or RGB)
```

- Intrinsics: `fl_x`/`fl_y`/`cx`/`cy`/`w`/`h` or `camera_angle_x` (and `camera_angle_y`), at the top
  level or per image (per-image values win, as nerfstudio allows). The principal point defaults
  to the image centre.
- `transform_matrix`: OpenGL camera-to-world (x right, y up, z back), converted to OpenCV here.
- `file_path`: relative to the JSON's folder, with or without extension (D-NeRF leaves it off).
- `time` in [0, 1]: images sharing a time form one frame. Several images per time = a multi-view
  rig (views matched across times by camera pose, else by file order); one per time = monocular.
- featvid extension keys: `aabb` ([[x0,y0,z0],[x1,y1,z1]]), `fps` (default 30) and `background`
  (RGB in [0, 1], default white), all optional. Without "aabb" the scene box is estimated
  (`featvid.data.scene_box`: the space the cameras see, tightened by the images' alpha).
- Scoring masks (featvid extension, `featvid synth --scene room|forward` writes them): a per-image
  "score_mask_path", relative to the JSON's folder like "file_path", names a grey image of the
  image's size whose white is the subject (`featvid.data.masks.mask_to_float`). They are read only
  by `MultiViewVideo.score_mask` for `featvid eval`'s PSNR inside the foreground: they never
  composite the images nor bound the scene box, so training sees the whole image.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from featvid.data.cameras import Cameras, opengl_to_opencv
from featvid.data.files import (MAX_FOCAL, MAX_TIME, check_image_size, check_intrinsics, extension, extension_aabb,
                                extension_background, extension_fps, json_angle, json_number, json_pose, json_size,
                                read_frames_json)
from featvid.data.frames import image_size, read_gray, read_rgba
from featvid.data.masks import mask_to_float
from featvid.data.video import MultiViewVideo, check_downscale, composite, resize
from featvid.errors import DatasetError

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
DEFAULT_FPS = 30.0
DEFAULT_BACKGROUND = (1.0, 1.0, 1.0)
_TIME_DECIMALS = 6  # times closer than 1e-6 are the same frame


@dataclass
class _Entry:
    """One image of a JSON file."""

    json_path: Path
    split: str
    order: int  # position in the JSON's frame list
    image: Path
    time: float
    c2w: torch.Tensor  # [4, 4] OpenCV
    K: torch.Tensor  # [3, 3] at the image's size on disk
    height: int
    width: int
    score_mask: Path | None = None  # the image's scoring mask ("score_mask_path"), if any


def is_blender(folder: Path) -> bool:
    """True if the folder holds a D-NeRF/Blender `transforms_train.json`."""
    return (folder / "transforms_train.json").is_file()


def _resolve_image(folder: Path, json_path: Path, file_path: object) -> Path:
    if not isinstance(file_path, str) or not file_path:
        raise DatasetError(f"{json_path}: an image has no \"file_path\"")
    p = folder / file_path
    if p.is_file():
        return p
    if not p.suffix or p.suffix not in IMAGE_SUFFIXES:
        for suffix in IMAGE_SUFFIXES:
            q = p.with_name(p.name + suffix)
            if q.is_file():
                return q
    raise DatasetError(f"{json_path}: missing image {file_path!r} (looked for {p} with and without .png/.jpg)")


def _intrinsics(meta: dict, frame: dict, json_path: Path, image: Path) -> tuple[torch.Tensor, int, int]:
    """K [3, 3] and (height, width) of one image, from the JSON keys and the image itself."""
    h_img, w_img = image_size(image)
    check_image_size(h_img, w_img, str(image))
    h, w = json_size(meta, frame, "h", json_path), json_size(meta, frame, "w", json_path)
    if (h is not None and h != h_img) or (w is not None and w != w_img):
        raise DatasetError(f"{json_path}: {image} is {w_img}x{h_img} pixels but the JSON says w={w}, h={h}")
    fx = json_number(meta, frame, "fl_x", json_path, 0.0, MAX_FOCAL, open_range=True)
    fy = json_number(meta, frame, "fl_y", json_path, 0.0, MAX_FOCAL, open_range=True)
    angle_x, angle_y = json_angle(meta, frame, "camera_angle_x", json_path), json_angle(meta, frame, "camera_angle_y", json_path)
    if fx is None and angle_x is not None:
        fx = 0.5 * w_img / math.tan(0.5 * angle_x)
    if fy is None and angle_y is not None:
        fy = 0.5 * h_img / math.tan(0.5 * angle_y)
    if fx is None and fy is None:
        raise DatasetError(f"{json_path}: no focal length for {image.name}: need \"camera_angle_x\" or \"fl_x\"")
    fx = fy if fx is None else fx
    fy = fx if fy is None else fy
    cx = json_number(meta, frame, "cx", json_path)
    cy = json_number(meta, frame, "cy", json_path)
    cx = w_img / 2.0 if cx is None else cx
    cy = h_img / 2.0 if cy is None else cy
    check_intrinsics(fx, fy, cx, cy, h_img, w_img, f"{json_path}: {image.name}")
    K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)
    return K, h_img, w_img


def _read_split(folder: Path, split: str) -> tuple[list[_Entry], dict]:
    """The images of transforms_{split}.json ([] when the file is absent) and its top-level keys."""
    json_path = folder / f"transforms_{split}.json"
    if not json_path.is_file():
        return [], {}
    meta = read_frames_json(json_path)
    entries = []
    has_time = [isinstance(f, dict) and "time" in f for f in meta["frames"]]
    if any(has_time) and not all(has_time):
        raise DatasetError(f"{json_path}: some images have a \"time\" and some do not")
    for i, frame in enumerate(meta["frames"]):
        if not isinstance(frame, dict):
            raise DatasetError(f"{json_path}: frame {i} is not an object")
        image = _resolve_image(folder, json_path, frame.get("file_path"))
        m = json_pose(frame, json_path, image)
        time = json_number({}, frame, "time", json_path, -MAX_TIME, MAX_TIME)
        time = 0.0 if time is None else time
        K, h, w = _intrinsics(meta, frame, json_path, image)
        score_mask = None
        if "score_mask_path" in frame:
            score_mask = _resolve_image(folder, json_path, frame["score_mask_path"])
        entries.append(_Entry(json_path, split, i, image, round(time, _TIME_DECIMALS), opengl_to_opencv(m), K, h, w,
                              score_mask))
    return entries, meta


def _check_no_gaps(times: list[float], json_path: Path) -> None:
    """Evenly spaced times with a hole (e.g. 0, 0.25, 0.75, 1) mean a time with no images."""
    if len(times) < 3:
        return
    diffs = np.diff(np.asarray(times))
    step = float(diffs.min())
    ratio = diffs / step
    if np.allclose(ratio, np.round(ratio), atol=1e-3) and (np.round(ratio) > 1).any():
        # the first few missing times, gap by gap: the times may span far more steps than there are images
        missing: list[float] = []
        for t0, k in zip(times, np.round(ratio).astype(np.int64).tolist()):
            missing += [round(t0 + j * step, _TIME_DECIMALS) for j in range(1, min(k, 6))]
            if len(missing) >= 5:
                break
        raise DatasetError(f"{json_path}: no images at time(s) {missing[:5]} (the other times step by {step:.6g})")


def _match_views(group: list[_Entry], reference: list[_Entry]) -> list[_Entry]:
    """Order one time's images like the reference time's by camera pose (a fixed rig); keep file order otherwise."""
    if len(group) != len(reference) or not group:
        return group
    ref = torch.stack([e.c2w for e in reference])  # [V, 4, 4]
    order = []
    for e in group:
        dist = (ref - e.c2w).abs().flatten(1).amax(1)  # [V]
        j = int(dist.argmin())
        if float(dist[j]) > 1e-5 or j in order:
            return group
        order.append(j)
    out: list[_Entry | None] = [None] * len(group)
    for e, j in zip(group, order):
        out[j] = e
    return out  # type: ignore[return-value]


def load_blender(folder: Path, *, aabb: torch.Tensor | None = None, downscale: float = 1.0,
                 masks: str | None = "auto") -> MultiViewVideo:
    """Read a D-NeRF/Blender JSON dataset folder (see the module docstring) as a MultiViewVideo.

    aabb [2, 3] overrides the JSON's "aabb" key and the box estimated from the cameras and alpha.
    downscale divides the image size (area resampling); intrinsics follow. masks "none": the
    images' alpha still composites them, but does not bound the estimated box.
    """
    folder = Path(folder)
    downscale = check_downscale(downscale)
    train, train_meta = _read_split(folder, "train")
    test, test_meta = _read_split(folder, "test")
    train_json = folder / "transforms_train.json"
    if not train:
        raise DatasetError(f"{train_json}: no images in \"frames\"")
    sizes = {(e.height, e.width) for e in train + test}
    if len(sizes) > 1:
        first = train[0]
        odd = next(e for e in train + test if (e.height, e.width) != (first.height, first.width))
        raise DatasetError(f"{odd.json_path}: inconsistent image sizes: {odd.image} is {odd.width}x{odd.height}, "
                           f"{first.image} is {first.width}x{first.height}")

    by_time: dict[float, list[_Entry]] = {}
    for e in train:
        by_time.setdefault(e.time, []).append(e)
    times = sorted(by_time)
    _check_no_gaps(times, train_json)
    monocular = all(len(g) == 1 for g in by_time.values())

    test_by_time: dict[float, list[_Entry]] = {}
    if monocular:
        if test:
            log.info("%s: monocular data; its %d test images are not aligned to frames and are not used as views",
                     folder, len(test))
    else:
        for e in test:
            test_by_time.setdefault(e.time, []).append(e)
        for time in test_by_time:
            if time not in by_time:
                raise DatasetError(f"{folder / 'transforms_test.json'}: time {time} has test images but "
                                   f"no images in {train_json.name}")
        for split, groups, json_path in (("train", by_time, train_json), ("test", test_by_time, folder / "transforms_test.json")):
            if not groups:
                continue
            counts = {t: len(groups.get(t, [])) for t in times}
            expected = max(counts.values())
            for time, n in counts.items():
                if n == 0:
                    raise DatasetError(f"{json_path}: no images at time {time} (the other times have {expected})")
                if n != expected:
                    raise DatasetError(f"{json_path}: time {time} has {n} images, other times have {expected}: "
                                       f"a multi-view rig needs every view at every time")

    # frames: train views then test views, matched to frame 0's order
    groups = []
    for time in times:
        tr = by_time[time]
        te = test_by_time.get(time, [])
        if groups:
            tr = _match_views(tr, groups[0][:len(tr)])
            te = _match_views(te, groups[0][len(tr):])
        groups.append(tr + te)
    n_train = len(groups[0]) - len(test_by_time.get(times[0], []))
    views = len(groups[0])

    height, width = train[0].height, train[0].width
    cameras: list[Cameras] = []
    for g in groups:
        cams = Cameras(torch.stack([e.K for e in g]), torch.stack([e.c2w for e in g]), height, width)
        if downscale != 1.0:
            cams = cams.scaled(1.0 / downscale)
        # a fixed rig shares one Cameras object across frames
        if cameras and torch.equal(cams.K, cameras[0].K) and torch.equal(cams.c2w, cameras[0].c2w):
            cams = cameras[0]
        cameras.append(cams)
    out_h, out_w = cameras[0].height, cameras[0].width

    metas = [train_meta, test_meta]
    fps = extension_fps(extension(metas, "fps", DEFAULT_FPS), train_json)
    background = extension_background(extension(metas, "background", DEFAULT_BACKGROUND), train_json)
    box_source = "option" if aabb is not None else "dataset"
    if aabb is None:
        box = extension(metas, "aabb", None)
        if box is not None:
            aabb = extension_aabb(box, train_json)

    files = [[e.image for e in g] for g in groups]
    score_masks = [[e.score_mask for e in g] for g in groups]

    def read_image(t: int, v: int) -> torch.Tensor:
        path = files[t][v]
        img = read_rgba(path)
        if img.shape[:2] != (height, width):
            raise DatasetError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, the dataset's are {width}x{height}")
        rgb = composite(img, background).numpy()  # [H, W, 3] composited before resampling
        return torch.from_numpy(np.ascontiguousarray(resize(rgb, out_h, out_w)))  # [h, w, 3]

    def read_mask(t: int, v: int) -> torch.Tensor | None:
        img = read_rgba(files[t][v])
        if img.shape[-1] != 4:
            return None  # RGB images: nothing says what is foreground
        peak = 65535.0 if img.dtype == np.uint16 else 255.0
        alpha = img[..., 3].astype(np.float32) / peak
        return torch.from_numpy(np.ascontiguousarray(resize(alpha, out_h, out_w)))  # [h, w]

    def read_score_mask(t: int, v: int) -> torch.Tensor | None:
        path = score_masks[t][v]
        if path is None:
            return None
        mask = mask_to_float(read_gray(path))
        if mask.shape != (height, width):
            raise DatasetError(f"{path}: scoring mask is {mask.shape[1]}x{mask.shape[0]}, the dataset's images are "
                               f"{width}x{height}")
        return torch.from_numpy(np.ascontiguousarray(resize(mask, out_h, out_w)))  # [h, w]

    video = MultiViewVideo(source=folder, format="blender" if views > 1 else "blender-monocular",
                           cameras=cameras, fps=float(fps), aabb=aabb, box_source=box_source, background=background,
                           train_views=list(range(n_train)), test_views=list(range(n_train, views)),
                           read_image=read_image, read_mask=None if str(masks) == "none" else read_mask,
                           read_score_mask=read_score_mask if any(p for g in score_masks for p in g) else None,
                           options={"downscale": downscale})
    log.info("loaded %r", video)
    return video
