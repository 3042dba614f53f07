"""Sequential training of a multi-view video into per-frame sparse grids + one tiny MLP (VideoRF).

1. Coarse pass (featvid.train.coarse): every frame's low-resolution density, kept in the run
   folder (coarse/NNNNN.safetensors), and from it the frame's occupancy on the fine grid.
2. GOPs (featvid.train.gops): fixed length or "auto"; each GOP's Mapping comes from the union of
   its frames' occupancies, and `mapping.occupancy()` -- exactly the vertices the decoder will
   have -- is the occupancy every frame of the GOP is trained and stored on.
3. Fine pass, frame after frame (featvid.train.fit):
   - the keyframe (frame 0) starts from the coarse density upsampled to the fine grid and learns
     the features and the MLP;
   - every later frame starts from the previous frame's grid carried along the motion estimated
     between their coarse densities (featvid.train.motion), with density taken from the current
     frame's coarse pass where the two disagree (space that appeared or vanished); the MLP is
     frozen (or tuned slowly: `lr_mlp_frame`), and VideoRF's temporal loss (towards that warm
     start: the residual is what is regularised) and spatial loss are added;
   - quality is judged on validation views: training views that no fit ever sees, never the
     dataset's test views. A frame that falls more than `refresh_margin` dB below the last fresh
     keyframe is fitted again as a keyframe (density from its coarse pass, the MLP kept) and starts
     a new GOP, so quality cannot drift without bound -- with `refresh.rate_slope`, only when its
     gain pays for its keyframe's bytes (featvid.train.refresh);
   - every fit runs until its loss stops improving, between a floor and a cap of iterations;
   - with the codec in the loop (`losses.codec_loop`, featvid.train.codec_loop) each fit renders
     what the stream's codec gives back for its values, and a frame is judged as it will stream.

Segments (`gop.segment` S > 0): the capture cut into segments of S frames that train apart, each
from a refreshed keyframe, so that workers can train them side by side (featvid.train.segments).

Resume: a frame file in the run folder is written last, once its frame is finished, so a killed job
rerun with the same command continues after the last finished frame. Every random choice comes
from generators seeded by (seed, frame), so a resumed run is the run that was not interrupted.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from featvid.atomic import make_dirs, write_text
from featvid.progress import progress_bar
from featvid.train import motion
from featvid.train.coarse import CoarseGrid, coarse_pass
from featvid.train.codec_loop import GOP_CONTEXT, CodecLoop, RoundTrip
from featvid.train.colour import COLOUR_FILE, CameraColour
from featvid.train.config import TrainConfig
from featvid.train.fit import FitSchedule, fit_frame, start_loss
from featvid.train.gops import GopBuilder, mapping_name, split_gop
from featvid.train.refresh import frame_bytes, last_keyframe_bytes, refresh_cost
from featvid.formats.run import (COARSE_DIR, Run, RunGop, coarse_name, frame_name, read_run_file, write_run_file,
                              write_run_meta)
from featvid.train.sampling import RaySampler, isg_weights, ist_weights
from featvid.device import resolve_device
from featvid.errors import ConfigError, FormatError, TrainingError
from featvid.field.evaluate import score_frame
from featvid.field.grid import SparseGrid, grid_shape_for, space_resolution
from featvid.field.mapping import Mapping
from featvid.field.mlp import MLPConfig, TinyMLP
from featvid.field.volume import RenderSettings
from featvid.outputs import RUN, check_output_dir

log = logging.getLogger(__name__)

# Files the trainer owns in a run folder; --force removes exactly these.
_RUN_FILES = ("run.json", "mlp.safetensors", COLOUR_FILE, "log.jsonl", "files.json")

# Called after each finished frame with (frame, log record); tests use it to stop a run midway.
FrameCallback = Callable[[int, dict], None]


# -- the run folder ----------------------------------------------------------------------------------
def _identity(config: TrainConfig, dataset: str, frame_start: int, num_frames: int) -> dict[str, Any]:
    """What must match for a run folder to be resumed."""
    return {"config": config.to_dict(), "dataset": dataset, "frame_start": frame_start, "num_frames": num_frames}


def _differs(meta: dict[str, Any] | None, identity: dict[str, Any], config: TrainConfig) -> list[str]:
    """The parts of `identity` a recorded run differs in; its config is compared as a TrainConfig,
    so a run that recorded the flat form (before the config had sections) still resumes."""
    if meta is None:
        return list(identity)
    return [k for k, v in identity.items() if not (config.matches(meta.get(k)) if k == "config" else meta.get(k) == v)]


def _changed_fields(recorded: Any, config: TrainConfig) -> list[str]:
    """The config fields (flat names) a recorded config differs in; all of them when it is unreadable."""
    try:
        old = TrainConfig.from_dict(recorded).flat()
    except ConfigError:
        old = {}
    return [k for k, v in config.flat().items() if old.get(k) != v]


def _prepare_folder(out: Path, identity: dict[str, Any], config: TrainConfig, force: bool) -> dict[str, Any] | None:
    """Check (or clear with force) an existing run folder; return its meta when it can be resumed."""
    meta_path = out / "run.json"
    if meta_path.is_file():
        unreadable = None
        try:
            meta = Run(out).meta
        except FormatError as e:
            meta, unreadable = None, e
        if unreadable is not None and not force:  # say why it cannot resume, not that its config differs
            raise ConfigError(f"{out} holds a run that cannot be resumed ({unreadable}); "
                              "use --force to start it over, or another --out") from unreadable
        diff = _differs(meta, identity, config)
        if not diff and not force:
            return meta
        if not force:
            detail = ""
            if meta is not None and "config" in diff:
                detail = f" (config fields: {', '.join(_changed_fields(meta.get('config'), config))})"
            raise ConfigError(f"{out} holds a run made with another {', '.join(diff)}{detail}; "
                              "use --force to start it over, or another --out")
    elif out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} exists and is not a featvid run folder; use --force or another --out")
    if out.exists():
        _clear_run(out)
    return None


def _clear_run(out: Path) -> None:
    """Remove the trainer's files from `out` (only those: never a whole folder)."""
    for name in (*_RUN_FILES, "coarse_00000.safetensors"):  # the last: what older featvids wrote
        (out / name).unlink(missing_ok=True)
    for p in out.glob("gop_*.fvmap"):
        p.unlink()
    for sub in ("frames", COARSE_DIR):
        if (out / sub).is_dir():
            for p in (out / sub).glob("*.safetensors"):
                p.unlink()


def _append_log(out: Path, record: dict) -> None:
    """Append one JSON line to log.jsonl (the whole file rewritten atomically: it is small)."""
    p = out / "log.jsonl"
    old = p.read_text() if p.is_file() else ""
    write_text(p, old + json.dumps(record) + "\n")


def _trim_log(out: Path, finished: set[int]) -> None:
    """Keep only the log lines of finished frames (a killed frame may have logged before its file)."""
    p = out / "log.jsonl"
    if p.is_file():
        keep = [json.dumps(r) for r in Run(out).log() if r.get("frame") in finished]  # junk lines dropped
        write_text(p, "".join(ln + "\n" for ln in keep))


def _save_coarse(out: Path, t: int, grid: CoarseGrid) -> None:
    """Frame t's coarse grid (raw density + colour logits [4, cx, cy, cz]) as float16."""
    write_run_file(out, coarse_name(t), _st_save({"data": grid.data.detach().half().cpu().numpy()}))


def _load_coarse(out: Path, t: int, aabb: torch.Tensor, dev: torch.device) -> CoarseGrid:
    """Frame t's coarse grid, as the coarse pass left it."""
    path = out / coarse_name(t)
    raw = read_run_file(out, coarse_name(t), "coarse grid file")  # checked against files.json
    try:
        data = torch.from_numpy(_st_load(raw)["data"].astype(np.float32))
    except Exception as e:  # missing or corrupt: the folder cannot go on
        raise FormatError(f"{path}: unreadable coarse grid ({e}); rerun with --force") from e
    return CoarseGrid(data.to(dev), aabb.to(dev))


# -- seeds, views, the MLP ------------------------------------------------------------------------------
def _frame_generator(config: TrainConfig, t: int, device: torch.device, salt: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + 7919 * t + 2 + 104_729 * salt)


def mlp_config(config: TrainConfig) -> MLPConfig:
    """The shared MLP's architecture under a training config."""
    return config.mlp_config()


def _new_mlp(config: TrainConfig, device: torch.device) -> TinyMLP:
    # The MLP's initial weights come from the seed without touching the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        mlp = TinyMLP(mlp_config(config))
    return mlp.to(device)


def _camera_colour(scene: "_Scene", first: int) -> CameraColour | None:
    """The fitted views' colour correction when the config asks for one: identity for a run that
    starts at frame 0, else as the run folder holds it (learned on frame 0)."""
    if not scene.config.losses.colour_correction:
        return None
    if first == 0:
        return CameraColour(len(scene.fit_views)).to(scene.dev)
    data = read_run_file(scene.out, COLOUR_FILE, "colour correction file")  # checked against files.json
    return CameraColour.from_bytes(data, str(scene.out / COLOUR_FILE), len(scene.fit_views)).to(scene.dev)


def split_views(train_views: list[int], count: int) -> tuple[list[int], list[int]]:
    """(views the fits see, validation views): `count` training views, evenly spaced, held out of
    every fit to judge quality. Nothing is held out of fewer than 4 training views."""
    if count <= 0 or len(train_views) < 4:
        return list(train_views), []
    count = min(count, len(train_views) // 4)
    held = {train_views[int((i + 0.5) * len(train_views) / count)] for i in range(count)}
    return [v for v in train_views if v not in held], sorted(held)


@dataclass
class _Scene:
    """What every frame of one run is fitted against."""

    out: Path
    video: Any  # MultiViewVideo
    a: int  # dataset frame of run frame 0
    num_frames: int
    fit_views: list[int]
    val_views: list[int]
    aabb: torch.Tensor
    settings: RenderSettings
    config: TrainConfig
    dev: torch.device
    colour: CameraColour | None = None  # the fitted views' colour correction (training only), learned with the MLP
    round_trip: RoundTrip | None = None  # the codec in the loop's codec (featvid.train.codec_loop), or None

    def images(self, t: int) -> tuple[torch.Tensor, Any]:
        """Run frame t's fitted views: images [V, H, W, 3] and cameras, on the device."""
        return (self.video.images(self.a + t, self.fit_views).to(self.dev),
                self.video.cameras_at(self.a + t)[self.fit_views].to(self.dev))


# -- the whole run --------------------------------------------------------------------------------------
def train(dataset: str | Path, out: str | Path, config: TrainConfig, frames: tuple[int, int] | None = None,
          device: str = "auto", force: bool = False, on_frame: FrameCallback | None = None,
          video=None, segments: Callable[..., Run] | None = None, round_trip: RoundTrip | None = None) -> Run:
    """Train (or resume) a run folder `out` from the multi-view video at `dataset`.

    frames: dataset frames [A, B) to train (default: all); run frame t is dataset frame A + t.
    force: start over in a folder that holds a run made with another config.
    on_frame(t, record): called after frame t is saved.
    video: an already loaded MultiViewVideo of `dataset` (skips loading it again).
    segments: what trains a config with segments (`gop.segment`) once the run folder is ready:
    featvid.train.segments.train_segmented passes it (a segmented config needs it).
    round_trip: the stream's codec, for a config with the codec in the loop (`losses.codec_loop`):
    featvid.pipeline makes it (featvid.codecs.roundtrip), since `train` may not import `codecs`.
    Returns the finished run. Raises TrainingError on a non-finite loss (finished frames are kept).
    """
    check_output_dir(out, RUN, [dataset])  # new, empty or a run (even with force), never the dataset
    config = config.validate()
    if config.gop.segment and segments is None:
        raise ConfigError("a config with segments trains through featvid.train.segments.train_segmented")
    if config.losses.codec_loop and round_trip is None:
        raise ConfigError(f"losses.codec_loop={config.losses.codec_loop!r} needs the codec's round trip: train "
                          "through featvid.pipeline.train_dataset (what `featvid train` does)")
    dev = resolve_device(device)
    if video is None:
        from featvid.data import load_dataset

        video = load_dataset(dataset)
    a, b = frames if frames is not None else (0, video.num_frames)
    if not 0 <= a < b <= video.num_frames:
        raise ConfigError(f"frames {a}:{b} not inside the dataset's 0:{video.num_frames}")
    out = Path(out)
    dataset_id = str(Path(dataset).resolve())
    meta = _prepare_folder(out, _identity(config, dataset_id, a, b - a), config, force)
    resumed = meta is not None
    space = grid_space(config, video)
    recorded = config  # what run.json records and a resume matches; the run trains with its space's values
    config = config.in_space(space)
    scene_box = video.aabb.float().cpu()
    # the grid's box: the scene box, or all of space around it (and around the cameras inside it)
    aabb = grid_box(inner_box(scene_box, video.cameras_at(a).centers.float().cpu()) if space == "contracted"
                    else scene_box, space)
    if meta is not None and "aabb" in meta:  # a resumed run keeps the grid box its frames index (older rules)
        aabb = torch.tensor(meta["aabb"], dtype=torch.float32)
    fine_shape = grid_shape_for(aabb, space_resolution(config.grid.resolution, space))
    fit_views, val_views = split_views(list(video.train_views), config.refresh.validation_views)
    scene = _Scene(out, video, a, b - a, fit_views, val_views, aabb,
                   RenderSettings(step_ratio=config.grid.step_ratio, near=0.0, background=tuple(video.background),
                                  space=space),
                   config, dev, round_trip=round_trip if config.losses.codec_loop else None)

    if meta is None or not meta.get("gops"):
        meta = {**_identity(recorded, dataset_id, a, scene.num_frames), "fps": video.fps, "aabb": aabb.tolist(),
                "grid_shape": list(fine_shape), "num_channels": config.grid.channels,
                "mlp": mlp_config(config).to_dict(), "render": scene.settings.to_dict(),
                "views": {"fit": fit_views, "validation": val_views, "test": list(video.test_views)},
                "gops": [], "trainer": "featvid.train.train"}
        if space == "contracted":  # the box the user's --aabb (or the estimate) gave; resume checks it
            meta["scene_box"] = scene_box.tolist()
        make_dirs(out)
        write_run_meta(out, meta)
        if not config.gop.segment:  # segments form their GOPs in their own coarse passes
            meta["gops"] = _coarse_and_gops(scene, fine_shape)
            write_run_meta(out, meta)
    if config.gop.segment and segments is not None:  # segment by segment, each on its own (featvid.train.segments)
        return segments(scene, dataset, device, fresh=not resumed, on_frame=on_frame)
    run = Run(out)

    finished = set(run.finished_frames())
    _trim_log(out, finished)
    if len(finished) == scene.num_frames:
        return run
    first = min(t for t in range(scene.num_frames) if t not in finished)
    if any(t > first for t in finished):
        raise TrainingError(f"{out}: frame {first} is missing but later frames exist; rerun with --force")
    run = run.resume_at(first)  # a refresh split left by a kill during frame `first` is undone
    mlp = _new_mlp(config, dev) if first == 0 else run.mlp(dev)
    scene.colour = _camera_colour(scene, first)
    # the previous frame is kept in memory: read back from disk only when resuming
    prev_grid = run.frame(first - 1) if first > 0 else None
    records = [r for r in run.log() if r["frame"] < first]  # frame records (Run.log skips junk lines, warning)
    missing = sorted(set(range(first)) - {r["frame"] for r in records})
    if missing:  # later frames are judged against earlier frames' scores: without them it is another run
        raise FormatError(f"{out / 'log.jsonl'}: no record of finished frame {missing[0]}, so the run cannot "
                          "resume as it would have gone on; rerun with --force")
    bar = progress_bar(total=scene.num_frames, initial=first, desc="fine pass", unit="frame")
    for t in range(first, scene.num_frames):
        record, prev_grid, run = _train_frame(scene, run, t, prev_grid, mlp, records)
        records.append(record)
        bar.update(1)
        bar.set_postfix(psnr=f"{record.get('psnr_test', record['psnr_train']):.2f}", iters=record["iters"],
                        key="refresh" if record["keyframe"] and t > 0 else ("yes" if record["keyframe"] else "no"))
        if on_frame is not None:
            on_frame(t, record)
    bar.close()
    return run


def grid_space(config: TrainConfig, video) -> str:
    """The space the grids live in ("box" or "contracted"): the config's, or with "auto" contracted
    exactly when the dataset has no masks -- without them the images hold a background (a room, a
    backdrop) that no box around the subject can hold (issue 25: 11.7 dB held-out on a phone
    capture with the subject's box)."""
    space = config.grid.space
    if space == "auto":
        space = "box" if video.has_masks else "contracted"
    return space


def inner_box(scene_box: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """A contracted grid's inner box [2, 3] (what its full resolution holds): the scene box, grown
    to hold the cameras centres [V, 3] where they stand around it (their mean inside it: a ring in a
    room), as mip-NeRF 360 puts every camera inside the space it does not contract. Else the room's
    walls, a few units behind the cameras, fall into the shell's coarsest voxels: the built-in room
    (`fast`, 1 frame, 24 views) 21.31 -> 26.26 dB held-out. Cameras on one side of the subject (a
    forward-facing rig, the fox's photos) keep the scene box: grown to them, the fox lost 1.4 dB.
    Grown further, 1.7x about its centre (the room's walls inside it): the room 24.88 -> 27.70 dB,
    but the phone capture on a ring (Caesar, `--downscale 16`) 24.84 -> 23.66, its subject in
    coarser voxels; not kept. A room given with --aabb: 28.21 dB in a third of the time."""
    mean = centres.mean(0)
    if not bool(((mean >= scene_box[0]) & (mean <= scene_box[1])).all()):
        return scene_box
    return torch.stack([torch.minimum(scene_box[0], centres.min(0).values),
                        torch.maximum(scene_box[1], centres.max(0).values)])


def grid_box(scene_box: torch.Tensor, space: str) -> torch.Tensor:
    """The grid's box [2, 3] for a scene box: itself, or in contracted space twice its size around
    the same centre (the scene box is the contracted grid's inner half, featvid.field.volume)."""
    if space != "contracted":
        return scene_box
    centre, half = (scene_box[0] + scene_box[1]) / 2, (scene_box[1] - scene_box[0]) / 2
    return torch.stack([centre - 2 * half, centre + 2 * half])


def _quality(record: dict) -> float | None:
    """The figure the keyframe refresh judges a frame by: validation PSNR when there are validation
    views, else the fitted views' PSNR (never the dataset's test views)."""
    return record.get("psnr_val", record.get("psnr_fit"))


def _reference_psnr(records: list[dict], use_validation: bool) -> float | None:
    """The quality a frame is held to, from the records of the frames so far (in order): with
    validation views, the last fresh keyframe's; without, the first warm frame's after it.
    A refresh declined because it would not pay (featvid.train.refresh) makes that frame the
    reference: the next one is tried only after quality falls another margin."""
    ref, armed = None, False
    for r in records:
        if r.get("keyframe"):
            ref, armed = (_quality(r) if use_validation else None), not use_validation
        elif armed or "refresh_declined" in r:
            ref, armed = _quality(r), False
    return ref


def _keyframe_tightness(records: list[dict], use_validation: bool) -> float:
    """How much tighter a keyframe fits its own views than the warm frames after it, which views
    it was not fitted to do not see: the first keyframe's fitted PSNR above the first warm frame's
    after it (>= 0). 0 with validation views, which judge a keyframe as they judge a warm frame.
    Refits, 12-frame dancer (8 views) and crossing (12 views), `fast`: fitted gain less this
    tightness 0.0 / 0.2 / 0.2 and 1.0 / 0.5 dB, against held-out gains of -0.8 / -0.7 / 0.0 and
    +0.9 / +1.1 dB; fitted gains alone 1.9-2.1 and 4.2-4.7 dB."""
    if use_validation:
        return 0.0
    for first, after in zip(records, records[1:]):
        if first.get("keyframe") and not after.get("keyframe"):
            key, warm = _quality(first), _quality(after)
            return max(0.0, key - warm) if key is not None and warm is not None else 0.0
    return 0.0


def _coarse_and_gops(scene: _Scene, fine_shape: tuple[int, int, int], frames: range | None = None) -> list[dict]:
    """Run the coarse pass (every frame's coarse density into the run folder), form the GOPs and
    write their mappings. frames: only these (a segment's: its first starts from empty space)."""
    config = scene.config
    builder = GopBuilder(config)

    def on_frame(t: int, occ: torch.Tensor, grid: CoarseGrid) -> None:
        builder.add(t, occ)
        _save_coarse(scene.out, t, grid)

    frames = range(scene.num_frames) if frames is None else frames
    coarse_pass(frames, scene.images, scene.aabb, scene.settings.background, config, scene.dev,
                fine_shape, on_frame, scene.settings.space)
    gops = []
    for gop, mapping in builder.finish():
        if mapping.num_blocks == 0:
            raise TrainingError(f"the coarse pass found no occupied space in frames {gop.start}..{gop.end - 1}: "
                                "check the scene box (aabb) and cameras, or raise coarse_iters")
        write_run_file(scene.out, mapping_name(gop.start), mapping.to_bytes())
        gops.append(RunGop(gop.start, gop.frames, mapping_name(gop.start), mapping.num_blocks).to_dict())
        log.info("GOP: frames %d..%d, %d blocks", gop.start, gop.end - 1, mapping.num_blocks)
    return gops


def _fine_occupancy(scene: _Scene, t: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """Frame t's occupancy on the fine grid [nx, ny, nz] (CPU), from its stored coarse density."""
    c = scene.config
    grid = _load_coarse(scene.out, t, scene.aabb, scene.dev)
    return grid.occupancy_on(shape, c.grid.step_ratio, c.coarse.occupancy_alpha, c.coarse.occupancy_dilation).cpu()


def _importance(scene: _Scene, t: int, images: torch.Tensor) -> torch.Tensor | None:
    """Sampling weights [V, H, W] of a later frame's fitted pixels (None: uniform)."""
    c = scene.config
    if c.sampling.importance == "none":
        return None
    w = c.sampling.window
    near = [s for s in range(t - w, t + w + 1) if s != t and 0 <= s < scene.num_frames]
    neighbours = [scene.video.images(scene.a + s, scene.fit_views).to(scene.dev) for s in near]
    if c.sampling.importance == "ist":
        return ist_weights(images, neighbours, c.sampling.floor)
    return isg_weights(images, neighbours, c.sampling.isg_gamma, c.sampling.floor)


def _warm_start(scene: _Scene, t: int, prev_grid: SparseGrid, occupancy: torch.Tensor,
                mlp: TinyMLP) -> tuple[torch.Tensor, dict]:
    """Frame t's starting values [N, 1 + C] on `occupancy`: the previous frame carried along the
    estimated motion, density from the coarse pass where the geometry changed -- when that starts
    the fit better than the previous frame as it is. Also returns figures for the log (mean
    motion in fine voxels, share of vertices refreshed, both starts' losses, which was taken)."""
    c = scene.config
    dense = prev_grid.to_dense(scene.dev)  # [1 + C, nx, ny, nz]
    still = dense[:, occupancy.to(scene.dev)].T.contiguous()  # [N, 1 + C]
    stats: dict[str, Any] = {}
    if not (c.motion.enabled or c.motion.geometry_refresh > 0):
        return still, stats
    shape = tuple(occupancy.shape)
    cur = _load_coarse(scene.out, t, scene.aabb, scene.dev)
    prev = _load_coarse(scene.out, t - 1, scene.aabb, scene.dev)
    field = None  # [3, cx, cy, cz] coarse voxels, when motion is estimated
    if c.motion.enabled:
        field = motion.estimate_motion(prev.data, cur.data, c.grid.step_ratio, c.motion.search, c.motion.window)
        dense = motion.warp(dense, field)
        moving = field.abs().amax(0) > 0
        ratio = (dense.shape[1] - 1) / (field.shape[1] - 1)  # fine voxels per coarse voxel
        stats["motion_voxels"] = float(field.norm(dim=0)[moving].mean() * ratio) if bool(moving.any()) else 0.0
    occ = occupancy.to(scene.dev)
    if c.motion.geometry_refresh > 0:
        # appeared or vanished space: where the coarse pass itself changed from frame t-1 (carried
        # along the motion) to frame t. Not where the fine grid and the coarse one differ: the fine
        # grid is sharper than the coarse pass everywhere on a surface
        prev_coarse = prev.density_on(shape)[None]  # [1, nx, ny, nz]: frame t-1 as the coarse pass saw it
        if field is not None:
            prev_coarse = motion.warp(prev_coarse, field)
        coarse_density = cur.density_on(shape)  # [nx, ny, nz]
        step = c.grid.step_ratio
        changed = (motion.opacity(prev_coarse[0], step) - motion.opacity(coarse_density, step)).abs() \
            > c.motion.geometry_refresh
        dense[0] = torch.where(changed, coarse_density, dense[0])
        stats["refreshed"] = float(changed[occ].float().mean())
    moved = dense[:, occ].T.contiguous()  # [N, 1 + C]
    if torch.equal(moved, still):
        return still, stats
    # the compensated start only where it is the better start, judged on the same rays: on a slow
    # scene the motion found between coarse grids is noise, and carrying the grid along it cost
    # 0.9 dB held-out on the demo's frame 1 (31.95 vs 32.82 dB, `fast`)
    images, cams = scene.images(t)
    sampler = RaySampler(images, cams)
    loss_still, loss_moved = (start_loss(v, occupancy.to(scene.dev), mlp, sampler, scene.settings, scene.aabb.to(scene.dev),
                                         c, _frame_generator(c, t, scene.dev, salt=2)) for v in (still, moved))
    stats.update(start_loss_still=loss_still, start_loss_moved=loss_moved, compensated=loss_moved < loss_still)
    return (moved if loss_moved < loss_still else still), stats


def _keyframe_start(scene: _Scene, t: int, occupancy: torch.Tensor, prev_grid: SparseGrid | None,
                    mlp: TinyMLP) -> torch.Tensor:
    """A keyframe's starting values [N, 1 + C]: the coarse density (coarse-to-fine), features from
    the previous frame carried along the motion (zero for frame 0)."""
    occ = occupancy.to(scene.dev)
    density = _load_coarse(scene.out, t, scene.aabb, scene.dev).density_on(tuple(occupancy.shape))[occ]  # [N]
    if prev_grid is None:
        features = torch.zeros(len(density), scene.config.grid.channels, device=scene.dev)
    else:
        features = _warm_start(scene, t, prev_grid, occupancy, mlp)[0][:, 1:]
    return torch.cat([density[:, None], features], dim=1)


def _codec_loop(scene: _Scene, mapping: Mapping, start: int, before: list[SparseGrid]) -> CodecLoop | None:
    """The fit's codec in the loop when the run has one, from iteration `start`: a P-frame after
    `before` (the GOP's earlier frames, in order), or an I-frame (none)."""
    if scene.round_trip is None:
        return None
    c = scene.config.losses
    reference = torch.stack([mapping.grid_to_atlas(b) for b in before]) if before else None  # [F, 1 + C, H, W]
    return CodecLoop(scene.round_trip, mapping, scene.settings.step_ratio, reference, c.codec_refresh,
                     start, c.codec_change)


def _as_streamed(scene: _Scene, mapping: Mapping, grid: SparseGrid, mlp: TinyMLP,
                 before: list[SparseGrid]) -> SparseGrid:
    """The frame a run with the codec in the loop is judged by: `grid` as the stream's decoder will
    give it back (one round trip, a P-frame after `before` or an I-frame); `grid` itself otherwise.
    Its fit learned the decoded values, so the float grid would misjudge it (a refresh for nothing)."""
    codec = _codec_loop(scene, mapping, 0, before)
    if codec is None:
        return grid
    values = torch.cat([grid.density[:, None], grid.features], dim=1)  # [N, 1 + C], the fit's rows
    decoded = codec.decoded(values, mlp)
    return replace(grid, density=decoded[:, 0].contiguous(), features=decoded[:, 1:].contiguous())


def _gop_before(scene: _Scene, run: Run, g: int, t: int, prev_grid: SparseGrid) -> list[SparseGrid]:
    """The frames of GOP g before frame t that the codec in the loop codes first (the last
    GOP_CONTEXT of them; prev_grid is frame t - 1), [] for a GOP's first frame or without the codec."""
    if scene.round_trip is None or t <= run.gops[g].start:
        return []
    first = max(run.gops[g].start, t - GOP_CONTEXT)
    return [run.frame(s) for s in range(first, t - 1)] + [prev_grid]


def _fit(scene: _Scene, t: int, values: torch.Tensor, occupancy: torch.Tensor, mapping: Mapping, mlp: TinyMLP,
         schedule: FitSchedule, previous: torch.Tensor | None, salt: int = 0,
         before: list[SparseGrid] | None = None) -> tuple[SparseGrid, dict]:
    """Fit frame t from `values` and wrap the result as a SparseGrid; returns it with the fit's figures.
    before: the GOP's earlier frames when t is coded as a P-frame after them (the codec in the loop)."""
    images, cams = scene.images(t)
    weights = _importance(scene, t, images) if previous is not None else None
    values, figures = fit_frame(values, occupancy, mapping, mlp, RaySampler(images, cams, weights), scene.settings,
                                scene.aabb, scene.config, schedule, previous, _frame_generator(scene.config, t, scene.dev, salt),
                                desc=f"frame {t}", colour=scene.colour,
                                codec=_codec_loop(scene, mapping, round(scene.config.losses.codec_start * schedule.iters_min),
                                                  before or []))
    grid = SparseGrid(scene.aabb.clone(), tuple(occupancy.shape), occupancy.nonzero().to(torch.int32),
                      values[:, 0].float().cpu().contiguous(), values[:, 1:].float().cpu().contiguous()).validate()
    return grid, figures


def _judge_views(scene: _Scene) -> list[int]:
    """A few fitted views, evenly spaced: the ones a frame's fit is scored on, rendered in full."""
    fv = scene.fit_views
    return sorted({fv[round(i * (len(fv) - 1) / 3)] for i in range(4)}) if len(fv) > 4 else list(fv)


def _score(scene: _Scene, t: int, grid: SparseGrid, mlp: TinyMLP, views: list[int]) -> float | None:
    return score_frame(t, grid, mlp, scene.settings, scene.video, views, scene.dev, scene.a).psnr if views else None


def _judge_streamed(scene: _Scene, t: int, grid: SparseGrid, mlp: TinyMLP, mapping: Mapping,
                    before: list[SparseGrid]) -> dict[str, float]:
    """`_judge` of the frame as the stream decodes it when the codec is in the loop (`_as_streamed`:
    coded after `before`, its GOP's earlier frames); a round trip only when something is scored."""
    if scene.val_views or _scores_fit(scene):
        grid = _as_streamed(scene, mapping, grid, mlp, before)
    return _judge(scene, t, grid, mlp)


def _scores_fit(scene: _Scene) -> bool:
    """Whether a frame's fitted views are scored (for the keyframe refresh, or for the log beside
    the held-out views)."""
    return scene.config.refresh.margin > 0 or scene.config.eval_heldout


def _judge(scene: _Scene, t: int, grid: SparseGrid, mlp: TinyMLP) -> dict[str, float]:
    """The scores a frame is judged by: psnr_val (validation views, when there are any) and psnr_fit
    (a few fitted views), each rendered in full, in dB."""
    scores = {}
    if scene.val_views:
        scores["psnr_val"] = _score(scene, t, grid, mlp, scene.val_views)
    if _scores_fit(scene):
        scores["psnr_fit"] = _score(scene, t, grid, mlp, _judge_views(scene))
    return scores


def _segment_start(scene: _Scene, t: int, occupancy: torch.Tensor, first: SparseGrid) -> torch.Tensor:
    """A segment's first frame's starting values [N, 1 + C]: its coarse density, and frame 0's
    features where they are (no motion: the frames between are another segment's)."""
    occ = occupancy.to(scene.dev)
    density = _load_coarse(scene.out, t, scene.aabb, scene.dev).density_on(tuple(occupancy.shape))[occ]  # [N]
    features = first.to_dense(scene.dev)[1:, occ].T  # [N, C]
    return torch.cat([density[:, None], features], dim=1)


def _refresh(scene: _Scene, run: Run, g: int, t: int, prev_grid: SparseGrid, mlp: TinyMLP, records: list[dict],
             warm_grid: SparseGrid, coded_after: SparseGrid | None, quality: float, reference: float,
             record: dict) -> tuple | None:
    """Frame t, fitted warm in GOP g and fallen below its reference, fitted again as a keyframe
    starting a new GOP -- when that pays (featvid.train.refresh; always with no `rate_slope`).
    warm_grid: the warm fit; coded_after: the frame it is coded after (None: an I-frame).
    Returns (run, g, mapping, grid, figures, scores) of the refresh, or None when it would not pay
    (then nothing is written and the MLP is as it was; `record` says why, and holds the estimated
    bytes of the frame kept)."""
    c = scene.config
    slope = c.refresh.rate_slope
    frames_left = run.gops[g].end - t  # the frames that start from the refreshed one
    if slope > 0:  # predicted: the keyframe brings the reference back, at the last keyframe's bytes
        warm_bytes = frame_bytes(warm_grid, coded_after, run.mapping(g), c)
        key_bytes = warm_bytes if coded_after is None else (last_keyframe_bytes(records) or warm_bytes)
        cost = refresh_cost(reference - quality, key_bytes, warm_bytes, coded_after is None, frames_left, records,
                            scene.num_frames)
        if not cost.pays(slope):
            record["refresh_declined"] = {**cost.to_dict(), "predicted": True}
            record["bytes_estimate"] = round(warm_bytes, 1)
            log.info("frame %d: a refresh would not pay (%s)", t, record["refresh_declined"])
            return None
    mapping, gops = run.mapping(g), None
    if t > run.gops[g].start:  # a new GOP from here on, with its own mapping (written once it is kept)
        shape = tuple(mapping.occupancy().shape)
        gops, mapping = split_gop(run.gops, g, t, lambda s: _fine_occupancy(scene, s, shape))
    occupancy = mapping.occupancy()
    kept = {k: v.clone() for k, v in mlp.state_dict().items()}  # a refit may tune the MLP (lr_mlp_frame)
    colour = None if scene.colour is None else {k: v.clone() for k, v in scene.colour.state_dict().items()}
    grid, figures = _fit(scene, t, _keyframe_start(scene, t, occupancy, prev_grid, mlp), occupancy, mapping, mlp,
                         FitSchedule.refresh(c), None, salt=1)
    scores = _judge_streamed(scene, t, grid, mlp, mapping, [])
    if slope > 0:  # measured: the refitted keyframe, less how much tighter any keyframe fits its
        # own views, against the warm frame, up to the reference
        key_quality = _quality(scores)
        tightness = _keyframe_tightness(records, bool(scene.val_views))
        key_quality = quality if key_quality is None else key_quality - tightness
        key_bytes = frame_bytes(grid, None, mapping, c)
        cost = refresh_cost(min(key_quality, reference) - quality, key_bytes, warm_bytes, coded_after is None,
                            frames_left, records, scene.num_frames)
        if not cost.pays(slope):
            record["refresh_declined"] = {**cost.to_dict(), "predicted": False, "tightness_db": round(tightness, 4)}
            record["bytes_estimate"] = round(warm_bytes, 1)
            log.info("frame %d: the refresh did not pay (%s): the warm frame stays", t, record["refresh_declined"])
            mlp.load_state_dict(kept)
            if colour is not None:
                scene.colour.load_state_dict(colour)
            return None
        record["refresh_paid"] = {**cost.to_dict(), "tightness_db": round(tightness, 4)}
        record["bytes_estimate"] = round(key_bytes, 1)
    record["refreshed_from_psnr"] = round(quality, 4)
    if gops is not None:
        write_run_file(scene.out, gops[g + 1].mapping, mapping.to_bytes())
        write_run_meta(scene.out, {**{k: v for k, v in run.meta.items() if k not in ("format", "version")},
                                   "gops": [x.to_dict() for x in gops]})
        run, g = Run(scene.out), g + 1
    return run, g, mapping, grid, figures, scores


def _train_frame(scene: _Scene, run: Run, t: int, prev_grid: SparseGrid | None, mlp: TinyMLP,
                 records: list[dict], segment_of: SparseGrid | None = None) -> tuple[dict, SparseGrid, Run]:
    """Train, score and save frame t after the frames whose log `records` are given (in order);
    returns its log record, its grid and the run (re-read when a keyframe refresh split a GOP).
    segment_of: frame 0's grid when t starts a segment (a refreshed keyframe that starts from it,
    featvid.train.segments)."""
    start = time.perf_counter()
    c = scene.config
    g = run.gop_of(t)
    mapping = run.mapping(g)
    occupancy = mapping.occupancy()  # [nx, ny, nz]: exactly what the decoder will have
    record: dict[str, Any] = {"frame": t}
    counts_bytes = c.refresh.margin > 0 and c.refresh.rate_slope > 0  # the refresh weighs bytes
    if prev_grid is None and segment_of is not None:  # a segment's start: a keyframe, the MLP kept
        grid, figures = _fit(scene, t, _segment_start(scene, t, occupancy, segment_of), occupancy, mapping, mlp,
                             FitSchedule.refresh(c), None, salt=1)
        keyframe, why = True, "segment start"
        scores = _judge_streamed(scene, t, grid, mlp, mapping, [])
        coded_after = None
    elif prev_grid is None:  # frame 0: coarse-to-fine, features and MLP from scratch
        grid, figures = _fit(scene, t, _keyframe_start(scene, t, occupancy, None, mlp), occupancy, mapping, mlp,
                             FitSchedule.keyframe(c), None)
        keyframe, why = True, "first frame"
        scores = _judge_streamed(scene, t, grid, mlp, mapping, [])
        coded_after = None
    else:
        values, warm = _warm_start(scene, t, prev_grid, occupancy, mlp)
        record.update({k: v if isinstance(v, bool) else round(v, 4 if "loss" not in k else 8) for k, v in warm.items()})
        before = _gop_before(scene, run, g, t, prev_grid)
        grid, figures = _fit(scene, t, values, occupancy, mapping, mlp, FitSchedule.frame(c), values.clone(),
                             before=before)
        keyframe, why = False, ""
        scores = _judge_streamed(scene, t, grid, mlp, mapping, before)
        coded_after = None if t == run.gops[g].start else prev_grid  # a GOP's first frame is an I-frame
        quality = _quality(scores)
        reference = _reference_psnr(records, bool(scene.val_views))
        margin = c.refresh.margin
        if margin > 0 and reference is not None and quality is not None and quality < reference - margin:
            why = (f"{'validation' if scene.val_views else 'fitted-view'} PSNR {quality:.2f} dB fell more than "
                   f"{margin:g} dB below {reference:.2f}")
            refreshed = _refresh(scene, run, g, t, prev_grid, mlp, records, grid, coded_after, quality, reference,
                                 record)
            if refreshed is None:  # it would not pay: the warm frame stays
                why = ""
            else:
                log.info("frame %d: %s: refitted as a keyframe", t, why)
                run, g, mapping, grid, figures, scores = refreshed
                keyframe, coded_after = True, None
    if counts_bytes and "bytes_estimate" not in record:  # (a refresh weighed has estimated it)
        record["bytes_estimate"] = round(frame_bytes(grid, coded_after, mapping, c), 1)
    record.update({"gop": g, "keyframe": keyframe, "vertices": int(len(grid.density)),
                   "iters": figures["iters"], "train_seconds": round(time.perf_counter() - start, 3),
                   **{k: round(v, 8) for k, v in figures.items() if k not in ("iters", "loss_curve")},
                   "loss_curve": figures["loss_curve"], **scores})
    if why:
        record["keyframe_reason"] = why
    if scene.round_trip is not None:  # psnr_fit / psnr_val of the frame as the stream decodes it (_as_streamed)
        record["judged_as_streamed"] = True
    record["psnr_batch"] = -10 * math.log10(max(figures["mse"], 1e-12))
    record["psnr_train"] = scores.get("psnr_fit", record["psnr_batch"])
    if c.eval_heldout and scene.video.test_views:
        # the dataset's held-out test views, rendered in full: reported, never used for a decision
        s = score_frame(t, grid, mlp, scene.settings, scene.video, list(scene.video.test_views), scene.dev, scene.a)
        record["psnr_test"], record["ssim_test"] = s.psnr, s.ssim
    record["seconds"] = round(time.perf_counter() - start, 3)
    # order matters for resume: the log line and the MLP first, the frame file (the marker) last
    _append_log(scene.out, record)
    if t == 0 or c.optim.lr_mlp_frame > 0:
        write_run_file(scene.out, "mlp.safetensors", mlp.to_bytes())
        if scene.colour is not None:  # learned with the MLP
            write_run_file(scene.out, COLOUR_FILE, scene.colour.to_bytes())
    write_run_file(scene.out, frame_name(t), grid.to_bytes(meta={"frame": t, "gop": g}))  # recorded in files.json
    return record, grid, run
