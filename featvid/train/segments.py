"""Training in segments (`gop.segment` S > 0): a capture cut into segments of S frames that train
independently of each other, so that workers can train them side by side (issue 28).

    1. coarse pass, per segment: its first frame from empty space (not warm-started from the
       segment before), the rest warm-started inside it; its GOPs are formed from its own frames,
       so every segment starts a GOP
    2. frame 0: the keyframe that learns the shared MLP (and the cameras' colour correction), once
       segment 0's coarse pass is done, beside the other segments' coarse passes
    3. per segment, frame after frame: the first frame is a refreshed keyframe (its coarse density,
       frame 0's features where they are, the MLP kept: `FitSchedule.refresh`), every later
       frame the trainer's warm frame (featvid.train.train), keyframe refreshes split its GOPs
       as in any run; segment 0 goes on from frame 0
    4. merge: one run folder, as a run trained in one process would be

Each segment trains into a staging run folder of its own, RUN/segments/NNNNN/ (NNNNN its first
frame): every file of one segment has one writer, so no two workers ever write one file (the run's
files.json, run.json and log.jsonl among them). A staging folder is a run folder whose GOPs
outside the segment are placeholders that nothing reads. The merge copies each segment's files
into RUN, each frame with its GOP's index in the whole run, writes the log and run.json with
every GOP last, then removes RUN/segments.

What a task carries: the dataset's and the run's paths, how to read the dataset, the device, the
segment's index: never tensors. A worker reads everything else from the run folder and opens the
dataset itself (lazily). Every random choice comes from (seed, frame), every start from files, so
a segment trains to the same bytes whichever worker trains it and however many there are (with
torch on one thread in each: featvid.batch.executors). Resume: a frame file is the marker, in its
segment's staging folder; a segment goes on after its last finished frame.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from featvid.atomic import make_dirs, write_text
from featvid.errors import FormatError, TrainingError
from featvid.field.volume import RenderSettings
from featvid.formats.run import Run, RunGop, coarse_name, frame_name, read_run_file, write_run_file, write_run_meta
from featvid.train.colour import COLOUR_FILE, CameraColour
from featvid.train import train as tr
from featvid.train.config import TrainConfig
from featvid.train.gops import mapping_name

SEGMENTS_DIR = "segments"  # the staging folders, inside the run folder

Task = tuple[str, Callable[..., Any], tuple]
"""One task of a phase: (label, module function, its picklable arguments)."""


@dataclass(frozen=True)
class SegmentJob:
    """What every task of one run carries: paths and options, nothing loaded."""

    dataset: str  # the dataset folder (absolute: every worker opens it)
    out: str  # the run folder (absolute)
    dataset_options: dict[str, Any] = field(default_factory=dict)  # load_dataset's format, downscale, masks
    device: str = "auto"
    quiet: bool = False  # a worker's task: no progress lines of its own (the driver shows one display)
    round_trip: Any = None  # the codec in the loop's codec (featvid.codecs.roundtrip: a dataclass of names), or None


@dataclass
class Workers:
    """Where the segments' tasks run: `run(phase, tasks)` runs every task of one phase (in any
    order, anywhere) and returns their values in order, or raises TrainingError naming what failed
    (the finished work stays for a rerun). featvid.batch.train_job makes one over an executor."""

    run: Callable[[str, list[Task]], list[Any]]
    dataset_options: dict[str, Any] = field(default_factory=dict)


def segment_spans(num_frames: int, size: int) -> list[tuple[int, int]]:
    """Run frames [start, end) of each segment of `size` frames (the last may be shorter)."""
    if size < 1:
        raise TrainingError(f"a segment has at least one frame, got {size}")
    return [(s, min(s + size, num_frames)) for s in range(0, num_frames, size)]


def stage_dir(out: str | Path, start: int) -> Path:
    """The staging run folder of the segment that starts at run frame `start`."""
    return Path(out) / SEGMENTS_DIR / f"{start:05d}"


# -- the driver ---------------------------------------------------------------------------------------
def train_segmented(dataset: str | Path, out: str | Path, config: TrainConfig, frames: tuple[int, int] | None = None,
                    device: str = "auto", force: bool = False, on_frame: Callable[[int, dict], None] | None = None,
                    video: Any = None, workers: Workers | None = None, round_trip: Any = None) -> Run:
    """featvid.train.train.train for any config: a config with segments trains in segments, on
    `workers` when given (else here, one after another), any other as train() trains it.
    round_trip: the codec in the loop's codec (train's argument of that name)."""
    def segments(scene: Any, dataset: str | Path, device: str, fresh: bool, on_frame: Any) -> Run:
        return train_segments(scene, dataset, device, fresh, on_frame, workers)

    return tr.train(dataset, out, config, frames=frames, device=device, force=force, on_frame=on_frame, video=video,
                    segments=segments, round_trip=round_trip)


def train_segments(scene: Any, dataset: str | Path, device: str, fresh: bool,
                   on_frame: Callable[[int, dict], None] | None = None, workers: Workers | None = None) -> Run:
    """Train (or resume) the run folder `scene.out` in segments; run.json is written, without GOPs.
    scene: featvid.train.train's _Scene of the run. fresh: a new run (any staging left is removed).
    workers: where the tasks run; None: here, one after another (on_frame(t, record) after each
    frame). With workers, on_frame is called for every frame once the run is merged."""
    out = Path(scene.out)
    root = out / SEGMENTS_DIR
    if fresh and root.exists():
        shutil.rmtree(root)
    run = Run(out)
    if run.gops and len(run.finished_frames()) == run.num_frames:  # merged: a kill can leave staging behind
        shutil.rmtree(root, ignore_errors=True)
        return run
    spans = segment_spans(scene.num_frames, scene.config.gop.segment)
    if workers is None:
        job = SegmentJob(str(Path(dataset).resolve()), str(out.resolve()), {}, device, round_trip=scene.round_trip)

        def inline(phase: str, tasks: list[Task]) -> list[Any]:
            return [fn(*args, video=scene.video, on_frame=on_frame) if fn is fine_task else fn(*args, video=scene.video)
                    for _, fn, args in tasks]
        run_phase = inline
    else:
        job = SegmentJob(str(Path(dataset).resolve()), str(out.resolve()), dict(workers.dataset_options), device,
                         quiet=True, round_trip=scene.round_trip)
        run_phase = workers.run
    coarse = [(f"segment {s}..{e - 1}: coarse pass", coarse_task, (job, k)) for k, (s, e) in enumerate(spans)]
    run_phase("coarse pass", coarse[:1])
    # frame 0 needs only its own segment's coarse pass: the other segments' run beside it
    run_phase("frame 0 + coarse pass", [("frame 0", fine_task, (job, 0, 1)), *coarse[1:]])
    run_phase("segments", [(f"segment {s}..{e - 1}", fine_task, (job, k)) for k, (s, e) in enumerate(spans)])
    records = merge(out, spans)
    if workers is not None and on_frame is not None:
        for record in records:
            on_frame(record["frame"], record)
    return Run(out)


def merge(out: Path, spans: list[tuple[int, int]]) -> list[dict]:
    """Copy every segment's files into the run folder `out` (each frame with its GOP's index in
    the whole run), then the log, run.json with every GOP (last), and remove the staging folders.
    Returns the frames' log records. Rerunning it after a kill writes the same files again."""
    meta = {k: v for k, v in Run(out).meta.items() if k not in ("format", "version")}
    gops: list[RunGop] = []
    records: list[dict] = []
    for k, (s, e) in enumerate(spans):
        stage = Run(stage_dir(out, s))
        first = next(i for i, g in enumerate(stage.gops) if g.start == s)  # after the placeholder of frames before
        own = [g for g in stage.gops if s <= g.start < e]
        offset = len(gops) - first  # a staging GOP index -> the run's
        for g in own:
            write_run_file(out, g.mapping, stage.read_file(g.mapping, "mapping file"))
        for t in range(s, e):
            write_run_file(out, coarse_name(t), stage.read_file(coarse_name(t), "coarse grid file"))
            g = stage.gop_of(t) + offset
            write_run_file(out, frame_name(t), stage.frame(t).to_bytes(meta={"frame": t, "gop": g}))
        done = {r["frame"]: r for r in stage.log() if s <= r["frame"] < e}
        missing = [t for t in range(s, e) if t not in done]
        if missing:
            raise FormatError(f"{stage.path / 'log.jsonl'}: no record of finished frame {missing[0]}; "
                              "rerun with --force")
        records += [{**done[t], "gop": done[t]["gop"] + offset} for t in range(s, e)]
        gops += own
    first_stage = stage_dir(out, 0)
    write_run_file(out, "mlp.safetensors", read_run_file(first_stage, "mlp.safetensors", "MLP file"))
    if (first_stage / COLOUR_FILE).is_file():
        write_run_file(out, COLOUR_FILE, read_run_file(first_stage, COLOUR_FILE, "colour correction file"))
    write_text(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    write_run_meta(out, {**meta, "gops": [g.to_dict() for g in gops]})
    shutil.rmtree(out / SEGMENTS_DIR)
    return records


# -- the tasks (run on workers) -------------------------------------------------------------------------
def coarse_task(job: SegmentJob, k: int, video: Any = None) -> int:
    """Segment k's coarse pass and GOPs, into its staging folder (kept when done already); returns
    its GOP count."""
    with _quiet(job.quiet):
        scene, (s, e) = _segment_scene(job, k, video)
        stage = Path(scene.out)
        if (stage / "run.json").is_file():
            done = [g for g in Run(stage).gops if s <= g.start < e]
            if done:
                return len(done)
        base = _stage_meta(job)
        make_dirs(stage)
        write_run_meta(stage, {**base, "gops": []})
        gops = tr._coarse_and_gops(scene, tuple(base["grid_shape"]), range(s, e))
        n = base["num_frames"]
        head = [RunGop(0, s, mapping_name(0)).to_dict()] if s > 0 else []  # placeholders: never read
        tail = [RunGop(e, n - e, mapping_name(e)).to_dict()] if e < n else []
        write_run_meta(stage, {**base, "gops": head + gops + tail})  # last: the coarse pass is done
        return len(gops)


def fine_task(job: SegmentJob, k: int, until: int | None = None, video: Any = None,
              on_frame: Callable[[int, dict], None] | None = None) -> int:
    """Train segment k's unfinished frames (up to run frame `until`, default its end) into its
    staging folder; returns how many it trained. Segment 0 starts with frame 0, which learns the
    MLP; any other segment needs frame 0 finished."""
    with _quiet(job.quiet):
        scene, (s, e) = _segment_scene(job, k, video)
        stage = Path(scene.out)
        end = e if until is None else min(until, e)
        run = Run(stage)
        finished = {t for t in run.finished_frames() if s <= t < e}
        todo = [t for t in range(s, end) if t not in finished]
        if not todo:
            return 0
        first = todo[0]
        if any(t > first for t in finished):
            raise TrainingError(f"{stage}: frame {first} is missing but later frames exist; rerun with --force")
        tr._trim_log(stage, finished)
        run = run.resume_at(first)  # a refresh split left by a kill during frame `first` is undone
        dev = scene.dev
        first_stage = stage_dir(job.out, 0)
        mlp = tr._new_mlp(scene.config, dev) if first == 0 else Run(first_stage).mlp(dev)
        scene.colour = _colour(scene, first_stage, first)
        prev_grid = run.frame(first - 1) if first > s else None
        seed_grid = Run(first_stage).frame(0) if first == s and s > 0 else None  # frame 0: where features start
        records = [r for r in run.log() if s <= r["frame"] < first]
        missing = sorted(set(range(s, first)) - {r["frame"] for r in records})
        if missing:
            raise FormatError(f"{stage / 'log.jsonl'}: no record of finished frame {missing[0]}, so the segment "
                              "cannot resume as it would have gone on; rerun with --force")
        for t in range(first, end):
            record, prev_grid, run = tr._train_frame(scene, run, t, prev_grid, mlp, records,
                                                     segment_of=seed_grid if t == s else None)
            records.append(record)
            if on_frame is not None:
                on_frame(t, record)
        return end - first


def _segment_scene(job: SegmentJob, k: int, video: Any) -> tuple[Any, tuple[int, int]]:
    """The trainer's _Scene of segment k (its staging folder the scene's folder) and its frames,
    all from the run's run.json; the dataset opened here unless `video` is given."""
    from featvid.device import resolve_device

    meta = Run(job.out).meta
    settings = RenderSettings.from_dict(meta["render"], str(Path(job.out) / "run.json"))
    config = TrainConfig.from_dict(meta["config"]).in_space(settings.space)  # as the run trains (train.train)
    spans = segment_spans(int(meta["num_frames"]), config.gop.segment)
    if not 0 <= k < len(spans):
        raise TrainingError(f"{job.out}: no segment {k} (the run has {len(spans)})")
    if video is None:  # the box the run was started in: the scene box (contracted runs record it) or the grid's
        from featvid.data import load_dataset

        box = torch.tensor(meta.get("scene_box", meta["aabb"]), dtype=torch.float32)
        video = load_dataset(job.dataset, aabb=box, **job.dataset_options)
    scene = tr._Scene(stage_dir(job.out, spans[k][0]), video, int(meta.get("frame_start", 0)), int(meta["num_frames"]),
                   list(meta["views"]["fit"]), list(meta["views"]["validation"]),
                   torch.tensor(meta["aabb"], dtype=torch.float32), settings, config, resolve_device(job.device),
                   round_trip=job.round_trip if config.losses.codec_loop else None)
    return scene, spans[k]


def _stage_meta(job: SegmentJob) -> dict[str, Any]:
    """The run's run.json, as every staging folder starts from."""
    return {k: v for k, v in Run(job.out).meta.items() if k not in ("format", "version")}


def _colour(scene: Any, first_stage: Path, first: int) -> CameraColour | None:
    """The cameras' colour correction when the config asks for one: new for frame 0, else as
    frame 0 learned it."""
    if not scene.config.losses.colour_correction:
        return None
    if first == 0:
        return CameraColour(len(scene.fit_views)).to(scene.dev)
    data = read_run_file(first_stage, COLOUR_FILE, "colour correction file")
    return CameraColour.from_bytes(data, str(first_stage / COLOUR_FILE), len(scene.fit_views)).to(scene.dev)


@contextlib.contextmanager
def _quiet(quiet: bool):
    """A worker's task writes no progress lines: the driver shows the one display."""
    if not quiet:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        yield
