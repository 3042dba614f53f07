"""Encode a baked folder into a stream folder NAME.fvv (docs/stream-format.md).

Per GOP: clamp + quantize each channel over its range, pack the planes into codec frames, encode
them as one MP4 that starts with a keyframe, copy the mapping. Then the MLP, and the manifest
last, atomically: a folder without manifest.json is an unfinished stream.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from featvid.atomic import atomic_path, write_bytes
from featvid.bake.atlas import Baked, bake_run
from featvid.codecs import ffmpeg_backend, pyav_backend
from featvid.codecs.manifest import MANIFEST, CodecInfo, GopEntry, Manifest
from featvid.codecs.pack import Mosaic, num_cells, pack
from featvid.codecs.presets import DEFAULT_PRESET, Preset, resolve_preset
from featvid.codecs.quantize import code_ranges, quantize
from featvid.errors import ConfigError, StreamError

log = logging.getLogger(__name__)

BACKENDS = ("pyav", "ffmpeg")


def _version() -> str:
    try:
        from importlib.metadata import version

        return f"featvid {version('featvid')}"
    except Exception:
        return "featvid"


def _ffmpeg_version(backend: str) -> str:
    if backend == "ffmpeg":
        return ffmpeg_backend.ffmpeg_version()
    import av

    return str(getattr(av, "ffmpeg_version_info", "") or av.library_versions.get("libavcodec", ""))


def _prepare_out(out: Path) -> None:
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


def encode_baked(baked_dir: str | Path, out: str | Path, preset: str = DEFAULT_PRESET, crf: int | None = None,
                 backend: str = "pyav") -> Path:
    """Encode the baked folder `baked_dir` into the stream folder `out` (NAME.fvv); returns `out`.

    preset: a name from PRESETS (hardware presets fall back to software with a warning).
    crf: overrides the preset's rate (crf, or qp for NVENC).
    backend: "pyav" (in process) or "ffmpeg" (the command-line binary).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    from tqdm import tqdm

    baked = Baked(baked_dir)
    p = resolve_preset(preset)
    options = p.encoder_options(crf)
    encode_video = pyav_backend.encode_video if backend == "pyav" else ffmpeg_backend.encode_video
    meta = baked.meta
    out = Path(out)
    _prepare_out(out)
    step_ratio = float(meta["render"]["step_ratio"])
    P = int(meta["channels"])
    gops: list[GopEntry] = []
    for g, entry in enumerate(tqdm(baked.gops, desc=f"encode {p.name}", unit="GOP", leave=False)):
        atlas = baked.atlas(g)
        ranges = code_ranges(atlas.ranges, step_ratio)
        codes = quantized_gop(atlas.planes, ranges, p)  # [F, P, H, W]
        mosaic = Mosaic.layout(num_cells(P, p.packing), tuple(entry["atlas"]))
        frames: Iterator[list[np.ndarray]] = (pack(c, p.packing, mosaic, p.pix_fmt, p.levels, p.bit_depth) for c in codes)
        gdir = f"gop_{g:05d}"
        (out / gdir).mkdir(exist_ok=True)
        video = out / gdir / "atlas.mp4"
        with atomic_path(video) as tmp:
            encode_video(tmp, frames, mosaic.width, mosaic.height, float(meta["fps"]), p.codec, p.pix_fmt, options,
                         p.container_options, p.color_range, int(entry["frames"]))
        mapping_bytes = baked.mapping(g).to_bytes()
        write_bytes(out / gdir / "mapping.fvmap", mapping_bytes)
        gops.append(GopEntry(int(entry["start"]), int(entry["frames"]), gdir, f"{gdir}/mapping.fvmap",
                             f"{gdir}/atlas.mp4", tuple(entry["atlas"]), mosaic.to_json(), ranges,  # type: ignore[arg-type]
                             {"video": video.stat().st_size, "mapping": len(mapping_bytes)}))
    mlp_bytes = baked.mlp_bytes()
    write_bytes(out / "mlp.safetensors", mlp_bytes)
    video_total = sum(g.bytes["video"] for g in gops)
    mapping_total = sum(g.bytes["mapping"] for g in gops)
    manifest = Manifest(
        frames=int(meta["frames"]), fps=float(meta["fps"]), aabb=meta["aabb"], grid_shape=tuple(meta["grid_shape"]),
        channels=P, render=dict(meta["render"]), mlp=dict(meta["mlp"]),
        codec=CodecInfo(p.name, p.codec, backend, _ffmpeg_version(backend), options, p.pix_fmt, p.bit_depth,
                        p.packing, p.levels),
        gops=gops, bytes={"video": video_total, "mapping": mapping_total, "mlp": len(mlp_bytes),
                          "total_without_manifest": video_total + mapping_total + len(mlp_bytes)},
        created_by=_version())
    manifest.check()
    manifest.write(out / MANIFEST)  # last: the stream is complete from here on
    return out


def encode_run(run_dir: str | Path, out: str | Path, preset: str = DEFAULT_PRESET, crf: int | None = None,
               backend: str = "pyav", baked_dir: str | Path | None = None) -> Path:
    """Bake `run_dir` (into `baked_dir`, or a temporary folder) and encode it into `out`; returns `out`."""
    if baked_dir is not None:
        return encode_baked(bake_run(run_dir, baked_dir), out, preset, crf, backend)
    with tempfile.TemporaryDirectory(prefix="featvid-bake-") as tmp:
        return encode_baked(bake_run(run_dir, Path(tmp) / "baked"), out, preset, crf, backend)
