"""The runs under test: the dataset, the main run and its ablation runs, each baked once.

Runs, bakes and the synthetic dataset are cached under the benchmark's cache folder through
`featvid.pipeline` (a cached run of another config is trained again; a bake of an older format is
baked again), and every measured point is keyed by its run's fingerprint.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featvid.train.config import TrainConfig, preset
from featvid.formats.run import Run
from featvid.bench.matrix import BenchConfig
from featvid.errors import ConfigError
from featvid.field.grid import SparseGrid
from featvid.pipeline import ensure_bake, ensure_run, ensure_synth

log = logging.getLogger(__name__)

# Bump when encoding or scoring changes (2: feature basis, float16 MLP, x264 options): finished
# points of an older revision in results.jsonl are measured again rather than reused.
MEASURE_REVISION = 2


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
    s = config.scene
    return ensure_synth(config.cache / f"data-{s.data_key}", s.scene, s.frames, s.views, s.size,
                        progress=config.progress)


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
    log.info("training %s into %s (resumed, or started over when the cached run has another config)", label, out)
    return ensure_run(dataset, out, configs[label], frames=frames, video=video)[0].path


def prepare_model(label: str, run_dir: Path, cache: Path) -> Model:
    """Load a finished run, bake it once (cached by fingerprint) and collect its float reference."""
    run = Run(run_dir)
    fp = run_fingerprint(run)
    baked, _ = ensure_bake(run_dir, cache / f"baked-{fp}")
    reference = [g for _, g in run.frames()]
    values = [torch.cat([g.density[:, None], g.features], 1) for g in reference]  # [N, 1 + C] each
    lo = torch.stack([v.amin(0) for v in values if len(v)]).amin(0)
    hi = torch.stack([v.amax(0) for v in values if len(v)]).amax(0)
    span = (hi - lo).numpy()
    span = np.where(span > 0, span, 1.0)
    # baselines carry the MLP as streams do: float16
    # points are keyed by the run and by how they are measured: a new encoder revision re-measures
    return Model(label, run, baked, f"{fp}-r{MEASURE_REVISION}", reference, span, len(run.mlp().to_bytes(half=True)))


