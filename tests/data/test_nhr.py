"""NHR / ReRF loader: CamPose.inf + Intrinsic.inf, per-camera videos (ReRF) or frame folders (NHR)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from featvid.data import load_dataset
from featvid.data.nhr import read_campose, read_intrinsic
from featvid.errors import DatasetError
from tests.data.helpers import (
    SPHERE_CENTRE,
    ring_cameras,
    sphere_images,
    write_campose,
    write_gray_video,
    write_png,
    write_video,
)

H, W, T, V = 24, 32, 3, 5
GREY = 150  # the capture's own background, which masks replace by the dataset's (white)


def write_rerf(folder, frames=(T,) * V, masks=True, fps=(30,) * V, background=GREY):
    """ReRF layout: image/NNN.mp4 and mask/NNN.mp4, sphere on grey (or another background value)."""
    cams = ring_cameras(V, H, W)
    write_campose(folder, cams)
    per_t = [sphere_images(cams, t) for t in range(max(frames))]
    for v in range(V):
        rgb = [np.where(per_t[t][1][v][..., None] > 0, per_t[t][0][v], background).astype(np.uint8)
               for t in range(frames[v])]
        write_video(folder / "image" / f"{v:03d}.mp4", rgb, fps=fps[v])
        if masks:
            write_gray_video(folder / "mask" / f"{v:03d}.mp4", [per_t[t][1][v] for t in range(frames[v])], fps=fps[v])
    return cams


def write_nhr_frames(folder):
    """NHR layout: img/<t>/img_VVVV.png with masks in img/<t>/mask/."""
    cams = ring_cameras(V, H, W)
    write_campose(folder, cams)
    for t in range(T):
        rgb, masks = sphere_images(cams, t)
        for v in range(V):
            write_png(folder / "img" / str(t) / f"img_{v:04d}.png", np.where(masks[v][..., None] > 0, rgb[v], GREY)
                      .astype(np.uint8))
            write_png(folder / "img" / str(t) / "mask" / f"img_{v:04d}.png", np.repeat(masks[v][..., None], 3, -1))
    return cams


@pytest.fixture(scope="module")
def rerf(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rerf")
    return folder, write_rerf(folder)


def test_campose_columns_are_z_x_y_t_of_camera_to_world(tmp_path):
    # a camera at (1, 2, 3) looking along world +y, image down = world -z, image right = world +x
    right, down, fwd, centre = [1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0], [1.0, 2.0, 3.0]
    (tmp_path / "CamPose.inf").write_text(" ".join(str(x) for x in fwd + right + down + centre) + "\n\n")
    c2w = read_campose(tmp_path / "CamPose.inf")
    assert c2w.shape == (1, 4, 4)
    assert c2w[0, :3, :3].tolist() == torch.tensor([right, down, fwd]).T.tolist() and c2w[0, :3, 3].tolist() == centre
    (tmp_path / "Intrinsic.inf").write_text("0\n100 0 50.5\n0 101 40\n0 0 1\n\n1\n200 0 60\n0 200 45\n0 0 1\n\n")
    K = read_intrinsic(tmp_path / "Intrinsic.inf")
    assert K[1].tolist() == [[200, 0, 60], [0, 200, 45], [0, 0, 1]] and K[0, 0, 2] == 50.5


def test_rerf_videos_with_masks(rerf):
    folder, cams = rerf
    video = load_dataset(folder)
    assert (video.format, video.num_frames, video.num_views, video.height, video.width) == ("nhr", T, V, H, W)
    assert video.test_views == [0] and video.fps == pytest.approx(30.0) and video.has_masks
    assert torch.allclose(video.cameras_at(0).c2w, cams.c2w, atol=1e-5)
    assert torch.allclose(video.cameras_at(0).K, cams.K, atol=1e-4)
    # the sphere's centre lands where the masks say the sphere is
    uv, _ = video.cameras_at(0).project(SPHERE_CENTRE[None])
    m = video.mask(1, 2)
    x, y = (int(c) for c in uv[2, 0])
    assert m[y, x] > 0.9 and m[0, 0] < 0.1
    # masks composite onto the dataset's white background: the grey capture background is gone
    img = video.image(1, 2)
    assert img[0, 0].min() > 0.97 and (img[y, x] - torch.ones(3)).abs().max() > 0.1
    assert load_dataset(folder, masks="none").image(1, 2)[0, 0].max() == pytest.approx(GREY / 255, abs=2 / 255)


def test_nhr_frame_folders_and_downscale(tmp_path):
    cams = write_nhr_frames(tmp_path)
    video = load_dataset(tmp_path, downscale=2)
    assert (video.num_frames, video.num_views, video.height, video.width) == (T, V, H // 2, W // 2)
    assert video.fps == 30.0 and video.has_masks  # image folders: the default frame rate
    assert torch.allclose(video.cameras_at(2).K[:, 0, 0], cams.K[:, 0, 0] / 2)
    assert video.image(2, 4).shape == (H // 2, W // 2, 3) and video.image(2, 4)[0, 0].min() > 0.97


# ---- bad input (the CLI's one-line errors are in test_cli_data.py) ----------------------------------

def test_pose_count_differs_from_the_videos(tmp_path):
    write_rerf(tmp_path, masks=False)
    (tmp_path / "image" / "003.mp4").unlink()
    with pytest.raises(DatasetError, match=r"CamPose\.inf: 5 camera poses but 4 cameras' images in .*image"):
        load_dataset(tmp_path)


def test_nan_and_non_rotation_poses(tmp_path):
    write_rerf(tmp_path, masks=False)
    lines = (tmp_path / "CamPose.inf").read_text().splitlines()
    good = list(lines)
    lines[2] = " ".join(["nan"] + lines[2].split()[1:])
    (tmp_path / "CamPose.inf").write_text("\n".join(lines))
    with pytest.raises(DatasetError, match=r"CamPose\.inf: line 3: NaN or infinite value"):
        load_dataset(tmp_path)
    good[1] = " ".join(["2.0"] + good[1].split()[1:])
    (tmp_path / "CamPose.inf").write_text("\n".join(good))
    with pytest.raises(DatasetError, match=r"CamPose\.inf: line 2: columns are not a rotation"):
        load_dataset(tmp_path)
    far = list(lines)
    far[0] = " ".join(far[0].split()[:9] + ["3e7", "0", "0"])  # T, the camera's position
    (tmp_path / "CamPose.inf").write_text("\n".join(far))
    with pytest.raises(DatasetError, match=r"CamPose\.inf: line 1: camera position .* is beyond 1e\+06 world units"):
        load_dataset(tmp_path)


def test_intrinsics_of_another_camera_count_and_missing_file(tmp_path):
    write_rerf(tmp_path, masks=False)
    text = (tmp_path / "Intrinsic.inf").read_text()
    (tmp_path / "Intrinsic.inf").write_text(text.split("\n4\n")[0] + "\n")
    with pytest.raises(DatasetError, match=r"Intrinsic\.inf: 4 cameras, CamPose\.inf has 5"):
        load_dataset(tmp_path)
    (tmp_path / "Intrinsic.inf").unlink()
    with pytest.raises(DatasetError, match=r"no Intrinsic\.inf"):
        load_dataset(tmp_path)


def test_mask_of_another_size_or_length(tmp_path):
    write_rerf(tmp_path)
    write_gray_video(tmp_path / "mask" / "002.mp4", [np.zeros((H, W + 4), np.uint8)] * T)
    with pytest.raises(DatasetError, match=r"mask/002\.mp4: mask is 36x24, the images \(002\.mp4\) are 32x24"):
        load_dataset(tmp_path)
    write_gray_video(tmp_path / "mask" / "002.mp4", [np.zeros((H, W), np.uint8)] * (T - 1))
    with pytest.raises(DatasetError, match=r"mask/002\.mp4: mask has 2 frames, the images \(002\.mp4\) have 3"):
        load_dataset(tmp_path)
