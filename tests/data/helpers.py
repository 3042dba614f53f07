"""Small builders for the data tests: known OpenCV cameras written as Blender JSON or N3DV files."""
from __future__ import annotations

import json
import math
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from featvid.data.cameras import Cameras, intrinsics_from_fov, look_at, opencv_to_opengl

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


def opencv_to_llff(c2w: torch.Tensor) -> np.ndarray:
    """OpenCV c2w [N, 4, 4] -> LLFF pose block [N, 3, 4] (columns down, right, back, translation)."""
    R, t = c2w[:, :3, :3], c2w[:, :3, 3]
    return torch.stack([R[..., 1], R[..., 0], -R[..., 2], t], -1).numpy()


def write_poses_bounds(path: Path, cams: Cameras, near: float = 1.0, far: float = 6.0) -> None:
    """poses_bounds.npy [N, 17] for OpenCV cameras (square pixels, centred principal point)."""
    n = len(cams)
    hwf = np.stack([np.full(n, cams.height), np.full(n, cams.width), cams.K[:, 0, 0].numpy()], -1)[:, :, None]
    block = np.concatenate([opencv_to_llff(cams.c2w), hwf], -1)  # [N, 3, 5]
    arr = np.concatenate([block.reshape(n, 15), np.tile([[near, far]], (n, 1))], -1)
    np.save(path, arr.astype(np.float64))


def frame_pattern(t: int, v: int, height: int, width: int) -> np.ndarray:
    """A smooth RGB uint8 test image that differs per frame and camera (codec-friendly)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 80 * np.sin(x / 5.0 + t)
    g = 128 + 80 * np.cos(y / 7.0 + v)
    b = np.full_like(x, 40 + 20 * t + 10 * v)
    return np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 30) -> None:
    """Near-lossless H.264 (yuv444p, qp 0) mp4 of RGB uint8 frames, with a keyframe every 2 frames."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"qp": "0", "preset": "ultrafast", "g": "2",
                                                                    "bf": "0"})
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv444p"
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
