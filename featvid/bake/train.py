"""Sequential training of a multi-view video into per-frame sparse grids + one tiny MLP (VideoRF).

1. Coarse pass (featvid.bake.coarse): every frame's occupancy on the fine grid.
2. GOPs: fixed length, or "auto" (a new GOP once the union of the group's occupancies has
   `gop_growth` more blocks than its first frame, or after `max_gop` frames). Each GOP's Mapping
   is built from that union, and `mapping.occupancy()` -- exactly the vertices the decoder will
   have -- is the occupancy every frame of the GOP is trained and stored on.
3. Fine pass, frame after frame. The keyframe (frame 0) starts from the coarse density upsampled
   to the fine grid (coarse-to-fine) and learns the features and the MLP. Every later frame starts
   from the previous frame's grid (re-gathered onto the new occupancy at a GOP boundary), with the
   MLP frozen (or tuned slowly: `lr_mlp_frame`), and adds VideoRF's temporal and spatial losses.

Resume: a frame file in the run folder is written last, once its frame is finished, so a killed job
rerun with the same command continues after the last finished frame. Every random choice comes
from generators seeded by (seed, frame), so a resumed run is the run that was not interrupted.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from featvid.atomic import write_text
from featvid.bake import losses
from featvid.bake.coarse import CoarseGrid, coarse_pass
from featvid.bake.config import TrainConfig
from featvid.bake.run import Run, RunGop, write_run_meta
from featvid.bake.sampling import RaySampler, isg_weights, ist_weights
from featvid.bake.sparse_field import SparseField
from featvid.device import resolve_device
from featvid.errors import ConfigError, StreamError, TrainingError
from featvid.field.evaluate import score_frame
from featvid.field.gop import Gop
from featvid.field.grid import SparseGrid, grid_shape_for
from featvid.field.mapping import Mapping
from featvid.field.mlp import MLPConfig, TinyMLP
from featvid.field.volume import DENSITY_RANGE, RenderSettings

log = logging.getLogger(__name__)

COARSE_FILE = "coarse_00000.safetensors"  # the keyframe's coarse grid: the fine keyframe's start
# Files the trainer owns in a run folder; --force removes exactly these.
_RUN_FILES = ("run.json", "mlp.safetensors", "log.jsonl", COARSE_FILE)

# Called after each finished frame with (frame, log record); tests use it to stop a run midway.
FrameCallback = Callable[[int, dict], None]


# -- GOPs -------------------------------------------------------------------------------------------
class GopBuilder:
    """Groups frames into GOPs as their occupancies arrive, keeping only the current GOP's union."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.gops: list[tuple[Gop, Mapping]] = []
        self._start = 0
        self._count = 0
        self._union: torch.Tensor | None = None
        self._first_blocks = 0

    def add(self, t: int, occupancy: torch.Tensor) -> None:
        """Frame t's fine-grid occupancy [nx, ny, nz] bool (frames must come in order)."""
        occupancy = occupancy.cpu()
        if self._union is not None and self._should_close(occupancy):
            self._close()
        if self._union is None:
            self._start, self._count, self._union = t, 0, occupancy.clone()
            self._first_blocks = Mapping.from_occupancy(occupancy).num_blocks
        else:
            self._union |= occupancy
        self._count += 1

    def _should_close(self, occupancy: torch.Tensor) -> bool:
        gop = self.config.gop
        if gop != "auto":
            return self._count >= int(gop)
        if self._count >= self.config.max_gop:
            return True
        blocks = Mapping.from_occupancy(self._union | occupancy).num_blocks
        return blocks > (1 + self.config.gop_growth) * max(1, self._first_blocks)

    def _close(self) -> None:
        self.gops.append((Gop(self._start, self._count), Mapping.from_occupancy(self._union)))
        self._union = None

    def finish(self) -> list[tuple[Gop, Mapping]]:
        if self._union is not None:
            self._close()
        return self.gops


# -- the run folder ----------------------------------------------------------------------------------
def _identity(config: TrainConfig, dataset: str, frame_start: int, num_frames: int) -> dict[str, Any]:
    """What must match for a run folder to be resumed."""
    return {"config": config.to_dict(), "dataset": dataset, "frame_start": frame_start, "num_frames": num_frames}


def _prepare_folder(out: Path, identity: dict[str, Any], force: bool) -> dict[str, Any] | None:
    """Check (or clear with force) an existing run folder; return its meta when it can be resumed."""
    meta_path = out / "run.json"
    if meta_path.is_file():
        try:
            meta = Run(out).meta
        except StreamError:
            meta = None
        same = meta is not None and all(meta.get(k) == v for k, v in identity.items())
        if same and not force:
            return meta
        if not force:
            diff = [k for k, v in identity.items() if meta is None or meta.get(k) != v]
            detail = ""
            if meta is not None and "config" in diff:
                old = meta.get("config", {})
                changed = [k for k, v in identity["config"].items() if old.get(k) != v]
                detail = f" (config fields: {', '.join(changed)})"
            raise ConfigError(f"{out} holds a run made with another {', '.join(diff)}{detail}; "
                              "use --force to start it over, or another --out")
    elif out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} exists and is not a featvid run folder; use --force or another --out")
    if out.exists():
        _clear_run(out)
    return None


def _clear_run(out: Path) -> None:
    """Remove the trainer's files from `out` (only those: never a whole folder)."""
    for name in _RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for p in out.glob("gop_*.fvmap"):
        p.unlink()
    frames = out / "frames"
    if frames.is_dir():
        for p in frames.glob("*.safetensors"):
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


# -- one frame of the fine pass ------------------------------------------------------------------------
def _frame_generator(config: TrainConfig, t: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + 7919 * t + 2)


def mlp_config(config: TrainConfig) -> MLPConfig:
    """The shared MLP's architecture under a training config."""
    return MLPConfig(config.num_channels, config.mlp_hidden, config.mlp_layers, config.view_freqs)


def _new_mlp(config: TrainConfig, device: torch.device) -> TinyMLP:
    # The MLP's initial weights come from the seed without touching the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        mlp = TinyMLP(mlp_config(config))
    return mlp.to(device)


def fit_frame(values: torch.Tensor, occupancy: torch.Tensor, mapping: Mapping, mlp: TinyMLP,
              sampler: RaySampler, settings: RenderSettings, aabb: torch.Tensor, config: TrainConfig,
              keyframe: bool, previous: torch.Tensor | None, generator: torch.Generator,
              desc: str) -> tuple[torch.Tensor, dict[str, float]]:
    """Fit one frame's vertex values [N, 1 + C] (on the vertices of `occupancy` [nx, ny, nz], in
    lexicographic order) to its training images. Returns the fitted values and loss figures.

    previous: the previous frame's values on the same vertices [N, 1 + C] (temporal loss), or None.
    """
    device = values.device
    field = SparseField(occupancy, aabb, device)

    param = torch.nn.Parameter(values.clone())
    groups = [{"params": [param], "lr": config.lr_grid if keyframe else config.lr_grid_frame}]
    lr_mlp = config.lr_mlp if keyframe else config.lr_mlp_frame
    mlp.requires_grad_(lr_mlp > 0)
    if lr_mlp > 0:
        groups.append({"params": list(mlp.parameters()), "lr": lr_mlp})
    opt = torch.optim.Adam(groups)
    iters = config.keyframe_iters if keyframe else config.frame_iters
    gamma = config.lr_decay ** (1 / max(1, iters))
    use_temporal = previous is not None and config.temporal_weight > 0
    use_spatial = config.spatial_weight > 0
    sums = {"loss": 0.0, "mse": 0.0, "temporal": 0.0, "spatial": 0.0}
    tail = max(1, iters // 10)  # figures are averaged over the last tenth of the iterations
    for it in tqdm(range(iters), desc=desc, leave=False, unit="it"):
        origins, dirs, target = sampler.sample(config.batch_rays, generator)
        jitter = torch.rand(len(origins), device=device, generator=generator)
        out, dense = field.render(param, mlp, origins, dirs, settings, jitter)  # dense [1 + C, nx, ny, nz]
        mse = losses.photometric(out["rgb"], target)
        loss = mse
        temporal = spatial = torch.zeros((), device=device)
        if use_temporal:
            temporal = losses.temporal(param, previous, config.density_reg_scale)
            loss = loss + config.temporal_weight * temporal
        if use_spatial:
            spatial = losses.atlas_smoothness(dense, mapping, config.density_reg_scale)
            loss = loss + config.spatial_weight * spatial
        if not torch.isfinite(loss):
            raise TrainingError(f"{desc}: the loss became {float(loss.detach())} at iteration {it}")
        losses.optimizer_step(opt, loss, gamma)
        with torch.no_grad():
            # bounded ranges: the baker quantizes each channel per GOP over its min..max to 8 bits
            param[:, 0].clamp_(*DENSITY_RANGE)
            param[:, 1:].clamp_(-config.feature_range, config.feature_range)
        if it >= iters - tail:
            for k, v in (("loss", loss), ("mse", mse), ("temporal", temporal), ("spatial", spatial)):
                sums[k] += float(v.detach())
    n = min(tail, iters)
    figures = {k: v / max(1, n) for k, v in sums.items()}
    mlp.requires_grad_(False)
    return param.detach(), figures


# -- the whole run --------------------------------------------------------------------------------------
def train(dataset: str | Path, out: str | Path, config: TrainConfig, frames: tuple[int, int] | None = None,
          device: str = "auto", force: bool = False, on_frame: FrameCallback | None = None,
          video=None) -> Run:
    """Train (or resume) a run folder `out` from the multi-view video at `dataset`.

    frames: dataset frames [A, B) to train (default: all); run frame t is dataset frame A + t.
    force: start over in a folder that holds a run made with another config.
    on_frame(t, record): called after frame t is saved.
    video: an already loaded MultiViewVideo of `dataset` (skips loading it again).
    Returns the finished run. Raises TrainingError on a non-finite loss (finished frames are kept).
    """
    config = config.validate()
    dev = resolve_device(device)
    if video is None:
        from featvid.data import load_dataset

        video = load_dataset(dataset)
    a, b = frames if frames is not None else (0, video.num_frames)
    if not 0 <= a < b <= video.num_frames:
        raise ConfigError(f"frames {a}:{b} not inside the dataset's 0:{video.num_frames}")
    out = Path(out)
    dataset_id = str(Path(dataset).resolve())
    meta = _prepare_folder(out, _identity(config, dataset_id, a, b - a), force)
    num_frames = b - a
    aabb = video.aabb.float().cpu()
    fine_shape = grid_shape_for(aabb, config.grid_resolution)
    settings = RenderSettings(step_ratio=config.step_ratio, near=0.0, background=tuple(video.background))
    train_views = list(video.train_views)

    def images_of(t: int) -> tuple[torch.Tensor, Any]:
        return (video.images(a + t, train_views).to(dev), video.cameras_at(a + t)[train_views].to(dev))

    if meta is None or not meta.get("gops"):
        meta = {**_identity(config, dataset_id, a, num_frames), "fps": video.fps, "aabb": aabb.tolist(),
                "grid_shape": list(fine_shape), "num_channels": config.num_channels,
                "mlp": mlp_config(config).to_dict(), "render": settings.to_dict(),
                "gops": [], "trainer": "featvid.bake.train"}
        out.mkdir(parents=True, exist_ok=True)
        write_run_meta(out, meta)
        meta["gops"] = _coarse_and_gops(out, range(num_frames), images_of, aabb, settings, config, dev, fine_shape)
        write_run_meta(out, meta)
    run = Run(out)

    finished = set(run.finished_frames())
    _trim_log(out, finished)
    if len(finished) == num_frames:
        return run
    first = min(t for t in range(num_frames) if t not in finished)
    if any(t > first for t in finished):
        raise TrainingError(f"{out}: frame {first} is missing but later frames exist; rerun with --force")
    todo = range(first, num_frames)
    mlp = _new_mlp(config, dev) if first == 0 else run.mlp(dev)
    # the previous frame is kept in memory: read back from disk only when resuming
    prev_grid = run.frame(first - 1) if first > 0 else None
    mappings: dict[int, Mapping] = {}
    bar = tqdm(total=num_frames, initial=first, desc="fine pass", unit="frame")
    for t in todo:
        g = run.gop_of(t)
        if g not in mappings:
            mappings = {g: run.mapping(g)}  # one GOP's mapping at a time
        mapping = mappings[g]
        occupancy = mapping.occupancy()  # [nx, ny, nz]: exactly what the decoder will have
        record, prev_grid = _train_frame(out, run, t, a, occupancy, mapping, prev_grid, mlp, images_of, video,
                                         settings, aabb, config, dev, g, num_frames)
        bar.update(1)
        bar.set_postfix(psnr=f"{record.get('psnr_test', record['psnr_train']):.2f}")
        if on_frame is not None:
            on_frame(t, record)
    bar.close()
    return run


def _coarse_and_gops(out: Path, frames: range, images_of, aabb: torch.Tensor, settings: RenderSettings,
                     config: TrainConfig, dev: torch.device, fine_shape: tuple[int, int, int]) -> list[dict]:
    """Run the coarse pass, form the GOPs, write their mappings and the keyframe's coarse grid."""
    builder = GopBuilder(config)

    def on_frame(t: int, occ: torch.Tensor, grid: CoarseGrid) -> None:
        builder.add(t, occ)
        if t == frames[0]:
            from safetensors.torch import save

            from featvid.atomic import write_bytes

            write_bytes(out / COARSE_FILE, save({"data": grid.data.detach().float().cpu().contiguous()}))

    coarse_pass(frames, images_of, aabb, settings.background, config, dev, fine_shape, on_frame)
    gops = []
    for i, (gop, mapping) in enumerate(builder.finish()):
        if mapping.num_blocks == 0:
            raise TrainingError(f"the coarse pass found no occupied space in frames {gop.start}..{gop.end - 1}: "
                                "check the scene box (aabb) and cameras, or raise coarse_iters")
        name = f"gop_{i:05d}.fvmap"
        mapping.save(out / name)
        gops.append(RunGop(gop.start, gop.frames, name, mapping.num_blocks).to_dict())
        log.info("GOP %d: frames %d..%d, %d blocks", i, gop.start, gop.end - 1, mapping.num_blocks)
    return gops


def _load_coarse(out: Path, aabb: torch.Tensor, dev: torch.device) -> CoarseGrid:
    from safetensors.torch import load_file

    path = out / COARSE_FILE
    try:
        data = load_file(str(path))["data"]
    except Exception as e:  # missing or corrupt: the folder cannot resume its keyframe
        raise StreamError(f"{path}: unreadable coarse grid ({e}); rerun with --force") from e
    return CoarseGrid(data.to(dev), aabb.to(dev))


def _importance(video, a: int, t: int, num_frames: int, images: torch.Tensor, train_views: list[int],
                config: TrainConfig, dev: torch.device) -> torch.Tensor | None:
    """Sampling weights [V, H, W] of a later frame's training pixels (None: uniform)."""
    if config.importance == "none":
        return None
    w = config.importance_window
    near = [s for s in range(t - w, t + w + 1) if s != t and 0 <= s < num_frames]
    neighbours = [video.images(a + s, train_views).to(dev) for s in near]
    if config.importance == "ist":
        return ist_weights(images, neighbours, config.importance_floor)
    return isg_weights(images, neighbours, config.isg_gamma, config.importance_floor)


def _train_frame(out: Path, run: Run, t: int, a: int, occupancy: torch.Tensor, mapping: Mapping,
                 prev_grid: SparseGrid | None, mlp: TinyMLP, images_of, video, settings: RenderSettings,
                 aabb: torch.Tensor, config: TrainConfig, dev: torch.device, gop: int,
                 num_frames: int) -> tuple[dict, SparseGrid]:
    """Train, score and save frame t; returns its log record and its grid."""
    start = time.perf_counter()
    keyframe = prev_grid is None
    C = config.num_channels
    images, cams = images_of(t)
    if keyframe:
        # coarse-to-fine: the fine keyframe starts from the coarse density, features at zero
        coarse = _load_coarse(out, aabb, dev)
        density = coarse.density_on(tuple(occupancy.shape))[occupancy.to(dev)]  # [N]
        values = torch.cat([density[:, None], torch.zeros(len(density), C, device=dev)], dim=1)
        previous = None
        weights = None
    else:
        # warm start: the previous frame's grid on this GOP's occupancy (new vertices start empty)
        dense = prev_grid.to_dense(dev)  # [1 + C, nx, ny, nz]
        values = dense[:, occupancy.to(dev)].T.contiguous()  # [N, 1 + C]
        previous = values.clone()
        weights = _importance(video, a, t, num_frames, images, list(video.train_views), config, dev)
    sampler = RaySampler(images, cams, weights)
    values, figures = fit_frame(values, occupancy, mapping, mlp, sampler, settings, aabb, config, keyframe,
                                previous, _frame_generator(config, t, dev), desc=f"frame {t}")
    grid = SparseGrid(aabb.clone(), tuple(occupancy.shape), occupancy.nonzero().to(torch.int32),
                      values[:, 0].float().cpu().contiguous(), values[:, 1:].float().cpu().contiguous()).validate()
    seconds = time.perf_counter() - start
    record: dict[str, Any] = {"frame": t, "gop": gop, "keyframe": keyframe, "vertices": int(len(values)),
                              "iters": config.keyframe_iters if keyframe else config.frame_iters,
                              "train_seconds": round(seconds, 3), **{k: round(v, 8) for k, v in figures.items()}}
    record["psnr_batch"] = -10 * math.log10(max(figures["mse"], 1e-12))
    if config.eval_heldout:
        # a few training views (evenly spaced) and every held-out view, rendered in full
        tv = list(video.train_views)
        some = sorted({tv[round(i * (len(tv) - 1) / 3)] for i in range(4)}) if len(tv) > 4 else tv
        record["psnr_train"] = score_frame(t, grid, mlp, settings, video, some, dev, a).psnr
        if video.test_views:
            s = score_frame(t, grid, mlp, settings, video, list(video.test_views), dev, a)
            record["psnr_test"], record["ssim_test"] = s.psnr, s.ssim
    else:
        record["psnr_train"] = record["psnr_batch"]
    record["seconds"] = round(time.perf_counter() - start, 3)
    # order matters for resume: the log line and the MLP first, the frame file (the marker) last
    _append_log(out, record)
    if keyframe or config.lr_mlp_frame > 0:
        mlp.save(out / "mlp.safetensors")
    grid.save(run.frame_path(t), meta={"frame": t, "gop": gop})
    return record, grid
