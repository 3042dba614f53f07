"""featvid's Python API: the pipeline's stages as plain functions (what the CLI does, without printing).

    import featvid

    data = featvid.synth_scene("scene", frames=4, views=12, size=64)
    run = featvid.train_run(data, "run", preset="fast")           # -> featvid.formats.run.Run
    baked = featvid.bake_run(run.path, "baked")                    # -> Path of the baked folder
    stream_dir = featvid.encode_stream(baked, "scene.fvv")         # -> Path of the stream folder
    stream = featvid.open_stream(stream_dir)                       # -> featvid.codecs.Stream
    featvid.render_video(stream, "orbit.mp4", path="orbit")        # -> PlaybackStats
    report = featvid.evaluate(stream_dir, data)                     # -> EvalReport (report.mean_psnr)

Every function is a thin call into the stage that does the work (featvid.pipeline, featvid.train,
featvid.bake, featvid.codecs, featvid.render), so the API and the CLI give the same results. Errors
are featvid.FeatvidError subclasses. The names differ from featvid's packages on purpose: after
`import featvid.train`, `featvid.train` is that package, so the function is `featvid.train_run`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from featvid.bake import bake_run as _bake_run
from featvid.codecs import DEFAULT_PRESET, Preset, Stream, encode_baked
from featvid.codecs import open_stream as _open_stream
from featvid.codecs.backends import DEFAULT_BACKEND
from featvid.data.synth import DEFAULT_SCENE, write_synth
from featvid.errors import ConfigError
from featvid.field.evaluate import EvalReport
from featvid.formats.run import Run
from featvid.pipeline import describe as _describe
from featvid.pipeline import encode_run, evaluate_source, kind_of, train_dataset
from featvid.render.paths import CameraPath
from featvid.render.playback import render_path_video
from featvid.render.player import PlaybackStats

log = logging.getLogger(__name__)

PathLike = str | Path

__all__ = ["synth_scene", "train_run", "bake_run", "encode_stream", "open_stream", "render_video", "evaluate",
           "describe"]


def synth_scene(out: PathLike, scene: str = DEFAULT_SCENE, frames: int = 8, views: int = 12, size: int = 64,
                test_views: int = 2, seed: int = 0, backdrop: bool = True) -> Path:
    """Render a built-in dynamic scene into the dataset folder `out` (D-NeRF/Blender layout).

    `views` cameras in all, the last `test_views` held out for evaluation; `size` pixels a side;
    `frames` at 30 fps. Returns `out`. Scenes: featvid.data.synth.SCENES (dancer, orbits, crossing;
    room and forward: a subject in a textured room / before a backdrop, opaque images, which
    `backdrop=False` leaves out: the same subject and cameras masked on white).
    """
    return write_synth(out, scene=scene, frames=frames, views=views, size=size, seed=seed, test_views=test_views,
                       backdrop=backdrop)


def train_run(dataset: PathLike, out: PathLike, preset: str = "fast", *, frames: tuple[int, int] | None = None,
              aabb: torch.Tensor | None = None, device: str = "auto", force: bool = False,
              data_format: str | None = None, downscale: float = 1.0, masks: str = "auto", **overrides: Any) -> Run:
    """Train (or resume) the run folder `out` from the dataset folder `dataset`, as `featvid train`
    does; returns the finished Run.

    preset: a training preset of featvid.train.config.PRESETS (test, demo, fast, default, quality);
    `overrides`: TrainConfig fields over it, by the names `featvid.train.config.preset(name,
    **overrides)` takes (e.g. grid_resolution=32, gop=4). frames: dataset frames (A, B), B = -1 for
    the end (default: all). aabb: the scene box [2, 3] (default: the dataset's own, else estimated;
    a resumed run keeps its own). force: start over in a folder that holds a run of another config.
    data_format, downscale, masks: how the dataset is read. The scene box and any doubt about it
    go to the log (the library prints nothing).
    """
    train_dataset(Path(dataset), Path(out), preset, overrides, frames=frames, aabb=aabb, force=force, device=device,
                  on_step=log.info, on_warning=log.warning, format=data_format, downscale=downscale, masks=masks)
    return Run(out)


def bake_run(run: PathLike | Run, out: PathLike) -> Path:
    """Bake the finished run folder `run` into lossless per-GOP atlas planes in `out`; returns `out`.
    Bake once, encode many times (`encode_stream`)."""
    return _bake_run(run.path if isinstance(run, Run) else run, out)


def encode_stream(source: PathLike, out: PathLike, preset: str | Preset | None = None, *, crf: float | None = None,
                  ladder: str | list[str] | None = None, feature_basis: bool | None = None,
                  backend: str = DEFAULT_BACKEND, plane_qp: Sequence[float] | None = None,
                  space_qp: Sequence[float] | None = None) -> Path:
    """Encode a baked folder (or a run folder, baked on the way in a temporary folder) into the
    stream folder `out` (NAME.fvv); returns `out`.

    preset: a codec preset of `featvid presets` (default: the recommended one, DEFAULT_PRESET);
    crf: the preset's rate overridden; ladder: several renditions in one stream instead of one
    preset ("abr", or "PRESET,PRESET,..."); feature_basis: code features in the stream's KLT basis
    (default: the preset's choice); backend: "pyav" in process or "ffmpeg" the binary; plane_qp: the
    preset's QP offset per atlas plane overridden (density first; H.264/H.265); space_qp: its
    (inner box, shell) offsets of a contracted grid.
    """
    if kind_of(Path(source)) == "run":
        if ladder is not None:
            raise ConfigError(f"{source} is a run folder: bake it first (bake_run) to encode a ladder")
        return encode_run(source, out, preset or DEFAULT_PRESET, crf, backend, feature_basis=feature_basis,
                          plane_qp=plane_qp, space_qp=space_qp)
    return encode_baked(source, out, preset, crf=crf, backend=backend, feature_basis=feature_basis, ladder=ladder,
                        plane_qp=plane_qp, space_qp=space_qp)


def open_stream(path: PathLike, hwaccel: str = "auto") -> Stream:
    """Open and check the stream folder `path`: `.frame(t)` decodes frame t to a SparseGrid,
    `.mlp(device)` is its shading MLP, `.summary()` its sizes. hwaccel: auto, cuda or none."""
    return _open_stream(path, hwaccel=hwaccel)


def render_video(stream: PathLike | Stream, out: PathLike, path: str | CameraPath = "orbit", *,
                 size: tuple[int, int] | None = None, frames: int | None = None, fps: float | None = None,
                 device: str = "auto", data: PathLike | None = None, progress: bool = False) -> PlaybackStats:
    """Render a free-viewpoint video of a stream (a folder or an opened Stream) along a camera path
    into the H.264 MP4 `out`; returns the timings. A Gaussian stream is splatted (featvid.render.splats).

    path: orbit, spiral, test (the dataset's held-out cameras: give `data`), a .json path file
    (format: `featvid render --help`), or a featvid.render.paths.CameraPath. size: (width, height)
    pixels (default: 512x512 for orbit and spiral, the path's own otherwise). frames: output frames
    (default: the stream's count); frame i shows stream frame i mod T. fps: of the MP4 (default:
    the stream's).
    """
    return render_path_video(stream, path, out, size=size, device=device, frames=frames, fps=fps, data=data,
                             progress=progress)


def evaluate(source: PathLike, data: PathLike, *, device: str = "auto", aabb: torch.Tensor | None = None,
             data_format: str | None = None, downscale: float = 1.0, masks: str = "auto") -> EvalReport:
    """Held-out PSNR/SSIM of a run or a stream folder against the dataset `data` (read as it was
    trained: data_format, downscale, masks). `.mean_psnr` (dB), `.mean_ssim`, `.per_frame`, `.table()`.
    A Gaussian stream is splatted; its `data` may also be the folder of PLY frames it was made from
    (both rendered through held-out cameras, featvid.render.splat_eval)."""
    return evaluate_source(Path(source), Path(data), aabb, device, format=data_format, downscale=downscale,
                           masks=masks)


def describe(path: PathLike) -> dict[str, Any]:
    """The summary `featvid info` shows for a dataset, run, baked folder or stream folder."""
    return _describe(Path(path))
