"""What the codec benchmark measures: the preset matrix, the scene, and a run's configuration.

The matrix derives from the preset registry (`featvid.codecs.presets.ENCODERS`): each point is
one encoder's variant at a packing, bit depth, speed preset and rate from that encoder's ladder,
so the benchmark measures exactly what `featvid encode` would run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from featvid.codecs.presets import ENCODERS, Preset


@dataclass(frozen=True)
class VideoPoint:
    """One cell of the preset matrix."""

    codec: str  # key of featvid.codecs.presets.ENCODERS
    packing: str  # "luma" or "444" (featvid.codecs.presets.PACKING_KEYS)
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

    def preset(self) -> Preset:
        """The codec Preset of this point: its encoder's variant (featvid.codecs.presets.ENCODERS)
        at this packing, bit depth, speed and rate -- the registry is the one source of every setting."""
        return ENCODERS[self.codec].variant(self.name, self.crf, self.packing, self.bit_depth, self.speed,
                                            description=f"benchmark variant {self.name}")


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
            encoder = ENCODERS[codec]
            for packing in self.packings:
                for depth in self.bit_depths:
                    pix = encoder.pix_fmts.get((packing, depth))
                    if pix is None:
                        skipped.append(f"{codec} {packing} {depth}-bit: not supported by the codec")
                        continue
                    if not available(encoder.codec, pix):
                        skipped.append(f"{codec} {packing} {depth}-bit: encoder {encoder.codec} cannot open {pix} here")
                        continue
                    for speed in self.speeds:
                        points += [VideoPoint(codec, packing, depth, speed, crf) for crf in self.ladder(codec)]
        if self.basis_ablation and "h264" in self.codecs and available(ENCODERS["h264"].codec, "gray"):
            points += [VideoPoint("h264", "luma", 8, self.ablation_speed, crf, feature_basis=False)
                       for crf in self.ladder("h264")]
        return points, skipped

    def ablation_points(self) -> list[VideoPoint]:
        """The ladder of the anchor curve (H.264 luma 8-bit) used on the ablation runs."""
        return [VideoPoint("h264", "luma", 8, self.ablation_speed, crf) for crf in self.ladder("h264")]

    def ladder(self, codec: str) -> list[int]:
        """`ladder_points` crf values of the codec's ladder, spread from its best to its smallest."""
        full = ENCODERS[codec].ladder
        n = max(1, min(self.ladder_points, len(full)))
        return [full[i] for i in sorted({int(round(x)) for x in np.linspace(0, len(full) - 1, n)})]


@dataclass(frozen=True)
class SceneSpec:
    """The built-in synthetic scene the benchmark trains (when no --run is given)."""

    frames: int = 8
    views: int = 12
    size: int = 64
    train_preset: str = "demo"  # the slow demo scene's preset: codec results stay comparable over trainer changes
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


def bench_command(config: BenchConfig, executor: str | None = None, workers: int | None = None) -> str:
    """The `featvid bench` command line that measures `config` (on `executor` with `workers`): the
    results record it, so a reader can run the same measurement again."""
    parts = ["featvid bench"]
    if config.quick:
        parts.append("--quick")
    if config.run:
        parts.append(f"--run {config.run}")
    if config.data:
        parts.append(f"--data {config.data}")
    if not config.matrix.ablation:
        parts.append("--no-ablation")
    if executor:
        parts.append(f"--executor {executor}")
    if workers:
        parts.append(f"--workers {workers}")
    return " ".join(parts)


