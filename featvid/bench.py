"""The codec benchmark: rate-distortion, speed, baselines and what VideoRF's losses buy.

One bake of a trained run is encoded with a matrix of codec presets (codec x rate ladder x
packing x bit depth x speed preset); every point is decoded and measured the same way:

- bytes per frame: all files of the stream folder / frames (`featvid.metrics.bytes_per_frame`);
- render PSNR (dB) and SSIM of the held-out views against the dataset's ground truth;
- feature PSNR (dB): decoded grid values against the trained float grid on its stored vertices,
  each channel's error taken relative to that channel's range over the sequence;
- encode seconds per frame and decode frames per second (wall clock, this machine).

The baselines of `featvid.codecs.baselines` (float16 + zstd, 8-bit + zstd, a ReRF-style codec)
run on the same grids with the same metrics; their bytes per frame add the MLP, as a stream's do.
The training ablation retrains the scene with the temporal, then the spatial loss switched off
and encodes each with the H.264 luma 8-bit ladder.

Results: `results.jsonl` (one JSON line per finished point, keyed by point id and the run's
fingerprint: a rerun skips finished points), then `results.json`, `results.md` and `rd.png`
under the output folder. Entry points: `featvid bench` and `benchmarks/codec_presets.py`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from featvid.atomic import write_json, write_text
from featvid.bake.grid import SparseGrid
from featvid.bake.run import Run, recorded_config
from featvid.errors import ConfigError, FeatvidError
from featvid.metrics import bd_rate, bytes_per_frame

log = logging.getLogger(__name__)

ANCHOR_CURVE = "h264/luma/8bit"  # the curve BD-rates are measured against (its first speed preset)
MAX_LOSS_DB = 0.5  # "near-transparent": the best preset may lose at most this much render PSNR
# Bump when encoding or scoring changes (2: feature basis, float16 MLP, x264 options): finished
# points of an older revision in results.jsonl are measured again rather than reused.
MEASURE_REVISION = 2


# ---- what to measure ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CodecSpec:
    """How one codec enters the matrix: its registry preset (the template of every variant), its
    crf ladder from best to smallest, the encoder options of the two speed presets, and the pixel
    format of each (packing, bit depth); a missing pair is not supported by the codec."""

    template: str
    ladder: tuple[int, ...]
    speeds: dict[str, dict[str, str]]
    pix_fmts: dict[tuple[str, int], str]


CODECS: dict[str, CodecSpec] = {
    "h264": CodecSpec("h264-crf23", (14, 18, 23, 28, 33),
                      {"fast": {"preset": "fast"}, "slow": {"preset": "slow"}},
                      {("luma", 8): "gray", ("luma", 10): "gray10le", ("444", 8): "yuv444p", ("444", 10): "yuv444p10le"}),
    "h265": CodecSpec("h265-crf23", (16, 20, 25, 30, 35),
                      {"fast": {"preset": "fast"}, "slow": {"preset": "slow"}},
                      {("luma", 8): "gray", ("luma", 10): "gray10le", ("444", 8): "yuv444p", ("444", 10): "yuv444p10le"}),
    # SVT-AV1 encodes 4:2:0 only (main profile): the luma mosaic with neutral chroma
    "av1": CodecSpec("av1-crf35", (20, 28, 36, 44, 52),
                     {"fast": {"preset": "10"}, "slow": {"preset": "5"}},
                     {("luma", 8): "yuv420p", ("luma", 10): "yuv420p10le"}),
    "vp9": CodecSpec("vp9-crf32", (20, 28, 36, 44, 52),
                     {"fast": {"cpu-used": "5"}, "slow": {"cpu-used": "1"}},
                     {("luma", 8): "yuv420p", ("luma", 10): "yuv420p10le", ("444", 8): "yuv444p",
                      ("444", 10): "yuv444p10le"}),
}
PACKINGS = {"luma": "luma-mosaic", "444": "yuv444-triplets"}


@dataclass(frozen=True)
class VideoPoint:
    """One cell of the preset matrix."""

    codec: str  # key of CODECS
    packing: str  # key of PACKINGS
    bit_depth: int
    speed: str  # "fast" or "slow"
    crf: int
    feature_basis: bool = True  # code features in the stream's basis (featvid.codecs.basis)

    @property
    def curve(self) -> str:
        """The RD curve this point belongs to (codec/packing/depth/speed, "/no-basis" without the basis)."""
        return f"{self.codec}/{self.packing}/{self.bit_depth}bit/{self.speed}" + ("" if self.feature_basis else "/no-basis")

    @property
    def name(self) -> str:
        return f"{self.codec}-{self.packing}-{self.bit_depth}bit-{self.speed}-crf{self.crf}" + \
            ("" if self.feature_basis else "-no-basis")

    def preset(self):
        """The codec Preset of this point: the codec's registry preset with packing, pixel format,
        bit depth, code range, speed and rate replaced."""
        from featvid.codecs.presets import get_preset

        spec = CODECS[self.codec]
        base = get_preset(spec.template)
        return replace(base, name=self.name, description=f"benchmark variant {self.name}", rate=self.crf,
                       options={**base.options, **spec.speeds[self.speed]},
                       pix_fmt=spec.pix_fmts[(self.packing, self.bit_depth)], bit_depth=self.bit_depth,
                       packing=PACKINGS[self.packing], levels=(0, (1 << self.bit_depth) - 1))


@dataclass(frozen=True)
class Matrix:
    """The preset matrix: codecs x ladder points x packings x bit depths x speeds (unsupported
    combinations are dropped), plus the baselines and the ablation."""

    codecs: tuple[str, ...] = ("h264", "h265", "av1", "vp9")
    ladder_points: int = 5  # N crf values spread evenly over each codec's ladder, both ends included
    packings: tuple[str, ...] = ("luma", "444")
    bit_depths: tuple[int, ...] = (8, 10)
    speeds: tuple[str, ...] = ("fast", "slow")
    rerf_qualities: tuple[float, ...] = (10.0, 30.0, 50.0, 75.0, 90.0)
    lossless_baselines: bool = True  # float16 + zstd and 8-bit + zstd
    ablation: bool = True  # retrain without the temporal / the spatial loss
    ablation_speed: str = "fast"
    basis_ablation: bool = True  # the anchor curve once more without the feature basis

    def video_points(self, available: Callable[[str, str], bool]) -> tuple[list[VideoPoint], list[str]]:
        """(points this machine can encode, notes on the combinations it skipped)."""
        points, skipped = [], []
        for codec in self.codecs:
            spec = CODECS[codec]
            for packing in self.packings:
                for depth in self.bit_depths:
                    pix = spec.pix_fmts.get((packing, depth))
                    if pix is None:
                        skipped.append(f"{codec} {packing} {depth}-bit: not supported by the codec")
                        continue
                    preset = get_codec_name(codec)
                    if not available(preset, pix):
                        skipped.append(f"{codec} {packing} {depth}-bit: encoder {preset} cannot open {pix} here")
                        continue
                    for speed in self.speeds:
                        points += [VideoPoint(codec, packing, depth, speed, crf) for crf in self.ladder(codec)]
        if self.basis_ablation and "h264" in self.codecs and available(get_codec_name("h264"), "gray"):
            points += [VideoPoint("h264", "luma", 8, self.ablation_speed, crf, feature_basis=False)
                       for crf in self.ladder("h264")]
        return points, skipped

    def ablation_points(self) -> list[VideoPoint]:
        """The ladder of the anchor curve (H.264 luma 8-bit) used on the ablation runs."""
        return [VideoPoint("h264", "luma", 8, self.ablation_speed, crf) for crf in self.ladder("h264")]

    def ladder(self, codec: str) -> list[int]:
        """`ladder_points` crf values of the codec's ladder, spread from its best to its smallest."""
        full = CODECS[codec].ladder
        n = max(1, min(self.ladder_points, len(full)))
        return [full[i] for i in sorted({int(round(x)) for x in np.linspace(0, len(full) - 1, n)})]


def get_codec_name(codec: str) -> str:
    """The FFmpeg encoder of a CODECS key."""
    from featvid.codecs.presets import get_preset

    return get_preset(CODECS[codec].template).codec


@dataclass(frozen=True)
class SceneSpec:
    """The built-in synthetic scene the benchmark trains (when no --run is given)."""

    frames: int = 8
    views: int = 12
    size: int = 64
    train_preset: str = "fast"
    scene: str | None = None  # None: featvid.data.synth's default scene
    train_overrides: tuple[tuple[str, Any], ...] = ()  # TrainConfig fields changed from the preset

    @property
    def data_key(self) -> str:
        """Names the cached synthetic dataset."""
        return f"{self.scene or 'default'}-{self.frames}f-{self.views}v-{self.size}px"

    @property
    def key(self) -> str:
        """Names the cached runs trained on it."""
        over = "-".join(f"{k}{v}" for k, v in self.train_overrides)
        return f"{self.data_key}-{self.train_preset}{'-' + over if over else ''}"


@dataclass
class BenchConfig:
    """Everything one benchmark run needs."""

    out: Path = Path("benchmarks/results")
    cache: Path = Path("benchmarks/cache")
    scene: SceneSpec = field(default_factory=SceneSpec)
    matrix: Matrix = field(default_factory=Matrix)
    run: Path | None = None  # an existing finished run (skips training the main run)
    data: Path | None = None  # the dataset (default: the run's own, or the synthetic scene)
    quick: bool = False
    progress: bool = True


def quick_config(**kw: Any) -> BenchConfig:
    """The reduced matrix (a few minutes on 2 CPU cores): tiny scene, H.264 + H.265, 3 crf, luma 8-bit."""
    # the `test` train preset with about half its iterations: three trainings (main + ablation) fit
    return BenchConfig(scene=SceneSpec(frames=4, views=8, size=32, train_preset="test",
                                       train_overrides=(("coarse_iters", 80), ("coarse_frame_iters", 15),
                                                        ("keyframe_iters", 200), ("frame_iters", 40))),
                       matrix=Matrix(codecs=("h264", "h265"), ladder_points=3, packings=("luma",), bit_depths=(8,),
                                     speeds=("fast",), rerf_qualities=(30.0, 75.0)),
                       quick=True, **kw)


def full_config(**kw: Any) -> BenchConfig:
    """The whole matrix on the demo-size scene."""
    return BenchConfig(**kw)


# ---- the results file ------------------------------------------------------------------------------------

class ResultStore:
    """Finished points as JSON lines; a point counts as done when its id and fingerprint match."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a killed run
                if isinstance(row, dict) and "id" in row:
                    self.rows[row["id"]] = row

    def get(self, point_id: str, fingerprint: str) -> dict | None:
        row = self.rows.get(point_id)
        return row if row is not None and row.get("fingerprint") == fingerprint else None

    def add(self, row: dict) -> None:
        """Append one finished point (flushed to disk at once: a killed run keeps it)."""
        self.rows[row["id"]] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row, default=_json_default) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _json_default(x: Any) -> Any:
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x)}")


# ---- the models: dataset, runs, bake --------------------------------------------------------------------

@dataclass
class Model:
    """A trained run under test, with what every point measures it against."""

    label: str  # "main", "no-temporal", "no-spatial"
    run: Run
    baked: Path
    fingerprint: str
    reference: list[SparseGrid]  # the trained float grids, frame by frame
    channel_span: np.ndarray  # [1 + C] range of each channel over the sequence (feature PSNR unit)
    mlp_bytes: int


def run_fingerprint(run: Run) -> str:
    """A short hash of the run's metadata, MLP and frame files: cached points of another run never count."""
    h = hashlib.sha1()
    h.update((run.path / "run.json").read_bytes())
    h.update((run.path / "mlp.safetensors").read_bytes())
    for t in range(run.num_frames):
        h.update(run.frame_path(t).read_bytes())
    return h.hexdigest()[:16]


def prepare_dataset(config: BenchConfig) -> Path:
    """The dataset folder: --data, else the run's own, else the synthetic scene (cached)."""
    if config.data is not None:
        return Path(config.data)
    if config.run is not None:
        return Path(Run(config.run).meta["dataset"])
    from featvid.data.synth import DEFAULT_SCENE, write_synth

    s = config.scene
    folder = config.cache / f"data-{s.data_key}"
    if not (folder / "transforms_train.json").is_file():
        write_synth(folder, scene=s.scene or DEFAULT_SCENE, frames=s.frames, views=s.views, size=s.size,
                    progress=config.progress)
    return folder


def ablation_configs(base) -> dict[str, Any]:
    """The training configs under test: the base one and each VideoRF regulariser switched off."""
    return {"main": base,
            "no-temporal": base.with_overrides(temporal_weight=0.0),
            "no-spatial": base.with_overrides(spatial_weight=0.0)}


def model_labels(config: BenchConfig) -> list[str]:
    """The runs under test: "main", then (with the ablation) "no-temporal" and "no-spatial"."""
    return ["main", "no-temporal", "no-spatial"] if config.matrix.ablation else ["main"]


def prepare_run(config: BenchConfig, label: str, dataset: Path, video) -> Path:
    """The finished run folder of `label`; trains (or resumes) it under the cache folder when needed.

    "main" is --run when given, else the scene trained with its preset; the ablation runs use the
    main run's config with one regulariser weight set to 0, on the same dataset and frames.
    """
    from featvid.bake.config import TrainConfig, preset
    from featvid.bake.train import train

    frames = None
    if config.run is not None:
        main_run = Run(config.run)
        if not main_run.is_complete():
            raise ConfigError(f"{config.run}: the run is unfinished; finish it with featvid train first")
        if label == "main":
            return Path(config.run)
        base = TrainConfig.from_dict(main_run.meta["config"])
        a = int(main_run.meta.get("frame_start", 0))
        frames = (a, a + main_run.num_frames)
        prefix = f"run-{Path(config.run).name}"  # ablation runs of a given run, named after it
    else:
        base = preset(config.scene.train_preset, **dict(config.scene.train_overrides))
        prefix = f"run-{config.scene.key}"
    configs = ablation_configs(base)
    if label not in configs:
        raise ConfigError(f"unknown benchmark run {label!r}")
    if label != "main" and configs[label] == base:
        log.warning("the base config already has %s switched off; the ablation repeats it", label)
    out = config.cache / f"{prefix}-{label}"
    # the cache is ours: a run left by another featvid version (other config) is trained again
    stale = recorded_config(out) not in (None, configs[label].to_dict())
    log.info("training %s into %s%s", label, out, " (cached run had another config: starting over)" if stale else "")
    return train(dataset, out, configs[label], frames=frames, device="auto", video=video, force=stale).path


def prepare_model(label: str, run_dir: Path, cache: Path) -> Model:
    """Load a finished run, bake it once (cached by fingerprint) and collect its float reference."""
    from featvid.codecs import bake_run

    run = Run(run_dir)
    fp = run_fingerprint(run)
    baked = cache / f"baked-{fp}"
    if not (baked / "baked.json").is_file():
        bake_run(run_dir, baked)
    reference = [g for _, g in run.frames()]
    values = [torch.cat([g.density[:, None], g.features], 1) for g in reference]  # [N, 1 + C] each
    lo = torch.stack([v.amin(0) for v in values if len(v)]).amin(0)
    hi = torch.stack([v.amax(0) for v in values if len(v)]).amax(0)
    span = (hi - lo).numpy()
    span = np.where(span > 0, span, 1.0)
    # baselines carry the MLP as streams do: float16
    # points are keyed by the run and by how they are measured: a new encoder revision re-measures
    return Model(label, run, baked, f"{fp}-r{MEASURE_REVISION}", reference, span, len(run.mlp().to_bytes(half=True)))


# ---- measuring one point ------------------------------------------------------------------------------------

def feature_psnr(decoded: list[SparseGrid], reference: list[SparseGrid], span: np.ndarray) -> float:
    """PSNR in dB of decoded grid values against the float reference on the reference's stored
    vertices; each channel's squared error is divided by its range^2 (span [1 + C]) first."""
    err = np.zeros(len(span))
    count = 0
    for dec, ref in zip(decoded, reference, strict=True):
        if len(ref.coords) == 0:
            continue
        ref_v = torch.cat([ref.density[:, None], ref.features], 1)  # [N, 1 + C]
        c = ref.coords.long()
        dec_v = dec.to_dense()[:, c[:, 0], c[:, 1], c[:, 2]].T  # [N, 1 + C]; 0 where not decoded
        err += ((dec_v - ref_v).double() ** 2).sum(0).numpy()
        count += len(ref_v)
    nmse = float((err / max(count, 1) / span.astype(np.float64) ** 2).mean())
    return math.inf if nmse == 0 else -10.0 * math.log10(nmse)


def _render_scores(grids: list[SparseGrid], model: Model, video, mlp=None) -> tuple[float, float]:
    """Held-out PSNR and SSIM of `grids` rendered through `mlp` (default: the run's)."""
    from featvid.render.evaluate import evaluate

    report = evaluate(enumerate(grids), mlp or model.run.mlp(), model.run.render_settings, video,
                      frame_offset=int(model.run.meta.get("frame_start", 0)))
    return report.mean_psnr, report.mean_ssim


def measure_float(model: Model, video) -> dict:
    """The float model itself: float32 frame files + MLP, rendered as trained."""
    t0 = time.perf_counter()
    psnr, ssim = _render_scores(model.reference, model, video)
    files = sum(model.run.frame_path(t).stat().st_size for t in range(model.run.num_frames))
    return {"kind": "float", "curve": "float32", "bytes_per_frame": (files + model.mlp_bytes) / model.run.num_frames,
            "psnr": psnr, "ssim": ssim, "feature_psnr": math.inf, "encode_s_per_frame": 0.0,
            "decode_fps": math.nan, "eval_s": time.perf_counter() - t0}


def measure_video(point: VideoPoint, model: Model, video, workdir: Path) -> dict:
    """Encode the model's bake with the point's preset, decode it, measure it, delete the stream."""
    from featvid.codecs import encode_baked, open_stream

    T = model.run.num_frames
    stream_dir = workdir / f"{point.name}.fvv"
    shutil.rmtree(stream_dir, ignore_errors=True)
    preset = point.preset()
    t0 = time.perf_counter()
    encode_baked(model.baked, stream_dir, preset=preset, feature_basis=point.feature_basis)
    encode_s = time.perf_counter() - t0
    size = bytes_per_frame(stream_dir, T)
    t0 = time.perf_counter()
    stream = open_stream(stream_dir, hwaccel="none")
    grids = list(stream.frames())
    decode_s = time.perf_counter() - t0
    mlp, A = stream.mlp(), stream.feature_basis()
    shutil.rmtree(stream_dir, ignore_errors=True)
    psnr, ssim = _render_scores(grids, model, video, mlp)  # decoded features go with the stream's MLP
    if A is not None:  # feature PSNR is measured on the run's features: f = A^-1 g
        Ainv = torch.linalg.inv(A).float()
        grids = [replace(g, features=g.features @ Ainv.T) for g in grids]
    return {"kind": "video", "curve": point.curve, "codec": point.codec, "encoder": preset.codec,
            "packing": point.packing, "pix_fmt": preset.pix_fmt, "bit_depth": point.bit_depth, "speed": point.speed,
            "crf": point.crf, "options": preset.encoder_options(), "bytes_per_frame": size, "psnr": psnr, "ssim": ssim,
            "feature_psnr": feature_psnr(grids, model.reference, model.channel_span),
            "encode_s_per_frame": encode_s / T, "decode_fps": T / decode_s}


def measure_baseline(codec, model: Model, video) -> dict:
    """Encode the float grids with a baseline, decode the bytes back, measure like a stream."""
    T = model.run.num_frames
    t0 = time.perf_counter()
    encoded = codec.encode(model.reference)
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    grids = codec.decode(encoded)
    decode_s = time.perf_counter() - t0
    psnr, ssim = _render_scores(grids, model, video)
    curve = "rerf" if codec.name.startswith("rerf") else codec.name
    return {"kind": "baseline", "curve": curve, "codec": codec.name,
            "quality": getattr(codec, "quality", None),
            "bytes_per_frame": (encoded.nbytes + model.mlp_bytes) / T, "payload_bytes_per_frame": encoded.nbytes / T,
            "psnr": psnr, "ssim": ssim, "feature_psnr": feature_psnr(grids, model.reference, model.channel_span),
            "encode_s_per_frame": encode_s / T, "decode_fps": T / decode_s}


# ---- the analysis --------------------------------------------------------------------------------------------

def _curve_rows(rows: list[dict], model: str, curve: str) -> list[dict]:
    return sorted((r for r in rows if r["model"] == model and r["curve"] == curve), key=lambda r: r["bytes_per_frame"])


def _rate_at_psnr(rows: list[dict], psnr: float) -> tuple[float, str]:
    """Bytes per frame of an RD curve at `psnr` (log-rate interpolation), and how it was found."""
    pts = sorted((r["psnr"], r["bytes_per_frame"]) for r in rows if math.isfinite(r["psnr"]))
    if not pts:
        return math.nan, "no points"
    ps = np.array([p for p, _ in pts])
    rs = np.log(np.array([r for _, r in pts]))
    if len(pts) == 1 or psnr < ps.min() or psnr > ps.max():
        # outside the curve: the cheapest point that reaches the PSNR, else the best one there is
        ok = [r for p, r in pts if p >= psnr]
        if ok:
            return min(ok), "cheapest point at or above the PSNR"
        return pts[-1][1], f"curve tops out at {ps.max():.2f} dB (lower bound)"
    # np.interp needs rising x: make the log rate a running max over rising PSNR
    return float(np.exp(np.interp(psnr, ps, np.maximum.accumulate(rs)))), "interpolated"


def summarize(rows: list[dict], matrix: Matrix) -> dict:
    """The headline figures: best preset within MAX_LOSS_DB of the float model, its ratio to each
    baseline at equal PSNR, BD-rates against the anchor curve, and the ablation's BD-rates."""
    out: dict[str, Any] = {}
    main = [r for r in rows if r["model"] == "main"]
    float_row = next((r for r in main if r["kind"] == "float"), None)
    videos = [r for r in main if r["kind"] == "video"]
    if float_row is None or not videos:
        return out
    out["float_psnr"] = float_row["psnr"]
    target = float_row["psnr"] - MAX_LOSS_DB
    good = [r for r in videos if r["psnr"] >= target]
    best = min(good, key=lambda r: r["bytes_per_frame"]) if good else max(videos, key=lambda r: r["psnr"])
    out["best"] = {"id": best["id"], "bytes_per_frame": best["bytes_per_frame"], "psnr": best["psnr"],
                   "loss_db": float_row["psnr"] - best["psnr"], "within_target": bool(good)}
    ratios = {}
    for curve in sorted({r["curve"] for r in main if r["kind"] == "baseline"}):
        rate, how = _rate_at_psnr(_curve_rows(rows, "main", curve), best["psnr"])
        ratios[curve] = {"bytes_per_frame": rate, "ratio": rate / best["bytes_per_frame"], "how": how}
    out["baseline_ratios"] = ratios
    # BD-rate of every curve against the anchor (its first speed preset present)
    curves = sorted({r["curve"] for r in videos})
    anchor = next((c for s in matrix.speeds for c in curves if c == f"{ANCHOR_CURVE}/{s}"), None)
    out["anchor"] = anchor
    if anchor is not None:
        a = _curve_rows(rows, "main", anchor)
        bd = {}
        for curve in curves + ["rerf"]:
            t = _curve_rows(rows, "main", curve)
            bd[curve] = bd_rate([r["bytes_per_frame"] for r in a], [r["psnr"] for r in a],
                                [r["bytes_per_frame"] for r in t], [r["psnr"] for r in t])
        out["bd_rate_vs_anchor"] = bd
    # the ablation: the same anchor preset on each run; BD-rate of the run without a loss vs with it
    abl_curve = f"{ANCHOR_CURVE}/{matrix.ablation_speed}"
    base = _curve_rows(rows, "main", abl_curve)
    abl = {}
    for label in ("no-temporal", "no-spatial"):
        t = _curve_rows(rows, label, abl_curve)
        if not t or not base:
            continue
        fl = next((r for r in rows if r["model"] == label and r["kind"] == "float"), None)
        abl[label] = {"bd_rate_vs_main": bd_rate([r["bytes_per_frame"] for r in base], [r["psnr"] for r in base],
                                                 [r["bytes_per_frame"] for r in t], [r["psnr"] for r in t]),
                      "float_psnr": fl["psnr"] if fl else math.nan,
                      "mean_bytes_per_frame": float(np.mean([r["bytes_per_frame"] for r in t])),
                      "main_mean_bytes_per_frame": float(np.mean([r["bytes_per_frame"] for r in base]))}
    out["ablation"] = abl
    return out


# ---- machine information -----------------------------------------------------------------------------------

def machine_info() -> dict:
    """CPU, cores, Python, torch, PyAV and its FFmpeg libraries, numpy, constriction, bjontegaard."""
    import av

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {}
    for mod in ("constriction", "bjontegaard", "zstandard", "scipy"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:
            versions[mod] = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "numpy": np.__version__,
            "pyav": av.__version__,
            "ffmpeg_libraries": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()}, **versions}


# ---- outputs -------------------------------------------------------------------------------------------------

def _fmt(x: Any, nd: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isnan(x):
            return "n/a"
        if math.isinf(x):
            return "∞"
        return f"{x:.{nd}f}"
    return str(x)


def write_markdown(path: Path, rows: list[dict], summary: dict, machine: dict, command: str, skipped: list[str],
                   wall_s: float) -> None:
    """The tables for people: headline, BD-rates, ablation, every point."""
    lines = [f"# featvid codec benchmark", "", f"Command: `{command}`  ", f"Wall time: {wall_s / 60:.1f} min  ",
             f"Machine: {machine['cpu']}, {machine['cores']} cores; torch {machine['torch']}, PyAV {machine['pyav']} "
             f"(libavcodec {machine['ffmpeg_libraries'].get('libavcodec', '?')})", ""]
    if summary.get("best"):
        b = summary["best"]
        lines += ["## Headline", "",
                  f"- Float model: {summary['float_psnr']:.2f} dB held-out PSNR.",
                  f"- Smallest preset within {MAX_LOSS_DB} dB of it: **{b['id']}**, "
                  f"{b['bytes_per_frame'] / 1024:.2f} KB/frame at {b['psnr']:.2f} dB (loss {b['loss_db']:.2f} dB)"
                  + ("" if b["within_target"] else " — no preset reached the target; this is the best PSNR"), ""]
        lines += ["| baseline | KB/frame at that PSNR | baseline / best preset | how |", "|---|---:|---:|---|"]
        for name, r in summary["baseline_ratios"].items():
            lines.append(f"| {name} | {_fmt(r['bytes_per_frame'] / 1024)} | {_fmt(r['ratio'], 1)}x | {r['how']} |")
        lines.append("")
    if summary.get("bd_rate_vs_anchor"):
        lines += [f"## BD-rate against {summary['anchor']} (render PSNR; negative = fewer bytes)", "",
                  "| curve | BD-rate (%) |", "|---|---:|"]
        lines += [f"| {c} | {_fmt(v, 1)} |" for c, v in summary["bd_rate_vs_anchor"].items()]
        lines.append("")
    if summary.get("ablation"):
        lines += ["## Training ablation (H.264 luma 8-bit ladder on each run)", "",
                  "| run | float PSNR (dB) | mean KB/frame | main's mean KB/frame | BD-rate vs main (%) |",
                  "|---|---:|---:|---:|---:|"]
        for label, a in summary["ablation"].items():
            lines.append(f"| {label} | {_fmt(a['float_psnr'])} | {_fmt(a['mean_bytes_per_frame'] / 1024)} | "
                         f"{_fmt(a['main_mean_bytes_per_frame'] / 1024)} | {_fmt(a['bd_rate_vs_main'], 1)} |")
        lines += ["", "A positive BD-rate means the run trained without that loss needs more bytes for the same PSNR.", ""]
    lines += ["## Every point", "",
              "| model | point | KB/frame | PSNR (dB) | SSIM | feature PSNR (dB) | encode s/frame | decode fps |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["model"] != "main", r["model"], r["kind"], r["curve"], r["bytes_per_frame"])):
        lines.append(f"| {r['model']} | {r['id'].split('/', 1)[1]} | {_fmt(r['bytes_per_frame'] / 1024)} | "
                     f"{_fmt(r['psnr'])} | {_fmt(r['ssim'], 4)} | {_fmt(r['feature_psnr'])} | "
                     f"{_fmt(r['encode_s_per_frame'], 3)} | {_fmt(r['decode_fps'], 1)} |")
    if skipped:
        lines += ["", "Skipped combinations:", ""] + [f"- {s}" for s in skipped]
    write_text(path, "\n".join(lines) + "\n")


def plot_rd(path: Path, rows: list[dict], summary: dict) -> None:
    """Render PSNR against KB/frame (log scale): one curve per codec/packing/depth/speed and baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if summary.get("ablation") else 1, figsize=(13 if summary.get("ablation") else 8, 5.5),
                             squeeze=False)
    ax = axes[0, 0]
    main = [r for r in rows if r["model"] == "main"]
    for curve in sorted({r["curve"] for r in main if r["kind"] != "float"}):
        pts = _curve_rows(rows, "main", curve)
        kind = pts[0]["kind"]
        ax.plot([r["bytes_per_frame"] / 1024 for r in pts], [r["psnr"] for r in pts],
                marker="s" if kind == "baseline" else "o", linestyle="--" if kind == "baseline" else "-",
                label=curve, markersize=4)
    if "float_psnr" in summary:
        ax.axhline(summary["float_psnr"], color="k", linewidth=0.8, label="float model")
        ax.axhline(summary["float_psnr"] - MAX_LOSS_DB, color="k", linewidth=0.5, linestyle=":", label=f"-{MAX_LOSS_DB} dB")
    ax.set_xscale("log")
    ax.set_xlabel("KB per frame (log)")
    ax.set_ylabel("held-out render PSNR (dB)")
    ax.set_title("rate-distortion: presets and baselines")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    if summary.get("ablation"):
        ax = axes[0, 1]
        curve = f"{ANCHOR_CURVE}/{next(iter(r['speed'] for r in rows if r['model'] != 'main' and r['kind'] == 'video'))}"
        for label in ("main", *summary["ablation"]):
            pts = _curve_rows(rows, label, curve)
            ax.plot([r["bytes_per_frame"] / 1024 for r in pts], [r["psnr"] for r in pts], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("KB per frame (log)")
        ax.set_ylabel("held-out render PSNR (dB)")
        ax.set_title(f"training ablation ({curve})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    from featvid.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


# ---- the whole benchmark ------------------------------------------------------------------------------------

@dataclass
class BenchReport:
    """Where the outputs are, and the headline figures."""

    out: Path
    rows: list[dict]
    summary: dict
    files: dict[str, Path]


def run_bench(config: BenchConfig, command: str = "featvid bench") -> BenchReport:
    """Run (or resume) the benchmark of `config`; write results.json, results.md and rd.png under
    `config.out`. Finished points from an earlier run of the same runs are reused."""
    from tqdm import tqdm

    from featvid.codecs.baselines import Float16Zstd, ReRFCodec, Uint8Zstd
    from featvid.codecs.presets import encoder_available
    from featvid.data import load_dataset

    started = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    config.cache.mkdir(parents=True, exist_ok=True)
    dataset = prepare_dataset(config)
    video = load_dataset(dataset)
    if not video.test_views:
        raise ConfigError(f"{dataset}: the dataset has no held-out views to measure PSNR on")
    store = ResultStore(out / "results.jsonl")
    points, skipped = config.matrix.video_points(encoder_available)
    if not points:
        raise ConfigError("no preset of the matrix can be encoded on this machine")

    # the work list: (model label, point id, measure function)
    baselines = ([Float16Zstd(), Uint8Zstd()] if config.matrix.lossless_baselines else []) + \
        [ReRFCodec(quality=q) for q in config.matrix.rerf_qualities]
    rows: list[dict] = []
    run_dirs: dict[str, Path] = {}
    machine = machine_info()
    files = {"json": out / "results.json", "markdown": out / "results.md", "plot": out / "rd.png",
             "points": out / "results.jsonl"}

    def write_outputs() -> dict:
        """The report so far (after every run, so a long benchmark shows its main results early)."""
        summary = summarize(rows, config.matrix)
        wall = time.perf_counter() - started
        write_json(files["json"], _finite_json({
            "format": "featvid-bench", "version": 1, "command": command, "quick": config.quick, "wall_s": wall,
            "machine": machine, "dataset": str(dataset), "runs": {k: str(v) for k, v in run_dirs.items()},
            "scene": asdict(config.scene), "matrix": asdict(config.matrix), "skipped": skipped,
            "summary": summary, "points": rows}))
        write_markdown(files["markdown"], rows, summary, machine, command, skipped, wall)
        plot_rd(files["plot"], rows, summary)
        return summary

    with tempfile.TemporaryDirectory(prefix="featvid-bench-") as tmp:
        # train and measure one run after the other: the main results come first
        for label in model_labels(config):
            run_dirs[label] = prepare_run(config, label, dataset, video)
            model = prepare_model(label, run_dirs[label], config.cache)
            jobs: list[tuple[str, Callable[[], dict]]] = [(f"{label}/float", lambda m=model: measure_float(m, video))]
            chosen = points if label == "main" else config.matrix.ablation_points()
            jobs += [(f"{label}/{p.name}", lambda p=p, m=model: measure_video(p, m, video, Path(tmp))) for p in chosen]
            if label == "main":
                jobs += [(f"{label}/baseline/{b.name}", lambda b=b, m=model: measure_baseline(b, m, video)) for b in baselines]
            todo = [(pid, fn) for pid, fn in jobs if store.get(pid, model.fingerprint) is None]
            rows += [store.get(pid, model.fingerprint) for pid, _ in jobs if store.get(pid, model.fingerprint)]
            bar = tqdm(todo, desc=f"bench {label}", unit="point", disable=not config.progress)
            for pid, fn in bar:
                bar.set_postfix_str(pid.split("/", 1)[1])
                try:
                    row = fn()
                except FeatvidError as e:
                    log.warning("point %s failed: %s", pid, e)
                    skipped.append(f"{pid}: {e}")
                    continue
                row = {"id": pid, "model": label, "fingerprint": model.fingerprint, **row}
                store.add(row)
                rows.append(row)
            write_outputs()
    summary = write_outputs()
    return BenchReport(out, rows, summary, files)


def _finite_json(obj: Any) -> Any:
    """JSON has no inf/nan: write them as the strings "inf", "-inf", "nan"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
