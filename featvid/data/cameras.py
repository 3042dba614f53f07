"""Cameras and rays, in the OpenCV convention (x right, y down, z forward).

Loaders convert OpenGL/Blender and LLFF poses with the functions at the bottom of this module,
so that nothing past the loader boundary ever sees another convention.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from featvid.errors import DatasetError

# OpenGL/Blender cameras look down -z with y up; OpenCV looks down +z with y down.
# c2w_opencv = c2w_opengl @ diag(1, -1, -1, 1)
_GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


@dataclass
class Cameras:
    """A batch of N pinhole cameras sharing one image size.

    K:   [N, 3, 3] float32 intrinsics (pixels; pixel centres at integer + 0.5).
    c2w: [N, 4, 4] float32 camera-to-world, OpenCV convention.
    """

    K: torch.Tensor
    c2w: torch.Tensor
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.K.ndim == 2:
            self.K = self.K[None]
        if self.c2w.ndim == 2:
            self.c2w = self.c2w[None]
        self.K = self.K.float()
        self.c2w = self.c2w.float()
        if self.K.shape[1:] != (3, 3) or self.c2w.shape[1:] != (4, 4) or len(self.K) != len(self.c2w):
            raise DatasetError(f"cameras: K {tuple(self.K.shape)} and c2w {tuple(self.c2w.shape)} do not match")
        if self.height <= 0 or self.width <= 0:
            raise DatasetError(f"cameras: bad image size {self.height}x{self.width}")
        if not (torch.isfinite(self.K).all() and torch.isfinite(self.c2w).all()):
            raise DatasetError("cameras: non-finite intrinsics or pose")

    def __len__(self) -> int:
        return self.K.shape[0]

    def __getitem__(self, index: int | slice | list[int] | torch.Tensor) -> "Cameras":
        if isinstance(index, int):
            index = [index]
        return Cameras(self.K[index], self.c2w[index], self.height, self.width)

    def to(self, device: torch.device | str) -> "Cameras":
        return Cameras(self.K.to(device), self.c2w.to(device), self.height, self.width)

    @property
    def centers(self) -> torch.Tensor:
        """Camera centres in world units. [N, 3]"""
        return self.c2w[:, :3, 3]

    def scaled(self, factor: float) -> "Cameras":
        """The same cameras for images resized by `factor` (e.g. 0.5 halves H and W)."""
        h, w = max(1, round(self.height * factor)), max(1, round(self.width * factor))
        K = self.K.clone()
        K[:, 0] *= w / self.width
        K[:, 1] *= h / self.height
        return Cameras(K, self.c2w.clone(), h, w)

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project world points into every camera.

        points: [P, 3] world. Returns (uv [N, P, 2] pixel coordinates, depth [N, P] along +z).
        """
        w2c = torch.linalg.inv(self.c2w)  # [N, 4, 4]
        p = points.to(self.c2w)
        cam = p @ w2c[:, :3, :3].transpose(1, 2) + w2c[:, None, :3, 3]  # [N, P, 3]
        depth = cam[..., 2]
        pix = cam @ self.K.transpose(1, 2)  # [N, P, 3]
        uv = pix[..., :2] / pix[..., 2:3]
        return uv, depth


def pixel_rays(cams: Cameras, cam_index: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through pixel coordinates (u right, v down; the centre of pixel (x, y) is (x + .5, y + .5)).

    cam_index: [M] long; u, v: [M] float. Returns (origins [M, 3], unit directions [M, 3]).
    """
    K = cams.K[cam_index]  # [M, 3, 3]
    c2w = cams.c2w[cam_index]  # [M, 4, 4]
    x = (u - K[:, 0, 2]) / K[:, 0, 0]
    y = (v - K[:, 1, 2]) / K[:, 1, 1]
    d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # [M, 3]
    d = (c2w[:, :3, :3] @ d_cam[..., None])[..., 0]
    d = d / d.norm(dim=-1, keepdim=True)
    return c2w[:, :3, 3].clone(), d


def image_rays(cams: Cameras, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All pixel-centre rays of camera `index`: (origins [H, W, 3], directions [H, W, 3])."""
    H, W = cams.height, cams.width
    dev = cams.K.device
    v, u = torch.meshgrid(torch.arange(H, device=dev, dtype=torch.float32) + 0.5,
                          torch.arange(W, device=dev, dtype=torch.float32) + 0.5, indexing="ij")
    idx = torch.full((H * W,), index, dtype=torch.long, device=dev)
    o, d = pixel_rays(cams, idx, u.reshape(-1), v.reshape(-1))
    return o.reshape(H, W, 3), d.reshape(H, W, 3)


def opengl_to_opencv(c2w_gl: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Camera-to-world from OpenGL/Blender (x right, y up, z back) to OpenCV. [..., 4, 4]"""
    c2w = torch.as_tensor(np.asarray(c2w_gl), dtype=torch.float32)
    return c2w @ _GL_TO_CV


def opencv_to_opengl(c2w_cv: torch.Tensor) -> torch.Tensor:
    """Inverse of `opengl_to_opencv` (the flip is its own inverse). [..., 4, 4]"""
    return c2w_cv.float() @ _GL_TO_CV


def llff_to_opencv(pose_3x4: np.ndarray) -> torch.Tensor:
    """LLFF `poses_bounds.npy` pose block (columns: down, right, back, translation) to OpenCV c2w.

    pose_3x4: [..., 3, 4]. Returns [..., 4, 4].
    """
    p = torch.as_tensor(np.asarray(pose_3x4), dtype=torch.float32)
    down, right, back, t = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    # OpenCV axes: x = right, y = down, z = forward = -back.
    R = torch.stack([right, down, -back], dim=-1)
    c2w = torch.zeros(p.shape[:-2] + (4, 4))
    c2w[..., :3, :3] = R
    c2w[..., :3, 3] = t
    c2w[..., 3, 3] = 1.0
    return c2w


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """OpenCV camera-to-world matrices looking from `eye` [N, 3] at `target` [N, 3] or [3]; up is world +z."""
    eye = torch.as_tensor(eye, dtype=torch.float32).reshape(-1, 3)
    target = torch.as_tensor(target, dtype=torch.float32).expand_as(eye)
    up = torch.tensor([0.0, 0.0, 1.0]) if up is None else torch.as_tensor(up, dtype=torch.float32)
    z = target - eye
    z = z / z.norm(dim=-1, keepdim=True)
    x = torch.cross(z, up.expand_as(z), dim=-1)
    # Looking straight up or down: pick any perpendicular x.
    bad = x.norm(dim=-1) < 1e-6
    if bad.any():
        x[bad] = torch.cross(z[bad], torch.tensor([0.0, 1.0, 0.0]).expand_as(z[bad]), dim=-1)
    x = x / x.norm(dim=-1, keepdim=True)
    y = torch.cross(z, x, dim=-1)  # y down in OpenCV
    c2w = torch.eye(4).repeat(len(eye), 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = x, y, z, eye
    return c2w


def intrinsics_from_fov(fov_x: float, height: int, width: int) -> torch.Tensor:
    """Pinhole K [3, 3] with horizontal field of view `fov_x` (radians), principal point at the centre."""
    f = 0.5 * width / np.tan(0.5 * fov_x)
    return torch.tensor([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], dtype=torch.float32)
