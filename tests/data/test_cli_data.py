"""Every bad capture the issue lists, through the command line: one line naming the file, exit 2."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from featvid.cli import main
from tests.data.helpers import (
    frame_pattern,
    ring_cameras,
    write_colmap_text,
    write_gray_video,
    write_poses_bounds,
    write_video,
)
from tests.data.test_ngp import write_capture as write_ngp
from tests.data.test_nhr import H, T, W, write_rerf


def _n3dv(folder, frames=(T, T, T)):
    cams = ring_cameras(len(frames), H, W)
    write_poses_bounds(folder / "poses_bounds.npy", cams)
    for v, n in enumerate(frames):
        write_video(folder / f"cam{v:02d}.mp4", [frame_pattern(t, v, H, W) for t in range(n)])


def _colmap(folder):
    cams = ring_cameras(3, H, W)
    write_colmap_text(folder / "sparse" / "0", cams, [f"cam{v:02d}.png" for v in range(3)])
    for v in range(3):
        write_video(folder / f"cam{v:02d}.mp4", [frame_pattern(t, v, H, W) for t in range(T)])


def _nan_line(path, line, token=0):
    lines = path.read_text().splitlines()
    parts = lines[line].split()
    parts[token] = "nan"
    lines[line] = " ".join(parts)
    path.write_text("\n".join(lines) + "\n")


def pose_count_nhr(d):
    write_rerf(d, masks=False)
    (d / "image" / "004.mp4").unlink()
    return "CamPose.inf", "5 camera poses but 4"


def pose_count_n3dv(d):
    _n3dv(d, (T, T))
    np.save(d / "poses_bounds.npy", np.concatenate([np.load(d / "poses_bounds.npy")] * 2)[:3])
    return "poses_bounds.npy", "3 camera poses but 2"


def pose_count_colmap(d):
    _colmap(d)
    (d / "cam02.mp4").unlink()
    return "images.txt", "the model has 3 cameras, but"


def lengths_n3dv(d):
    _n3dv(d, (T, T, T - 1))
    return "cam02.mp4", "has 2 frames, cam00.mp4 has 3"


def lengths_nhr(d):
    write_rerf(d, frames=(T, T, T - 1, T, T), masks=False)
    return "002.mp4", "has 2 frames"


def frame_rates_nhr(d):
    write_rerf(d, fps=(30, 30, 30, 25, 30), masks=False)
    return "003.mp4", "runs at 25.0 fps, 000.mp4 at 30.0 fps"


def mask_size_nhr(d):
    write_rerf(d)
    write_gray_video(d / "mask" / "001.mp4", [np.zeros((H // 2, W // 2), np.uint8)] * T)
    return "mask/001.mp4", "mask is 16x12, the images (001.mp4) are 32x24"


def nan_pose_nhr(d):
    write_rerf(d, masks=False)
    _nan_line(d / "CamPose.inf", 1, 4)
    return "CamPose.inf", "line 2: NaN"


def nan_pose_n3dv(d):
    _n3dv(d)
    arr = np.load(d / "poses_bounds.npy")
    arr[2, 7] = np.nan
    np.save(d / "poses_bounds.npy", arr)
    return "poses_bounds.npy", "camera 2 (row 2) has a NaN"


def nan_pose_ngp(d):
    write_ngp(d, T=2)
    meta = json.loads((d / "1" / "transforms.json").read_text())
    meta["frames"][1]["transform_matrix"][2][1] = float("nan")
    (d / "1" / "transforms.json").write_text(json.dumps(meta))
    return "1/transforms.json", "1.png: \"transform_matrix\" must be a finite"


def nan_pose_colmap(d):
    _colmap(d)
    _nan_line(d / "sparse" / "0" / "images.txt", 3, 2)  # image 2's pose line
    return "images.txt", "NaN or infinite"


def unreadable_video_nhr(d):
    write_rerf(d, masks=False)
    (d / "image" / "002.mp4").write_bytes(b"\x00\x01garbage" * 10)
    return "image/002.mp4", "cannot open video"


CASES = [pose_count_nhr, pose_count_n3dv, pose_count_colmap, lengths_n3dv, lengths_nhr, frame_rates_nhr,
         mask_size_nhr, nan_pose_nhr, nan_pose_n3dv, nan_pose_ngp, nan_pose_colmap, unreadable_video_nhr]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_capture_is_one_line_naming_the_file_and_exit_2(tmp_path, case):
    file, what = case(tmp_path)
    result = CliRunner().invoke(main, ["info", str(tmp_path)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("featvid: error: "), result.output
    assert file in lines[0] and what in lines[0], lines[0]


def test_train_and_eval_fail_the_same_way(tmp_path):
    _, what = lengths_n3dv(tmp_path)
    for args in (["train", str(tmp_path), "--out", str(tmp_path / "run")],
                 ["eval", str(tmp_path), "--data", str(tmp_path)]):
        result = CliRunner().invoke(main, args)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, result.output
    assert not (tmp_path / "run").exists()


def test_format_option_and_ambiguous_folders(tmp_path):
    _n3dv(tmp_path)
    write_colmap_text(tmp_path / "sparse" / "0", ring_cameras(3, H, W), [f"cam{v:02d}.png" for v in range(3)])
    result = CliRunner().invoke(main, ["info", str(tmp_path)])
    assert result.exit_code == 2 and "looks like colmap and like n3dv: choose one with --format" in result.output
    result = CliRunner().invoke(main, ["info", str(tmp_path), "--format", "nhr"])
    assert result.exit_code == 2 and "not a nhr dataset (expected CamPose.inf" in result.output
    result = CliRunner().invoke(main, ["info", str(tmp_path), "--format", "n3dv", "--downscale", "0.5"])
    assert result.exit_code == 2 and "--downscale" in result.output
