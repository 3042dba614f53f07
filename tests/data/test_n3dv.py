"""N3DV loader: a tiny capture written by the test in the real layout (camNN.mp4 + poses_bounds.npy,
cam00 held out, hwf for larger images than the videos), image folders, masks and bad input."""
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
    # no --aabb: the space the cameras see between near (1) and far (6), inside the frusta's box
    from featvid.data.scene_box import frustum_box

    box, frusta = video.aabb, frustum_box(video.cameras_at(0), video.depth_bounds)
    assert s["aabb_source"] == "cameras" and "near and far" in s["aabb_reason"]
    assert ((box[0] >= frusta[0] - 1e-4) & (box[1] <= frusta[1] + 1e-4)).all()
    assert ((box[0] < POINT) & (POINT < box[1])).all() and (box[1] - box[0]).prod() < 0.5 * (frusta[1] - frusta[0]).prod()


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
    with pytest.raises(DatasetError, match=r"cam01\.mp4: video has 4 frames, cam00\.mp4 has 6: every camera needs"):
        load_dataset(tmp_path)


def test_corrupt_video(tmp_path):
    _write_capture(tmp_path)
    (tmp_path / "cam01.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetError, match=r"cam01\.mp4"):
        load_dataset(tmp_path)


def test_videos_without_poses(tmp_path):
    write_video(tmp_path / "cam00.mp4", [frame_pattern(0, 0, H, W)])
    with pytest.raises(DatasetError, match=r"camNN videos but no poses_bounds\.npy"):
        load_dataset(tmp_path)


def test_nan_pose_and_bad_bounds(tmp_path):
    _write_capture(tmp_path)
    arr = np.load(tmp_path / "poses_bounds.npy")
    arr[1, 3] = np.nan
    np.save(tmp_path / "poses_bounds.npy", arr)
    with pytest.raises(DatasetError, match=r"poses_bounds\.npy: camera 1 \(row 1\) has a NaN or infinite pose"):
        load_dataset(tmp_path)
    arr[1, 3], arr[2, 15:] = 0.0, [5.0, 1.0]
    np.save(tmp_path / "poses_bounds.npy", arr)
    with pytest.raises(DatasetError, match=r"near and far bounds must satisfy 0 <= near < far"):
        load_dataset(tmp_path)


def test_different_frame_rates(tmp_path):
    _write_capture(tmp_path)
    write_video(tmp_path / "cam02.mp4", [frame_pattern(t, 2, H, W) for t in range(T)], fps=25)
    with pytest.raises(DatasetError, match=r"cam02\.mp4: video runs at 25\.0 fps, cam00\.mp4 at 30\.0 fps"):
        load_dataset(tmp_path)


def test_real_layout_hwf_image_folders_and_masks(tmp_path):
    """N3DV's hwf is for 2704x2028 images; frames extracted to camNN/images/; masks/camNN.mp4."""
    from tests.data.helpers import write_gray_video, write_png

    cams = ring_cameras(V, H, W)
    write_poses_bounds(tmp_path / "poses_bounds.npy", cams.scaled(4.0))  # hwf of 4x larger images
    for v in range(V):
        for t in range(2):
            write_png(tmp_path / f"cam{v:02d}" / "images" / f"{t:04d}.png", frame_pattern(t, v, H, W))
        mask = np.zeros((H, W), np.uint8)
        mask[:, : W // 2] = 255
        write_gray_video(tmp_path / "masks" / f"cam{v:02d}.mp4", [mask, mask])
    video = load_dataset(tmp_path)
    assert (video.num_frames, video.height, video.width, video.test_views) == (2, H, W, [0])
    assert torch.allclose(video.cameras_at(0).K, cams.K, atol=1e-3)  # the focal length scaled to the frames
    assert video.has_masks and video.fps == 30.0
    img = video.image(1, 2)  # the right half is background (white) after the masks
    assert img[:, W // 2 + 1:].min() > 0.97
    expected = torch.from_numpy(frame_pattern(1, 2, H, W)).float() / 255
    assert (img[:, : W // 2 - 1] - expected[:, : W // 2 - 1]).abs().max() < 3 / 255
