"""TrainConfig: every knob of the trainer, and the named presets.

A run folder stores its config (run.json "config"); resuming with a different one is refused,
because frames trained under two configs are not one run.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from featvid.errors import ConfigError
from featvid.field.mlp import MLPConfig
from featvid.field.volume import STEP_RATIO_RANGE


@dataclass(frozen=True)
class TrainConfig:
    """How a multi-view video is fitted, frame after frame (VideoRF's two passes)."""

    # -- grids -----------------------------------------------------------------------------------
    grid_resolution: int = 64
    """Fine grid: vertices along the longest side of the scene box."""
    coarse_resolution: int = 32
    """Coarse grid of the occupancy pass: vertices along the longest side."""
    num_channels: int = 6
    """Feature channels per vertex (C). ReRF/DVGO use 12; on the demo scene (4 frames, crf 23) 6 gave
    the same float PSNR (32.23 vs 32.25 dB) in 53 % of the stream bytes, 4 lost 0.18 dB in 39 %."""
    step_ratio: float = 0.5
    """Ray-marching step in voxels (written to run.json for every renderer)."""

    # -- tiny MLP (deferred shading) ---------------------------------------------------------------
    mlp_hidden: int = 32
    """Width of each hidden layer of the shared MLP."""
    mlp_layers: int = 2
    """Hidden layers of the shared MLP."""
    view_freqs: int = 2
    """sin/cos frequencies of the view direction fed to the MLP."""

    # -- coarse pass: a low-res density + RGB grid per frame -> occupancy ----------------------------
    coarse_iters: int = 300
    """Iterations of the first frame's coarse fit."""
    coarse_frame_iters: int = 60
    """Iterations of each later frame's coarse fit (warm-started from the previous frame)."""
    coarse_lr: float = 0.3
    """Adam learning rate of the coarse grids (high: the coarse pass has few iterations to make density)."""
    occupancy_alpha: float = 0.05
    """A fine vertex is occupied where the upsampled coarse density gives alpha above this (per step)."""
    occupancy_dilation: int = 1
    """Occupied region grown by this many fine voxels, so the fine pass has room."""

    # -- GOPs ---------------------------------------------------------------------------------------
    gop: int | str = 10
    """Frames per GOP, or "auto": a new GOP when the union occupancy outgrows the first frame's."""
    gop_growth: float = 0.25
    """auto GOPs: start a new GOP once the union has this fraction more blocks than its first frame."""
    max_gop: int = 30
    """auto GOPs: longest GOP in frames."""

    # -- fine pass ------------------------------------------------------------------------------------
    keyframe_iters: int = 2000
    """Most iterations of a keyframe (frame 0: grid and MLP; a refreshed keyframe: the grid)."""
    keyframe_iters_min: int = 1200
    """Fewest iterations of a keyframe, before its loss may be judged to have stopped improving."""
    refresh_iters: int = 1000
    """Most iterations of a refreshed keyframe (mid-sequence: density from the coarse pass, features
    carried along the motion, the MLP kept), at least half of them. It needs fewer than frame 0,
    which also learns the MLP: crossing scene, `fast`, frame 4 refitted with 150 / 300 / 600
    iterations: 31.35 / 32.67 / 33.44 dB held-out, against 31.2 for its warm-started fit."""
    frame_iters: int = 300
    """Most iterations of every later (warm-started) frame."""
    frame_iters_min: int = 100
    """Fewest iterations of a later frame."""
    plateau: float = 0.01
    """A fit stops once the photometric loss, averaged over `plateau_window` iterations, improves by
    less than this fraction on the window before (0: always the most iterations)."""
    plateau_window: int = 20
    """Iterations per loss window of the plateau test."""
    batch_rays: int = 4096
    """Rays per iteration."""
    lr_grid: float = 0.1
    """Adam learning rate of density and features (DVGO: 0.1)."""
    lr_grid_frame: float = 0.2
    """Adam learning rate of density and features in later (warm-started) frames. Higher than the
    keyframe's: content that moves must travel far in few iterations (demo, 60 iterations a frame:
    0.1 -> 0.2 with lr_decay 0.3 gave +1.5 dB held-out on frames 1-3 for 13 % more stream bytes)."""
    lr_mlp: float = 3e-3
    """Adam learning rate of the MLP on the keyframe."""
    lr_mlp_frame: float = 0.0
    """MLP learning rate in later frames; 0 freezes the MLP after the keyframe (VideoRF)."""
    lr_decay: float = 0.3
    """Learning rates fall exponentially to this fraction of their start over a frame's iterations."""
    feature_range: float = 2.0
    """Features are clamped to [-feature_range, feature_range]: a bounded range for 8-bit quantization."""

    # -- motion and quality over time ----------------------------------------------------------------
    motion: bool = True
    """Warm-start each later frame from the previous one carried along the motion estimated between
    their coarse densities (featvid.train.motion; training only, streams still hold full grids).
    Crossing scene, 30 frames, `fast` with the keyframe refresh, density TV off
    (benchmarks/quality_over_time.py): with it the worst frame is 0.86 dB below the keyframe,
    without it 1.54 (mean 0.16 / 0.18 below), and it takes 3 refreshes instead of 6, but the stream
    costs 22 % more bytes at equal PSNR (the atlases change more from frame to frame when content is
    carried along the motion)."""
    motion_search: int = 3
    """Largest motion searched per frame, in coarse voxels along each axis."""
    motion_window: int = 5
    """Side of the neighbourhood (coarse voxels) a voxel's motion is matched over (3: noisier, 7: no
    better, measured on the crossing scene; see featvid.train.motion)."""
    geometry_refresh: float = 0.5
    """Where the warm start's opacity and the current frame's coarse opacity differ by more than this
    (space that appeared or vanished), density restarts from the coarse pass; 0 switches it off."""
    refresh_margin: float = 1.0
    """dB: a frame whose quality falls more than this below its reference is fitted again as a
    keyframe (density from its coarse pass, the MLP kept) and starts a new GOP; 0 switches keyframe
    refresh off. Quality is judged without the dataset's test views: with validation views, their
    PSNR against the last fresh keyframe's; without, the fitted views' PSNR against the first
    warm-started frame's after that keyframe (a keyframe's own fit is ~3 dB tighter than any warm
    frame's, so the first warm frame is the level to hold). Crossing scene, 30 frames, `fast`, density
    TV off: without it the held-out PSNR drifts to 1.88 dB below the keyframe (mean 1.02), with it
    0.86 (mean 0.16), and the stream is 20 % smaller at equal PSNR despite 3 more GOPs."""
    validation_views: int = 0
    """Training views held out of every fit (coarse and fine) to judge quality (the refresh and the
    log's psnr_val); never more than a quarter of the training views. Crossing scene, 10 training
    views: holding one out cost 1.1 dB on the keyframe and ~0.5 on later frames, so the default
    judges by the fitted views; a large rig can spare a view."""

    # -- regularisers (VideoRF) -----------------------------------------------------------------------
    temporal_weight: float = 0.1
    """L1 between this frame's and the previous frame's vertex values (0 switches it off). On the demo
    scene 0.01 -> 0.03 gave +0.3 dB held-out (less drift) and 16 % fewer stream bytes; with the feature
    basis (featvid.codecs.basis), 0.03 -> 0.1 gave float 32.30 -> 32.42 dB and, at the same stream
    PSNR, ~12 % fewer bytes (P-frames 5-6 KB -> 3.5-4 KB). 0.2: float 32.14 dB and a worse stream;
    0.15: float 32.29 dB, worse stream; 0.1 with density_reg_scale 0.3: float 32.37 dB, worse stream."""
    spatial_weight: float = 0.003
    """L1 between neighbouring pixels inside atlas tiles of the GOP's mapping (0 switches it off).
    Demo scene, temporal weight 0.1: 0.001 -> 0.003 gave float 32.42 -> 32.45 dB and ~9 % fewer
    stream bytes at the same stream PSNR; 0.006: float 32.31 dB, stream 0.1 dB worse at equal bytes."""
    density_tv_weight: float = 0.0
    """Total variation of raw density on warm frames (featvid.train.losses.density_tv; 0 switches it
    off): density that only a few training views ask for has to pay for its edges, so fewer floaters
    reach the held-out views. `fast` and `default` use 3e-3 (measured at both grids, see PRESETS); 0
    here, so a run recorded before the switch existed reads as what it was, trained without it.
    Crossing scene, 30 frames, `fast` (benchmarks/quality_over_time.py), 0 / 3e-3 / 1e-2: held-out
    mean 31.56 / 31.97 / 31.78 dB, worst frame 30.87 / 31.36 / 31.05 (keyframe 31.73), stream at
    crf 16.5 30.85 / 31.23 / 31.17 dB, BD-rate against 0: -6.8 % / -7.8 %. It lowers the fitted
    views' PSNR, so the keyframe refresh fires more often (5 refreshes instead of 3). On the orbits
    scene, which no weight was chosen on (12 frames): mean 31.34 -> 31.39 dB, worst frame 30.98 ->
    31.11, BD-rate -1.9 % (benchmarks/results/orbits/)."""
    density_reg_scale: float = 0.1
    """Both regularisers weigh the density channel by this factor (its range is ~10x the features')."""

    # -- ray importance sampling (DyNeRF) ---------------------------------------------------------------
    importance: str = "ist"
    """Ray sampling of later frames: "ist" (temporal difference), "isg" (temporal median), "none"."""
    importance_floor: float = 0.05
    """Smallest sampling weight of a pixel (DyNeRF's alpha), so static pixels are still seen."""
    isg_gamma: float = 0.02
    """ISG: psi = d^2 / (d^2 + gamma^2)."""
    importance_window: int = 2
    """Frames either side of t used by IST / ISG."""

    # -- misc ---------------------------------------------------------------------------------------------
    seed: int = 0
    """Seed of every random choice (MLP init, rays, jitter): same seed, same run."""
    eval_heldout: bool = True
    """Render the held-out views after every frame and log their PSNR."""

    def validate(self) -> "TrainConfig":
        """Raise ConfigError on values that cannot work."""
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ConfigError(f"train config: {what}")

        need(8 <= self.grid_resolution <= 1024, f"grid_resolution {self.grid_resolution} not in 8..1024")
        need(4 <= self.coarse_resolution <= self.grid_resolution,
             f"coarse_resolution {self.coarse_resolution} not in 4..grid_resolution")
        need(1 <= self.num_channels <= 64, "num_channels not in 1..64")
        lo, hi = STEP_RATIO_RANGE
        need(lo <= self.step_ratio <= hi, f"step_ratio not in {lo}..{hi}")
        need(self.coarse_iters >= 1 and self.keyframe_iters >= 1, "keyframe iterations must be >= 1")
        need(self.coarse_frame_iters >= 0 and self.frame_iters >= 0, "iterations must be >= 0")
        need(self.refresh_iters >= 1, "refresh_iters must be >= 1")
        need(0 <= self.keyframe_iters_min <= self.keyframe_iters and 0 <= self.frame_iters_min <= self.frame_iters,
             "the fewest iterations must be within 0..the most iterations")
        need(0 <= self.plateau < 1 and self.plateau_window >= 1, "plateau in [0, 1) and plateau_window >= 1")
        need(1 <= self.motion_search <= 16 and self.motion_window in (3, 5, 7), "motion_search in 1..16, motion_window 3, 5 or 7")
        need(0 <= self.geometry_refresh <= 1, "geometry_refresh in [0, 1]")
        need(self.refresh_margin >= 0 and 0 <= self.validation_views <= 16, "refresh_margin >= 0, validation_views in 0..16")
        need(self.batch_rays >= 16, "batch_rays must be >= 16")
        need(0 < self.occupancy_alpha < 1, "occupancy_alpha not in (0, 1)")
        need(self.occupancy_dilation >= 0, "occupancy_dilation must be >= 0")
        need(self.gop == "auto" or (isinstance(self.gop, int) and not isinstance(self.gop, bool) and self.gop >= 1),
             f"gop must be a positive integer or 'auto', got {self.gop!r}")
        need(self.gop_growth > 0 and self.max_gop >= 1, "gop_growth must be > 0 and max_gop >= 1")
        need(min(self.lr_grid, self.lr_grid_frame, self.lr_mlp, self.coarse_lr) > 0, "learning rates must be > 0")
        need(self.lr_mlp_frame >= 0 and 0 < self.lr_decay <= 1, "lr_mlp_frame >= 0 and lr_decay in (0, 1]")
        need(self.feature_range > 0, "feature_range must be > 0")
        need(min(self.temporal_weight, self.spatial_weight, self.density_tv_weight) >= 0, "regulariser weights must be >= 0")
        need(self.importance in ("ist", "isg", "none"), f"importance must be ist, isg or none, got {self.importance!r}")
        need(0 < self.importance_floor <= 1 and self.isg_gamma > 0 and self.importance_window >= 1,
             "importance_floor in (0, 1], isg_gamma > 0, importance_window >= 1")
        MLPConfig(self.num_channels, self.mlp_hidden, self.mlp_layers, self.view_freqs).validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Rebuild from `to_dict` output; unknown keys are an error (a run from another version)."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"train config: unknown fields {sorted(unknown)}")
        return cls(**d).validate()

    def with_overrides(self, **overrides: Any) -> "TrainConfig":
        """A copy with some fields changed (None values are ignored), validated."""
        names = {f.name for f in fields(self)}
        bad = set(overrides) - names
        if bad:
            raise ConfigError(f"train config: unknown fields {sorted(bad)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None}).validate()


# The named presets, in one table. `fast` is the CPU preset for captures that move, `demo` what
# `make demo` trains (8 frames x 24 views x 64 px: 2 min 40 s of fine pass on 2 cores, 217 s for the
# whole demo); `test` is the smallest that still learns the tiny test scene.
PRESETS: dict[str, TrainConfig] = {
    "test": TrainConfig(grid_resolution=32, coarse_resolution=16, coarse_iters=150, coarse_frame_iters=30,
                        keyframe_iters=300, keyframe_iters_min=300, refresh_iters=150,
                        frame_iters=100, frame_iters_min=40, batch_rays=2048, mlp_hidden=16, eval_heldout=True),
    # `fast`: the CPU preset for captures that move. Warm-started fits still improve 5-10 % per 20
    # iterations at 120 (crossing scene), and the held-out views fall behind the fitted ones: frames
    # 1-7 from one keyframe (31.69 dB held-out, refresh off) at 60 / 120 / 180 / 240 iterations:
    # mean 30.08 / 30.73 / 31.14 / 31.23 dB, worst 29.55 / 30.29 / 30.71 / 30.91. With the 1 dB
    # refresh the fitted views only notice a drop once the held-out ones have fallen 1-1.35 dB at
    # 120 (6 of 30 frames past 1 dB), so 180-240: the plateau rule may stop a fit from 180 on.
    # (Sampling the changed pixels matters more than the count: uniform rays at 120 -> mean 29.6.)
    # The density TV on warm frames (3e-3): +0.41 dB held-out mean, -6.8 % BD-rate (its docstring).
    "fast": TrainConfig(grid_resolution=48, coarse_resolution=24, coarse_iters=100, coarse_frame_iters=20,
                        keyframe_iters=600, keyframe_iters_min=600, refresh_iters=300,
                        frame_iters=240, frame_iters_min=180, batch_rays=4096, density_tv_weight=3e-3),
    # `demo`: what `make demo` trains its slow-moving scene with, inside its four minutes: `fast` at
    # 60 iterations a later frame (they reach 32.7 dB at 60, 32.8 at 120) and no keyframe refresh.
    # A refresh is a new GOP: on the demo's 8 frames it refitted frame 7 (-0.8 dB) and cost 62 % more
    # bytes a frame (12.3 vs 7.8 KiB) for +0.16 dB after the codec, and 50 s. The density TV (3e-3,
    # as `fast`): float 32.48 -> 32.53, stream 32.00 -> 32.11 dB for 2.9 % more bytes (7.85 -> 8.08
    # KiB/frame), one thread each side by side. One crf point is no BD-rate to decide on, so the demo
    # leaves it off and keeps its reference figures.
    "demo": TrainConfig(grid_resolution=48, coarse_resolution=24, coarse_iters=100, coarse_frame_iters=20,
                        keyframe_iters=600, keyframe_iters_min=600, refresh_iters=300, refresh_margin=0.0,
                        frame_iters=60, frame_iters_min=60, batch_rays=4096),
    # `default` (64^3) with the density TV too: crossing frames 0-5 (one refresh, at 3), held-out
    # 32.90 / 32.18 / 31.72 / 34.08 / 33.16 / 32.54 -> 32.90 / 32.66 / 32.46 / 34.09 / 33.40 / 32.82 dB
    # (mean 32.76 -> 33.06), stream at crf 16.5 32.10 -> 32.32 dB with 0.9 % fewer bytes (35.8 ->
    # 35.5 KiB/frame). `quality` (160^3) is unmeasured and leaves it off.
    "default": TrainConfig(density_tv_weight=3e-3),
    "quality": TrainConfig(grid_resolution=160, coarse_resolution=64, coarse_iters=1000, coarse_frame_iters=200,
                           keyframe_iters=16000, keyframe_iters_min=10000, refresh_iters=8000,
                           frame_iters=2000, frame_iters_min=600, batch_rays=8192, mlp_hidden=64, lr_mlp=1e-3),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset, with `overrides` (None ignored) applied.

    A grid_resolution below the preset's coarse_resolution brings the coarse grid down to half of it;
    fewer most iterations than the preset's fewest bring the fewest down with them (and fewer
    keyframe iterations than the preset's refresh_iters, those too).
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown train preset {name!r} (choose from {', '.join(PRESETS)})")
    base = PRESETS[name]
    grid = overrides.get("grid_resolution")
    if grid is not None and overrides.get("coarse_resolution") is None and grid < base.coarse_resolution:
        overrides = {**overrides, "coarse_resolution": max(4, grid // 2)}
    for most, fewest in (("keyframe_iters", "keyframe_iters_min"), ("keyframe_iters", "refresh_iters"),
                         ("frame_iters", "frame_iters_min")):
        if overrides.get(most) is not None and overrides.get(fewest) is None:
            overrides = {**overrides, fewest: min(getattr(base, fewest), overrides[most])}
    return base.with_overrides(**overrides)
