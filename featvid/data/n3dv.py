"""N3DV / DyNeRF multi-view videos (Li et al. 2022, "Neural 3D Video Synthesis").

```
DATASET/
  poses_bounds.npy    [N, 17] float: per camera a 3x5 block [R | t | (H, W, f)] in LLFF order
                      (columns down, right, back, translation, hwf), then near and far depth
  cam00.mp4 ... camNN.mp4   one synchronised video per camera, in the order of the poses
```

Frames are decoded with PyAV on demand, one camera at a time, from an open decoder that moves
forward (the trainer reads frame after frame) and seeks only when asked for an earlier or much
later frame, so a capture is never decoded whole. cam00 is the held-out test view, as in the
paper. The scene box comes from the cameras' frusta between the near and far bounds.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import av
import numpy as np
import torch

from featvid.data.cameras import Cameras, llff_to_opencv
from featvid.data.video import MultiViewVideo, check_downscale, composite, resize
from featvid.errors import DatasetError

log = logging.getLogger(__name__)

POSES_FILE = "poses_bounds.npy"
_VIDEO_NAME = re.compile(r"^cam(\d+)\.mp4$")
_SEEK_AHEAD = 32  # frames: a request further ahead than this seeks instead of decoding through


def is_n3dv(folder: Path) -> bool:
    """True if the folder holds `poses_bounds.npy` or camNN.mp4 videos."""
    return (folder / POSES_FILE).is_file() or any(_VIDEO_NAME.match(p.name) for p in folder.iterdir())


def camera_videos(folder: Path) -> list[Path]:
    """The folder's camNN.mp4 files in camera-number order."""
    videos = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _VIDEO_NAME.match(p.name))]
    return [p for _, p in sorted(videos)]


def read_poses_bounds(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """poses_bounds.npy -> (c2w [N, 4, 4] OpenCV, hwf [N, 3] (height, width, focal in pixels), bounds [N, 2])."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: cannot read as a numeric .npy array: {e}") from e
    if arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] == 0:
        raise DatasetError(f"{path}: expected an array of shape [cameras, 17] (3x5 pose + near, far), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise DatasetError(f"{path}: non-numeric or non-finite values")
    arr = arr.astype(np.float64)
    block = arr[:, :15].reshape(-1, 3, 5)
    c2w = llff_to_opencv(block[:, :, :4])  # [N, 4, 4]
    hwf = torch.as_tensor(block[:, :, 4], dtype=torch.float32)  # [N, 3]
    bounds = torch.as_tensor(arr[:, 15:17], dtype=torch.float32)  # [N, 2]
    if (hwf <= 0).any():
        raise DatasetError(f"{path}: image height, width and focal length must be positive")
    return c2w, hwf, bounds


def _open(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise DatasetError(f"{path}: cannot open video: {e}") from e
    if not container.streams.video:
        container.close()
        raise DatasetError(f"{path}: no video stream")
    return container


def probe_video(path: Path) -> tuple[int, float, int, int]:
    """(frame count, fps, height, width) of a video; the count from the header, else by demuxing."""
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        frames = int(stream.frames or 0)
        if frames == 0:
            try:
                frames = sum(1 for packet in container.demux(stream) if packet.size > 0)
            except av.FFmpegError as e:
                raise DatasetError(f"{path}: corrupt video: {e}") from e
        height, width = stream.codec_context.height, stream.codec_context.width
    if frames == 0 or fps <= 0:
        raise DatasetError(f"{path}: video has no frames or no frame rate")
    return frames, fps, height, width


class _CameraVideo:
    """Frames of one camera's video decoded on demand (RGB uint8 [H, W, 3])."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps
        self._container: av.container.InputContainer | None = None
        self._frames = None  # iterator over decoded frames
        self._next = 0  # index of the frame the iterator yields next

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._frames = None, None

    def _index(self, frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> int:
        start = stream.start_time or 0
        return int(round(float((frame.pts - start) * stream.time_base) * self.fps))

    def _restart(self, t: int) -> None:
        """Position the decoder so that frame t comes next: seek to the keyframe before t if t > 0."""
        self.close()
        self._container = _open(self.path)
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        if t > 0:
            target = (stream.start_time or 0) + int(t / self.fps / stream.time_base)
            self._container.seek(target, stream=stream, backward=True, any_frame=False)
        self._frames = self._container.decode(stream)
        self._next = -1  # unknown until the first frame is decoded

    def frame(self, t: int) -> np.ndarray:
        """Frame t as RGB uint8 [H, W, 3]."""
        if self._frames is None or t < self._next or t > self._next + _SEEK_AHEAD or self._next < 0:
            self._restart(t)
        stream = self._container.streams.video[0]
        try:
            for frame in self._frames:
                index = self._index(frame, stream) if frame.pts is not None else max(self._next, 0)
                self._next = index + 1
                if index == t:
                    return frame.to_ndarray(format="rgb24")
                if index > t:
                    break  # a seek landed past t (odd keyframe timing): decode from the start
        except av.FFmpegError as e:
            raise DatasetError(f"{self.path}: corrupt video at frame {t}: {e}") from e
        if self._next > t and t > 0:
            self._restart(0)
            return self._decode_from_start(t)
        raise DatasetError(f"{self.path}: video has no frame {t}")

    def _decode_from_start(self, t: int) -> np.ndarray:
        for i, frame in enumerate(self._frames):
            self._next = i + 1
            if i == t:
                return frame.to_ndarray(format="rgb24")
        raise DatasetError(f"{self.path}: video has no frame {t}")


def _frustum_aabb(cams: Cameras, bounds: torch.Tensor) -> torch.Tensor:
    """Box around every camera's view frustum between its near and far bound. [2, 3] world units"""
    H, W = cams.height, cams.width
    corners = torch.tensor([[0.0, 0.0], [W, 0.0], [0.0, H], [W, H]])  # [4, 2] pixel corners
    pts = []
    for i in range(len(cams)):
        K, c2w = cams.K[i], cams.c2w[i]
        x = (corners[:, 0] - K[0, 2]) / K[0, 0]
        y = (corners[:, 1] - K[1, 2]) / K[1, 1]
        rays = torch.stack([x, y, torch.ones(4)], -1)  # [4, 3] camera space, z = 1
        for depth in bounds[i].tolist():
            p = (rays * depth) @ c2w[:3, :3].T + c2w[:3, 3]
            pts.append(p)
    pts = torch.cat(pts)
    return torch.stack([pts.amin(0), pts.amax(0)])


def load_n3dv(folder: Path, *, aabb: torch.Tensor | None = None, downscale: float = 1.0,
              test_views: list[int] | None = None) -> MultiViewVideo:
    """Read an N3DV folder (see the module docstring) as a MultiViewVideo.

    aabb [2, 3] overrides the box from the frusta; downscale divides the image size;
    test_views defaults to [0] (cam00 held out, as in the paper).
    """
    folder = Path(folder)
    downscale = check_downscale(downscale)
    poses_path = folder / POSES_FILE
    if not poses_path.is_file():
        raise DatasetError(f"{folder}: no {POSES_FILE} (N3DV camera poses)")
    videos = camera_videos(folder)
    if not videos:
        raise DatasetError(f"{folder}: no camNN.mp4 videos beside {POSES_FILE}")
    c2w, hwf, bounds = read_poses_bounds(poses_path)
    if len(c2w) != len(videos):
        raise DatasetError(f"{poses_path}: {len(c2w)} camera poses but {len(videos)} camNN.mp4 videos in {folder}")

    probes = [probe_video(v) for v in videos]
    counts = [p[0] for p in probes]
    num_frames = max(counts)
    for video, (frames, fps, h, w) in zip(videos, probes):
        if frames < num_frames:
            longest = videos[counts.index(num_frames)]
            raise DatasetError(f"{video}: video has {frames} frames, shorter than {longest.name} ({num_frames})")
        if (h, w) != probes[0][2:]:
            raise DatasetError(f"{video}: video is {w}x{h}, {videos[0].name} is {probes[0][3]}x{probes[0][2]}")
    fps = probes[0][1]
    height, width = probes[0][2], probes[0][3]

    # hwf describes the images the poses were made for; scale the focal length to the videos' size
    K = torch.zeros(len(c2w), 3, 3)
    f = hwf[:, 2] * (width / hwf[:, 1])
    K[:, 0, 0], K[:, 1, 1] = f, hwf[:, 2] * (height / hwf[:, 0])
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = width / 2.0, height / 2.0, 1.0
    cams = Cameras(K, c2w, height, width)
    if downscale != 1.0:
        cams = cams.scaled(1.0 / downscale)
    if aabb is None:
        aabb = _frustum_aabb(cams, bounds)
        log.info("%s: scene box from the camera frusta: %s", folder, aabb.tolist())

    test = [0] if test_views is None else list(test_views)
    if len(videos) == 1:
        test = []  # a single camera cannot spare a view
    train = [v for v in range(len(videos)) if v not in test]
    readers = [_CameraVideo(v, fps) for v in videos]
    out_h, out_w = cams.height, cams.width

    def read_image(t: int, v: int) -> torch.Tensor:
        rgb = readers[v].frame(t)  # [H, W, 3] uint8
        return composite(resize(rgb, out_h, out_w), (1.0, 1.0, 1.0))  # [h, w, 3]

    video = MultiViewVideo(source=folder, format="n3dv", cameras=[cams] * num_frames, fps=fps, aabb=aabb,
                           background=(1.0, 1.0, 1.0), train_views=train, test_views=test, read_image=read_image)
    log.info("loaded %r", video)
    return video
