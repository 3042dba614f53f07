"""TrainConfig: every knob of the trainer, in frozen sections, and the named presets.

A run folder stores its config (run.json "config"); resuming with a different one is refused,
because frames trained under two configs are not one run. run.json holds the nested form
(`to_dict`); runs written before the sections existed hold one flat dict, and `from_dict` reads
both. The flat names (`FLAT_NAMES`) are also the names `preset()` and `with_overrides()` take, so
the CLI options, the benchmark overrides and old results files keep one vocabulary.

Why each default is what it is, with the measurements: docs/training.md.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Literal, Union, get_args

from featvid.errors import ConfigError
from featvid.field.mlp import MLPConfig
from featvid.field.volume import STEP_RATIO_RANGE

Importance = Literal["ist", "isg", "none"]
"""Ray sampling of later frames: temporal difference (IST), temporal median (ISG), uniform."""
IMPORTANCE_CHOICES: tuple[str, ...] = get_args(Importance)
Space = Literal["auto", "box", "contracted"]
SPACE_CHOICES: tuple[str, ...] = get_args(Space)
GopLength = Union[int, Literal["auto"]]
"""Frames per GOP, or "auto": a new GOP where it costs fewer bytes than growing the union
(featvid.train.gops), within `growth` and `max_length`."""
MotionWindow = Literal[3, 5, 7]
MOTION_WINDOWS: tuple[int, ...] = get_args(MotionWindow)


# -- checks shared by the sections ------------------------------------------------------------------
def _fail(where: str, what: str) -> None:
    raise ConfigError(f"train config: {where}: {what}")


def _int(where: str, value: Any, lo: int, hi: int | None = None) -> None:
    """An int (not a bool) in lo..hi."""
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(where, f"expected a whole number, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        _fail(where, f"{value} is below {lo}" if value < lo else f"{value} is above {hi}")


def _float(where: str, value: Any, lo: float, hi: float = math.inf, lo_open: bool = False,
           hi_open: bool = False) -> None:
    """A finite number (int or float, not a bool) in the range [lo, hi], ends open where asked."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(where, f"expected a finite number, got {value!r}")
    if value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi):
        _fail(where, f"{value} not in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}")


def _bool(where: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(where, f"expected true or false, got {value!r}")


# -- the sections -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GridConfig:
    """The grids: the fine one that is stored and streamed, the coarse one of the occupancy pass."""

    resolution: int = 64
    """Fine grid: vertices along the longest side of the scene box."""
    coarse_resolution: int = 32
    """Coarse grid of the occupancy pass: vertices along the longest side (at most `resolution`)."""
    channels: int = 6
    """Feature channels per vertex (C): ReRF/DVGO's 12 gave the same PSNR in twice the bytes."""
    step_ratio: float = 0.5
    """Ray-marching step in voxels (written to run.json for every renderer)."""
    space: Space = "box"
    """What the grid holds (featvid.field.volume): "box" the scene box only; "contracted" all of
    space, the scene box at `resolution` and the rest squeezed into a shell around it (a real
    capture's room or backdrop); "auto": contracted when the dataset has no masks (nothing says
    what is background), else box. "box" here so a run recorded before the switch reads as what
    it was; presets say "auto"."""

    def __post_init__(self) -> None:
        if self.space not in SPACE_CHOICES:
            _fail("grid.space", f"expected one of {', '.join(SPACE_CHOICES)}, got {self.space!r}")
        # a contracted grid has 2 * resolution - 1 vertices a side: 320^3 fits field.schema.MAX_GRID_VERTICES
        _int("grid.resolution", self.resolution, 8, 160 if self.space != "box" else 320)
        _int("grid.coarse_resolution", self.coarse_resolution, 4)
        if self.coarse_resolution > self.resolution:
            _fail("grid.coarse_resolution", f"{self.coarse_resolution} is finer than grid.resolution "
                                            f"{self.resolution}")
        _int("grid.channels", self.channels, 1, 64)
        lo, hi = STEP_RATIO_RANGE
        _float("grid.step_ratio", self.step_ratio, lo, hi)


@dataclass(frozen=True)
class MLPShape:
    """The tiny MLP of deferred shading (its input width is the grid's channels)."""

    hidden: int = 32
    """Width of each hidden layer of the shared MLP."""
    layers: int = 2
    """Hidden layers of the shared MLP."""
    view_freqs: int = 2
    """sin/cos frequencies of the view direction fed to the MLP."""

    def __post_init__(self) -> None:
        _int("mlp.hidden", self.hidden, 4, 128)
        _int("mlp.layers", self.layers, 1, 4)
        _int("mlp.view_freqs", self.view_freqs, 0, 6)


@dataclass(frozen=True)
class CoarseConfig:
    """The coarse pass: a low-resolution density + RGB grid per frame -> occupancy."""

    iters: int = 300
    """Iterations of the first frame's coarse fit."""
    frame_iters: int = 60
    """Iterations of each later frame's coarse fit (warm-started from the previous frame)."""
    lr: float = 0.3
    """Adam learning rate of the coarse grids (high: the coarse pass has few iterations to make density)."""
    occupancy_alpha: float = 0.05
    """A fine vertex is occupied where the upsampled coarse density gives alpha above this (per step)."""
    occupancy_dilation: int = 1
    """Occupied region grown by this many fine voxels, so the fine pass has room."""
    contracted_iters: int = 0
    """Iterations of the first frame's coarse fit in a contracted grid (0: `iters`): the shell's
    density starts from nothing over all of space. At 400 instead of `fast`'s 100: the forward-facing
    scene 8.33 -> 14.86 dB held-out (its backdrop appears), the room 18.22 -> 19.89 dB."""

    def __post_init__(self) -> None:
        _int("coarse.iters", self.iters, 1)
        _int("coarse.contracted_iters", self.contracted_iters, 0)
        _int("coarse.frame_iters", self.frame_iters, 0)
        _float("coarse.lr", self.lr, 0, lo_open=True)
        _float("coarse.occupancy_alpha", self.occupancy_alpha, 0, 1, lo_open=True, hi_open=True)
        _int("coarse.occupancy_dilation", self.occupancy_dilation, 0)


@dataclass(frozen=True)
class GopConfig:
    """How frames are grouped into GOPs (one mapping, one keyframe each)."""

    length: GopLength = 10
    """Frames per GOP, or "auto": a new GOP where its keyframe costs fewer bytes than the empty
    blocks a grown union adds to the GOP's frames (featvid.train.gops.grows_dearer), within
    `growth` and `max_length`."""
    growth: float = 0.25
    """auto GOPs: start a new GOP once the union has this fraction more blocks than its first frame
    (what a player decodes and samples a frame), whatever the bytes."""
    max_length: int = 30
    """auto GOPs: longest GOP in frames."""
    segment: int = 0
    """Frames per training segment (featvid.train.segments), 0: none. Each segment starts with a
    refreshed keyframe (its coarse density, frame 0's MLP kept) and trains on its own, so segments
    train in parallel (`featvid train --workers`); a segment is also a GOP boundary."""

    def __post_init__(self) -> None:
        _int("gop.segment", self.segment, 0)
        if self.length != "auto":
            if isinstance(self.length, str):
                _fail("gop.length", f"expected a positive whole number or 'auto', got {self.length!r}")
            _int("gop.length", self.length, 1)
        _float("gop.growth", self.growth, 0, lo_open=True)
        _int("gop.max_length", self.max_length, 1)


@dataclass(frozen=True)
class ScheduleConfig:
    """How long each fit of the fine pass runs: between the fewest and the most iterations, stopped
    once its loss stops improving."""

    keyframe_iters: int = 2000
    """Most iterations of a keyframe (frame 0: grid and MLP; a refreshed keyframe: the grid)."""
    keyframe_iters_min: int = 1200
    """Fewest iterations of a keyframe, before its loss may be judged to have stopped improving."""
    refresh_iters: int = 1000
    """Most iterations of a refreshed keyframe, at least half of them: fewer than frame 0, which
    also learns the MLP."""
    frame_iters: int = 300
    """Most iterations of every later (warm-started) frame."""
    frame_iters_min: int = 100
    """Fewest iterations of a later frame."""
    plateau: float = 0.01
    """A fit stops once the photometric loss, averaged over `plateau_window` iterations, improves by
    less than this fraction on the window before (0: always the most iterations)."""
    plateau_window: int = 20
    """Iterations per loss window of the plateau test."""

    def __post_init__(self) -> None:
        _int("schedule.keyframe_iters", self.keyframe_iters, 1)
        _int("schedule.keyframe_iters_min", self.keyframe_iters_min, 0, self.keyframe_iters)
        _int("schedule.refresh_iters", self.refresh_iters, 1, self.keyframe_iters)
        _int("schedule.frame_iters", self.frame_iters, 0)
        _int("schedule.frame_iters_min", self.frame_iters_min, 0, self.frame_iters)
        _float("schedule.plateau", self.plateau, 0, 1, hi_open=True)
        _int("schedule.plateau_window", self.plateau_window, 1)


@dataclass(frozen=True)
class OptimConfig:
    """How every fit learns: rays per step, Adam's learning rates and their decay, the feature clamp."""

    batch_rays: int = 4096
    """Rays per iteration (coarse and fine pass)."""
    lr_grid: float = 0.1
    """Adam learning rate of density and features on a keyframe (DVGO: 0.1)."""
    lr_grid_frame: float = 0.2
    """The same in later frames: higher, because content that moves must travel far in few iterations."""
    lr_mlp: float = 3e-3
    """Adam learning rate of the MLP on the keyframe."""
    lr_mlp_frame: float = 0.0
    """MLP learning rate in later frames; 0 freezes the MLP after the keyframe (VideoRF)."""
    lr_decay: float = 0.3
    """Learning rates fall exponentially to this fraction of their start over a frame's iterations."""
    feature_range: float = 2.0
    """Features are clamped to [-feature_range, feature_range]: a bounded range for 8-bit quantization."""

    def __post_init__(self) -> None:
        _int("optim.batch_rays", self.batch_rays, 16)
        for name in ("lr_grid", "lr_grid_frame", "lr_mlp"):
            _float(f"optim.{name}", getattr(self, name), 0, lo_open=True)
        _float("optim.lr_mlp_frame", self.lr_mlp_frame, 0)
        _float("optim.lr_decay", self.lr_decay, 0, 1, lo_open=True)
        _float("optim.feature_range", self.feature_range, 0, lo_open=True)


@dataclass(frozen=True)
class MotionConfig:
    """Warm starts of later frames: the previous frame carried along the motion between coarse densities."""

    enabled: bool = True
    """Carry the previous frame along the estimated motion (training only: streams hold full grids);
    a smaller worst-frame drop and fewer refreshes, for more stream bytes at equal PSNR."""
    search: int = 3
    """Largest motion searched per frame, in coarse voxels along each axis."""
    window: MotionWindow = 5
    """Side of the neighbourhood (coarse voxels) a voxel's motion is matched over (3 is noisier, 7 no better)."""
    geometry_refresh: float = 0.5
    """Where the warm start's opacity and the current frame's coarse opacity differ by more than this
    (space that appeared or vanished), density restarts from the coarse pass; 0 switches it off."""

    def __post_init__(self) -> None:
        _bool("motion.enabled", self.enabled)
        _int("motion.search", self.search, 1, 16)
        if self.window not in MOTION_WINDOWS or isinstance(self.window, bool):
            _fail("motion.window", f"expected one of {', '.join(map(str, MOTION_WINDOWS))}, got {self.window!r}")
        _float("motion.geometry_refresh", self.geometry_refresh, 0, 1)


@dataclass(frozen=True)
class RefreshConfig:
    """Quality over time: when a frame is fitted again as a keyframe, and what judges it."""

    margin: float = 1.0
    """dB: a frame whose quality falls more than this below its reference is fitted again as a
    keyframe (density from its coarse pass, the MLP kept) and starts a new GOP; 0 switches it off.
    Quality is the validation views' PSNR against the last fresh keyframe's, or without them the
    fitted views' PSNR against the first warm frame's after that keyframe (never the test views)."""
    validation_views: int = 0
    """Training views held out of every fit to judge quality (never more than a quarter of them);
    0 judges by the fitted views, because a held-out view costs the fit more than it tells."""
    rate_slope: float = 0.0
    """dB of the stream's mean PSNR per doubling of its bytes: a refresh is taken only when its
    gain beats what its keyframe's bytes would buy every frame at this slope (featvid.train.refresh);
    0: whenever quality falls below the margin (what runs before the switch did; presets set it)."""

    def __post_init__(self) -> None:
        _float("refresh.margin", self.margin, 0)
        _float("refresh.rate_slope", self.rate_slope, 0)
        _int("refresh.validation_views", self.validation_views, 0, 16)


@dataclass(frozen=True)
class LossConfig:
    """The regularisers (VideoRF's temporal and spatial losses, a density TV) and the training
    cameras' colour correction."""

    temporal_weight: float = 0.1
    """L1 between this frame's and the previous frame's vertex values: less drift, smaller P-frames (0: off)."""
    spatial_weight: float = 0.003
    """L1 between neighbouring pixels inside atlas tiles of the GOP's mapping: smaller streams (0: off)."""
    density_tv_weight: float = 0.0
    """Total variation of raw density on warm frames: fewer floaters in the held-out views (0: off).
    0 here so a run recorded before the switch existed reads as what it was; presets set it."""
    density_scale: float = 0.1
    """Both regularisers weigh the density channel by this factor (its range is ~10x the features')."""
    colour_correction: bool = False
    """Learn an affine colour transform per training camera (exposure, white balance), applied to
    the training views' rays in the photometric loss only: never in the stream (featvid.train.colour).
    For real rigs; off here (a run recorded before the switch reads as what it was) and in the
    presets: where all cameras agree it cost 0.16-0.21 dB held-out (`fast`, synthetic dancer)."""
    colour_weight: float = 0.01
    """Weight of the pull of each camera's colour transform towards identity."""
    keyframe_tv_weight: float = 0.0
    """Total variation of raw density on keyframes too (a static capture is one keyframe): floaters
    a few views ask for pay for their edges (0: off, what runs before the switch did)."""
    rate_weight: float = 0.0
    """Weight of the estimated bits per atlas sample (featvid.train.losses.atlas_rate): the
    codec's rate in the loss, traded against quality (0: off, what runs before the switch did).
    `fast` sets 5e-4 in box grids (BOX_RATE); the demo's float model lost 0.47 dB at 1e-3, so
    `demo` has none (docs/training.md)."""
    keyframe_rate_weight: float | None = None
    """`rate_weight` on keyframes (their I-frames), None: the same as on warm frames (what runs
    before the switch did)."""
    rate_qp: float = 16.5
    """The quantizer the rate estimate assumes (x264's crf: the default codec preset's 16.5)."""
    codec_loop: str = ""
    """The codec preset whose real encoder and decoder the fine pass renders through (the codec in
    the loop, featvid.train.codec_loop; e.g. "h264-crf16.5"), or "" (off, in every preset; a run
    recorded before the switch reads as what it was). Measured: docs/training.md."""
    codec_refresh: int = 30
    """Iterations between two round trips through the codec (each one encodes and decodes the frame)."""
    codec_start: float = 0.5
    """The codec joins a fit after this fraction of its minimum iterations."""
    codec_change: float = 0.5
    """A round trip comes early once the values moved by more than this many quantization steps on
    average since the last one (0: every `codec_refresh` iterations only)."""
    random_background: bool = False
    """Composite each training ray over a random colour instead of the background, in contracted
    grids only (a capture without masks, whose images are opaque everywhere): the images then match
    only where the grid is opaque, so the background colour cannot paint a white wall through a
    half-transparent one that other views see wrongly (off here, what runs before the switch did;
    the presets set it: docs/training.md)."""
    distortion_weight: float = 0.0
    """mip-NeRF 360's distortion loss (featvid.train.losses.distortion), coarse and fine passes, in
    contracted grids only (box grids ignore it): each ray's weight pulled onto one surface, against
    the haze in front of each camera (0: off, what runs before the switch did)."""

    def __post_init__(self) -> None:
        for name in ("temporal_weight", "spatial_weight", "density_tv_weight", "colour_weight", "keyframe_tv_weight",
                     "distortion_weight", "rate_weight"):
            _float(f"losses.{name}", getattr(self, name), 0)
        _float("losses.density_scale", self.density_scale, 0)
        _float("losses.rate_qp", self.rate_qp, 0, 51)
        if self.keyframe_rate_weight is not None:
            _float("losses.keyframe_rate_weight", self.keyframe_rate_weight, 0)
        if not isinstance(self.codec_loop, str) or len(self.codec_loop) > 64:
            _fail("losses.codec_loop", f"expected a codec preset's name (or \"\": off), got {self.codec_loop!r}")
        _int("losses.codec_refresh", self.codec_refresh, 1)
        _float("losses.codec_start", self.codec_start, 0, 1)
        _float("losses.codec_change", self.codec_change, 0)
        _bool("losses.colour_correction", self.colour_correction)
        _bool("losses.random_background", self.random_background)


@dataclass(frozen=True)
class SamplingConfig:
    """Ray importance sampling of later frames (DyNeRF)."""

    importance: Importance = "ist"
    """"ist" (temporal difference), "isg" (temporal median) or "none" (uniform rays)."""
    floor: float = 0.05
    """Smallest sampling weight of a pixel (DyNeRF's alpha), so static pixels are still seen."""
    isg_gamma: float = 0.02
    """ISG: psi = d^2 / (d^2 + gamma^2)."""
    window: int = 2
    """Frames either side of t used by IST / ISG."""

    def __post_init__(self) -> None:
        if self.importance not in IMPORTANCE_CHOICES:
            _fail("sampling.importance", f"expected one of {', '.join(IMPORTANCE_CHOICES)}, got {self.importance!r}")
        _float("sampling.floor", self.floor, 0, 1, lo_open=True)
        _float("sampling.isg_gamma", self.isg_gamma, 0, lo_open=True)
        _int("sampling.window", self.window, 1)


@dataclass(frozen=True)
class ContractedConfig:
    """What changes for a capture trained in a contracted grid (no masks: a real capture, a room or
    a backdrop to hold, opaque images), over the rest of the config; None: as the rest. The trainer
    applies it once it knows the space (`TrainConfig.in_space`); run.json records it as given."""

    resolution: int | None = None
    """grid.resolution in a contracted grid (the scene box's vertices along its longest side)."""
    keyframe_iters: int | None = None
    """The first keyframe's iterations, fewest and most alike: it learns the MLP and the detail a
    real capture has, and a static capture is that keyframe only."""
    keyframe_tv_weight: float | None = None
    """losses.keyframe_tv_weight in a contracted grid: floaters that a few views ask for pay for
    their edges."""
    view_freqs: int | None = None
    """mlp.view_freqs in a contracted grid: without view dependence a floater cannot paint one
    view's background and stay invisible from the others."""
    rate_weight: float | None = None
    """losses.rate_weight in a contracted grid. The rate estimate reads every pixel of the atlas, and
    a contracted grid's is ~10x a box grid's: on the fox (7,188 tiles) it cost 39 ms of a 0.28 s
    step, 678 s to train against 534 s without, past issue 25's 10 minutes. Cheaper stand-ins
    made the stream larger than no rate term at all (docs/training.md)."""

    def __post_init__(self) -> None:
        if self.resolution is not None:
            _int("contracted.resolution", self.resolution, 8, 160)
        if self.keyframe_iters is not None:
            _int("contracted.keyframe_iters", self.keyframe_iters, 1)
        if self.keyframe_tv_weight is not None:
            _float("contracted.keyframe_tv_weight", self.keyframe_tv_weight, 0)
        if self.view_freqs is not None:
            _int("contracted.view_freqs", self.view_freqs, 0, 6)
        if self.rate_weight is not None:
            _float("contracted.rate_weight", self.rate_weight, 0)


SECTIONS: dict[str, type] = {
    "grid": GridConfig, "mlp": MLPShape, "coarse": CoarseConfig, "gop": GopConfig, "schedule": ScheduleConfig,
    "optim": OptimConfig, "motion": MotionConfig, "refresh": RefreshConfig, "losses": LossConfig,
    "sampling": SamplingConfig, "contracted": ContractedConfig,
}

# The flat names (run.json before the sections, the CLI, preset overrides) -> (section, field);
# section None: a field of TrainConfig itself.
FLAT_NAMES: dict[str, tuple[str | None, str]] = {
    "grid_resolution": ("grid", "resolution"), "coarse_resolution": ("grid", "coarse_resolution"),
    "num_channels": ("grid", "channels"), "step_ratio": ("grid", "step_ratio"), "space": ("grid", "space"),
    "mlp_hidden": ("mlp", "hidden"), "mlp_layers": ("mlp", "layers"), "view_freqs": ("mlp", "view_freqs"),
    "coarse_iters": ("coarse", "iters"), "coarse_frame_iters": ("coarse", "frame_iters"),
    "coarse_lr": ("coarse", "lr"), "occupancy_alpha": ("coarse", "occupancy_alpha"),
    "occupancy_dilation": ("coarse", "occupancy_dilation"), "coarse_contracted_iters": ("coarse", "contracted_iters"),
    "gop": ("gop", "length"), "gop_growth": ("gop", "growth"), "max_gop": ("gop", "max_length"),
    "segment": ("gop", "segment"),
    "keyframe_iters": ("schedule", "keyframe_iters"), "keyframe_iters_min": ("schedule", "keyframe_iters_min"),
    "refresh_iters": ("schedule", "refresh_iters"), "frame_iters": ("schedule", "frame_iters"),
    "frame_iters_min": ("schedule", "frame_iters_min"), "plateau": ("schedule", "plateau"),
    "plateau_window": ("schedule", "plateau_window"),
    "batch_rays": ("optim", "batch_rays"), "lr_grid": ("optim", "lr_grid"),
    "lr_grid_frame": ("optim", "lr_grid_frame"), "lr_mlp": ("optim", "lr_mlp"),
    "lr_mlp_frame": ("optim", "lr_mlp_frame"), "lr_decay": ("optim", "lr_decay"),
    "feature_range": ("optim", "feature_range"),
    "motion": ("motion", "enabled"), "motion_search": ("motion", "search"), "motion_window": ("motion", "window"),
    "geometry_refresh": ("motion", "geometry_refresh"),
    "refresh_margin": ("refresh", "margin"), "validation_views": ("refresh", "validation_views"),
    "refresh_slope": ("refresh", "rate_slope"),
    "temporal_weight": ("losses", "temporal_weight"), "spatial_weight": ("losses", "spatial_weight"),
    "density_tv_weight": ("losses", "density_tv_weight"), "density_reg_scale": ("losses", "density_scale"),
    "keyframe_tv_weight": ("losses", "keyframe_tv_weight"), "distortion_weight": ("losses", "distortion_weight"),
    "rate_weight": ("losses", "rate_weight"), "rate_qp": ("losses", "rate_qp"),
    "keyframe_rate_weight": ("losses", "keyframe_rate_weight"),
    "codec_loop": ("losses", "codec_loop"), "codec_refresh": ("losses", "codec_refresh"),
    "codec_start": ("losses", "codec_start"), "codec_change": ("losses", "codec_change"),
    "colour_correction": ("losses", "colour_correction"), "colour_weight": ("losses", "colour_weight"),
    "random_background": ("losses", "random_background"),
    "importance": ("sampling", "importance"), "importance_floor": ("sampling", "floor"),
    "isg_gamma": ("sampling", "isg_gamma"), "importance_window": ("sampling", "window"),
    "contracted_resolution": ("contracted", "resolution"), "contracted_keyframe_iters": ("contracted", "keyframe_iters"),
    "contracted_keyframe_tv_weight": ("contracted", "keyframe_tv_weight"),
    "contracted_view_freqs": ("contracted", "view_freqs"), "contracted_rate_weight": ("contracted", "rate_weight"),
    "seed": (None, "seed"), "eval_heldout": (None, "eval_heldout"),
}

# a contracted value (flat name) -> the field it replaces: naming that one alone (`--grid`,
# `--keyframe-iters`) sets it in every space (derive_overrides)
CONTRACTED_FOLLOWS: dict[str, str] = {
    "contracted_resolution": "grid_resolution", "contracted_keyframe_iters": "keyframe_iters",
    "contracted_keyframe_tv_weight": "keyframe_tv_weight", "contracted_view_freqs": "view_freqs",
    "contracted_rate_weight": "rate_weight",
}


@dataclass(frozen=True)
class TrainConfig:
    """How a multi-view video is fitted, frame after frame (VideoRF's two passes)."""

    grid: GridConfig = field(default_factory=GridConfig)
    mlp: MLPShape = field(default_factory=MLPShape)
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    gop: GopConfig = field(default_factory=GopConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    refresh: RefreshConfig = field(default_factory=RefreshConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    contracted: ContractedConfig = field(default_factory=ContractedConfig)
    seed: int = 0
    """Seed of every random choice (MLP init, rays, jitter): same seed, same run."""
    eval_heldout: bool = True
    """Render the dataset's held-out test views after every frame and log their PSNR."""

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                _fail(name, f"expected a {cls.__name__}, got {type(getattr(self, name)).__name__}")
        _int("seed", self.seed, -(2**31), 2**31 - 1)
        _bool("eval_heldout", self.eval_heldout)
        self.mlp_config().validate()  # the sections together: the MLP's input width is the grid's channels
        if self.gop.segment > 0 and self.optim.lr_mlp_frame > 0:  # segments share frame 0's MLP as it is
            _fail("gop.segment", "segments need the MLP frozen after frame 0 (optim.lr_mlp_frame 0)")

    def mlp_config(self) -> MLPConfig:
        """The shared MLP's architecture."""
        return MLPConfig(self.grid.channels, self.mlp.hidden, self.mlp.layers, self.mlp.view_freqs)

    def in_space(self, space: str) -> "TrainConfig":
        """The config a run in `space` ("box" or "contracted") trains with: in a contracted grid the
        `contracted` section's values replace the fields they name (and the section is emptied, so
        applying it twice changes nothing); a box grid trains with the config as it is."""
        if space != "contracted":
            return self
        changes = {field: self._get(value) for value, field in CONTRACTED_FOLLOWS.items()
                   if self._get(value) is not None}
        iters = self.contracted.keyframe_iters
        if iters is not None:  # fewest and most alike; a refreshed keyframe gets no more than the first one
            changes.update(keyframe_iters_min=iters, refresh_iters=min(self.schedule.refresh_iters, iters))
        return replace(self._changed(changes), contracted=ContractedConfig())

    def validate(self) -> "TrainConfig":
        """The config itself: every section checked its values when it was made (ConfigError)."""
        return self

    # -- dicts --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The nested form run.json records: {"grid": {...}, ..., "seed": 0, "eval_heldout": true}."""
        return asdict(self)

    def flat(self) -> dict[str, Any]:
        """The flat form: every field under its flat name (FLAT_NAMES), as run.json held it before the sections."""
        return {name: self._get(name) for name in FLAT_NAMES}

    def _get(self, flat_name: str) -> Any:
        section, name = FLAT_NAMES[flat_name]
        return getattr(self if section is None else getattr(self, section), name)

    @classmethod
    def from_dict(cls, d: Any) -> "TrainConfig":
        """Rebuild from `to_dict` output (nested) or from a flat dict (run.json before the sections,
        results files); a field left out takes its default. Unknown keys are a ConfigError (a run
        from another version)."""
        if not isinstance(d, dict):
            raise ConfigError(f"train config: expected a JSON object, got {type(d).__name__}")
        if any(isinstance(v, dict) for v in d.values()):
            return cls._from_nested(d)
        return cls()._changed(dict(d))

    @classmethod
    def _from_nested(cls, d: dict[str, Any]) -> "TrainConfig":
        top = {f.name for f in fields(cls)} - set(SECTIONS)
        unknown = set(d) - set(SECTIONS) - top
        if unknown:
            raise ConfigError(f"train config: unknown fields {sorted(unknown)}")
        parts: dict[str, Any] = {k: d[k] for k in top if k in d}
        for name, section in SECTIONS.items():
            values = d.get(name, {})
            if not isinstance(values, dict):
                raise ConfigError(f"train config: {name}: expected an object, got {values!r}")
            bad = set(values) - {f.name for f in fields(section)}
            if bad:
                raise ConfigError(f"train config: unknown fields {sorted(f'{name}.{b}' for b in bad)}")
            parts[name] = section(**values)
        return cls(**parts)

    def matches(self, recorded: Any) -> bool:
        """Whether a config as a run recorded it (either form) is this one."""
        try:
            return TrainConfig.from_dict(recorded) == self
        except ConfigError:
            return False

    # -- changes ------------------------------------------------------------------------------------
    def with_overrides(self, **overrides: Any) -> "TrainConfig":
        """A copy with the fields named by their flat names changed (None values are ignored).
        Changes exactly those: one that contradicts another value is a ConfigError (see
        `derive_overrides` for the rules `preset()` applies)."""
        return self._changed({k: v for k, v in overrides.items() if v is not None})

    def _changed(self, flat: dict[str, Any]) -> "TrainConfig":
        bad = set(flat) - set(FLAT_NAMES)
        if bad:
            raise ConfigError(f"train config: unknown fields {sorted(bad)}")
        per_section: dict[str | None, dict[str, Any]] = {}
        for k, v in flat.items():
            section, name = FLAT_NAMES[k]
            per_section.setdefault(section, {})[name] = v
        top = per_section.pop(None, {})
        try:
            return replace(self, **{s: replace(getattr(self, s), **vals) for s, vals in per_section.items()}, **top)
        except TypeError as e:  # a value of a wrong type that a comparison tripped over
            raise ConfigError(f"train config: {e}") from e


# -- presets and their rules ------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """A value that must not exceed another: when an override lowers `source` below the preset's
    `dependent` and does not name `dependent` too, the dependent value follows (and is reported);
    when both are named and contradict, the config is refused."""

    dependent: str  # flat name
    source: str  # flat name
    follow: Callable[[int], int]  # the dependent value, from the source's new value
    why: str


PRESET_RULES: tuple[Rule, ...] = (
    Rule("coarse_resolution", "grid_resolution", lambda grid: max(4, grid // 2),
         "the coarse grid may not be finer than the fine grid: it becomes half of it"),
    Rule("keyframe_iters_min", "keyframe_iters", lambda most: most,
         "a keyframe's fewest iterations may not exceed its most"),
    Rule("refresh_iters", "keyframe_iters", lambda most: most,
         "a refreshed keyframe gets no more iterations than the first one"),
    Rule("frame_iters_min", "frame_iters", lambda most: most,
         "a later frame's fewest iterations may not exceed its most"),
)


@dataclass(frozen=True)
class Derived:
    """A value a preset rule changed because an override would otherwise contradict it."""

    name: str
    was: Any
    value: Any
    source: str
    why: str

    def __str__(self) -> str:
        return f"{self.name} {self.was} -> {self.value} (follows {self.source}: {self.why})"


def derive_overrides(base: TrainConfig, overrides: dict[str, Any]) -> tuple[dict[str, Any], list[Derived]]:
    """The overrides of `base` that `preset()` applies: those given (None ignored) plus the values
    PRESET_RULES derive from them, and what was derived. A rule fires only when its source is
    named, its dependent is not, and the base's dependent value would exceed the new source value;
    everything else is changed exactly as named (contradictions are a ConfigError)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    bad = set(given) - set(FLAT_NAMES)
    if bad:
        raise ConfigError(f"train config: unknown fields {sorted(bad)}")
    derived: list[Derived] = []
    for rule in PRESET_RULES:
        source = given.get(rule.source)
        if source is None or rule.dependent in given or isinstance(source, bool) or not isinstance(source, int):
            continue  # not named, or named wrongly: the config check reports that
        was = base._get(rule.dependent)
        if was > source:
            derived.append(Derived(rule.dependent, was, rule.follow(source), rule.source, rule.why))
    for dependent, source in CONTRACTED_FOLLOWS.items():  # a value named holds in every space
        was = base._get(dependent)
        if source in given and dependent not in given and was is not None:
            derived.append(Derived(dependent, was, None, source, f"{source} names the value in every space"))
    return {**given, **{d.name: d.value for d in derived}}, derived


# dB of stream PSNR per doubling of its bytes at the default codec preset (crf 16.5 -> 20: crossing
# 1.08, orbits 1.27), the rate the keyframe refresh weighs its keyframes' bytes at (refresh.rate_slope)
REFRESH_SLOPE = 1.2

# GOPs that count bytes (featvid.train.gops): a new GOP where its keyframe costs fewer bytes than
# growing the union, within 30 frames (1 s at 30 fps, where a player can seek) and a union of twice
# its first frame's blocks. 12 frames, `fast`, BD-rate against GOPs of 10 and every refresh (the
# preset before REFRESH_SLOPE): dancer (8 views) -72.4 %, crossing -12.9 %, float +0.64 / +0.02 dB;
# REFRESH_SLOPE with GOPs of 10 had -40.8 % / 0.0 % (BENCHMARKS.md, "GOPs that count bytes").
# A union of 1.25x cut the dancer into 3 GOPs: -54.4 %.
AUTO_GOPS = {"gop": "auto", "gop_growth": 1.0, "max_gop": 30}

# The rate in the loss (losses.atlas_rate), in box grids: 12 frames, `fast` with AUTO_GOPS, BD-rate
# against the session-14 `fast` (BENCHMARKS.md, "The rate term by default"): crossing -12.9 % ->
# -23.3 %, dancer -72.4 % -> -75.1 %, float +0.02 / +0.09 dB; orbits, on which nothing was chosen,
# -12.3 % against AUTO_GOPS alone. Session 16's sweep: 3e-4 left crossing at -19.8 %, 1e-3 cost it
# 0.23 dB of float PSNR. Off in contracted grids (ContractedConfig.rate_weight: the cost).
BOX_RATE = {"rate_weight": 5e-4, "contracted_rate_weight": 0.0}

# `fast`'s keyframes in box grids: frame 0, which also learns the MLP, at 1200 iterations, and a
# refreshed keyframe at 600. At 600 / 300 a refreshed keyframe fitted its frame better held out than
# frame 0 did (orbits: 30.69 against 30.23 dB), so the warm frames carried frame 0's shortfall
# along, and orbits' float model stayed 0.21 dB below the session-14 `fast` that refreshed at a
# cost (issue 27). Refits keep half frame 0's iterations, as before: the refresh rule takes frame
# 0's tightness off a refit's gain (featvid.train.train._keyframe_tightness), and 1200 / 300
# declined crossing's refits (float 31.29 -> 31.10). 12 frames, 64 px, BD-rate against the session-14
# `fast` / float PSNR (BENCHMARKS.md, "Keyframes that fit"): orbits (nothing chosen on it) -41.7 %
# -> -42.1 % / 30.10 -> 30.39 dB (session 14: 30.31); crossing -23.3 % -> -25.2 % / 31.29 -> 31.66
# (31.25). Contracted grids set their own first keyframe (ContractedConfig.keyframe_iters).
FAST_KEYFRAMES = {"keyframe_iters": 1200, "keyframe_iters_min": 1200, "refresh_iters": 600}

# The named presets, in one table; each line of PRESET_HELP says what one is for (the CLI shows
# them). Why their numbers are what they are: docs/training.md.
PRESETS: dict[str, TrainConfig] = {
    "test": TrainConfig().with_overrides(
        grid_resolution=32, coarse_resolution=16, coarse_iters=150, coarse_frame_iters=30, keyframe_iters=300,
        keyframe_iters_min=300, refresh_iters=150, frame_iters=100, frame_iters_min=40, batch_rays=2048,
        mlp_hidden=16, eval_heldout=True),
    "fast": TrainConfig().with_overrides(
        grid_resolution=48, coarse_resolution=24, coarse_iters=100, coarse_frame_iters=20, **FAST_KEYFRAMES,
        frame_iters=240, frame_iters_min=180, batch_rays=4096,
        density_tv_weight=3e-3, space="auto", coarse_contracted_iters=400, random_background=True,
        contracted_resolution=64, contracted_keyframe_iters=1600, contracted_keyframe_tv_weight=3e-3,
        contracted_view_freqs=0, refresh_slope=REFRESH_SLOPE, **AUTO_GOPS, **BOX_RATE),
    "demo": TrainConfig().with_overrides(
        grid_resolution=48, coarse_resolution=24, coarse_iters=100, coarse_frame_iters=20, keyframe_iters=600,
        keyframe_iters_min=600, refresh_iters=300, refresh_margin=0.0, frame_iters=60, frame_iters_min=60,
        batch_rays=4096, space="auto", coarse_contracted_iters=400, random_background=True),
    "default": TrainConfig().with_overrides(density_tv_weight=3e-3, space="auto", coarse_contracted_iters=1200,
                                            random_background=True, refresh_slope=REFRESH_SLOPE, **AUTO_GOPS),
    "quality": TrainConfig().with_overrides(
        grid_resolution=160, coarse_resolution=64, coarse_iters=1000, coarse_frame_iters=200, keyframe_iters=16000,
        keyframe_iters_min=10000, refresh_iters=8000, frame_iters=2000, frame_iters_min=600, batch_rays=8192,
        mlp_hidden=64, lr_mlp=1e-3, space="auto", coarse_contracted_iters=4000, random_background=True,
        refresh_slope=REFRESH_SLOPE, **AUTO_GOPS),
}

PRESET_HELP: dict[str, str] = {  # one short line each: `featvid train --help` lists them
    "test": "tiny: learns the test scene (32^3)",
    "fast": "CPU, captures that move (48^3; 64^3 without masks)",
    "demo": "`make demo`: fast, 60 it/frame, no refresh",
    "default": "64^3, 2000 iterations a keyframe",
    "quality": "160^3, a 64-wide MLP (for a GPU)",
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset with `overrides` (flat names, None ignored) applied, and the values that
    PRESET_RULES derive from them (`derive_overrides`; `preset_and_derived` also says which)."""
    return preset_and_derived(name, **overrides)[0]


def preset_and_derived(name: str, **overrides: Any) -> tuple[TrainConfig, list[Derived]]:
    """`preset()`, and the values the rules derived (for the caller to report)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown train preset {name!r} (choose from {', '.join(PRESETS)})")
    base = PRESETS[name]
    changes, derived = derive_overrides(base, overrides)
    return base._changed(changes), derived  # a derived None (a contracted value cleared) is a value here
