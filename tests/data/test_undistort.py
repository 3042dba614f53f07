"""Lens distortion: OpenCV's models undone once per camera, the same K afterwards."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from featvid.data.undistort import Distortion, Undistorter, distort_points
from featvid.errors import DatasetError

H, W = 48, 64
K = torch.tensor([[60.0, 0, 31.0], [0, 58.0, 25.0], [0, 0, 1]])


def _pattern(h: int, w: int) -> np.ndarray:
    """A smooth RGB pattern (periods of 12-20 px): resampling barely blurs it, displacement shows."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    r = 128 + 90 * np.sin(x / 2.0) * np.cos(y / 2.5)
    g = 128 + 90 * np.cos((x + y) / 3.0)
    return np.stack([r, g, np.full_like(r, 90)], -1).round().astype(np.uint8)


def _distorted(sharp: np.ndarray, dist: Distortion) -> np.ndarray:
    """What a lens with `dist` records of the pinhole image `sharp` (pixel centres at +0.5)."""
    # for every distorted pixel, the pinhole pixel it shows: invert the forward model numerically
    h, w = sharp.shape[:2]
    v, u = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    uv = np.stack([u.ravel(), v.ravel()], -1)
    k = K.double().numpy().copy()
    k[:2, 2] -= 0.5
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-9)
    pts = cv2.undistortPoints(uv[:, None, :] - 0.5, k, np.asarray(dist.coeffs), None, None, k, criteria)[:, 0, :]
    mapx = pts[:, 0].reshape(h, w).astype(np.float32)
    mapy = pts[:, 1].reshape(h, w).astype(np.float32)
    return cv2.remap(sharp, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("coeffs", [(-0.25, 0.08, 0.002, -0.001), (-0.2, 0.05, 0.0, 0.0, 0.01)])
def test_undistorting_recovers_the_pinhole_image(coeffs):
    dist = Distortion("opencv", coeffs)
    sharp = _pattern(H, W)
    recorded = _distorted(sharp, dist)
    inner = (slice(3, H - 3), slice(3, W - 3))  # the edges repeat pixels the sensor did not see
    assert np.abs(recorded[inner].astype(float) - sharp[inner]).mean() > 5  # measured 8.8 / 7.0
    restored = Undistorter(K, dist, H, W)(recorded)
    err = np.abs(restored[inner].astype(float) - sharp[inner]).mean()
    assert err < 2.0, err  # measured 1.33 / 1.27 (two bilinear resamplings)


def test_forward_model_moves_off_centre_points_and_keeps_the_principal_point():
    dist = Distortion("opencv", (-0.3, 0.1, 0.0, 0.0))
    uv = np.array([[31.0, 25.0], [60.0, 45.0]])
    out = distort_points(K, dist, uv)
    assert np.allclose(out[0], uv[0], atol=1e-6)
    assert np.linalg.norm(out[1] - uv[0]) < np.linalg.norm(uv[1] - uv[0])  # barrel: pulled inwards


def test_fisheye_and_bad_coefficients():
    fish = Undistorter(K, Distortion("fisheye", (0.05, 0.01, 0.0, 0.0)), H, W)
    assert fish(_pattern(H, W)).shape == (H, W, 3) and fish.nbytes == H * W * 6
    assert Distortion("opencv", (0.0, 0.0, 0.0, 0.0)).is_identity
    with pytest.raises(DatasetError, match="takes 4, 5 or 8 coefficients"):
        Distortion("opencv", (0.1, 0.2, 0.3))
    with pytest.raises(DatasetError, match="non-finite"):
        Distortion("opencv", (float("nan"), 0.0, 0.0, 0.0))
    with pytest.raises(DatasetError, match="maps are 64x48"):
        fish(np.zeros((10, 10, 3), np.uint8))
