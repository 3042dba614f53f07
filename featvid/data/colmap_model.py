"""A reader of COLMAP sparse models: cameras and image poses, from the text or the binary files.

COLMAP writes `cameras.txt` / `images.txt` (`colmap model_converter --output_type TXT`) or
`cameras.bin` / `images.bin` (its default); `points3D` is not needed here. The formats are
COLMAP's documented ones (colmap.github.io/format.html, and `scripts/python/read_write_model.py`
in the COLMAP repository):

- cameras.txt: `CAMERA_ID MODEL WIDTH HEIGHT PARAMS...` a line; `#` starts a comment.
- images.txt: two lines an image, `IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`, then its 2D
  points (ignored; the line may be empty). (QW, QX, QY, QZ, T) is world-to-camera, camera axes
  OpenCV's (x right, y down, z forward).
- cameras.bin: uint64 count, then per camera int32 id, int32 model id, uint64 width, uint64
  height, float64 params (as many as the model has); little-endian.
- images.bin: uint64 count, then per image int32 id, 4 float64 quaternion, 3 float64
  translation, int32 camera id, NUL-terminated name, uint64 point count, then per point two
  float64 and an int64.

Why not pycolmap: its 4.2 wheel is 38 MB (135 MB installed) for what is ~200 lines here, and its
Python API moves between releases (rigs and frames in 4.x); these file formats have not. This reader was checked
against files pycolmap 4.2.1 wrote (docs/datasets.md).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from featvid.data.files import read_lines
from featvid.data.undistort import Distortion
from featvid.errors import DatasetError

# id -> (name, number of params); the models COLMAP defines (src/colmap/sensor/models.h)
CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
    4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
MODEL_PARAMS = {name: n for name, n in CAMERA_MODELS.values()}
MODEL_IDS = {name: i for i, (name, _) in CAMERA_MODELS.items()}
SUPPORTED = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV", "OPENCV_FISHEYE",
             "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE")


@dataclass(frozen=True)
class ColmapCamera:
    """One COLMAP camera: model name, image size in pixels, parameters as COLMAP orders them."""

    camera_id: int
    model: str
    width: int
    height: int
    params: tuple[float, ...]

    def intrinsics(self, source: Path) -> tuple[torch.Tensor, Distortion | None]:
        """(K [3, 3], distortion or None for a pinhole). COLMAP's pixel centres are at +0.5, as featvid's."""
        p = self.params
        if self.model not in SUPPORTED:
            raise DatasetError(f"{source}: camera {self.camera_id} uses the {self.model} model, which featvid "
                               f"cannot undistort (supported: {', '.join(SUPPORTED)})")
        if self.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"):
            fx = fy = p[0]
            cx, cy, extra = p[1], p[2], p[3:]
        else:
            fx, fy, cx, cy, extra = p[0], p[1], p[2], p[3], p[4:]
        if not (fx > 0 and fy > 0):
            raise DatasetError(f"{source}: camera {self.camera_id} has a focal length <= 0 ({fx}, {fy})")
        K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)
        if self.model == "SIMPLE_RADIAL":
            dist = Distortion("opencv", (extra[0], 0.0, 0.0, 0.0))
        elif self.model == "RADIAL":
            dist = Distortion("opencv", (extra[0], extra[1], 0.0, 0.0))
        elif self.model == "OPENCV":
            dist = Distortion("opencv", tuple(extra))
        elif self.model == "FULL_OPENCV":  # k1 k2 p1 p2 k3 k4 k5 k6: OpenCV's rational model, same order
            dist = Distortion("opencv", tuple(extra))
        elif self.model == "OPENCV_FISHEYE":
            dist = Distortion("fisheye", tuple(extra))
        elif self.model == "SIMPLE_RADIAL_FISHEYE":  # equidistant, theta_d = theta (1 + k theta^2)
            dist = Distortion("fisheye", (extra[0], 0.0, 0.0, 0.0))
        elif self.model == "RADIAL_FISHEYE":
            dist = Distortion("fisheye", (extra[0], extra[1], 0.0, 0.0))
        else:
            dist = None
        return K, None if dist is None or dist.is_identity else dist


@dataclass(frozen=True)
class ColmapImage:
    """One registered image: its name (relative to COLMAP's image folder), camera and pose."""

    image_id: int
    name: str
    camera_id: int
    qvec: tuple[float, float, float, float]  # world-to-camera rotation (w, x, y, z)
    tvec: tuple[float, float, float]  # world-to-camera translation

    def c2w(self) -> torch.Tensor:
        """Camera-to-world [4, 4], OpenCV axes; DatasetError for a zero quaternion (no rotation)."""
        w, x, y, z = self.qvec
        n = math.sqrt(w * w + x * x + y * y + z * z)
        if n < 1e-12:
            raise DatasetError(f"image {self.name}: its quaternion (QW QX QY QZ) is zero, not a rotation")
        w, x, y, z = w / n, x / n, y / n, z / n
        R = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ])
        out = np.eye(4)
        out[:3, :3] = R.T
        out[:3, 3] = -R.T @ np.asarray(self.tvec)
        return torch.tensor(out, dtype=torch.float32)


def find_model(folder: Path) -> Path | None:
    """The folder holding cameras.{bin,txt} + images.{bin,txt}: sparse/0, sparse, colmap/sparse/0,
    colmap/sparse, or the dataset folder itself."""
    for sub in ("sparse/0", "sparse", "colmap/sparse/0", "colmap/sparse", "."):
        d = folder / sub
        for ext in ("bin", "txt"):
            if (d / f"cameras.{ext}").is_file() and (d / f"images.{ext}").is_file():
                return d
    return None


def _finite(values, what: str) -> None:
    if not all(math.isfinite(v) for v in values):
        raise DatasetError(f"{what}: NaN or infinite value")


def read_cameras_text(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    for i, line in enumerate(read_lines(path), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        e = line.split()
        try:
            cam_id, model, width, height = int(e[0]), e[1], int(e[2]), int(e[3])
            params = tuple(float(x) for x in e[4:])
        except (IndexError, ValueError):
            raise DatasetError(f"{path}: line {i}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS...") from None
        if model not in MODEL_PARAMS:
            raise DatasetError(f"{path}: line {i}: unknown camera model {model!r}")
        if len(params) != MODEL_PARAMS[model]:
            raise DatasetError(f"{path}: line {i}: {model} takes {MODEL_PARAMS[model]} parameters, got {len(params)}")
        _finite(params, f"{path}: line {i}")
        cams[cam_id] = ColmapCamera(cam_id, model, width, height, params)
    return cams


def read_images_text(path: Path) -> list[ColmapImage]:
    images = []
    lines = read_lines(path)
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        e = line.split()
        try:
            image_id = int(e[0])
            q = tuple(float(x) for x in e[1:5])
            t = tuple(float(x) for x in e[5:8])
            cam_id = int(e[8])
            name = " ".join(e[9:])
        except (IndexError, ValueError):
            raise DatasetError(f"{path}: line {i}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME") from None
        if not name:
            raise DatasetError(f"{path}: line {i}: image {image_id} has no name")
        _finite(q + t, f"{path}: line {i} (image {name})")
        images.append(ColmapImage(image_id, name, cam_id, q, t))  # type: ignore[arg-type]
        i += 1  # the image's 2D points line (possibly empty)
    return images


class _Reader:
    """Little-endian struct reads with a clear error at a truncated file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data = path.read_bytes()
        except OSError as e:
            raise DatasetError(f"{path}: cannot read: {e.strerror or e}") from e
        self.pos = 0

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise DatasetError(f"{self.path}: truncated at byte {self.pos} (not a COLMAP binary model, or cut short)")
        out = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return out

    def name(self) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise DatasetError(f"{self.path}: truncated image name at byte {self.pos}")
        raw = self.data[self.pos:end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DatasetError(f"{self.path}: image name at byte {self.pos} is not UTF-8") from None


def read_cameras_binary(path: Path) -> dict[int, ColmapCamera]:
    r = _Reader(path)
    (count,) = r.read("Q")
    cams = {}
    for _ in range(count):
        cam_id, model_id, width, height = r.read("iiQQ")
        if model_id not in CAMERA_MODELS:
            raise DatasetError(f"{path}: camera {cam_id} has unknown model id {model_id}")
        model, n = CAMERA_MODELS[model_id]
        params = r.read("d" * n)
        _finite(params, f"{path}: camera {cam_id}")
        cams[cam_id] = ColmapCamera(cam_id, model, int(width), int(height), tuple(params))
    return cams


def read_images_binary(path: Path) -> list[ColmapImage]:
    r = _Reader(path)
    (count,) = r.read("Q")
    images = []
    for _ in range(count):
        image_id, qw, qx, qy, qz, tx, ty, tz, cam_id = r.read("idddddddi")
        name = r.name()
        (points,) = r.read("Q")
        if r.pos + 24 * points > len(r.data):
            raise DatasetError(f"{path}: truncated in the points of image {name}")
        r.pos += 24 * points  # x, y (float64) and point3D id (int64) per point
        _finite((qw, qx, qy, qz, tx, ty, tz), f"{path}: image {name}")
        images.append(ColmapImage(image_id, name, cam_id, (qw, qx, qy, qz), (tx, ty, tz)))
    return images


def read_model(folder: Path) -> tuple[dict[int, ColmapCamera], list[ColmapImage], Path]:
    """(cameras by id, images, the file the images came from) of the model in `folder`: the
    binary files when present, else the text ones."""
    if (folder / "cameras.bin").is_file() and (folder / "images.bin").is_file():
        cams, images_path = read_cameras_binary(folder / "cameras.bin"), folder / "images.bin"
        images = read_images_binary(images_path)
    else:
        cams, images_path = read_cameras_text(folder / "cameras.txt"), folder / "images.txt"
        images = read_images_text(images_path)
    if not images:
        raise DatasetError(f"{images_path}: no registered images")
    for im in images:
        if im.camera_id not in cams:
            raise DatasetError(f"{images_path}: image {im.name} refers to camera {im.camera_id}, "
                               f"which the cameras file does not have")
    return cams, images, images_path
