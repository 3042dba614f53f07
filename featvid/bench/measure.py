"""Measuring one point of the benchmark: the float model, a codec preset, or a baseline -- each
decoded and scored the same way (bytes per frame, held-out PSNR / SSIM, feature PSNR, speed)."""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from featvid.bench.matrix import VideoPoint
from featvid.bench.models import Model
from featvid.codecs import encode_baked, open_stream
from featvid.field.evaluate import evaluate
from featvid.field.grid import SparseGrid
from featvid.metrics import bytes_per_frame


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


