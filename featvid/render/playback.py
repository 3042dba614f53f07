"""Playing a stream from the outside: what `featvid play` and `featvid render` (and the demo) call.

Each takes a .fvv folder or an opened stream (featvid.render.source.PlayableStream) and a camera
path by name, wires the rendition choice (featvid.render.renditions), the play loop
(featvid.render.player) and an MP4 recording (featvid.render.record) together, and returns the
loop's PlaybackStats:

    play_stream        real time at the stream's rate (late frames dropped), optionally over a
                       simulated link and recorded
    render_path_video  every frame of a path, as fast as it renders, to an MP4
"""
from __future__ import annotations

from pathlib import Path

import torch

from featvid.data.video import MultiViewVideo
from featvid.errors import RenderError
from featvid.field.volume import inner_box
from featvid.render.abr import MAX_BUFFER_S
from featvid.render.fast import FastRenderer, FastSettings
from featvid.render.paths import CameraPath, make_path
from featvid.render.player import FrameCallback, PlaybackStats, play
from featvid.render.record import recording
from featvid.render.renditions import choose_renditions
from featvid.render.source import PlayableStream, open_playable
from featvid.render.splats import is_gaussian_stream, renderer_for

Dataset = str | Path | MultiViewVideo  # a dataset folder or a loaded one (for the path "test")


def camera_path(stream: PlayableStream, path: str | CameraPath, frames: int | None = None,
                size: tuple[int, int] | None = None, data: Dataset | None = None) -> CameraPath:
    """The camera path through `stream`: a CameraPath as given (resized to `size`, (width, height)
    pixels), or one by name (featvid.render.paths.make_path: orbit, spiral, test, FILE.json) of
    `frames` output frames; "test" needs the dataset `data`."""
    if isinstance(path, CameraPath):
        return path.resized(*size) if size is not None else path
    dataset = None
    if path == "test":
        if data is None:
            raise RenderError("--path test needs the dataset (--data DATASET)")
        if isinstance(data, (str, Path)):
            from featvid.data import load_dataset

            dataset = load_dataset(data)
        else:
            dataset = data
    box = stream.aabb
    if not is_gaussian_stream(stream) and stream.render_settings.contracted:  # orbit the subject (the inner box)
        centre, half = inner_box(box)
        box = torch.stack([centre - half, centre + half])
    return make_path(path, stream.num_frames, box, frames, size, dataset)


def _renderer(stream: PlayableStream, device: str | torch.device, fast: FastSettings):
    """The renderer for the stream's representation: splats for Gaussians, the fast ray marcher for grids."""
    if is_gaussian_stream(stream):
        return renderer_for(stream, device)
    return FastRenderer(stream.mlp("cpu"), stream.render_settings, device, fast)


def render_path_video(stream: str | Path | PlayableStream, path: str | CameraPath, out: str | Path,
                      size: tuple[int, int] | None = None, device: str | torch.device = "auto",
                      frames: int | None = None, fps: float | None = None, data: Dataset | None = None,
                      hwaccel: str = "auto", progress: bool = True, fast: FastSettings = FastSettings()
                      ) -> PlaybackStats:
    """Render a camera path through a stream (a .fvv folder or an opened stream) to an H.264 MP4.

    path: orbit, spiral, test (needs `data`, a dataset folder or MultiViewVideo) or a .json path
    file, or a CameraPath. size: (width, height) pixels. frames: output frames (default: the
    stream's frame count, or the path file's). fps: of the MP4 (default: the stream's). Every
    frame is rendered (nothing dropped); the stats' achieved_fps is the rendering rate. On a
    failure no MP4 is left.
    """
    s = open_playable(stream, hwaccel)
    cam_path = camera_path(s, path, frames, size, data)
    renderer = _renderer(s, device, fast)
    with recording(out, fps or s.fps, cam_path.size) as on_frame:
        return play(s, cam_path, renderer, fps=None, on_frame=on_frame, progress=progress)


def play_stream(stream: str | Path | PlayableStream, path: str | CameraPath = "orbit", fps: float | None = None,
                size: tuple[int, int] | None = (512, 512), device: str | torch.device = "auto",
                hwaccel: str = "auto", frames: int | None = None, duration: float | None = None,
                out: str | Path | None = None, data: Dataset | None = None, progress: bool = True,
                fast: FastSettings = FastSettings(), bandwidth: float | None = None,
                rendition: str | None = None, latency_s: float = 0.0,
                max_buffer_s: float = MAX_BUFFER_S) -> PlaybackStats:
    """Headless real-time playback of a stream along a camera path at `fps` (default: the stream's).

    Length: `frames`, or `duration` seconds, or one pass through the stream. Frames are dropped
    when late. `out`: also record the shown frames to an MP4 (at the target rate; dropped frames
    are left out). On a failure mid-stream the recording keeps what was shown and the error is
    raised after it is written.

    bandwidth: simulate a link of this many kbit/s (with `latency_s` per request and a buffer of
    `max_buffer_s` seconds): the ABR rule picks each GOP's rendition, the startup and stalls are
    waited out, and the stats' `link` reports switches, stalls and time per rendition.
    rendition: play this one (over the link, when a bandwidth is given).
    """
    s = open_playable(stream, hwaccel)
    rate = float(fps or s.fps)
    if not rate > 0:
        raise RenderError(f"fps must be positive, got {rate}")
    if duration is not None:
        if not duration > 0:
            raise RenderError(f"--duration must be positive, got {duration}")
        frames = max(1, round(duration * rate))
    cam_path = camera_path(s, path, frames, size, data)
    renditions, link, notes = choose_renditions(s, cam_path.times, rate, bandwidth, rendition, latency_s, max_buffer_s)
    renderer = _renderer(s, device, fast)

    def run(on_frame: FrameCallback | None) -> PlaybackStats:
        stats = play(s, cam_path, renderer, fps=rate, on_frame=on_frame, progress=progress, renditions=renditions,
                     link=link)
        stats.fallbacks = notes
        return stats

    if out is None:
        return run(None)
    with recording(out, rate, cam_path.size, keep_partial=True) as on_frame:
        return run(on_frame)
