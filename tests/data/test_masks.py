"""Foreground masks from a folder (--masks DIR): binary 0/1 and 8-bit soft masks, what they do to
the images, and that they bound the scene box."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from featvid.data import load_dataset
from featvid.data.masks import mask_to_float
from featvid.errors import DatasetError
from tests.data.helpers import (
    SPHERE_CENTRE,
    SPHERE_RADIUS,
    ring_cameras,
    sphere_images,
    write_png,
    write_poses_bounds,
    write_video,
)

H, W, T, V = 24, 32, 2, 5
GREY = 150


def _n3dv_without_masks(folder):
    """N3DV layout, the sphere on a grey backdrop; returns the true masks uint8 [T, V, H, W] 0/255."""
    cams = ring_cameras(V, H, W)
    folder.mkdir(parents=True, exist_ok=True)
    write_poses_bounds(folder / "poses_bounds.npy", cams, near=1.0, far=6.0)
    per_t = [sphere_images(cams, t) for t in range(T)]
    for v in range(V):
        write_video(folder / f"cam{v:02d}.mp4",
                    [np.where(per_t[t][1][v][..., None] > 0, per_t[t][0][v], GREY).astype(np.uint8) for t in range(T)])
    return np.stack([np.stack([per_t[t][1][v] for v in range(V)]) for t in range(T)])


def test_mask_values():
    binary = np.array([[0, 1], [1, 0]], np.uint8)
    assert mask_to_float(binary).tolist() == [[0.0, 1.0], [1.0, 0.0]]  # 0/1 masks are scaled up
    soft = np.array([[0, 128, 255]], np.uint8)
    assert mask_to_float(soft)[0].tolist() == pytest.approx([0.0, 128 / 255, 1.0])
    assert mask_to_float(np.array([[0, 65535]], np.uint16)).tolist() == [[0.0, 1.0]]


def test_binary_mask_folder_composites_and_bounds_the_box(tmp_path):
    masks = _n3dv_without_masks(tmp_path / "cap")
    # one folder per camera, named by the camera's number only ("3" for cam03), frames 0/1 binary
    for v in range(V):
        for t in range(T):
            write_png(tmp_path / "masks" / str(v) / f"{t:05d}.png", np.repeat((masks[t, v] > 0)[..., None], 3, -1)
                      .astype(np.uint8))
    plain = load_dataset(tmp_path / "cap")
    assert not plain.has_masks and plain.auto_box().source == "cameras"
    video = load_dataset(tmp_path / "cap", masks=tmp_path / "masks")
    assert video.has_masks and video.summary()["mask_files"]
    outside = masks[1, 2] == 0
    img = video.image(1, 2).numpy()  # [H, W, 3]
    assert img[outside].min() > 0.97  # the grey backdrop is replaced by the dataset's white
    assert plain.image(1, 2).numpy()[outside].max() < (GREY + 3) / 255
    assert torch.equal(video.mask(1, 2) > 0.5, torch.from_numpy(masks[1, 2] > 0))
    box = video.box
    assert box.source == "masks"
    sphere = torch.stack([SPHERE_CENTRE - SPHERE_RADIUS, SPHERE_CENTRE + SPHERE_RADIUS])
    assert ((box.aabb[0] <= sphere[0]) & (box.aabb[1] >= sphere[1])).all()
    seen = plain.auto_box().aabb
    assert (box.aabb[1] - box.aabb[0]).prod() < 0.25 * (seen[1] - seen[0]).prod()


def test_soft_mask_blends_with_the_background_and_bad_mask_folders(tmp_path):
    _n3dv_without_masks(tmp_path / "cap")
    half = np.full((H, W), 128, np.uint8)  # an 8-bit mask: half coverage everywhere
    for v in range(V):
        for t in range(T):
            write_png(tmp_path / "soft" / f"cam{v:02d}" / f"{t}.png", np.repeat(half[..., None], 3, -1))
    plain = load_dataset(tmp_path / "cap").image(0, 1)
    soft = load_dataset(tmp_path / "cap", masks=tmp_path / "soft").image(0, 1)
    a = 128 / 255
    assert torch.allclose(soft, plain * a + (1 - a), atol=1e-5)  # composited onto white
    with pytest.raises(DatasetError, match="no such mask folder"):
        load_dataset(tmp_path / "cap", masks=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: holds no mask videos or mask folders named like the cameras"):
        load_dataset(tmp_path / "cap", masks=tmp_path / "empty")
    write_png(tmp_path / "small" / "cam00" / "0.png", np.zeros((H // 2, W // 2, 3), np.uint8))
    for v in range(1, V):
        write_png(tmp_path / "small" / f"cam{v:02d}" / "0.png", np.zeros((H, W, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"cam00/0\.png: mask is 16x12, the images \(cam00\.mp4\) are 32x24"):
        load_dataset(tmp_path / "cap", masks=tmp_path / "small")
