"""Known subjects written in layouts featvid reads: inputs for the tests and the benchmarks.

A striped sphere seen by any cameras (`sphere_images`), N3DV's poses_bounds.npy for OpenCV cameras
(`write_poses_bounds`) and near-lossless H.264 clips (`write_video`). benchmarks/capture_memory.py
builds its N3DV clip from them; the data tests check the loaders against them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from featvid.data.cameras import Cameras, image_rays


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


def write_video(path: Path, frames: list[np.ndarray], fps: int = 30, pix_fmt: str = "yuv444p") -> None:
    """Near-lossless H.264 (qp 0, yuv444p by default) mp4 of RGB uint8 frames, a keyframe every 2 frames."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"qp": "0", "preset": "ultrafast", "g": "2",
                                                                    "bf": "0"})
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = pix_fmt
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ---- a 3D subject every camera sees: a sphere, for the scene-box and mask tests -----------------

SPHERE_CENTRE = torch.tensor([0.3, -0.2, 0.25])
SPHERE_RADIUS = 0.4


def sphere_images(cams: Cameras, t: int = 0, centre: torch.Tensor = SPHERE_CENTRE,
                  radius: float = SPHERE_RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """Every camera's view of a shaded, striped sphere on white: (RGB uint8 [V, H, W, 3],
    masks uint8 [V, H, W] 0/255). The stripes shift with t, so frames differ."""
    rgb, masks = [], []
    for i in range(len(cams)):
        o, d = image_rays(cams, i)  # [H, W, 3]
        oc = o - centre
        b = (oc * d).sum(-1)
        disc = b * b - ((oc * oc).sum(-1) - radius * radius)
        hit = disc > 0
        s = -b - torch.sqrt(disc.clamp(min=0))
        p = o + s[..., None] * d
        n = (p - centre) / radius
        shade = 0.35 + 0.65 * n[..., 2].clamp(min=0) * 0.5 + 0.3 * (n @ torch.tensor([0.6, -0.5, 0.62])).clamp(min=0)
        stripe = 0.5 + 0.5 * torch.sin(12 * p[..., 0] + 9 * p[..., 2] + 0.5 * t)
        col = torch.stack([0.9 * shade, (0.3 + 0.6 * stripe) * shade, (1 - 0.7 * stripe) * shade], -1)
        img = torch.where(hit[..., None], col, torch.ones(3))
        rgb.append((img.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
        masks.append((hit.numpy() * 255).astype(np.uint8))
    return np.stack(rgb), np.stack(masks)
