"""Per-frame NGP JSON loader (V^3 / HiFi4G layout): frame folders, per-view intrinsics, distortion."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from featvid.data import load_dataset
from featvid.errors import DatasetError
from tests.data.helpers import SPHERE_CENTRE, ring_cameras, sphere_images, write_ngp_frame

H, W, T, V = 24, 32, 3, 4


def write_capture(folder, T=T, per_view=None, top=None):
    cams = ring_cameras(V, H, W)
    for t in range(T):
        rgb, masks = sphere_images(cams, t)
        write_ngp_frame(folder / str(t), cams, np.concatenate([rgb, masks[..., None]], -1), per_view, top)
    return cams


def test_frames_views_cameras_and_alpha(tmp_path):
    cams = write_capture(tmp_path, top={"fps": 25})
    video = load_dataset(tmp_path)
    assert (video.format, video.num_frames, video.num_views, video.height, video.width) == ("ngp", T, V, H, W)
    assert video.fps == 25.0 and video.test_views == [0] and video.has_masks  # RGBA alpha
    assert video.cameras_at(1) is video.cameras_at(0)  # a fixed rig
    assert torch.allclose(video.cameras_at(2).c2w, cams.c2w, atol=1e-5)  # OpenGL poses converted back
    uv, _ = video.cameras_at(0).project(SPHERE_CENTRE[None])
    x, y = (int(c) for c in uv[3, 0])
    assert video.mask(2, 3)[y, x] > 0.99 and video.mask(2, 3)[0, 0] < 0.01


def test_views_are_matched_by_file_name_across_frames(tmp_path):
    cams = write_capture(tmp_path)
    meta = json.loads((tmp_path / "1" / "transforms.json").read_text())
    meta["frames"] = meta["frames"][::-1]
    (tmp_path / "1" / "transforms.json").write_text(json.dumps(meta))
    video = load_dataset(tmp_path)
    assert torch.allclose(video.cameras_at(1).c2w, cams.c2w, atol=1e-5)
    assert torch.equal(video.image(1, 2), load_dataset(tmp_path).image(1, 2))


def test_distortion_is_removed_once_per_view_at_load(tmp_path, monkeypatch):
    """A view recorded through a lens with k1 k2 p1 p2 comes back as the pinhole image."""
    coeffs = (-0.5, 0.2, 0.002, -0.003)
    cams = ring_cameras(V, H, W)
    y, x = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5  # a smooth full-frame pattern: displacement shows
    pattern = np.stack([128 + 90 * np.sin(x / 2.0) * np.cos(y / 2.5), 128 + 90 * np.cos((x + y) / 3.0),
                        np.full_like(x, 90)], -1).round().astype(np.uint8)
    rgb = np.stack([pattern] * V)
    # what the lens records: every distorted pixel shows the pinhole pixel that distorts onto it
    k = cams.K[1].double().numpy().copy()
    k[:2, 2] -= 0.5
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    pts = cv2.undistortPoints(np.stack([u.ravel(), v.ravel()], -1)[:, None, :], k, np.asarray(coeffs), None, None, k,
                              (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-9))[:, 0, :]
    mx, my = (pts[:, i].reshape(H, W).astype(np.float32) for i in range(2))
    recorded = rgb.copy()
    recorded[1] = cv2.remap(rgb[1], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    keys = dict(zip(("k1", "k2", "p1", "p2"), coeffs))
    for t in range(2):
        write_ngp_frame(tmp_path / str(t), cams, recorded, per_view={1: keys})
    calls = []
    real = cv2.initUndistortRectifyMap
    monkeypatch.setattr(cv2, "initUndistortRectifyMap", lambda *a: calls.append(1) or real(*a))
    video = load_dataset(tmp_path)
    assert video.summary()["undistorted_views"] == 1 and len(calls) == 1
    for t in (0, 1, 0, 1):
        restored = (video.image(t, 1).numpy() * 255).astype(float)
        video._cache.clear()
    assert len(calls) == 1  # the maps were built at load, never again
    inner = (slice(3, H - 3), slice(3, W - 3))
    before = np.abs(recorded[1][inner].astype(float) - rgb[1][inner]).mean()
    after = np.abs(restored[inner] - rgb[1][inner]).mean()
    assert after < 0.35 * before, (before, after)  # measured 4.71 -> 1.13


# ---- bad input ------------------------------------------------------------------------------------

def test_a_view_missing_in_one_frame(tmp_path):
    write_capture(tmp_path)
    meta = json.loads((tmp_path / "2" / "transforms.json").read_text())
    meta["frames"] = meta["frames"][:-1]
    (tmp_path / "2" / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"2/transforms\.json: views \['images/3'\] are not in both"):
        load_dataset(tmp_path)


def test_nan_pose_gap_and_bad_json(tmp_path):
    write_capture(tmp_path)
    meta = json.loads((tmp_path / "1" / "transforms.json").read_text())
    meta["frames"][2]["transform_matrix"][0][3] = float("nan")
    (tmp_path / "1" / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"1/transforms\.json: 2\.png: \"transform_matrix\" must be a finite"):
        load_dataset(tmp_path)
    (tmp_path / "1" / "transforms.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"1/transforms\.json: not valid JSON"):
        load_dataset(tmp_path)
    (tmp_path / "1").rename(tmp_path / "x1")
    (tmp_path / "x1" / "transforms.json").unlink()
    with pytest.raises(DatasetError, match=r"2: frame folders jump from 0 to 2"):
        load_dataset(tmp_path)


def test_views_of_different_sizes(tmp_path):
    write_capture(tmp_path, T=1, per_view={2: {"w": W + 8}})
    with pytest.raises(DatasetError, match=r"0/transforms\.json: 2\.png is 40x24, the other views are 32x24"):
        load_dataset(tmp_path)
