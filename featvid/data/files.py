"""Reading a dataset's metadata files, with errors that name the file (and the line or key).

Shared by the loaders: text files of numbers (NHR's .inf, COLMAP's .txt), JSON objects with a
"frames" list (Blender / nerfstudio and NGP transforms), their numeric keys and their 4x4 poses.

Every number a camera is made of is checked here, once, against the ranges below: a zero field of
view, an all-zero or scaled pose, an image size of a billion pixels would otherwise surface later as
a division by zero, a singular matrix or an allocation of terabytes.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featvid.errors import DatasetError, FormatError
from featvid.limits import read_json

MAX_IMAGE_SIDE = 16384  # pixels a side of a dataset image (8K video is 7680)
MAX_FOCAL = 1e6  # pixels: a focal length beyond it is not a lens (a 1 px-wide field of view at 16K)
MAX_WORLD = 1e6  # world units a camera may sit from the origin (the scene box's ceiling too)
POSE_TOLERANCE = 1e-3  # how far a pose's rotation may be from orthonormal (JSON rounding is ~1e-7)
MAX_TIME = 1e6  # a "time" key's magnitude (D-NeRF uses [0, 1], some captures seconds)
MAX_FPS = 1000.0  # frames per second (a stream's ceiling too)
MAX_FRAMES = 1_000_000  # frames a capture may hold (a stream's ceiling too)


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not a text file: {e}") from e


def read_frames_json(path: Path, allow_empty: bool = True) -> dict:
    """A JSON object with a "frames" list (transforms.json files)."""
    try:
        meta = read_json(path, str(path))  # bounded: a size ceiling, deep nesting refused
    except FormatError as e:
        raise DatasetError(str(e)) from e
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or (not allow_empty and not meta["frames"]):
        raise DatasetError(f"{path}: expected an object with a{'' if allow_empty else ' non-empty'} \"frames\" list")
    return meta


def json_number(meta: dict, entry: dict, key: str, path: Path, lo: float = -math.inf, hi: float = math.inf,
                open_range: bool = False) -> float | None:
    """A per-entry value if present, else the top-level one, else None; it must be a finite number
    in [lo, hi] ((lo, hi) with open_range)."""
    value = entry.get(key, meta.get(key))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DatasetError(f"{path}: bad {key!r} value {str(value)[:40]!r}")
    inside = lo < value < hi if open_range else lo <= value <= hi
    if not inside:
        ends = f"({lo:g}, {hi:g})" if open_range else f"[{lo:g}, {hi:g}]"
        raise DatasetError(f"{path}: {key!r} must be in {ends}, got {value!r}")
    return float(value)


def extension(metas: list[dict], key: str, default: Any) -> Any:
    """A featvid extension key (fps, background, aabb, ...) from the first JSON that has it, else
    `default`; its value is checked by the extension_* readers below."""
    for meta in metas:
        if key in meta:
            return meta[key]
    return default


def extension_fps(value: object, path: Path) -> float:
    """The featvid "fps" key: a number in (0, MAX_FPS]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value)
                                                                             and 0 < value <= MAX_FPS):
        raise DatasetError(f"{path}: \"fps\" must be a positive number up to {MAX_FPS:g}, got {str(value)[:40]!r}")
    return float(value)


def extension_background(value: object, path: Path) -> tuple[float, float, float]:
    """The featvid "background" key: an RGB list of three numbers in [0, 1]."""
    ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(
        not isinstance(x, bool) and isinstance(x, (int, float)) and 0.0 <= x <= 1.0 for x in value)
    if not ok:
        raise DatasetError(f"{path}: \"background\" must be three numbers in [0, 1], got {str(value)[:60]}")
    return tuple(float(x) for x in value)  # type: ignore[return-value]


def extension_aabb(value: object, path: Path) -> torch.Tensor:
    """The featvid "aabb" key: [[x0, y0, z0], [x1, y1, z1]], finite, min < max, within MAX_WORLD
    -> [2, 3] float32 (the rule featvid.field.schema.read_aabb applies to runs and streams)."""
    try:
        box = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        box = np.zeros(0)
    if box.shape != (2, 3) or not np.isfinite(box).all() or not (box[0] < box[1]).all() \
            or float(np.abs(box).max()) > MAX_WORLD:
        raise DatasetError(f"{path}: \"aabb\" must be [[x0,y0,z0],[x1,y1,z1]] of finite numbers with min < max "
                           f"within {MAX_WORLD:g}, got {str(value)[:80]}")
    return torch.from_numpy(box).float()


def json_size(meta: dict, entry: dict, key: str, path: Path) -> int | None:
    """An image size key ("w", "h"): a whole number of pixels in 1..MAX_IMAGE_SIDE, or None."""
    value = json_number(meta, entry, key, path)
    if value is None:
        return None
    if value != int(value) or not 1 <= value <= MAX_IMAGE_SIDE:
        raise DatasetError(f"{path}: {key!r} must be a whole number of pixels in 1..{MAX_IMAGE_SIDE}, got {value!r}")
    return int(value)


def json_angle(meta: dict, entry: dict, key: str, path: Path) -> float | None:
    """A field of view key ("camera_angle_x"/"_y") in radians, strictly between 0 and pi, or None."""
    return json_number(meta, entry, key, path, 0.0, math.pi, open_range=True)


def check_intrinsics(fx: float, fy: float, cx: float, cy: float, height: int, width: int, where: str) -> None:
    """Focal lengths in (0, MAX_FOCAL] pixels; the principal point within an image size of the image
    (cx in [-W, 2W], cy in [-H, 2H]: further out, the rays miss the picture)."""
    for name, f in (("fl_x", fx), ("fl_y", fy)):
        if not (math.isfinite(f) and 0 < f <= MAX_FOCAL):
            raise DatasetError(f"{where}: focal length {name} must be in (0, {MAX_FOCAL:g}] pixels, got {f!r}")
    for name, c, size in (("cx", cx, width), ("cy", cy, height)):
        if not (math.isfinite(c) and -size <= c <= 2 * size):
            raise DatasetError(f"{where}: principal point {name} must be in [{-size}, {2 * size}] pixels "
                               f"for a {width}x{height} image, got {c!r}")


def check_image_size(height: int, width: int, where: str) -> None:
    """Both sides in 1..MAX_IMAGE_SIDE pixels."""
    if not (1 <= height <= MAX_IMAGE_SIDE and 1 <= width <= MAX_IMAGE_SIDE):
        raise DatasetError(f"{where}: image size {width}x{height} is outside 1..{MAX_IMAGE_SIDE} pixels a side")


def check_pose(m: np.ndarray, where: str) -> None:
    """A rigid camera-to-world matrix [4, 4]: rotation part orthonormal (R^T R = I within
    POSE_TOLERANCE), last row [0, 0, 0, 1], camera within MAX_WORLD of the origin. A scaled,
    sheared or all-zero matrix is refused (it cannot be inverted into rays, or bends them). A
    mirrored frame (determinant -1) is orthonormal and passes: some rigs' conventions are."""
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise DatasetError(f"{where}: must be a finite 4x4 matrix")
    if np.abs(m[3] - [0.0, 0.0, 0.0, 1.0]).max() > POSE_TOLERANCE:
        raise DatasetError(f"{where}: last row must be [0, 0, 0, 1], got {np.round(m[3], 6).tolist()}")
    R = m[:3, :3]
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    if err > POSE_TOLERANCE:
        raise DatasetError(f"{where}: not a rigid pose: its rotation part is not orthonormal "
                           f"(R^T R is off the identity by {err:.3g}, tolerance {POSE_TOLERANCE:g})")
    if float(np.abs(m[:3, 3]).max()) > MAX_WORLD:
        raise DatasetError(f"{where}: camera position {np.round(m[:3, 3], 3).tolist()} is beyond {MAX_WORLD:g} "
                           "world units")


def json_pose(entry: dict, path: Path, image: Path) -> np.ndarray:
    """An entry's "transform_matrix" (4x4, or 3x4 completed with [0, 0, 0, 1]) as float64 [4, 4]."""
    try:
        m = np.asarray(entry["transform_matrix"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{path}: {image.name} has no numeric 4x4 \"transform_matrix\"") from e
    if m.shape == (3, 4):
        m = np.concatenate([m, [[0.0, 0.0, 0.0, 1.0]]])
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise DatasetError(f"{path}: {image.name}: \"transform_matrix\" must be a finite 4x4 matrix (NaN or wrong shape)")
    check_pose(m, f"{path}: {image.name}: \"transform_matrix\"")
    return m


def parse_floats(path: Path, line_no: int, tokens: list[str]) -> list[float]:
    """Finite numbers from a line's tokens."""
    try:
        values = [float(x) for x in tokens]
    except ValueError:
        raise DatasetError(f"{path}: line {line_no}: not numbers: {' '.join(tokens)[:60]!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise DatasetError(f"{path}: line {line_no}: NaN or infinite value")
    return values
