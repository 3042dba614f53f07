"""COLMAP loader: the text and binary models, per-camera videos / folders / frame folders, lens models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from featvid.data import load_dataset
from featvid.data.colmap_model import read_model
from featvid.errors import DatasetError
from tests.data.helpers import (
    SPHERE_CENTRE,
    frame_pattern,
    ring_cameras,
    sphere_images,
    write_colmap_binary,
    write_colmap_text,
    write_png,
    write_video,
)

H, W, T, V = 24, 32, 3, 4


def _videos(folder, cams, names, frames=T, fps=30):
    for v, name in enumerate(names):
        write_video(folder / f"{name}.mp4", [sphere_images(cams[[v]], t)[0][0] for t in range(frames)], fps=fps)


@pytest.mark.parametrize("binary", [False, True])
def test_model_and_one_video_per_camera(tmp_path, binary):
    cams = ring_cameras(V, H, W)
    names = [f"cam{v:02d}" for v in range(V)]
    writer = write_colmap_binary if binary else write_colmap_text
    writer(tmp_path / "sparse" / "0", cams, [f"{n}.png" for n in names])
    _videos(tmp_path / "videos", cams, names)
    video = load_dataset(tmp_path)
    assert (video.format, video.num_frames, video.num_views, video.height, video.width) == ("colmap", T, V, H, W)
    assert video.test_views == [0] and video.fps == pytest.approx(30.0)
    loaded = video.cameras_at(0)
    assert torch.allclose(loaded.c2w, cams.c2w, atol=1e-5) and torch.allclose(loaded.K, cams.K, atol=1e-4)
    # the sphere's centre projects onto the sphere in the decoded frame
    uv, _ = loaded.project(SPHERE_CENTRE[None])
    x, y = (int(c) for c in uv[1, 0])
    assert video.image(2, 1)[y, x].min() < 0.95 and video.image(2, 1)[0, 0].min() > 0.95


def test_per_camera_folders_named_by_the_model_and_scaled_intrinsics(tmp_path):
    """NAME cam01/000000.png: camera folders; a rig calibrated at twice the frames' size."""
    cams = ring_cameras(V, H, W)
    big = cams.scaled(2.0)
    names = [f"cam{v:02d}" for v in range(V)]
    write_colmap_text(tmp_path / "sparse", big, [f"{n}/000000.png" for n in names], model="SIMPLE_PINHOLE")
    for v, n in enumerate(names):
        for t in range(T):
            write_png(tmp_path / "images" / n / f"{t:06d}.png", frame_pattern(t, v, H, W))
    video = load_dataset(tmp_path)
    assert (video.num_frames, video.height, video.width) == (T, H, W)
    assert torch.allclose(video.cameras_at(0).K, cams.K, atol=1e-3)
    assert (video.image(1, 3) * 255).round().to(torch.uint8).numpy().tolist() == frame_pattern(1, 3, H, W).tolist()


def test_frame_folders_and_distortion_models(tmp_path):
    """HiFi4G-style images/<t>/<camera>.png with an OPENCV lens: undistorted at load."""
    cams = ring_cameras(V, H, W)
    names = [str(v) for v in range(V)]
    write_colmap_text(tmp_path / "colmap" / "sparse" / "0", cams, [f"{n}.png" for n in names], model="OPENCV",
                      extra=(-0.2, 0.05, 0.001, 0.0))
    for t in range(T):
        for v in range(V):
            write_png(tmp_path / "images" / str(t) / f"{v}.png", frame_pattern(t, v, H, W))
    video = load_dataset(tmp_path)
    assert video.summary()["undistorted_views"] == V
    assert video.image(2, 1).shape == (H, W, 3)
    assert not torch.equal(video.image(2, 1), torch.from_numpy(frame_pattern(2, 1, H, W)).float() / 255)


# ---- bad input ------------------------------------------------------------------------------------

def test_a_model_camera_without_a_video_and_an_unsupported_model(tmp_path):
    cams = ring_cameras(V, H, W)
    names = [f"cam{v:02d}" for v in range(V)]
    write_colmap_text(tmp_path / "sparse" / "0", cams, [f"{n}.png" for n in names])
    _videos(tmp_path, cams, names[:3], frames=1)
    with pytest.raises(DatasetError, match=r"images\.txt: the model has 4 cameras, but .*: no images for camera\(s\) "
                                           r"cam03 \(3 of 4 cameras found\)"):
        load_dataset(tmp_path)
    _videos(tmp_path, cams, names[3:], frames=1)
    text = (tmp_path / "sparse" / "0" / "cameras.txt").read_text().replace("2 PINHOLE", "2 FOV")
    (tmp_path / "sparse" / "0" / "cameras.txt").write_text(text.replace(f"2 FOV {W} {H} ", f"2 FOV {W} {H} 0.1 ", 1))
    with pytest.raises(DatasetError, match=r"images\.txt: camera 2 uses the FOV model, which featvid cannot undistort"):
        load_dataset(tmp_path)


def test_truncated_binary_model_and_nan_pose(tmp_path):
    cams = ring_cameras(V, H, W)
    write_colmap_binary(tmp_path / "sparse" / "0", cams, [f"cam{v:02d}.png" for v in range(V)])
    data = (tmp_path / "sparse" / "0" / "images.bin").read_bytes()
    (tmp_path / "sparse" / "0" / "images.bin").write_bytes(data[:100])
    with pytest.raises(DatasetError, match=r"images\.bin: truncated"):
        read_model(tmp_path / "sparse" / "0")
    write_colmap_text(tmp_path / "txt", cams, [f"cam{v:02d}.png" for v in range(V)])
    lines = (tmp_path / "txt" / "images.txt").read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split()[5], "nan", 1)
    (tmp_path / "txt" / "images.txt").write_text("\n".join(lines))
    with pytest.raises(DatasetError, match=r"images\.txt: line 4 \(image cam01\.png\): NaN or infinite value"):
        read_model(tmp_path / "txt")


@pytest.mark.parametrize("pose, error", [
    (["0", "0", "0", "0"], r"images\.txt: image cam01\.png: its quaternion \(QW QX QY QZ\) is zero"),
    (["1", "0", "0", "0", "3e7", "0", "0"], r"images\.txt: image cam01\.png: pose: camera position .* beyond 1e\+06"),
])
def test_a_zero_quaternion_or_a_camera_beyond_the_world_is_refused(tmp_path, pose, error):
    cams = ring_cameras(V, H, W)
    names = [f"cam{v:02d}" for v in range(V)]
    write_colmap_text(tmp_path / "sparse" / "0", cams, [f"{n}.png" for n in names])
    _videos(tmp_path, cams, names)
    lines = (tmp_path / "sparse" / "0" / "images.txt").read_text().splitlines()
    tokens = lines[3].split()
    lines[3] = " ".join(tokens[:1] + pose + tokens[1 + len(pose):])
    (tmp_path / "sparse" / "0" / "images.txt").write_text("\n".join(lines))
    with pytest.raises(DatasetError, match=error):
        load_dataset(tmp_path)


def test_two_model_images_of_one_camera_and_another_aspect_ratio(tmp_path):
    cams = ring_cameras(2, H, W)
    write_colmap_text(tmp_path / "sparse", cams, ["cam00/a.png", "cam00/b.png"])
    with pytest.raises(DatasetError, match=r"images cam00/a\.png and cam00/b\.png are both camera cam00"):
        load_dataset(tmp_path)
    write_colmap_text(tmp_path / "sparse", ring_cameras(2, H, H), ["cam00.png", "cam01.png"])
    _videos(tmp_path, cams, ["cam00", "cam01"], frames=1)
    with pytest.raises(DatasetError, match=r"cam00\.mp4: frames are 32x24, camera 1 of images\.txt was calibrated "
                                           r"at 24x24 \(another aspect ratio\)"):
        load_dataset(tmp_path)
    assert np.isfinite(cams.K.numpy()).all()
