"""The jobs that chain the stages: make what is missing, reuse what is current.

`featvid demo`, the benchmarks (`featvid bench`, benchmarks/*.py) and the CLI's `info` / `eval`
all go through these, so "is this run stale", "is this stream current" and "evaluate a folder"
have one answer each:

    ensure_synth   a built-in scene on disk (rendered once)
    ensure_run     a finished run of a dataset under a config (resumed, or retrained when the
                   folder holds a run of another config)
    ensure_bake    a baked folder of a run (baked again when missing or of an older format)
    ensure_stream  a stream of a bake under a preset (encoded again when it is another preset's,
                   or the preset changed)
    evaluate_source, describe   held-out scores and the summary of any featvid folder
    run_demo       the whole pipeline on the built-in scene
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from featvid.atomic import make_dirs, write_json
from featvid.bake import bake_run
from featvid.bake.atlas import baked_from
from featvid.codecs import DEFAULT_PRESET, Preset, encode_baked, open_stream
from featvid.codecs.backends import DEFAULT_BACKEND
from featvid.codecs.manifest import stream_is_current  # the one staleness rule (re-exported)
from featvid.codecs.presets import get_preset
from featvid.codecs.roundtrip import AtlasRoundTrip
from featvid.data import load_dataset
from featvid.data.scene_box import format_box
from featvid.data.synth import DEFAULT_SCENE, SCENES, write_synth
from featvid.device import resolve_device
from featvid.errors import ConfigError, FormatError
from featvid.field.evaluate import EvalReport, evaluate
from featvid.formats.baked import Baked
from featvid.formats.run import Run, recorded_config
from featvid.metrics import bytes_per_frame
from featvid.outputs import DEMO, RUN, check_output_dir
from featvid.train.config import TrainConfig
from featvid.train.config import preset as train_preset
from featvid.train.config import preset_and_derived as train_preset_and_derived
from featvid.train.scene_box import resolve_box
from featvid.train.segments import train_segmented
from featvid.train.summary import TrainSummary
from featvid.train.train import train

log = logging.getLogger(__name__)

StepCallback = Callable[[str], None]  # told what a job does next, e.g. the CLI's progress line


def _quiet(text: str) -> None:
    log.info("%s", text)


# ---- what a folder is ----------------------------------------------------------------------------

def kind_of(path: Path) -> str:
    """'stream', 'run', 'baked' or 'dataset', from the files in a folder."""
    path = Path(path)
    if (path / "manifest.json").is_file() or path.suffix == ".fvv":
        return "stream"
    if (path / "run.json").is_file():
        return "run"
    if (path / "baked.json").is_file():
        return "baked"
    return "dataset"


def describe(path: Path, aabb: torch.Tensor | None = None, device: str = "auto", **dataset_options: Any) -> dict[str, Any]:
    """The summary `featvid info` shows for a dataset, run, baked folder or stream.

    A dataset is read with `dataset_options` (featvid.data.load_dataset's format, downscale, masks)
    and shows the scene box `train` would use and why; a given `aabb` is checked against the
    subject (warnings under "aabb_warnings")."""
    kind = kind_of(path)
    if kind == "stream":
        return open_stream(path).summary()
    if kind == "run":
        return Run(path).summary()
    if kind == "baked":
        return Baked(path).summary()
    video, report = resolve_box(load_dataset(path, aabb=aabb, **dataset_options), device=device)
    summary = video.summary()
    if report.outside is not None:
        summary["aabb_subject_outside"] = round(report.outside, 4)
    if report.warnings:
        summary["aabb_warnings"] = report.warnings
    return summary


def evaluate_source(source: Path, data: Path, aabb: torch.Tensor | None = None, device: str = "auto",
                    **dataset_options: Any) -> EvalReport:
    """Held-out PSNR/SSIM of a run or a stream folder against a dataset (read with `dataset_options`:
    format, downscale, masks, as it was trained). A stream is decoded on the evaluation device and
    scored exactly like the run it came from. A Gaussian stream is splatted (featvid.render.splat_eval),
    against a dataset's held-out views or, when `data` is a folder of PLY frames, against those
    Gaussians rendered through held-out cameras."""
    dev = resolve_device(device)
    if kind_of(source) == "stream":
        stream = open_stream(source)
        if stream.representation == "gaussians":  # splatted; `data` may also be the PLY frames it came from
            from featvid.render.splat_eval import evaluate_gaussian_stream

            return evaluate_gaussian_stream(stream, Path(data), dev, **dataset_options)
        frames = enumerate(stream.frames(dev))
        mlp, settings, box = stream.mlp(dev), stream.render_settings, stream.aabb
        offset = 0
    else:
        run = Run(source)
        frames = run.frames()
        mlp, settings, box = run.mlp(dev), run.render_settings, run.aabb
        offset = run.frame_start
    video = load_dataset(data, aabb=aabb if aabb is not None else box, **dataset_options)
    return evaluate(frames, mlp, settings, video, device=dev, frame_offset=offset)


def training_video(dataset: Path, out: Path, aabb: torch.Tensor | None = None, force: bool = False,
                   device: str = "auto", **dataset_options: Any) -> tuple[Any, list[str]]:
    """The dataset as `train` fits it into `out`, and warnings about its scene box.

    The box is stored in the run: resuming `out` keeps the run's own box (a different `aabb` is a
    ConfigError); a new run (or `force`) checks a given `aabb` against the subject, or takes the
    dataset's own box, or estimates one (featvid.train.scene_box.resolve_box). `dataset_options`:
    featvid.data.load_dataset's format, downscale, masks. The video's `box.reason` says which.
    """
    from featvid.train.scene_box import box_for_run

    video = load_dataset(dataset, aabb=aabb, **dataset_options)
    resumed = box_for_run(video, out, force)
    if resumed is not None:
        return resumed, []
    video, report = resolve_box(video, device=device)
    return video, list(report.warnings)


def codec_round_trip(config: TrainConfig) -> AtlasRoundTrip | None:
    """The codec a config with the codec in the loop trains through (`losses.codec_loop`, a codec
    preset's name), checked before anything trains; None for a config without one."""
    name = config.losses.codec_loop
    return AtlasRoundTrip(name).check() if name else None


def train_dataset(dataset: Path, out: Path, preset_name: str = "fast", overrides: dict[str, Any] | None = None,
                  frames: tuple[int, int] | None = None, aabb: torch.Tensor | None = None, force: bool = False,
                  device: str = "auto", on_step: StepCallback = _quiet, on_warning: StepCallback = log.warning,
                  workers: Any = None, **dataset_options: Any) -> TrainSummary:
    """What `featvid train` does: the preset with `overrides` (flat TrainConfig names, None ignored;
    each value the preset rules derive from them is told to `on_warning`), the dataset with its
    scene box (`training_video`: the box told to `on_step`, its warnings to `on_warning`), then the
    run trained into `out` or resumed there. frames: dataset frames (A, B), B -1 for the end.
    workers: where a segmented run's segments train (featvid.train.segments.Workers; made by
    featvid.batch.train_job), None: here. Returns what the run holds in a few figures."""
    check_output_dir(out, RUN, [dataset])  # before the dataset is read: a refusal costs nothing
    config, derived = train_preset_and_derived(preset_name, **(overrides or {}))
    round_trip = codec_round_trip(config)  # a codec it cannot run is refused before the dataset is read
    for rule in derived:
        on_warning(str(rule))
    video, warnings = training_video(dataset, out, aabb, force, device, **dataset_options)
    for warning in warnings:
        on_warning(warning)
    on_step(f"scene box {format_box(video.aabb)}: {video.box.reason}")
    if frames is not None and frames[1] == -1:
        frames = (frames[0], video.num_frames)
    return TrainSummary.of(train_segmented(dataset, out, config, frames=frames, device=device, force=force,
                                           video=video, workers=workers, round_trip=round_trip))


# ---- make what is missing -------------------------------------------------------------------------

def ensure_synth(folder: Path, scene: str | None = None, frames: int = 8, views: int = 12, size: int = 64,
                 seed: int = 0, test_views: int = 2, progress: bool = True) -> Path:
    """The built-in scene rendered into `folder` (D-NeRF format), unless it is already there."""
    folder = Path(folder)
    if not (folder / "transforms_train.json").is_file():
        write_synth(folder, scene=scene or DEFAULT_SCENE, frames=frames, views=views, size=size, seed=seed,
                    test_views=test_views, progress=progress)
    return folder


def ensure_run(dataset: Path, run_dir: Path, config: TrainConfig, frames: tuple[int, int] | None = None,
               device: str = "auto", video: Any = None) -> tuple[Run, bool]:
    """A finished run of `dataset` under `config` in `run_dir`: resumed where it stopped, or trained
    again from scratch when the folder holds a run of another config (an older featvid, another
    preset). Returns (the run, whether it was started over)."""
    recorded = recorded_config(run_dir)  # either form: flat (before the config had sections) or nested
    stale = recorded is not None and not config.matches(recorded)
    if stale:
        log.warning("%s holds a run made with other settings: training it again", run_dir)
    return train(dataset, run_dir, config, frames=frames, device=device, force=stale, video=video,
                 round_trip=codec_round_trip(config)), stale


def ensure_bake(run_dir: Path, baked_dir: Path, fresh: bool = False) -> tuple[Path, bool]:
    """The bake of `run_dir` in `baked_dir`: baked again when `fresh` (the run changed), when it is
    missing, of an older format, or of another run (another MLP or other GOPs: a run trained again
    into the same folder). Returns (folder, whether it was baked now)."""
    if not fresh:
        try:
            if baked_from(Run(run_dir), Baked(baked_dir)):
                return Path(baked_dir), False
        except FormatError:
            pass
    return bake_run(run_dir, baked_dir), True


def encode_run(run_dir: str | Path, out: str | Path, preset: str | Preset = DEFAULT_PRESET, crf: float | None = None,
               backend: str = DEFAULT_BACKEND, baked_dir: str | Path | None = None,
               feature_basis: bool | None = None, plane_qp: Sequence[float] | None = None,
               space_qp: Sequence[float] | None = None) -> Path:
    """Bake `run_dir` (into `baked_dir`, or a temporary folder) and encode it into `out`; returns `out`."""
    offsets = {"plane_qp": plane_qp, "space_qp": space_qp}
    if baked_dir is not None:
        return encode_baked(bake_run(run_dir, baked_dir), out, preset, crf, backend, feature_basis, **offsets)
    with tempfile.TemporaryDirectory(prefix="featvid-bake-") as tmp:
        return encode_baked(bake_run(run_dir, Path(tmp) / "baked"), out, preset, crf, backend, feature_basis, **offsets)


def ensure_stream(baked_dir: Path, stream_dir: Path, preset_name: str, force: bool = False) -> bool:
    """A stream of the bake under `preset_name` in `stream_dir`; encoded when forced or not current.
    Returns whether it was encoded now."""
    if not force and stream_is_current(stream_dir, preset_name):
        return False
    encode_baked(baked_dir, stream_dir, preset=preset_name)
    return True


# ---- the demo -------------------------------------------------------------------------------------

def run_demo(out: Path = Path("demo"), scene: str | None = None, frames: int = 8, views: int = 24, size: int = 64,
             preset_name: str = "demo", codec_preset: str | None = None, device: str = "auto",
             on_step: StepCallback = _quiet) -> dict[str, Any]:
    """The whole pipeline on the built-in scene, in `out`: synth -> train -> eval -> bake -> encode
    (default and web presets) -> eval the stream -> orbit video. Finished steps are kept, so a
    second run repeats only what is missing. Returns (and writes to out/demo.json) the figures:
    held-out PSNR before and after the codec (dB), bytes per frame, the ratio to float16 grids."""
    from featvid.render.playback import render_path_video

    started = time.perf_counter()
    # every name is checked before the first step: synthesis alone takes a minute
    config = train_preset(preset_name)
    codec_preset = codec_preset or DEFAULT_PRESET
    get_preset(codec_preset)
    if scene is not None and scene not in SCENES:
        raise ConfigError(f"unknown scene {scene!r} (choose from {', '.join(SCENES)})")
    out = Path(out)
    check_output_dir(out, DEMO)  # new, empty or an earlier demo: each step checks its own folder again
    make_dirs(out)
    data, run_dir, baked = out / "scene", out / "run", out / "baked"
    stream_dir, web_dir, orbit = out / "scene.fvv", out / "scene-web.fvv", out / "orbit.mp4"

    def step(text: str) -> None:
        on_step(f"[{time.perf_counter() - started:6.1f} s] {text}")

    if not (data / "transforms_train.json").is_file():
        step(f"synth: rendering the built-in scene ({frames} frames, {views} views, {size} px)")
    ensure_synth(data, scene, frames, views, size)
    step(f"train: {run_dir} (preset {preset_name}; resumes if interrupted)")
    run, retrained = ensure_run(data, run_dir, config, device=device)
    step("eval: the float model on the held-out views")
    float_report = evaluate_source(run_dir, data, device=device)
    _, baked_now = ensure_bake(run_dir, baked, fresh=retrained)
    if baked_now:
        step(f"bake: {baked}")
    for target, name in ((stream_dir, codec_preset), (web_dir, "web")):
        if ensure_stream(baked, target, name, force=baked_now):
            step(f"encode: {target} (preset {name})")
            if target == stream_dir:
                orbit.unlink(missing_ok=True)  # rendered from the old stream
    step("eval: the stream, after the codec")
    stream_report = evaluate_source(stream_dir, data, device=device)
    if not orbit.is_file():
        step(f"render: orbit video {orbit}")
        render_path_video(open_stream(stream_dir), "orbit", orbit, size=(256, 256), device=device)

    n = run.num_frames
    summary = run.summary()
    fp16_bpf = summary["float16_grid_bytes_per_frame"]
    stream_bpf = bytes_per_frame(stream_dir, n)
    result = {
        "frames": n, "seconds": round(time.perf_counter() - started, 1),
        "psnr_float": float_report.mean_psnr, "ssim_float": float_report.mean_ssim,
        "psnr_stream": stream_report.mean_psnr, "ssim_stream": stream_report.mean_ssim,
        "codec_preset": codec_preset, "stream_bytes_per_frame": stream_bpf,
        "web_bytes_per_frame": bytes_per_frame(web_dir, n), "run_grid_bytes_per_frame": summary["grid_bytes_per_frame"],
        "float16_grid_bytes_per_frame": fp16_bpf, "ratio_vs_float16_grids": fp16_bpf / stream_bpf,
        "paths": {"out": str(out), "stream": str(stream_dir), "web": str(web_dir), "orbit": str(orbit)},
    }
    write_json(out / "demo.json", result)
    return result
