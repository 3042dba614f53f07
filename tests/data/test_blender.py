"""D-NeRF/Blender JSON loader: conventions, intrinsics, grouping by time, and every bad input."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from featvid.data import MultiViewVideo, load_dataset
from featvid.errors import DatasetError
from tests.data.helpers import (
    POINT,
    marked_image,
    ring_cameras,
    write_blender,
    write_png,
)


@pytest.fixture
def rig(tmp_path):
    """3 times x (3 train + 1 test) views of a fixed rig, 24 x 32 px, RGBA."""
    cams = ring_cameras(4, 24, 32)
    write_blender(tmp_path, [cams] * 3, {"train": [0, 1, 2], "test": [3]})
    return tmp_path, cams


def test_cameras_and_projection_round_trip(rig):
    folder, cams = rig
    video = load_dataset(folder)
    assert isinstance(video, MultiViewVideo)
    assert (video.num_frames, video.num_views, video.height, video.width) == (3, 4, 24, 32)
    assert video.train_views == [0, 1, 2] and video.test_views == [3]
    loaded = video.cameras_at(1)
    assert torch.allclose(loaded.c2w, cams.c2w, atol=1e-5)
    assert torch.allclose(loaded.K, cams.K, atol=1e-3)
    # the point projects with the loaded cameras onto the pixel that was drawn for it
    uv, depth = loaded.project(POINT[None])
    assert (depth > 0).all()
    for v in range(4):
        _, (x, y) = marked_image(cams, v)
        assert (int(uv[v, 0, 0]), int(uv[v, 0, 1])) == (x, y)
        img = video.image(2, v)
        assert img.shape == (24, 32, 3) and img.dtype == torch.float32
        assert tuple(np.unravel_index(int(img.sum(-1).argmax()), (24, 32))) == (y, x)
        assert img[y, x, 0] == pytest.approx((100 + 20 * 2) / 255, abs=1e-6)
    assert video.images(0, [3, 0]).shape == (2, 24, 32, 3)


def test_time_groups_defaults_and_summary(rig):
    folder, _ = rig
    video = load_dataset(folder / "transforms_train.json")  # the JSON file itself is accepted too
    assert video.fps == 30.0 and video.background == (1.0, 1.0, 1.0)
    assert video.cameras_at(0) is video.cameras_at(2)  # a fixed rig shares its cameras
    s = video.summary()
    assert s["format"] == "blender" and s["frames"] == 3 and s["views"] == 4 and s["image_size"] == [24, 32]
    assert s["test_views"] == [3] and s["fixed_rig"] is True
    json.dumps(s)
    # no aabb key: the box is centred near where the cameras look (the origin) and holds it
    assert (video.aabb[0] < 0).all() and (video.aabb[1] > 0).all()
    assert video.aabb.abs().max() < 3.0


def test_extension_keys_alpha_and_aabb_override(tmp_path):
    cams = ring_cameras(2, 16, 16)
    write_blender(tmp_path, [cams, cams], {"train": [0, 1]},
                  extra={"aabb": [[-1, -2, -3], [1, 2, 3]], "fps": 24, "background": [0, 0, 1]})
    # make one pixel half transparent to check compositing onto the stated background
    img, _ = marked_image(cams, 0, rgba=True)
    img[0, 0] = [200, 100, 0, 128]
    write_png(tmp_path / "train" / "t0_v0.png", img)
    video = load_dataset(tmp_path)
    assert video.fps == 24.0 and video.background == (0.0, 0.0, 1.0)
    assert video.aabb.tolist() == [[-1, -2, -3], [1, 2, 3]]
    a = 128 / 255
    assert torch.allclose(video.image(0, 0)[0, 0], torch.tensor([200 / 255 * a, 100 / 255 * a, 1 - a]), atol=1e-6)
    assert video.test_views == []
    box = torch.tensor([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]])
    assert torch.equal(load_dataset(tmp_path, aabb=box).aabb, box)


def test_intrinsics_per_frame_win_and_paths_without_extension(tmp_path):
    cams = ring_cameras(2, 20, 30)
    write_blender(tmp_path, [cams], {"train": [0, 1]}, extension=False)
    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    del meta["camera_angle_x"]
    meta.update({"fl_x": 40.0, "fl_y": 41.0, "cx": 14.0, "cy": 9.5, "w": 30, "h": 20})
    meta["frames"][1].update({"fl_x": 50.0, "fl_y": 52.0, "cx": 15.5})
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    K = load_dataset(tmp_path).cameras_at(0).K
    assert K[0].tolist() == [[40.0, 0, 14.0], [0, 41.0, 9.5], [0, 0, 1]]
    assert K[1].tolist() == [[50.0, 0, 15.5], [0, 52.0, 9.5], [0, 0, 1]]


def test_downscale_halves_images_and_intrinsics(rig):
    folder, cams = rig
    video = load_dataset(folder, downscale=2)
    assert (video.height, video.width) == (12, 16)
    assert video.image(0, 0).shape == (12, 16, 3)
    assert torch.allclose(video.cameras_at(0).K[0, 0, 0], cams.K[0, 0, 0] / 2)
    with pytest.raises(DatasetError, match="downscale"):
        load_dataset(folder, downscale=0.5)


def test_monocular_moving_camera(tmp_path):
    ring = ring_cameras(5, 16, 16)
    per_time = [ring[[i]] for i in range(5)]  # one image per time, the camera moves
    write_blender(tmp_path, per_time, {"train": [0]})
    video = load_dataset(tmp_path)
    assert (video.num_frames, video.num_views) == (5, 1)
    assert video.test_views == [] and video.summary()["format"] == "blender-monocular"
    assert torch.allclose(video.cameras_at(3).c2w[0], ring.c2w[3], atol=1e-5)


def test_views_matched_by_pose_when_file_order_changes(tmp_path):
    cams = ring_cameras(3, 16, 16)
    write_blender(tmp_path, [cams, cams], {"train": [0, 1, 2]})
    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    meta["frames"][3:] = meta["frames"][3:][::-1]  # time 1 lists its views in reverse
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    video = load_dataset(tmp_path)
    assert torch.allclose(video.cameras_at(1).c2w, cams.c2w, atol=1e-5)
    assert torch.equal(video.image(1, 0), video.image(1, 0))
    _, (x, y) = marked_image(cams, 2)
    assert float(video.image(1, 2)[y, x].sum()) > 1.0


# ---- bad input ---------------------------------------------------------------------------------

def test_missing_image(rig):
    folder, _ = rig
    (folder / "train" / "t1_v2.png").unlink()
    with pytest.raises(DatasetError, match=r"transforms_train\.json.*missing image.*t1_v2"):
        load_dataset(folder)


def test_unreadable_image(rig):
    folder, _ = rig
    (folder / "test" / "t0_v3.png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match=r"t0_v3\.png.*unreadable"):
        load_dataset(folder)


def test_truncated_png_fails_when_read(rig):
    folder, _ = rig
    path = folder / "train" / "t0_v1.png"
    path.write_bytes(path.read_bytes()[:40])  # header intact, pixels gone
    video = load_dataset(folder)
    with pytest.raises(DatasetError, match=r"t0_v1\.png"):
        video.image(0, 1)


def test_inconsistent_image_sizes(rig):
    folder, cams = rig
    write_png(folder / "train" / "t1_v1.png", np.zeros((24, 30, 4), np.uint8))
    with pytest.raises(DatasetError, match=r"inconsistent image sizes.*t1_v1\.png"):
        load_dataset(folder)


def test_time_with_no_images(rig):
    folder, _ = rig
    meta = json.loads((folder / "transforms_test.json").read_text())
    meta["frames"] = [f for f in meta["frames"] if f["time"] != 0.5]
    (folder / "transforms_test.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"transforms_test\.json: no images at time 0\.5"):
        load_dataset(folder)


def test_gap_in_evenly_spaced_times(tmp_path):
    cams = ring_cameras(2, 16, 16)
    write_blender(tmp_path, [cams] * 5, {"train": [0, 1]})
    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    meta["frames"] = [f for f in meta["frames"] if f["time"] != 0.5]
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"no images at time\(s\) \[0\.5\]"):
        load_dataset(tmp_path)


def test_view_missing_at_one_time(rig):
    folder, _ = rig
    meta = json.loads((folder / "transforms_train.json").read_text())
    del meta["frames"][4]
    (folder / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"time 0\.5 has 2 images, other times have 3"):
        load_dataset(folder)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(frames=[]), "no images"),
    (lambda m: m["frames"][0].pop("transform_matrix"), "transform_matrix"),
    (lambda m: m["frames"][0].update(transform_matrix=[[1, 0], [0, 1]]), "4x4"),
    (lambda m: m.pop("camera_angle_x"), "focal length"),
    (lambda m: m.update(fps=-1), "fps"),
    (lambda m: m.update(background=[2, 0, 0]), "background"),
    (lambda m: m.update(aabb=[1, 2, 3]), "aabb"),
    (lambda m: m.update(aabb=[[1, 1, 1], [0, 0, 0]]), "aabb"),
])
def test_bad_json_values(rig, edit, message):
    folder, _ = rig
    meta = json.loads((folder / "transforms_train.json").read_text())
    edit(meta)
    (folder / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=message):
        load_dataset(folder)


def test_not_json(rig):
    folder, _ = rig
    (folder / "transforms_train.json").write_text("{oops")
    with pytest.raises(DatasetError, match=r"transforms_train\.json: not valid JSON"):
        load_dataset(folder)


def test_empty_missing_and_foreign_folders(tmp_path):
    with pytest.raises(DatasetError, match="empty folder"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="no such dataset folder"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError, match="not a dataset"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset(tmp_path / "notes.txt")


def test_out_of_range_indices(rig):
    folder, _ = rig
    video = load_dataset(folder)
    with pytest.raises(DatasetError, match="frame 3 out of range"):
        video.image(3, 0)
    with pytest.raises(DatasetError, match="view 4 out of range"):
        video.image(0, 4)
    with pytest.raises(DatasetError, match="frame -1"):
        video.cameras_at(-1)


def test_camera_angle_matches_fov(tmp_path):
    cams = ring_cameras(2, 16, 24)
    write_blender(tmp_path, [cams], {"train": [0, 1]})
    K = load_dataset(tmp_path).cameras_at(0).K[0]
    assert float(K[0, 0]) == pytest.approx(0.5 * 24 / math.tan(math.radians(25)), rel=1e-5)
    assert (float(K[0, 2]), float(K[1, 2])) == (12.0, 8.0)
