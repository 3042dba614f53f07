"""Camera paths for free-viewpoint videos: orbit, spiral, a dataset's held-out cameras, a JSON file.

A `CameraPath` is one camera and one frame index per output frame, so time advances with the
path: output frame i shows stream frame t_i = i mod T (T = the stream's frame count) unless a
path file names its own `t`.

Orbit and spiral circle the centre of the scene box around the world +z axis (the "up" of
`featvid.data.cameras.look_at`), at the distance where the box's bounding sphere fills the
horizontal field of view.

Path file format (JSON; cameras in the OpenCV convention: x right, y down, z forward):

    {
      "width": 640, "height": 480,          # image size in pixels
      "fov_x_deg": 50.0,                    # horizontal field of view in degrees, or instead
      "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],   # intrinsics in pixels
      "convention": "opencv",               # optional: "opengl" for Blender/three.js poses
      "frames": [
        {"c2w": [[...], [...], [...], [0, 0, 0, 1]], "t": 0},   # 4x4 camera-to-world; t optional
        ...
      ]
    }

A frame without `t` shows stream frame (its index mod T). Any missing or malformed field is a
RenderError that names it (e.g. `frames[3].c2w`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from featvid.data.cameras import Cameras, intrinsics_from_fov, look_at, opengl_to_opencv
from featvid.errors import FormatError, RenderError
from featvid.limits import read_json

PATH_KINDS = ("orbit", "spiral", "test")


@dataclass
class CameraPath:
    """One camera and one stream frame index per output frame.

    cameras: N cameras sharing one image size.
    times:   [N] stream frame index (0..T-1) shown by each output frame.
    """

    cameras: Cameras
    times: list[int]

    def __post_init__(self) -> None:
        if len(self.times) != len(self.cameras):
            raise RenderError(f"camera path: {len(self.cameras)} cameras but {len(self.times)} frame times")

    def __len__(self) -> int:
        return len(self.times)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.cameras.width, self.cameras.height

    def resized(self, width: int, height: int) -> "CameraPath":
        """The same path rendered at width x height pixels (intrinsics scaled per axis)."""
        check_size(width, height)
        c = self.cameras
        K = c.K.clone()
        K[:, 0] *= width / c.width
        K[:, 1] *= height / c.height
        return CameraPath(Cameras(K, c.c2w.clone(), height, width), list(self.times))


def check_size(width: int, height: int) -> None:
    """Refuse image sizes that cannot be rendered (RenderError)."""
    if width <= 0 or height <= 0:
        raise RenderError(f"image size must be positive, got {width}x{height}")
    if width * height > 8192 * 8192:
        raise RenderError(f"image size {width}x{height} is too large (at most 8192x8192 pixels)")


def frame_times(n: int, num_frames: int) -> list[int]:
    """t_i = i mod T for n output frames of a T-frame stream."""
    if num_frames <= 0:
        raise RenderError("the stream has no frames")
    return [i % num_frames for i in range(n)]


def _sphere(aabb: torch.Tensor) -> tuple[torch.Tensor, float]:
    aabb = torch.as_tensor(aabb, dtype=torch.float32)
    centre = aabb.mean(dim=0)
    radius = 0.5 * float((aabb[1] - aabb[0]).norm())
    return centre, radius


def orbit(aabb: torch.Tensor, n: int, num_frames: int, width: int = 512, height: int = 512,
          fov_x_deg: float = 50.0, elevation_deg: float = 20.0, turns: float = 1.0) -> CameraPath:
    """n cameras on a circle around the box centre (about world +z), `turns` revolutions, looking in.

    The distance puts the box's bounding sphere exactly across the horizontal field of view.
    """
    return spiral(aabb, n, num_frames, width, height, fov_x_deg, elevation_deg, elevation_deg, turns)


def spiral(aabb: torch.Tensor, n: int, num_frames: int, width: int = 512, height: int = 512,
           fov_x_deg: float = 50.0, elevation_low_deg: float = -10.0, elevation_high_deg: float = 45.0,
           turns: float = 2.0) -> CameraPath:
    """n cameras spiralling around the box centre: `turns` revolutions while the elevation (degrees)
    swings from low to high and back; the distance also breathes by ±15 %."""
    check_size(width, height)
    if n <= 0:
        raise RenderError(f"a camera path needs at least one frame, got {n}")
    if not 1.0 <= fov_x_deg <= 170.0:
        raise RenderError(f"fov_x_deg must be within 1..170 degrees, got {fov_x_deg}")
    centre, radius = _sphere(aabb)
    fov = math.radians(fov_x_deg)
    dist0 = radius / math.sin(0.5 * fov)
    u = torch.arange(n, dtype=torch.float32) / n  # [n] path parameter in [0, 1)
    az = 2 * math.pi * turns * u - 0.5 * math.pi  # start in front (-y), looking along +y
    swing = 0.5 - 0.5 * torch.cos(2 * math.pi * u)  # 0 -> 1 -> 0
    el = torch.deg2rad(elevation_low_deg + (elevation_high_deg - elevation_low_deg) * swing)
    same = elevation_low_deg == elevation_high_deg
    dist = dist0 * (torch.ones(n) if same else 1.0 + 0.15 * torch.sin(2 * math.pi * u))
    eye = centre + torch.stack([dist * torch.cos(el) * torch.cos(az), dist * torch.cos(el) * torch.sin(az),
                                dist * torch.sin(el)], dim=-1)  # [n, 3]
    c2w = look_at(eye, centre)  # [n, 4, 4]
    K = intrinsics_from_fov(fov, height, width).expand(n, 3, 3).clone()
    return CameraPath(Cameras(K, c2w, height, width), frame_times(n, num_frames))


# ---- path files ------------------------------------------------------------------------------

def _matrix(value: Any, rows: int, cols: int, field: str) -> torch.Tensor:
    try:
        m = torch.tensor(value, dtype=torch.float32)
    except (TypeError, ValueError) as e:
        raise RenderError(f"camera path: {field} must be a {rows}x{cols} matrix of numbers") from e
    if m.shape != (rows, cols):
        raise RenderError(f"camera path: {field} must be a {rows}x{cols} matrix, got shape {list(m.shape)}")
    if not torch.isfinite(m).all():
        raise RenderError(f"camera path: {field} holds non-finite numbers")
    return m


def _positive_int(obj: dict, key: str) -> int:
    if key not in obj:
        raise RenderError(f"camera path: missing field {key!r}")
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise RenderError(f"camera path: {key} must be a positive integer, got {v!r}")
    return v


def path_from_dict(spec: Any, num_frames: int) -> CameraPath:
    """A CameraPath from the parsed JSON of a path file (see the module docstring)."""
    if not isinstance(spec, dict):
        raise RenderError("camera path: the file must hold a JSON object")
    width, height = _positive_int(spec, "width"), _positive_int(spec, "height")
    check_size(width, height)
    if "K" in spec:
        K = _matrix(spec["K"], 3, 3, "K")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise RenderError("camera path: K must have positive focal lengths K[0][0], K[1][1]")
    elif "fov_x_deg" in spec:
        fov = spec["fov_x_deg"]
        if isinstance(fov, bool) or not isinstance(fov, (int, float)) or not 1.0 <= fov <= 170.0:
            raise RenderError(f"camera path: fov_x_deg must be a number of degrees within 1..170, got {fov!r}")
        K = intrinsics_from_fov(math.radians(fov), height, width)
    else:
        raise RenderError("camera path: give the intrinsics as 'K' (3x3) or 'fov_x_deg'")
    convention = spec.get("convention", "opencv")
    if convention not in ("opencv", "opengl"):
        raise RenderError(f"camera path: convention must be 'opencv' or 'opengl', got {convention!r}")
    frames = spec.get("frames")
    if not isinstance(frames, list) or not frames:
        raise RenderError("camera path: 'frames' must be a non-empty list of {\"c2w\": 4x4, \"t\": int}")
    c2ws, times = [], []
    for i, f in enumerate(frames):
        if not isinstance(f, dict) or "c2w" not in f:
            raise RenderError(f"camera path: frames[{i}] must be an object with a 'c2w' field")
        c2w = _matrix(f["c2w"], 4, 4, f"frames[{i}].c2w")
        if (c2w[3] - torch.tensor([0.0, 0, 0, 1])).abs().max() > 1e-6:
            raise RenderError(f"camera path: frames[{i}].c2w: last row must be [0, 0, 0, 1]")
        if (c2w[:3, :3] @ c2w[:3, :3].T - torch.eye(3)).abs().max() > 1e-3:
            raise RenderError(f"camera path: frames[{i}].c2w: rotation part is not orthonormal")
        t = f.get("t", i % num_frames)
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < num_frames:
            raise RenderError(f"camera path: frames[{i}].t must be an integer frame index in 0..{num_frames - 1}, got {t!r}")
        c2ws.append(c2w)
        times.append(t)
    c2w = torch.stack(c2ws)
    if convention == "opengl":
        c2w = opengl_to_opencv(c2w)
    return CameraPath(Cameras(K.expand(len(c2ws), 3, 3).clone(), c2w, height, width), times)


def load_path_file(path: str | Path, num_frames: int) -> CameraPath:
    """Read a JSON camera path file (see the module docstring)."""
    path = Path(path)
    try:
        spec = read_json(path, str(path))  # bounded: a size ceiling, deep nesting refused
    except FormatError as e:
        raise RenderError(f"{path}: cannot read camera path file ({str(e).removeprefix(f'{path}: ')})") from e
    try:
        return path_from_dict(spec, num_frames)
    except RenderError as e:
        raise RenderError(f"{path}: {e}") from e


def path_to_dict(path: CameraPath) -> dict:
    """The JSON form of a path (per-frame K is not expressible: the first camera's K is written)."""
    c = path.cameras
    return {"width": c.width, "height": c.height, "K": c.K[0].tolist(),
            "frames": [{"c2w": c.c2w[i].tolist(), "t": int(t)} for i, t in enumerate(path.times)]}


def dataset_path(dataset: Any, n: int, num_frames: int) -> CameraPath:
    """The held-out (test) cameras of a MultiViewVideo (featvid.data) in turn: n output frames, each
    held-out view for an equal stretch, while time advances t_i = i mod T (the camera of view v at
    frame t_i, so a moving rig is followed)."""
    views = list(getattr(dataset, "test_views", []) or [])
    if not views:
        raise RenderError("the dataset has no held-out (test) views: use --path orbit or spiral")
    if n <= 0:
        raise RenderError(f"a camera path needs at least one frame, got {n}")
    times = frame_times(n, num_frames)
    T_data = int(dataset.num_frames)
    K, c2w = [], []
    for i, t in enumerate(times):
        v = views[min(len(views) - 1, i * len(views) // n)]
        cams = dataset.cameras_at(min(t, T_data - 1))
        K.append(cams.K[v])
        c2w.append(cams.c2w[v])
    first = dataset.cameras_at(0)
    return CameraPath(Cameras(torch.stack(K), torch.stack(c2w), first.height, first.width), times)


def make_path(kind: str, num_frames: int, aabb: torch.Tensor, n: int | None = None,
              size: tuple[int, int] | None = None, dataset: Any = None) -> CameraPath:
    """The path named by `kind` (orbit, spiral, test, or a .json file) with n frames (default: T,
    or a file's own frame list) at size (width, height) (default: 512x512, or the path's own)."""
    if n is not None and n <= 0:
        raise RenderError(f"--frames must be positive, got {n}")
    if size is not None:
        check_size(*size)
    if kind in ("orbit", "spiral"):
        w, h = size or (512, 512)
        make = orbit if kind == "orbit" else spiral
        return make(aabb, n or num_frames, num_frames, w, h)
    if kind == "test":
        if dataset is None:
            raise RenderError("--path test needs the dataset (--data DATASET)")
        p = dataset_path(dataset, n or num_frames, num_frames)
    else:
        if not kind.lower().endswith(".json"):
            raise RenderError(f"unknown camera path {kind!r}: use orbit, spiral, test or a .json file")
        p = load_path_file(kind, num_frames)
        if n is not None:  # cycle (or cut) the file's frames to n
            idx = [i % len(p) for i in range(n)]
            p = CameraPath(p.cameras[idx], [p.times[i] for i in idx])
    return p.resized(*size) if size is not None else p
