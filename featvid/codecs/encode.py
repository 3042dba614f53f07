"""Encode a baked folder into a stream folder NAME.fvv (docs/stream-format.md).

Per GOP: change the features to the stream's feature basis (lossy presets, featvid.codecs.basis),
clamp + quantize each channel over its range, pack the planes into codec frames, encode them as
one MP4 that starts with a keyframe, copy the mapping. Then the MLP (float16, the basis folded in),
and the manifest last, atomically: a folder without manifest.json is an unfinished stream.

Each input is read once: the MLP and the bake's samples (the basis) before the first GOP, then
per GOP its atlas and its mapping.

The unit of work is one GOP (`encode_gop`, under an `EncodePlan`), then `finish_encode` writes the
MLP and the manifest; `encode_baked` does it all in order. GOPs are independent: a batch
executor runs them anywhere, and the bytes are the same.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from featvid.atomic import atomic_path, write_bytes
from featvid.bake.atlas import Atlas, Baked, bake_run, plane_ranges
from featvid.codecs import basis
from featvid.codecs.backends import DEFAULT_BACKEND, get_backend
from featvid.codecs.manifest import MANIFEST, CodecInfo, GopEntry, Manifest
from featvid.codecs.pack import Mosaic, num_cells, pack
from featvid.codecs.presets import DEFAULT_PRESET, Preset, resolve_preset
from featvid.codecs.quantize import code_ranges, quantize
from featvid.codecs.video import Backend, VideoSpec
from featvid.errors import StreamError
from featvid.field.mapping import Mapping
from featvid.field.mlp import TinyMLP

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        from importlib.metadata import version

        return f"featvid {version('featvid')}"
    except Exception:
        return "featvid"


def prepare_out(out: Path) -> None:
    """Make `out` ready: a previous stream there loses its manifest first (it is unfinished while
    we overwrite it); a folder that is no stream is refused rather than mixed into."""
    if out.exists() and not out.is_dir():
        raise StreamError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        known = (out / MANIFEST).is_file() or any(out.glob("gop_*")) or (out / "mlp.safetensors").is_file()
        if not known:
            raise StreamError(f"{out}: exists and is not a featvid stream; refusing to write into it")
        (out / MANIFEST).unlink(missing_ok=True)
        for old in out.glob("gop_*"):
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    out.mkdir(parents=True, exist_ok=True)


def quantized_gop(planes, ranges, preset: Preset) -> np.ndarray:
    """Codes of one GOP: float planes [F, P, H, W] -> uint16 [F, P, H, W] (the codec's input, pre-packing)."""
    return np.stack([quantize(planes[f], ranges, preset.levels) for f in range(planes.shape[0])])


def stream_basis(baked: Baked, mlp: TinyMLP) -> torch.Tensor:
    """The feature basis A [C, C] of a stream of `baked` (see featvid.codecs.basis), fitted on the
    vertex values the baker drew from every GOP."""
    samples = baked.samples()  # [S, P]
    weights = basis.opacity(samples[:, 0], baked.render_settings.step_ratio)
    # float32 values: the MLP file stores A as float32, and a reader must get the encoder's A exactly
    return basis.fit_basis(samples[:, 1:], weights, mlp).float().double()


def gop_codes(atlas: Atlas, mapping: Mapping, step_ratio: float, preset: Preset,
              A: torch.Tensor | None = None) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """What the encoder codes for one GOP: codes [F, P, H, W] uint16 and the quantization ranges [P].

    With a feature basis A, features are g = A f and share one quantization step (basis.equal_step).
    """
    planes, ranges = atlas.planes, atlas.ranges
    if A is not None:
        planes = basis.apply_basis(planes, A)
        ranges = plane_ranges(planes, mapping)
    ranges = code_ranges(ranges, step_ratio)
    if A is not None:
        ranges = ranges[:1] + basis.equal_step(ranges[1:])
    return quantized_gop(planes, ranges, preset), ranges


@dataclass
class EncodePlan:
    """One encode of a baked folder: what every GOP's task and the finishing task need."""

    baked: Baked
    out: Path
    preset: Preset  # resolved (a hardware preset may have fallen back)
    options: dict[str, str]  # what the encoder is given
    backend: Backend
    mlp: TinyMLP  # the run's MLP
    basis: torch.Tensor | None  # A [C, C] of the stream's feature basis, or None


def plan_encode(baked_dir: str | Path, out: str | Path, preset: str | Preset = DEFAULT_PRESET,
                crf: float | None = None, backend: str = DEFAULT_BACKEND,
                feature_basis: bool | None = None) -> EncodePlan:
    """Read and check everything an encode needs (bake, preset, back end, MLP) and fit the feature
    basis; writes nothing. The same arguments give the same plan, on any machine."""
    be = get_backend(backend)
    baked = Baked(baked_dir)
    p = resolve_preset(preset)
    options = p.encoder_options(crf)
    mlp = baked.mlp()
    use_basis = p.feature_basis if feature_basis is None else feature_basis
    A = stream_basis(baked, mlp) if use_basis and baked.channels > 1 else None
    return EncodePlan(baked, Path(out), p, options, be, mlp, A)


def encode_gop(plan: EncodePlan, g: int) -> GopEntry:
    """Encode GOP g of the plan into out/gop_xxxxx/ (its video and mapping, each written
    atomically); returns its manifest entry."""
    baked, p = plan.baked, plan.preset
    entry = baked.gops[g]
    mapping = baked.mapping(g)
    codes, ranges = gop_codes(baked.atlas(g), mapping, baked.render_settings.step_ratio, p, plan.basis)  # [F, P, H, W]
    mosaic = Mosaic.layout(num_cells(baked.channels, p.packing), entry.atlas)
    frames: Iterator[list[np.ndarray]] = (pack(c, p.packing, mosaic, p.pix_fmt, p.levels, p.bit_depth) for c in codes)
    gdir = f"gop_{g:05d}"
    (plan.out / gdir).mkdir(parents=True, exist_ok=True)
    video = plan.out / gdir / "atlas.mp4"
    spec = VideoSpec(mosaic.width, mosaic.height, baked.fps, p.codec, p.pix_fmt, plan.options, p.container_options,
                     p.color_range, entry.frames)
    with atomic_path(video) as tmp:
        plan.backend.encode(tmp, frames, spec)
    mapping_bytes = mapping.to_bytes()
    write_bytes(plan.out / gdir / "mapping.fvmap", mapping_bytes)
    return GopEntry(entry.start, entry.frames, gdir, f"{gdir}/mapping.fvmap", f"{gdir}/atlas.mp4", entry.atlas,
                    mosaic.to_json(), ranges, {"video": video.stat().st_size, "mapping": len(mapping_bytes)})


def finish_encode(plan: EncodePlan, gops: list[GopEntry]) -> Path:
    """Write the stream's MLP (float16, the basis folded in) and, last, its manifest over the
    encoded GOPs `gops` (one per GOP, in order): from here on the stream is complete."""
    baked, p, A = plan.baked, plan.preset, plan.basis
    if A is None:  # the run's MLP as trained, in float16 (demo: held-out PSNR moves by 0.0001 dB)
        mlp_bytes = plan.mlp.to_bytes(half=True)
    else:
        mlp_bytes = basis.fold_into_mlp(plan.mlp, A).to_bytes(half=True, extra={basis.BASIS_TENSOR: A})
    write_bytes(plan.out / "mlp.safetensors", mlp_bytes)
    mlp_meta = {"file": "mlp.safetensors", **plan.mlp.config.to_dict(), "dtype": "float16",
                "feature_basis": basis.BASIS_NAME if A is not None else "none"}
    video_total = sum(g.bytes["video"] for g in gops)
    mapping_total = sum(g.bytes["mapping"] for g in gops)
    manifest = Manifest(
        frames=baked.num_frames, fps=baked.fps, aabb=baked.aabb.tolist(), grid_shape=baked.grid_shape,
        channels=baked.channels, render=baked.render_settings, mlp=mlp_meta,
        codec=CodecInfo(p.name, p.codec, plan.backend.name, plan.backend.version(), plan.options, p.pix_fmt,
                        p.bit_depth, p.packing, p.levels),
        gops=list(gops), bytes={"video": video_total, "mapping": mapping_total, "mlp": len(mlp_bytes),
                                "total_without_manifest": video_total + mapping_total + len(mlp_bytes)},
        created_by=_version())
    manifest.check()
    manifest.write(plan.out / MANIFEST)  # last: the stream is complete from here on
    return plan.out


def encode_baked(baked_dir: str | Path, out: str | Path, preset: str | Preset = DEFAULT_PRESET,
                 crf: float | None = None, backend: str = DEFAULT_BACKEND, feature_basis: bool | None = None) -> Path:
    """Encode the baked folder `baked_dir` into the stream folder `out` (NAME.fvv); returns `out`.

    preset: a name from PRESETS (hardware presets fall back to software with a warning), or a Preset.
    crf: overrides the preset's rate (crf, or qp for NVENC).
    backend: a name from featvid.codecs.backends.BACKENDS ("pyav" in process, "ffmpeg" the binary).
    feature_basis: code the features in the stream's sensitivity-KLT basis (featvid.codecs.basis),
        folded into the stream's MLP; None: the preset's choice (lossy presets yes, lossless no).
    """
    plan = plan_encode(baked_dir, out, preset, crf, backend, feature_basis)
    prepare_out(plan.out)
    gops = [encode_gop(plan, g) for g in tqdm(range(len(plan.baked.gops)), desc=f"encode {plan.preset.name}",
                                              unit="GOP", leave=False)]
    return finish_encode(plan, gops)


def encode_run(run_dir: str | Path, out: str | Path, preset: str | Preset = DEFAULT_PRESET, crf: float | None = None,
               backend: str = DEFAULT_BACKEND, baked_dir: str | Path | None = None,
               feature_basis: bool | None = None) -> Path:
    """Bake `run_dir` (into `baked_dir`, or a temporary folder) and encode it into `out`; returns `out`."""
    if baked_dir is not None:
        return encode_baked(bake_run(run_dir, baked_dir), out, preset, crf, backend, feature_basis)
    with tempfile.TemporaryDirectory(prefix="featvid-bake-") as tmp:
        return encode_baked(bake_run(run_dir, Path(tmp) / "baked"), out, preset, crf, backend, feature_basis)
