"""N3DV loader: a tiny capture written by the test (near-lossless mp4s + poses_bounds.npy)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from featvid.data import load_dataset
from featvid.data.n3dv import read_poses_bounds
from featvid.errors import DatasetError
from tests.data.helpers import (
    POINT,
    frame_pattern,
    ring_cameras,
    write_poses_bounds,
    write_video,
)

H, W, T, V = 16, 24, 6, 3


def _write_capture(folder, frames=(T, T, T)):
    cams = ring_cameras(V, H, W)
    write_poses_bounds(folder / "poses_bounds.npy", cams)
    for v, n in enumerate(frames):
        write_video(folder / f"cam{v:02d}.mp4", [frame_pattern(t, v, H, W) for t in range(n)])
    return cams


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    folder = tmp_path_factory.mktemp("n3dv")
    return folder, _write_capture(folder)


def test_reads_cameras_frames_and_split(capture):
    folder, cams = capture
    video = load_dataset(folder)
    assert (video.num_frames, video.num_views, video.height, video.width) == (T, V, H, W)
    assert video.fps == pytest.approx(30.0)
    assert video.test_views == [0] and video.train_views == [1, 2]  # cam00 held out
    loaded = video.cameras_at(3)
    assert torch.allclose(loaded.c2w, cams.c2w, atol=1e-5)
    assert torch.allclose(loaded.K, cams.K, atol=1e-3)
    # a world point projects where the original OpenCV cameras put it
    assert torch.allclose(loaded.project(POINT[None])[0], cams.project(POINT[None])[0], atol=1e-3)
    s = video.summary()
    assert s["format"] == "n3dv" and s["frames"] == T and s["views"] == V
    # the box holds every camera's view between near (1) and far (6)
    assert (video.aabb[1] - video.aabb[0]).min() > 2.0


def test_frames_decode_in_any_order(capture):
    folder, _ = capture
    video = load_dataset(folder)
    # sequential, backwards (seek) and skipping around, across cameras
    for t, v in [(0, 0), (1, 0), (2, 1), (5, 2), (3, 0), (0, 2), (4, 1), (5, 0), (1, 1)]:
        expected = torch.from_numpy(frame_pattern(t, v, H, W)).float() / 255
        img = video.image(t, v)
        assert img.shape == (H, W, 3)
        assert (img - expected).abs().mean() < 2 / 255, (t, v)
    assert video.images(2, [0, 1, 2]).shape == (3, H, W, 3)


def test_downscale(capture):
    folder, cams = capture
    video = load_dataset(folder, downscale=2)
    assert (video.height, video.width) == (H // 2, W // 2)
    assert video.image(1, 1).shape == (H // 2, W // 2, 3)
    assert torch.allclose(video.cameras_at(0).K[:, 0, 0], cams.K[:, 0, 0] / 2)


def test_llff_conversion_matches_known_axes(tmp_path):
    # one camera at (1, 2, 3) looking along world +y, image "down" = world -z, "right" = world -x
    right, down, fwd = np.array([-1.0, 0, 0]), np.array([0, 0, -1.0]), np.array([0, 1.0, 0])
    pose = np.stack([down, right, -fwd, [1.0, 2.0, 3.0], [10, 20, 30]], -1)  # [3, 5]
    np.save(tmp_path / "poses_bounds.npy", np.concatenate([pose.reshape(15), [0.5, 9.0]])[None])
    c2w, hwf, bounds = read_poses_bounds(tmp_path / "poses_bounds.npy")
    assert torch.allclose(c2w[0, :3, :3], torch.tensor(np.stack([right, down, fwd], -1), dtype=torch.float32))
    assert c2w[0, :3, 3].tolist() == [1.0, 2.0, 3.0]
    assert hwf[0].tolist() == [10, 20, 30] and bounds[0].tolist() == [0.5, 9.0]


# ---- bad input ---------------------------------------------------------------------------------

def test_wrong_poses_bounds_shape(tmp_path):
    _write_capture(tmp_path)
    np.save(tmp_path / "poses_bounds.npy", np.zeros((V, 15)))
    with pytest.raises(DatasetError, match=r"poses_bounds\.npy: expected an array of shape \[cameras, 17\]"):
        load_dataset(tmp_path)


def test_pickled_poses_are_refused(tmp_path):
    _write_capture(tmp_path)
    np.save(tmp_path / "poses_bounds.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match=r"poses_bounds\.npy"):
        load_dataset(tmp_path)


def test_camera_count_mismatch(tmp_path):
    _write_capture(tmp_path)
    (tmp_path / "cam02.mp4").unlink()
    with pytest.raises(DatasetError, match=r"3 camera poses but 2 camNN\.mp4 videos"):
        load_dataset(tmp_path)


def test_video_shorter_than_the_others(tmp_path):
    _write_capture(tmp_path, frames=(T, T - 2, T))
    with pytest.raises(DatasetError, match=r"cam01\.mp4: video has 4 frames, shorter than cam00\.mp4 \(6\)"):
        load_dataset(tmp_path)


def test_corrupt_video(tmp_path):
    _write_capture(tmp_path)
    (tmp_path / "cam01.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetError, match=r"cam01\.mp4"):
        load_dataset(tmp_path)


def test_videos_without_poses(tmp_path):
    write_video(tmp_path / "cam00.mp4", [frame_pattern(0, 0, H, W)])
    with pytest.raises(DatasetError, match=r"no poses_bounds\.npy"):
        load_dataset(tmp_path)
