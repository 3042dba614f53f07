"""Encode a baked folder into a stream folder NAME.fvv (docs/stream-format.md).

Per GOP: change the features to the stream's feature basis (lossy presets, featvid.codecs.basis),
clamp + quantize each channel over its range, pack the planes into codec frames, encode them as
one MP4 that starts with a keyframe (with the preset's QP offsets per macroblock as regions of
interest, featvid.codecs.regions), copy the mapping. Then the MLP (float16, the basis folded in),
and the manifest last, atomically: a folder without manifest.json is an unfinished stream.

A ladder (`ladder=`, adaptive streaming) encodes every GOP once per rendition: the renditions share
the GOP's mapping and quantization ranges and the stream's MLP and basis, and each rendition's
video of each GOP starts with its own keyframe, so a player may switch rendition at any GOP
boundary. One rendition is written as a version-1 stream (as before ladders existed), more as
version 2 (featvid.codecs.manifest).

Each input is read once: the MLP and the bake's samples (the basis) before the first GOP, then
per GOP its atlas and its mapping.

The unit of work is one GOP (`encode_gop`, under an `EncodePlan`: every rendition of that GOP),
then `finish_encode` writes the MLP and the manifest; `encode_baked` does it all in order. GOPs
are independent: a batch executor runs them anywhere, and the bytes are the same.

A Gaussian bake (docs/gaussians.md) takes the same path without the grid's steps (no feature
basis, no density clamp, no MLP): featvid.codecs.gaussians makes its codes and its GOPs' layout
files, which sit where a grid GOP's mapping does.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from featvid.atomic import atomic_path, make_dirs, write_bytes, write_failed
from featvid.codecs import basis
from featvid.codecs.backends import DEFAULT_BACKEND, get_backend
from featvid.codecs.gaussians import gaussian_codes, gaussian_ranges, stream_layout_bytes
from featvid.codecs.manifest import (MANIFEST, SINGLE_VERSION, STREAM_VERSION, CodecInfo, FileRecord, GopEntry,
                                     GopVideo, Manifest, Rendition, bitrates, valid_rendition_name)
from featvid.codecs.pack import Mosaic, num_cells, pack
from featvid.codecs.regions import applies, frame_regions
from featvid.codecs.presets import DEFAULT_PRESET, Preset, ladder_names, resolve_preset
from featvid.codecs.quantize import MAX_RANGE, code_ranges, quantize
from featvid.codecs.video import Backend, VideoSpec
from featvid.errors import ConfigError, StreamError
from featvid.field.mapping import Mapping
from featvid.field.mlp import TinyMLP
from featvid.formats.baked import Atlas, Baked, plane_ranges
from featvid.gaussians.layout import GaussianInfo, position_codes, stream_plane_names
from featvid.outputs import STREAM, check_output_dir
from featvid.progress import progress_bar

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        from importlib.metadata import version

        return f"featvid {version('featvid')}"
    except Exception:
        return "featvid"


def prepare_out(out: Path, inputs: Sequence[str | Path] = ()) -> None:
    """Make `out` ready: a previous stream there loses its manifest first (it is unfinished while
    we overwrite it); anything but a new, empty or stream folder, or an input (the bake), is refused
    before anything is touched (featvid.outputs)."""
    check_output_dir(out, STREAM, inputs)
    try:
        if out.is_dir():
            (out / MANIFEST).unlink(missing_ok=True)
            for old in out.glob("gop_*"):
                shutil.rmtree(old) if old.is_dir() else old.unlink()
    except OSError as e:
        raise write_failed(out, e) from e
    make_dirs(out)


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


def gop_planes(atlas: Atlas, mapping: Mapping, step_ratio: float,
               A: torch.Tensor | None = None) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """What every rendition of one GOP codes, before quantization: float planes [F, P, H, W] and
    the quantization ranges [P]. With a feature basis A, features are g = A f and share one
    quantization step (basis.equal_step). The ranges depend on no preset: renditions share them."""
    planes, ranges = atlas.planes, atlas.ranges
    if A is not None:
        planes = basis.apply_basis(planes, A)
        ranges = plane_ranges(planes, mapping)
    ranges = code_ranges(ranges, step_ratio)
    if A is not None:
        ranges = ranges[:1] + basis.equal_step(ranges[1:])
    return planes, ranges


def decoder_constants(lo: float, hi: float, levels: tuple[int, int]) -> tuple[float, float, float]:
    """What decoders take from the range [lo, hi] at the code range `levels` = [a, b]: the float32
    offset and step of featvid.codecs.quantize.dequantize (v = offset + q * step, the same
    expressions), and lo in float32 (the web player's uLo; its uScale is that step)."""
    a, b = levels
    offset = np.float32(lo - a * (hi - lo) / (b - a))
    step = np.float32((hi - lo) / (b - a))
    return float(offset), float(step), float(np.float32(lo))


def written_range(lo: float, hi: float, levels: Sequence[tuple[int, int]]) -> tuple[float, float]:
    """The range the manifest states for the quantization range [lo, hi]: the fewest significant
    digits whose decoder constants at every code range in `levels` are bit for bit those of
    [lo, hi], so a decoder gives the very values it would from [lo, hi] (docs/stream-format.md,
    "Quantization"). A float64 repr costs ~18 characters a number; this ~9 (issue 27)."""
    want = [decoder_constants(lo, hi, lv) for lv in levels]

    def same(x: float, y: float) -> bool:
        return x < y and max(abs(x), abs(y)) <= MAX_RANGE and [decoder_constants(x, y, lv) for lv in levels] == want

    def rounded(v: float, digits: int) -> float:
        return float(f"{v:.{digits}g}")

    # 17 significant digits give back any float64 exactly, so the search always ends
    d = next(d for d in range(1, 18) if same(rounded(lo, d), rounded(hi, d)) or d == 17)
    if not same(rounded(lo, d), rounded(hi, d)):
        return lo, hi
    hi_d = rounded(hi, d)  # then each end with the fewest digits it needs beside the other
    lo_d = next(rounded(lo, e) for e in range(1, d + 1) if same(rounded(lo, e), hi_d))
    hi_d = next(rounded(hi, e) for e in range(1, d + 1) if same(lo_d, rounded(hi, e)))
    return lo_d, hi_d


def gop_codes(atlas: Atlas, mapping: Mapping, step_ratio: float, preset: Preset,
              A: torch.Tensor | None = None) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """What the encoder codes for one GOP: codes [F, P, H, W] uint16 and the quantization ranges [P]."""
    planes, ranges = gop_planes(atlas, mapping, step_ratio, A)
    return quantized_gop(planes, ranges, preset), ranges


@dataclass(frozen=True)
class PlannedRendition:
    """One rendition of an encode: its name (the preset's), resolved preset and encoder options."""

    name: str
    preset: Preset  # resolved (a hardware preset may have fallen back)
    options: dict[str, str]  # what the encoder is given

    def video_name(self, single: bool) -> str:
        """Its video's file name in a GOP folder: atlas.mp4 in a one-rendition (version-1) stream."""
        return "atlas.mp4" if single else f"{self.name}.mp4"


@dataclass
class EncodePlan:
    """One encode of a baked folder: what every GOP's task and the finishing task need."""

    baked: Baked
    out: Path
    renditions: list[PlannedRendition]  # one, or a ladder (in the order given)
    backend: Backend
    mlp: TinyMLP | None  # the run's MLP (None: a Gaussian bake has none)
    basis: torch.Tensor | None  # A [C, C] of the stream's feature basis, or None

    @property
    def preset(self) -> Preset:
        """The first rendition's preset (the only one without a ladder)."""
        return self.renditions[0].preset

    @property
    def options(self) -> dict[str, str]:
        return self.renditions[0].options


def _plan_renditions(preset: str | Preset | None, crf: float | None,
                     ladder: str | Sequence[str | Preset] | None,
                     plane_qp: Sequence[float] | None = None,
                     space_qp: Sequence[float] | None = None) -> list[PlannedRendition]:
    """The renditions of an encode: one preset (with its rate overridden by crf), or a ladder
    (a name from LADDERS, "PRESET,PRESET,...", or a list of names / Presets). Every preset is
    resolved here, so an unknown one (ConfigError) or one this machine cannot run (CodecError) fails
    before anything is written; so do two renditions of one name (also after a hardware fallback)."""
    if ladder is None:
        p = resolve_preset(DEFAULT_PRESET if preset is None else preset)
        if plane_qp is not None or space_qp is not None:
            p = p.with_offsets(plane_qp, space_qp)
        return [PlannedRendition(p.name, p, p.encoder_options(crf))]
    if plane_qp is not None or space_qp is not None:
        raise ConfigError("--plane-qp and --space-qp override one preset's; a ladder's are its presets' (name each rung)")
    if preset is not None:
        raise ConfigError("give a preset or a ladder, not both")
    if crf is not None:
        raise ConfigError("--crf overrides one preset's rate; a ladder's rates are its presets' (name each rung)")
    wanted = list(ladder_names(ladder)) if isinstance(ladder, str) else list(ladder)
    if not wanted:
        raise ConfigError("the ladder names no preset")
    out: list[PlannedRendition] = []
    for want in wanted:
        p = resolve_preset(want)
        if any(r.name == p.name for r in out):
            asked = want if isinstance(want, str) else want.name
            how = "" if asked == p.name else f" ({asked} fell back to it)"
            raise ConfigError(f"the ladder has two renditions named {p.name}{how}: each rendition needs its own preset")
        out.append(PlannedRendition(p.name, p, p.encoder_options()))
    return out


def plan_encode(baked_dir: str | Path, out: str | Path, preset: str | Preset | None = None,
                crf: float | None = None, backend: str = DEFAULT_BACKEND,
                feature_basis: bool | None = None, ladder: str | Sequence[str | Preset] | None = None,
                plane_qp: Sequence[float] | None = None, space_qp: Sequence[float] | None = None) -> EncodePlan:
    """Read and check everything an encode needs (bake, presets, back end, MLP) and fit the feature
    basis; writes nothing. The same arguments give the same plan, on any machine.

    preset: one preset (default DEFAULT_PRESET); ladder: several (see `_plan_renditions`), instead.
    plane_qp, space_qp: the preset's QP offsets per atlas plane / part of space overridden
    (Preset.plane_qp, Preset.space_qp; featvid.codecs.regions).
    """
    be = get_backend(backend)
    baked = Baked(baked_dir)
    renditions = _plan_renditions(preset, crf, ladder, plane_qp, space_qp)
    for r in renditions:  # a ladder's rendition names its files: gop_xxxxx/NAME.mp4
        if len(renditions) > 1 and not valid_rendition_name(r.name):
            raise ConfigError(f"rendition name {r.name!r} must be 1-64 letters, digits, '.', '_' or '-'")
    if baked.gaussians is not None:  # docs/gaussians.md: no MLP, so no feature basis to fold into one
        if feature_basis:
            raise ConfigError("a Gaussian bake has no features to code in a basis: leave out --basis")
        if any(q for r in renditions for q in r.preset.plane_qp):
            raise ConfigError("a Gaussian bake's planes take no QP offsets (--plane-qp): leave it out")
        return EncodePlan(baked, Path(out), renditions, be, None, None)
    mlp = baked.mlp()
    if feature_basis is None:
        choices = {r.preset.feature_basis for r in renditions}
        if len(choices) > 1:
            raise ConfigError("the ladder's presets disagree on the feature basis (lossless presets code none); "
                              "choose one for all: --basis or --no-basis")
        feature_basis = choices.pop()
    A = stream_basis(baked, mlp) if feature_basis and baked.num_planes > 1 else None
    return EncodePlan(baked, Path(out), renditions, be, mlp, A)


def encode_gop(plan: EncodePlan, g: int) -> GopEntry:
    """Encode GOP g of the plan - its video in every rendition and its mapping, each written
    atomically into out/gop_xxxxx/ - and return its manifest entry."""
    baked = plan.baked
    entry = baked.gops[g]
    if baked.gaussians is not None:  # featvid.codecs.gaussians: positions' high bytes in the layout file
        atlas = baked.atlas(g)  # [F, P_b, H, W]
        ranges = gaussian_ranges(atlas.ranges)
        count = baked.layout(g).count
        num_planes, mapping_name = len(ranges), "layout.fvgl"
        # the positions' high bytes do not depend on the rendition: one layout file for all
        high = np.stack([position_codes(frame[:3], ranges)[0] for frame in atlas.planes])  # [F, 3, H, W]
        mapping_bytes = stream_layout_bytes(count, entry.atlas, high)

        def codes_of(p: Preset) -> np.ndarray:
            return gaussian_codes(atlas.planes, atlas.ranges, p.levels)[0]  # [F, P_s, H, W]
    else:
        mapping = baked.mapping(g)
        planes, ranges = gop_planes(baked.atlas(g), mapping, baked.render_settings.step_ratio, plan.basis)  # [F, P, H, W]
        num_planes, mapping_name, mapping_bytes = baked.num_planes, "mapping.fvmap", mapping.to_bytes()

        def codes_of(p: Preset) -> np.ndarray:
            return quantized_gop(planes, ranges, p)  # [F, P, H, W]
    gdir = f"gop_{g:05d}"
    make_dirs(plan.out / gdir)
    single = len(plan.renditions) == 1
    codes_by_levels: dict[tuple[int, int], np.ndarray] = {}  # renditions of one code range share their codes
    videos: dict[str, GopVideo] = {}
    for r in plan.renditions:
        p = r.preset
        if p.levels not in codes_by_levels:
            codes_by_levels[p.levels] = codes_of(p)  # [F, P, H, W]
        codes = codes_by_levels[p.levels]
        mosaic = Mosaic.layout(num_cells(num_planes, p.packing), entry.atlas)
        frames: Iterator[list[np.ndarray]] = (pack(c, p.packing, mosaic, p.pix_fmt, p.levels, p.bit_depth)
                                              for c in codes)
        name = f"{gdir}/{r.video_name(single)}"
        regions = () if baked.gaussians is not None else frame_regions(
            mosaic, p.packing, num_planes, p.plane_qp, p.space_qp, mapping, baked.render_settings.space)
        spec = VideoSpec(mosaic.width, mosaic.height, baked.fps, p.codec, p.pix_fmt, r.options, p.container_options,
                         p.color_range, entry.frames, p.bitstream_filter, regions)
        with atomic_path(plan.out / name) as tmp:
            plan.backend.encode(tmp, frames, spec)
        videos[r.name] = GopVideo(name, mosaic.to_json(), (plan.out / name).stat().st_size)
    write_bytes(plan.out / gdir / mapping_name, mapping_bytes)
    if baked.gaussians is None:  # the manifest states the ranges in the fewest digits that decode the same
        levels = sorted({r.preset.levels for r in plan.renditions})
        ranges = [written_range(lo, hi, levels) for lo, hi in ranges]
    return GopEntry(entry.start, entry.frames, gdir, f"{gdir}/{mapping_name}", entry.atlas, ranges,
                    len(mapping_bytes), videos)


def finish_encode(plan: EncodePlan, gops: list[GopEntry]) -> Path:
    """Write the stream's MLP (float16, the basis folded in) and, last, its manifest over the
    encoded GOPs `gops` (one per GOP, in order, each with every rendition): from here on the
    stream is complete."""
    baked, A = plan.baked, plan.basis
    if baked.gaussians is not None:
        return _finish_gaussians(plan, list(gops))
    assert plan.mlp is not None  # a grid bake's plan holds its MLP
    if A is None:  # the run's MLP as trained, in float16 (demo: held-out PSNR moves by 0.0001 dB)
        mlp_bytes = plan.mlp.to_bytes(half=True)
    else:
        mlp_bytes = basis.fold_into_mlp(plan.mlp, A).to_bytes(half=True, extra={basis.BASIS_TENSOR: A})
    # (to_bytes writes the header in a stable order: the same MLP gives the same bytes and SHA-256)
    write_bytes(plan.out / "mlp.safetensors", mlp_bytes)
    mlp_meta = {"file": "mlp.safetensors", **plan.mlp.config.to_dict(), "dtype": "float16",
                "feature_basis": basis.BASIS_NAME if A is not None else "none"}
    gops = list(gops)
    renditions = _renditions(plan, gops)
    video_total = sum(v.bytes for g in gops for v in g.videos.values())
    mapping_total = sum(g.mapping_bytes for g in gops)
    manifest = Manifest(
        frames=baked.num_frames, fps=baked.fps, aabb=baked.aabb.tolist(), grid_shape=baked.grid_shape,
        num_planes=baked.num_planes, render=baked.render_settings, mlp=mlp_meta, renditions=renditions,
        gops=gops, bytes={"video": video_total, "mapping": mapping_total, "mlp": len(mlp_bytes),
                          "total_without_manifest": video_total + mapping_total + len(mlp_bytes)},
        created_by=_version(), version=SINGLE_VERSION if len(renditions) == 1 else STREAM_VERSION)
    # every file's size and SHA-256, so a copied stream can be verified (the MLP's bytes are in hand)
    manifest.files = {name: FileRecord.of(mlp_bytes) if name == mlp_meta["file"]
                      else FileRecord.of_file(plan.out / name) for name in manifest.named_files()}
    manifest.check()
    manifest.write(plan.out / MANIFEST)  # last: the stream is complete from here on
    return plan.out


def _finish_gaussians(plan: EncodePlan, gops: list[GopEntry]) -> Path:
    """`finish_encode` of a Gaussian bake: the manifest (docs/gaussians.md), without MLP."""
    baked = plan.baked
    info = baked.gaussians
    assert info is not None
    renditions = _renditions(plan, gops)
    video_total = sum(v.bytes for g in gops for v in g.videos.values())
    mapping_total = sum(g.mapping_bytes for g in gops)
    stream_info = GaussianInfo(info.sh_degree, tuple(stream_plane_names(info.sh_degree)), info.background)
    manifest = Manifest(
        frames=baked.num_frames, fps=baked.fps, aabb=baked.aabb.tolist(), grid_shape=baked.grid_shape,
        num_planes=len(stream_info.planes), render=baked.render_settings, mlp={}, renditions=renditions,
        gops=gops, bytes={"video": video_total, "mapping": mapping_total, "mlp": 0,
                          "total_without_manifest": video_total + mapping_total},
        created_by=_version(), version=SINGLE_VERSION if len(renditions) == 1 else STREAM_VERSION,
        representation="gaussians", gaussians=stream_info)
    manifest.files = {name: FileRecord.of_file(plan.out / name) for name in manifest.named_files()}
    manifest.check()
    manifest.write(plan.out / MANIFEST)  # last: the stream is complete from here on
    return plan.out


def _renditions(plan: EncodePlan, gops: list[GopEntry]) -> list[Rendition]:
    """The manifest's renditions: each one's codec and bitrates over the encoded `gops`."""
    out = []
    for r in plan.renditions:
        p = r.preset
        # the offsets the encoder was given (space offsets only where they applied: a contracted grid)
        space_qp = p.space_qp if applies(p.space_qp, plan.baked.render_settings.space) else (0.0, 0.0)
        codec = CodecInfo(p.name, p.codec, plan.backend.name, plan.backend.version(), r.options, p.pix_fmt,
                          p.bit_depth, p.packing, p.levels, p.plane_qp, space_qp)
        out.append(Rendition(r.name, codec, *bitrates(gops, r.name, plan.baked.fps),
                             sum(g.videos[r.name].bytes for g in gops)))
    return out


def encode_baked(baked_dir: str | Path, out: str | Path, preset: str | Preset | None = None,
                 crf: float | None = None, backend: str = DEFAULT_BACKEND, feature_basis: bool | None = None,
                 ladder: str | Sequence[str | Preset] | None = None, plane_qp: Sequence[float] | None = None,
                 space_qp: Sequence[float] | None = None) -> Path:
    """Encode the baked folder `baked_dir` into the stream folder `out` (NAME.fvv); returns `out`.

    preset: a name from PRESETS (hardware presets fall back to software with a warning), or a Preset;
        default DEFAULT_PRESET.
    crf: overrides the preset's rate (crf, or qp for NVENC).
    backend: a name from featvid.codecs.backends.BACKENDS ("pyav" in process, "ffmpeg" the binary).
    feature_basis: code the features in the stream's sensitivity-KLT basis (featvid.codecs.basis),
        folded into the stream's MLP; None: the presets' choice (lossy presets yes, lossless no).
    ladder: instead of `preset`, several renditions in one stream (adaptive streaming): a name from
        featvid.codecs.presets.LADDERS, "PRESET,PRESET,...", or a list of preset names / Presets.
    plane_qp: the preset's QP offset per atlas plane overridden (density first; Preset.plane_qp);
    space_qp: its (inner box, shell) offsets of a contracted grid (Preset.space_qp).
    """
    check_output_dir(out, STREAM, [baked_dir])  # before the plan's reading and fitting
    plan = plan_encode(baked_dir, out, preset, crf, backend, feature_basis, ladder=ladder, plane_qp=plane_qp,
                       space_qp=space_qp)
    prepare_out(plan.out, [baked_dir])
    what = plan.preset.name if len(plan.renditions) == 1 else f"ladder of {len(plan.renditions)}"
    gops = [encode_gop(plan, g) for g in progress_bar(range(len(plan.baked.gops)), desc=f"encode {what}",
                                                  unit="GOP", leave=False)]
    return finish_encode(plan, gops)
