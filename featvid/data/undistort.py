"""Lens distortion: OpenCV's radial-tangential and fisheye models, undistorted once per camera.

A loader that reads distortion coefficients (NGP JSON `k1 k2 p1 p2 [k3]`, COLMAP `OPENCV`,
`RADIAL`, `FULL_OPENCV`, `OPENCV_FISHEYE`, ...) builds one `Undistorter` per camera at load
time: `cv2.initUndistortRectifyMap` computes, for every pixel of the undistorted image, where
it lies in the distorted one, and each frame is then one `cv2.remap` (bilinear). The maps are
never rebuilt per frame or per training iteration. The undistorted image keeps the camera's
pinhole intrinsics K, so the cameras past the loader are plain pinholes; pixels that would come
from outside the sensor repeat the nearest edge pixel.

Pixel convention: featvid's K puts pixel centres at integer + 0.5 (as COLMAP and NGP do);
OpenCV's maps put them at integers, so the principal point is shifted by half a pixel for
OpenCV and back.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from featvid.errors import DatasetError

MODELS = ("opencv", "fisheye")


@dataclass(frozen=True)
class Distortion:
    """Distortion coefficients of one camera.

    model "opencv": (k1, k2, p1, p2[, k3[, k4, k5, k6]]) -- OpenCV's order, radial k and tangential p.
    model "fisheye": (k1, k2, k3, k4) -- OpenCV's fisheye (equidistant) model.
    """

    model: str
    coeffs: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise DatasetError(f"unknown distortion model {self.model!r} (known: {', '.join(MODELS)})")
        n = len(self.coeffs)
        if (self.model == "opencv" and n not in (4, 5, 8)) or (self.model == "fisheye" and n != 4):
            raise DatasetError(f"distortion model {self.model} takes {'4, 5 or 8' if self.model == 'opencv' else 4} "
                               f"coefficients, got {n}")
        if not all(np.isfinite(c) for c in self.coeffs):
            raise DatasetError(f"non-finite distortion coefficients {list(self.coeffs)}")

    @property
    def is_identity(self) -> bool:
        """No distortion at all (every coefficient zero)."""
        return all(c == 0.0 for c in self.coeffs)

    def to_dict(self) -> dict:
        return {"model": self.model, "coeffs": [float(c) for c in self.coeffs]}


def _opencv_K(K: torch.Tensor) -> np.ndarray:
    """featvid K (pixel centres at +0.5) -> OpenCV's (pixel centres at integers). [3, 3] float64"""
    k = K.double().numpy().copy()
    k[0, 2] -= 0.5
    k[1, 2] -= 0.5
    return k


class Undistorter:
    """Removes one camera's lens distortion from its images (maps built once, here).

    K: [3, 3] intrinsics of the distorted images on disk (featvid convention); height, width: their size.
    The undistorted image has the same size and the same K.
    """

    def __init__(self, K: torch.Tensor, distortion: Distortion, height: int, width: int) -> None:
        self.distortion = distortion
        self.height, self.width = height, width
        k = _opencv_K(K)
        d = np.asarray(distortion.coeffs, dtype=np.float64)
        size = (width, height)
        # fixed-point maps (CV_16SC2 + interpolation table): 6 bytes a pixel instead of 8, and a faster remap
        if distortion.model == "fisheye":
            self._map1, self._map2 = cv2.fisheye.initUndistortRectifyMap(k, d, np.eye(3), k, size, cv2.CV_16SC2)
        else:
            self._map1, self._map2 = cv2.initUndistortRectifyMap(k, d, None, k, size, cv2.CV_16SC2)

    @property
    def nbytes(self) -> int:
        """Memory held by the maps, bytes."""
        return int(self._map1.nbytes + self._map2.nbytes)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        """Undistort an image [H, W] or [H, W, C] (any dtype cv2.remap takes) -> same shape."""
        if img.shape[:2] != (self.height, self.width):
            raise DatasetError(f"undistort: image is {img.shape[1]}x{img.shape[0]}, the camera's maps are "
                               f"{self.width}x{self.height}")
        return cv2.remap(img, self._map1, self._map2, interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)


def distort_points(K: torch.Tensor, distortion: Distortion, uv: np.ndarray) -> np.ndarray:
    """Where undistorted pixel positions uv [N, 2] (featvid convention) land in the distorted image.

    The forward model, for tests and for writing distorted test images. Returns [N, 2].
    """
    k = K.double().numpy()
    x = (uv[:, 0] - k[0, 2]) / k[0, 0]
    y = (uv[:, 1] - k[1, 2]) / k[1, 1]
    pts = np.stack([x, y, np.ones_like(x)], -1)[:, None, :]  # [N, 1, 3] normalised camera rays
    d = np.asarray(distortion.coeffs, dtype=np.float64)
    if distortion.model == "fisheye":
        out, _ = cv2.fisheye.projectPoints(pts, np.zeros(3), np.zeros(3), _opencv_K(K), d)
    else:
        out, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), _opencv_K(K), d)
    return out[:, 0, :] + 0.5
