"""Frame sources: one camera's frames from a video file or from a list of image files, read lazily.

Every multi-view loader (N3DV, NHR/ReRF, per-frame NGP JSON, COLMAP) hands each camera one
`FrameSource` for its images and, when there are masks, one for its masks. A video is decoded on
demand with PyAV by a decoder that moves forward (the trainer reads frame after frame) and seeks
only when asked for an earlier or a much later frame, so a capture is never decoded whole.

`find_camera_sources` finds the sources of a set of named cameras under one folder, in the three
layouts captures ship in:

```
ROOT/<camera>.mp4                 one video per camera (.mp4 .mov .mkv .avi .webm)
ROOT/<camera>/0000.png ...        one image folder per camera, frames in numeric order
ROOT/<frame>/<camera>.png ...     one folder per frame (numbered), one image per camera
```

A camera named `cam03` (N3DV), `003` (ReRF) or `img_0003` (NHR) also matches a file or folder
whose name ends in the same number (`3`, `03`, `cam003`), so masks and images need not share a
prefix.
"""
from __future__ import annotations

import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av
import cv2
import numpy as np

from featvid.data.files import MAX_FPS, MAX_FRAMES, check_image_size
from featvid.errors import DatasetError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_SEEK_AHEAD = 32  # frames: a request further ahead than this seeks instead of decoding through
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TRAILING_NUMBER = re.compile(r"(\d+)$")


@dataclass(frozen=True)
class SourceInfo:
    """What a source holds: frame count, frame rate (None for image files) and frame size in pixels."""

    frames: int
    fps: float | None
    height: int
    width: int


class FrameSource(Protocol):
    """One camera's frames. `path` is what error messages name (the video, or the first image)."""

    path: Path

    def info(self) -> SourceInfo: ...

    def frame(self, t: int) -> np.ndarray:
        """Frame t: uint8 (or uint16) [H, W, 3] RGB or [H, W, 4] RGBA."""

    def gray(self, t: int) -> np.ndarray:
        """Frame t as one channel, uint8 (or uint16) [H, W] (for masks)."""


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def natural_key(name: str) -> tuple:
    """Sort key that orders 'img2' before 'img10'."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def image_files(folder: Path) -> list[Path]:
    """The image files of a folder in natural (numeric) order."""
    try:
        return sorted((p for p in folder.iterdir() if p.is_file() and is_image(p)), key=lambda p: natural_key(p.name))
    except OSError as e:
        raise DatasetError(f"{folder}: cannot list folder: {e.strerror or e}") from e


def trailing_number(name: str) -> int | None:
    """The number a name ends in ('cam03' -> 3), or None."""
    m = _TRAILING_NUMBER.search(name)
    return int(m.group(1)) if m else None


# ---- images ----------------------------------------------------------------------------------------

def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file; PNG from its header (cheap), other formats by decoding."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as e:
        raise DatasetError(f"{path}: cannot read image: {e.strerror or e}") from e
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(height), int(width)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{path}: unreadable image (not a format OpenCV can decode)")
    return int(img.shape[0]), int(img.shape[1])


def _imread(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{path}: missing or unreadable image")
    if img.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f"{path}: {img.dtype} pixels; expected 8- or 16-bit images")
    return img


def read_rgba(path: Path) -> np.ndarray:
    """Decode an image file -> [H, W, 3 or 4] uint8/uint16 in RGB(A) order."""
    img = _imread(path)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_gray(path: Path) -> np.ndarray:
    """Decode an image file as one channel -> [H, W] uint8/uint16 (the first channel of a colour image)."""
    img = _imread(path)
    if img.ndim == 3:
        # a grey mask saved as colour has R = G = B; an RGBA one carries it in alpha when RGB is flat
        img = img[..., 3] if img.shape[2] == 4 and img[..., :3].max() == img[..., :3].min() else img[..., 0]
    return np.ascontiguousarray(img)


class ImageFrames:
    """A camera's frames as image files, one a frame (sizes checked against the first on read)."""

    def __init__(self, files: list[Path]) -> None:
        if not files:
            raise DatasetError("no image files")
        self.files = list(files)
        self.path = self.files[0]
        self._info: SourceInfo | None = None

    def info(self) -> SourceInfo:
        if self._info is None:
            h, w = image_size(self.files[0])
            self._info = SourceInfo(len(self.files), None, h, w)
        return self._info

    def _check(self, t: int, img: np.ndarray) -> np.ndarray:
        info = self.info()
        if img.shape[:2] != (info.height, info.width):
            raise DatasetError(f"{self.files[t]}: image is {img.shape[1]}x{img.shape[0]}, "
                               f"{self.files[0].name} is {info.width}x{info.height}")
        return img

    def _file(self, t: int) -> Path:
        if not 0 <= t < len(self.files):
            raise DatasetError(f"{self.path.parent}: no frame {t} (it holds {len(self.files)} images)")
        return self.files[t]

    def frame(self, t: int) -> np.ndarray:
        return self._check(t, read_rgba(self._file(t)))

    def gray(self, t: int) -> np.ndarray:
        return self._check(t, read_gray(self._file(t)))


# ---- videos ----------------------------------------------------------------------------------------

def _open(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot open video: {e}") from e
    if not container.streams.video:
        container.close()
        raise DatasetError(f"{path}: no video stream")
    return container


def probe_video(path: Path) -> SourceInfo:
    """Frame count (from the header, else by demuxing), fps and size of a video file."""
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
    if frames == 0 or fps <= 0 or height <= 0 or width <= 0:
        raise DatasetError(f"{path}: video has no frames, no frame rate or no size")
    if frames > MAX_FRAMES or fps > MAX_FPS:
        raise DatasetError(f"{path}: video claims {frames} frames at {fps:g} fps (at most {MAX_FRAMES} frames "
                           f"and {MAX_FPS:g} fps)")
    check_image_size(height, width, str(path))
    return SourceInfo(frames, fps, height, width)


class VideoFrames:
    """A camera's frames decoded on demand from a video file (one open decoder, moving forward)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._info: SourceInfo | None = None
        self._container: av.container.InputContainer | None = None
        self._frames = None  # iterator over decoded frames
        self._next = 0  # index of the frame the iterator yields next (-1: unknown)

    def info(self) -> SourceInfo:
        if self._info is None:
            self._info = probe_video(self.path)
        return self._info

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._frames = None, None

    def __del__(self) -> None:
        self.close()

    @property
    def fps(self) -> float:
        return float(self.info().fps or 0.0)

    def _index(self, frame: av.VideoFrame, stream) -> int:
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
            try:
                self._container.seek(target, stream=stream, backward=True, any_frame=False)
            except av.FFmpegError as e:
                self.close()
                raise DatasetError(f"{self.path}: cannot seek to frame {t}: {e}") from e
        self._frames = self._container.decode(stream)
        self._next = -1  # unknown until the first frame is decoded

    def _decoded(self, t: int) -> av.VideoFrame:
        if not 0 <= t < self.info().frames:
            raise DatasetError(f"{self.path}: video has no frame {t} (it has {self.info().frames})")
        if self._frames is None or self._next < 0 or t < self._next or t > self._next + _SEEK_AHEAD:
            self._restart(t)
        stream = self._container.streams.video[0]
        try:
            for frame in self._frames:
                index = self._index(frame, stream) if frame.pts is not None else max(self._next, 0)
                self._next = index + 1
                if index == t:
                    return frame
                if index > t:
                    break  # a seek landed past t (odd keyframe timing): decode from the start
            if self._next > t and t > 0:
                self._restart(0)
                for i, frame in enumerate(self._frames):
                    self._next = i + 1
                    if i == t:
                        return frame
        except av.FFmpegError as e:
            self.close()
            raise DatasetError(f"{self.path}: corrupt video at frame {t}: {e}") from e
        self.close()
        raise DatasetError(f"{self.path}: video has no frame {t}")

    def frame(self, t: int) -> np.ndarray:
        return self._decoded(t).to_ndarray(format="rgb24")

    def gray(self, t: int) -> np.ndarray:
        # to gray through libswscale, which honours the video's signalled range (a mask video
        # made from 0/255 RGB is limited-range Y 16..235 and comes back as 0..255)
        return self._decoded(t).to_ndarray(format="gray")


def open_source(path: Path) -> FrameSource:
    """A video file, or a folder of images (one a frame)."""
    path = Path(path)
    if path.is_dir():
        files = image_files(path)
        if not files:
            raise DatasetError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return ImageFrames(files)
    if path.is_file() and is_video(path):
        return VideoFrames(path)
    raise DatasetError(f"{path}: not a video file or a folder of images")


# ---- finding every camera's source under one folder ------------------------------------------------

def _match(entries: dict[str, Path], name: str, where: Path, what: str) -> Path | None:
    """The entry (by stem) that is camera `name`: the same name, else the same trailing number."""
    if name in entries:
        return entries[name]
    number = trailing_number(name)
    if number is None:
        return None
    hits = [p for stem, p in entries.items() if trailing_number(stem) == number]
    if len(hits) > 1:
        raise DatasetError(f"{where}: {what} of camera {name} is ambiguous: {', '.join(p.name for p in hits)}")
    return hits[0] if hits else None


def _frame_folders(root: Path) -> list[Path]:
    """Numbered subfolders of root, in numeric order."""
    return sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def _camera_folder(folder: Path) -> Path:
    """A camera's image folder: the folder itself, or its `images/` (how N3DV frames are often extracted)."""
    if not image_files(folder) and (folder / "images").is_dir():
        return folder / "images"
    return folder


LAYOUTS = ("video", "folder", "frames")


def find_camera_sources(root: Path, names: list[str], layouts: tuple[str, ...] = LAYOUTS,
                        what: str = "images") -> list[FrameSource] | None:
    """One source per camera in `names`, found under `root` in the first of `layouts` that holds
    any of them (see the module docstring: "video" ROOT/<camera>.mp4, "folder" ROOT/<camera>/,
    "frames" ROOT/<frame>/<camera>.png); None when root holds none. A layout that holds some of
    the cameras but not all is an error that names the missing ones.
    """
    root = Path(root)
    if not root.is_dir():
        return None
    try:
        children = list(root.iterdir())
    except OSError as e:
        raise DatasetError(f"{root}: cannot list folder: {e.strerror or e}") from e
    for layout in layouts:
        if layout == "frames":
            found_frames = frame_major_sources(root, names, what)
            if found_frames is None:
                continue
            return found_frames
        if layout == "video":
            entries = {p.stem: p for p in children if p.is_file() and is_video(p)}
        elif layout == "folder":
            entries = {p.name: p for p in children if p.is_dir()}
        else:
            raise ValueError(f"unknown layout {layout!r}")
        found = [_match(entries, n, root, what) for n in names]
        if not any(found):
            continue
        missing = [n for n, p in zip(names, found) if p is None]
        if missing:
            raise DatasetError(f"{root}: no {what} for camera(s) {', '.join(missing[:8])}"
                               f"{' ...' if len(missing) > 8 else ''} ({len(names) - len(missing)} of "
                               f"{len(names)} cameras found)")
        if layout == "folder":
            found = [_camera_folder(p) for p in found]  # type: ignore[arg-type]
        return [open_source(p) for p in found]  # type: ignore[arg-type]
    return None


def _frame_major_sources(root: Path, frames: list[Path], names: list[str], what: str,
                         subfolder: str | None = None) -> list[FrameSource]:
    """ROOT/<frame>/[subfolder/]<camera>.png: every numbered folder must hold every camera's image."""
    numbers = [int(f.name) for f in frames]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        gap = next(n + 1 for a, n in zip(numbers[1:], numbers) if a != n + 1)
        raise DatasetError(f"{root}: frame folder {gap} is missing (frame folders must be numbered without gaps)")
    per_camera: list[list[Path]] = [[] for _ in names]
    for folder in frames:
        if subfolder is not None:
            folder = folder / subfolder
        files = {p.stem: p for p in image_files(folder)} if folder.is_dir() else {}
        for i, n in enumerate(names):
            p = _match(files, n, folder, what)
            if p is None:
                raise DatasetError(f"{folder}: no {what} of camera {n} in this frame folder "
                                   f"(every frame folder needs one image per camera)")
            per_camera[i].append(p)
    return [ImageFrames(files) for files in per_camera]


def frame_major_sources(root: Path, names: list[str], what: str = "images",
                        subfolder: str | None = None) -> list[FrameSource] | None:
    """ROOT/<frame>/[subfolder/]<camera>.png (NHR keeps masks in ROOT/<frame>/mask/); None when
    root has no numbered folders or the first holds no file of these cameras."""
    root = Path(root)
    numbered = _frame_folders(root) if root.is_dir() else []
    if not numbered:
        return None
    first = numbered[0] / subfolder if subfolder else numbered[0]
    files = {p.stem: p for p in image_files(first)} if first.is_dir() else {}
    if not any(_match(files, n, first, what) for n in names):
        return None
    return _frame_major_sources(root, numbered, names, what, subfolder)


def check_sources(sources: list[FrameSource], what: str = "video") -> SourceInfo:
    """The common frame count, fps and size of several cameras' sources; a camera whose count,
    frame rate or size differs from the first's is an error naming its file."""
    infos = [s.info() for s in sources]
    ref, ref_src = infos[0], sources[0]
    check_image_size(ref.height, ref.width, str(ref_src.path))
    for s, info in zip(sources[1:], infos[1:]):
        if info.frames != ref.frames:
            raise DatasetError(f"{s.path}: {what} has {info.frames} frames, {ref_src.path.name} has {ref.frames}: "
                               f"every camera needs the same number of frames")
        if (info.fps is None) != (ref.fps is None) or (
                info.fps is not None and abs(info.fps - ref.fps) > 1e-3 * ref.fps):
            raise DatasetError(f"{s.path}: {what} runs at {info.fps} fps, {ref_src.path.name} at {ref.fps} fps: "
                               f"every camera needs the same frame rate")
        if (info.height, info.width) != (ref.height, ref.width):
            raise DatasetError(f"{s.path}: {what} is {info.width}x{info.height}, "
                               f"{ref_src.path.name} is {ref.width}x{ref.height}")
    return ref
