"""Frame sources: the three per-camera layouts, name matching, sources that disagree, and lazy
reading (a decoder moving forward, a bounded image cache)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from featvid.data.frames import (
    ImageFrames,
    VideoFrames,
    check_sources,
    find_camera_sources,
)
from featvid.errors import DatasetError
from tests.data.helpers import frame_pattern, write_png, write_video

H, W, T = 12, 16, 3


def _images(folder, t_count=T, v=0, size=(H, W)):
    for t in range(t_count):
        write_png(folder / f"{t:04d}.png", frame_pattern(t, v, *size))


def test_videos_folders_and_frame_folders_are_found_by_camera_number(tmp_path):
    # one video per camera, named with another zero padding than the camera names
    for v in range(2):
        write_video(tmp_path / "vid" / f"{v:03d}.mp4", [frame_pattern(t, v, H, W) for t in range(T)])
    found = find_camera_sources(tmp_path / "vid", ["cam0", "cam1"])
    assert [s.path.name for s in found] == ["000.mp4", "001.mp4"] and isinstance(found[0], VideoFrames)
    # one image folder per camera (or its images/ subfolder, as N3DV frames are often extracted)
    _images(tmp_path / "per_cam" / "cam00")
    _images(tmp_path / "per_cam" / "cam01" / "images", v=1)
    found = find_camera_sources(tmp_path / "per_cam", ["cam00", "cam01"], ("video", "folder"))
    assert isinstance(found[1], ImageFrames) and found[1].path.parent.name == "images"
    assert (found[1].frame(2) == frame_pattern(2, 1, H, W)).all()
    # one folder per frame, NHR-style file names
    for t in range(T):
        for v in range(2):
            write_png(tmp_path / "per_frame" / str(t) / f"img_{v:04d}.png", frame_pattern(t, v, H, W))
    found = find_camera_sources(tmp_path / "per_frame", ["0", "1"], ("video", "frames"))
    assert found[1].info().frames == T and (found[1].frame(1) == frame_pattern(1, 1, H, W)).all()
    assert find_camera_sources(tmp_path / "per_frame", ["7"], ("video", "frames")) is None


def test_a_partial_layout_names_the_missing_cameras(tmp_path):
    for v in (0, 2):
        write_video(tmp_path / f"cam{v:02d}.mp4", [frame_pattern(0, v, H, W)])
    with pytest.raises(DatasetError, match=r"no images for camera\(s\) cam01 \(2 of 3 cameras found\)"):
        find_camera_sources(tmp_path, ["cam00", "cam01", "cam02"])


def test_frame_folders_must_not_skip_a_frame(tmp_path):
    for t in (0, 1, 3):
        write_png(tmp_path / str(t) / "img_0000.png", frame_pattern(t, 0, H, W))
    with pytest.raises(DatasetError, match=r"frame folder 2 is missing"):
        find_camera_sources(tmp_path, ["0"], ("frames",))


def test_sources_that_disagree_name_the_odd_file(tmp_path):
    a, b, c, d = (tmp_path / f"{n}.mp4" for n in "abcd")
    write_video(a, [frame_pattern(t, 0, H, W) for t in range(T)])
    write_video(b, [frame_pattern(t, 1, H, W) for t in range(T - 1)])
    write_video(c, [frame_pattern(t, 2, H, W) for t in range(T)], fps=25)
    write_video(d, [frame_pattern(t, 3, H, W + 2) for t in range(T)])
    assert check_sources([VideoFrames(a), VideoFrames(a)]).frames == T
    with pytest.raises(DatasetError, match=r"b\.mp4: video has 2 frames, a\.mp4 has 3"):
        check_sources([VideoFrames(a), VideoFrames(b)])
    with pytest.raises(DatasetError, match=r"c\.mp4: video runs at 25\.0 fps, a\.mp4 at 30\.0 fps"):
        check_sources([VideoFrames(a), VideoFrames(c)])
    with pytest.raises(DatasetError, match=r"d\.mp4: video is 18x12, a\.mp4 is 16x12"):
        check_sources([VideoFrames(a), VideoFrames(d)])


def test_image_of_another_size_and_unreadable_video(tmp_path):
    _images(tmp_path / "cam")
    write_png(tmp_path / "cam" / "0001.png", frame_pattern(1, 0, H + 2, W))
    src = ImageFrames(sorted((tmp_path / "cam").glob("*.png")))
    assert src.frame(0).shape == (H, W, 3)
    with pytest.raises(DatasetError, match=r"0001\.png: image is 16x14, 0000\.png is 16x12"):
        src.frame(1)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(DatasetError, match=r"bad\.mp4: cannot open video"):
        VideoFrames(bad).info()


def test_gray_frames_of_a_mask_video_come_back_full_range(tmp_path):
    from tests.data.helpers import write_gray_video

    mask = np.zeros((H, W), np.uint8)
    mask[3:9, 4:12] = 255
    write_gray_video(tmp_path / "m.mp4", [mask, mask])
    g = VideoFrames(tmp_path / "m.mp4").gray(1)
    assert g.shape == (H, W) and g.dtype == np.uint8
    assert g[5, 8] >= 250 and g[0, 0] <= 5  # limited-range Y 16..235 is expanded back to 0..255


def test_a_video_is_decoded_forward_and_seeks_only_back_or_far_ahead(tmp_path, monkeypatch):
    from featvid.data import frames

    n = 10
    write_video(tmp_path / "v.mp4", [frame_pattern(t, 0, H, W) for t in range(n)])
    src = VideoFrames(tmp_path / "v.mp4")
    starts = []
    real = VideoFrames._restart
    monkeypatch.setattr(VideoFrames, "_restart", lambda self, t: starts.append(t) or real(self, t))
    monkeypatch.setattr(frames, "_SEEK_AHEAD", 3)
    for t in range(6):  # what the trainer does: frame after frame, one open decoder
        assert np.abs(src.frame(t).astype(int) - frame_pattern(t, 0, H, W)).mean() < 2
    assert starts == [0]
    src.frame(8)  # 2 ahead: decoded through
    assert starts == [0]
    src.frame(2)  # back: a seek to the keyframe before it
    src.frame(9)  # more than _SEEK_AHEAD ahead: a seek
    assert starts == [0, 2, 9]
    assert np.abs(src.frame(9).astype(int) - frame_pattern(9, 0, H, W)).mean() < 2


def test_images_are_cached_in_bounded_memory(monkeypatch):
    """A long clip is never held whole: the cache keeps CACHE_FRAMES frames of every view here."""
    import torch

    from featvid.data.cameras import Cameras
    from featvid.data.video import CACHE_FRAMES, MultiViewVideo

    reads = []

    def read(t, v):
        reads.append((t, v))
        return torch.full((H, W, 3), t / 100)

    cams = Cameras(torch.tensor([[20.0, 0, W / 2], [0, 20, H / 2], [0, 0, 1]]).expand(2, 3, 3),
                   torch.eye(4).expand(2, 4, 4), H, W)
    video = MultiViewVideo(source=Path("clip"), format="test", cameras=[cams] * 100, fps=30.0,
                           aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), background=(1.0, 1.0, 1.0),
                           train_views=[1], test_views=[0], read_image=read, cache_bytes=1)
    for t in range(100):
        assert video.images(t, [0, 1])[1, 0, 0, 0] == pytest.approx(t / 100)
    assert len(reads) == 200 and len(video._cache) == CACHE_FRAMES * 2
    video.image(97, 1)  # recent: from the cache
    assert len(reads) == 200
    video.image(3, 1)  # long gone: read again
    assert reads[-1] == (3, 1) and len(video._cache) == CACHE_FRAMES * 2
