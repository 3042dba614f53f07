"""Small builders for the data tests: known OpenCV cameras and a known subject, written in every layout
featvid reads (Blender JSON, N3DV, NHR/ReRF, per-frame NGP, COLMAP)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from featvid.data.cameras import Cameras, intrinsics_from_fov, look_at, opencv_to_opengl
# the makers the benchmarks use too live in the package
from featvid.data.fixtures import (SPHERE_CENTRE, SPHERE_RADIUS, sphere_images, write_poses_bounds,  # noqa: F401
                                   write_video)

# A world point every test camera sees, and where it is drawn in the images.
POINT = torch.tensor([0.3, -0.2, 0.25])


def ring_cameras(n: int, height: int, width: int, radius: float = 3.0, z: float = 1.0) -> Cameras:
    """n OpenCV cameras on a ring around the origin, looking at it."""
    a = torch.arange(n, dtype=torch.float32) * 2 * math.pi / n
    eye = torch.stack([radius * torch.cos(a), radius * torch.sin(a), torch.full_like(a, z)], -1)
    K = intrinsics_from_fov(math.radians(50), height, width).expand(n, 3, 3)
    return Cameras(K, look_at(eye, torch.zeros(3)), height, width)


def marked_image(cams: Cameras, i: int, value: int = 200, rgba: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    """A dark uint8 image (RGB or RGBA, fully opaque) with one bright pixel where POINT projects in camera i."""
    uv, _ = cams.project(POINT[None])
    x, y = (int(math.floor(c)) for c in uv[i, 0].tolist())
    img = np.full((cams.height, cams.width, 4 if rgba else 3), 20, np.uint8)
    if rgba:
        img[..., 3] = 255
    img[y, x, :3] = value
    return img, (x, y)


def write_png(path: Path, img: np.ndarray) -> None:
    """RGB(A) uint8 -> PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    code = cv2.COLOR_RGBA2BGRA if img.shape[-1] == 4 else cv2.COLOR_RGB2BGR
    assert cv2.imwrite(str(path), cv2.cvtColor(img, code))


def write_blender(folder: Path, cams_per_time: list[Cameras], split_views: dict[str, list[int]],
                  extension: bool = True, extra: dict | None = None) -> None:
    """A Blender JSON dataset of marked images: split name -> view indices, one time per Cameras."""
    T = len(cams_per_time)
    for split, views in split_views.items():
        frames = []
        for t, cams in enumerate(cams_per_time):
            for v in views:
                name = f"{split}/t{t}_v{v}"
                img, _ = marked_image(cams, v, value=100 + 20 * t, rgba=True)
                write_png(folder / f"{name}.png", img)
                frames.append({"file_path": f"./{name}.png" if extension else f"./{name}",
                               "time": t / max(1, T - 1),
                               "transform_matrix": opencv_to_opengl(cams.c2w[v]).tolist()})
        K = cams_per_time[0].K[0]
        meta = {"camera_angle_x": 2 * math.atan(0.5 * cams_per_time[0].width / float(K[0, 0])), "frames": frames}
        meta.update(extra or {})
        (folder / f"transforms_{split}.json").write_text(json.dumps(meta))


def frame_pattern(t: int, v: int, height: int, width: int) -> np.ndarray:
    """A smooth RGB uint8 test image that differs per frame and camera (codec-friendly)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 80 * np.sin(x / 5.0 + t)
    g = 128 + 80 * np.cos(y / 7.0 + v)
    b = np.full_like(x, 40 + 20 * t + 10 * v)
    return np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8)


def write_gray_video(path: Path, frames: list[np.ndarray], fps: int = 30) -> None:
    """A mask video the way capture tools write one: gray frames as yuv420p H.264 (limited range)."""
    write_video(path, [np.repeat(f[..., None], 3, -1) for f in frames], fps=fps, pix_fmt="yuv420p")


# ---- the capture layouts ------------------------------------------------------------------------

def write_campose(folder: Path, cams: Cameras) -> None:
    """NHR's CamPose.inf (columns z, x, y, t of c2w) and Intrinsic.inf (index, K rows, blank line)."""
    lines = []
    for c2w in cams.c2w.double().numpy():
        cols = [c2w[:3, 2], c2w[:3, 0], c2w[:3, 1], c2w[:3, 3]]
        lines.append(" ".join(f"{x:.9f}" for col in cols for x in col))
    (folder / "CamPose.inf").write_text("\n".join(lines) + "\n")
    blocks = []
    for i, K in enumerate(cams.K.double().numpy()):
        rows = "\n".join(" ".join(f"{x:.6f}" for x in row) for row in K)
        blocks.append(f"{i}\n{rows}\n")
    (folder / "Intrinsic.inf").write_text("\n".join(blocks))


def write_colmap_text(folder: Path, cams: Cameras, names: list[str], model: str = "PINHOLE",
                      extra: tuple[float, ...] = ()) -> None:
    """cameras.txt + images.txt of a COLMAP model: one camera entry per image (COLMAP's quaternion
    and translation are world-to-camera)."""
    folder.mkdir(parents=True, exist_ok=True)
    cam_lines, img_lines = ["# Camera list", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"], ["# Image list"]
    for i, (K, name) in enumerate(zip(cams.K.double().numpy(), names), start=1):
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        params = [fx, cx, cy] if model == "SIMPLE_PINHOLE" else [fx, fy, cx, cy]
        params += list(extra)
        cam_lines.append(f"{i} {model} {cams.width} {cams.height} " + " ".join(repr(float(p)) for p in params))
        q, t = colmap_pose(cams.c2w[i - 1])
        img_lines.append(f"{i} " + " ".join(repr(x) for x in q + t) + f" {i} {name}")
        img_lines.append("1.0 2.0 -1" if i % 2 else "")  # a points line, sometimes empty
    (folder / "cameras.txt").write_text("\n".join(cam_lines) + "\n")
    (folder / "images.txt").write_text("\n".join(img_lines) + "\n")


def colmap_pose(c2w: torch.Tensor) -> tuple[list[float], list[float]]:
    """OpenCV c2w [4, 4] -> COLMAP (qw, qx, qy, qz), (tx, ty, tz) world-to-camera."""
    from scipy.spatial.transform import Rotation

    w2c = np.linalg.inv(c2w.double().numpy())
    x, y, z, w = Rotation.from_matrix(w2c[:3, :3]).as_quat()
    return [float(w), float(x), float(y), float(z)], [float(v) for v in w2c[:3, 3]]


def write_colmap_binary(folder: Path, cams: Cameras, names: list[str], model_id: int = 1,
                        extra: tuple[float, ...] = ()) -> None:
    """cameras.bin + images.bin in COLMAP's binary layout (little-endian; see featvid.data.colmap_model)."""
    import struct

    folder.mkdir(parents=True, exist_ok=True)
    cam_bytes = struct.pack("<Q", len(cams))
    img_bytes = struct.pack("<Q", len(cams))
    for i, (K, name) in enumerate(zip(cams.K.double().numpy(), names), start=1):
        params = [K[0, 0], K[1, 1], K[0, 2], K[1, 2], *extra]
        cam_bytes += struct.pack("<iiQQ", i, model_id, cams.width, cams.height) + struct.pack(f"<{len(params)}d", *params)
        q, t = colmap_pose(cams.c2w[i - 1])
        img_bytes += struct.pack("<idddddddi", i, *q, *t, i) + name.encode() + b"\x00"
        img_bytes += struct.pack("<Q", 2) + struct.pack("<ddq", 1.0, 2.0, -1) + struct.pack("<ddq", 3.0, 4.0, 7)
    (folder / "cameras.bin").write_bytes(cam_bytes)
    (folder / "images.bin").write_bytes(img_bytes)


def write_ngp_frame(frame_dir: Path, cams: Cameras, images: np.ndarray, per_view: dict | None = None,
                    top: dict | None = None) -> None:
    """One frame folder of the per-frame NGP layout: images/<v>.png + transforms.json (OpenGL poses,
    per-view fl_x/fl_y/cx/cy/w/h as V^3 writes them)."""
    frames = []
    for v in range(len(cams)):
        write_png(frame_dir / "images" / f"{v}.png", images[v])
        K = cams.K[v]
        entry = {"file_path": f"images/{v}.png", "transform_matrix": opencv_to_opengl(cams.c2w[v]).tolist(),
                 "fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2]),
                 "w": cams.width, "h": cams.height}
        entry.update((per_view or {}).get(v, {}))
        frames.append(entry)
    meta = {"frames": frames, "aabb_scale": 1, "white_transparent": True}
    meta.update(top or {})
    (frame_dir / "transforms.json").write_text(json.dumps(meta))
