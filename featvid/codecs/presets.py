"""Codec presets: one registry table of named encoder settings.

A preset names the encoder, its rate control, speed preset, pixel format, bit depth, packing and
the code range. Every preset encodes each GOP as its own video that starts with a keyframe and has
no B-frames (`bf=0`, or the codec's equivalent), so that frames come out in the order they went in
for every decoder, the browser's included.
"""
from __future__ import annotations

import functools
import io
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Sequence

from featvid.errors import CodecError, ConfigError

log = logging.getLogger(__name__)

# Measured on the demo scene (8 frames, 48^3, 6 channels, 24 views, float model 32.45 dB, feature
# basis on): crf 16.5 costs 0.41 dB of held-out PSNR for 7.8 KiB/frame (108x smaller than float16
# sparse grids); crf 17 0.49 dB for 7.5 KiB; crf 18 0.57 dB for 6.9 KiB; crf 20 0.91 dB for 5.8 KiB.
# The feature basis moved the knee: crf 20 lost 0.33 dB before it. H.264 luma is also the most
# compatible stream. Re-measure with `python benchmarks/size_ladder.py` after `make demo`.
DEFAULT_PRESET = "h264-crf16.5"

# Encoders that read per-region quantizer offsets (FFmpeg's ROI side data, Preset.plane_qp), with
# adaptive quantization on (their defaults). MAX_PLANE_QP: the largest offset taken, in QP steps.
ROI_ENCODERS = ("h264", "h265")
MAX_PLANE_QP = 12

# The lossy H.264 presets' offsets in a contracted grid (featvid.codecs.regions): macroblocks that
# hold an inner-box vertex QP -2, those of the shell alone +3. Chosen among (-2,2), (-3,3), (-2,3),
# (-3,2), (0,4) by BD-rate (held-out PSNR vs all stream bytes, `python benchmarks/qp_offsets.py`)
# on the forward-facing scene (-14.8 %) and the fox (-10.1 %); on Caesar, on which nothing was
# chosen, -14.5 %. At crf 16.5: forward 33.19 -> 33.40 dB at +2.2 % bytes, fox 27.15 -> 27.20 at
# -0.6 %, Caesar 24.76 -> 24.79 at -5.2 %. Box grids (the demo) are coded as before. Offsets per
# plane (Preset.plane_qp) are no default: -2 on density with +1 on the feature planes past the first
# was -5.9 % on the forward scene and -2.3 % on crossing, but +2.5 % on the demo and +2.6 % on Caesar.
SPACE_QP = (-2.0, 3.0)

PACKING_KEYS = {"luma": "luma-mosaic", "444": "yuv444-triplets"}  # short names used by presets and the bench


def pin_threads(codec: str, options: dict[str, str]) -> dict[str, str]:
    """`options` with the encoder's threading fixed, so a GOP is the same bytes on every machine.

    Left to itself an encoder sizes its threads by the machine's cores, and x264, x265 and VP9
    then code differently: 384x384 test frames gave other bytes at 1, 3 and 4 threads than at 2
    (x264), at 2+ frame threads or another pool size (x265), at 1 thread than at 2+ (VP9) -- a
    Ray cluster of mixed machines would have made a stream whose GOPs depend on where each ran.
    One thread each: a GOP is a batch job's unit of work, so parallelism comes from GOPs (one per
    core), not from threads inside one encode. SVT-AV1's bytes did not change with its thread
    count (lp 1-4), so it keeps its own; NVENC is hardware."""
    opts = dict(options)
    if codec in ("libx264", "libvpx-vp9"):
        opts["threads"] = "1"
    elif codec == "libx265":
        params = [p for p in opts.get("x265-params", "").split(":") if p and not p.startswith(("pools=", "frame-threads="))]
        opts["x265-params"] = ":".join([*params, "pools=1", "frame-threads=1"])
    return opts


@dataclass(frozen=True)
class Encoder:
    """One FFmpeg encoder as featvid drives it: what every preset and benchmark variant of it shares.

    pix_fmts: the pixel format for each (packing, bit depth) the encoder takes ("luma"/"444", 8/10);
    speeds: the options of its "fast" and "slow" speed presets; ladder: rates from best to smallest
    that span its useful range on feature atlases (the benchmark's rate ladder).
    """

    key: str  # "h264", "h265", "av1", "vp9", "h264-nvenc", ...
    codec: str  # FFmpeg encoder name
    options: dict[str, str]  # always given: GOP structure (no B-frames), tuning, default speed
    rate_option: str | None = "crf"  # the option `--crf` sets ("crf", "qp", "cq")
    fractional_rate: bool = False  # whether its crf takes a fraction (x264, x265)
    pix_fmts: dict[tuple[str, int], str] = field(default_factory=dict)
    speeds: dict[str, dict[str, str]] = field(default_factory=dict)
    ladder: tuple[float, ...] = ()
    bitstream_filter: str = ""  # an FFmpeg bitstream filter every packet it writes goes through ("": none)
    space_qp: tuple[float, float] = (0.0, 0.0)  # its lossy presets' offsets (inner box, shell) in contracted grids

    def variant(self, name: str, rate: float, packing: str = "luma", bit_depth: int = 8, speed: str | None = None,
                description: str = "") -> "Preset":
        """A Preset of this encoder: its options, the speed preset's on top, the pixel format of
        (packing, bit depth) and the full code range of that depth."""
        if (packing, bit_depth) not in self.pix_fmts:
            raise ConfigError(f"{self.codec} takes no {packing} {bit_depth}-bit packing")
        options = {**self.options, **(self.speeds[speed] if speed is not None else {})}
        return Preset(name, self.codec, description or f"{self.key} {packing} {bit_depth}-bit crf {rate:g}",
                      self.rate_option, rate, options, pix_fmt=self.pix_fmts[(packing, bit_depth)], bit_depth=bit_depth,
                      packing=PACKING_KEYS[packing], levels=(0, (1 << bit_depth) - 1), encoder=self.key,
                      bitstream_filter=self.bitstream_filter, space_qp=self.space_qp)


@dataclass(frozen=True)
class Preset:
    """One named way to encode a baked folder."""

    name: str
    codec: str  # FFmpeg encoder name (libx264, libx265, libsvtav1, libvpx-vp9, h264_nvenc, ...)
    description: str
    rate_option: str | None  # the encoder option that `--crf` overrides ("crf", "qp", "cq"), None: lossless only
    rate: float | None  # its value (fractional only where the encoder takes it: Encoder.fractional_rate)
    options: dict[str, str] = field(default_factory=dict)  # other encoder options (speed preset, profile, ...)
    pix_fmt: str = "gray"
    bit_depth: int = 8
    packing: str = "luma-mosaic"
    levels: tuple[int, int] = (0, 255)  # code range; [16, 235] keeps limited-range players exact
    color_range: str = "pc"  # signalled range: "pc" (full) or "tv" (limited)
    container_options: dict[str, str] = field(default_factory=dict)  # mp4 muxer options
    lossless: bool = False
    feature_basis: bool = True  # code features in the stream's sensitivity-KLT basis (featvid.codecs.basis)
    fallback: str | None = None  # software preset used when this (hardware) encoder cannot open
    encoder: str = ""  # key of its Encoder in ENCODERS
    bitstream_filter: str = ""  # its Encoder's (an FFmpeg bitstream filter on every packet written)
    plane_qp: tuple[float, ...] = ()  # QP offset of each atlas plane (density first; missing: 0)
    space_qp: tuple[float, float] = (0.0, 0.0)  # contracted grids: QP offsets (inner box, shell); featvid.codecs.regions

    def with_offsets(self, plane_qp: Sequence[float] | None = None,
                     space_qp: Sequence[float] | None = None) -> "Preset":
        """This preset with other QP offsets per plane and/or per part of space (None: its own);
        ConfigError for an offset out of range, or where its encoder reads none."""
        planes = self.plane_qp if plane_qp is None else tuple(float(q) for q in plane_qp)
        space = self.space_qp if space_qp is None else tuple(float(q) for q in space_qp)
        if len(space) != 2:
            raise ConfigError(f"space QP offsets are two numbers (inner box, shell), not {space}")
        if any(not math.isfinite(q) or abs(q) > MAX_PLANE_QP for q in (*planes, *space)):
            raise ConfigError(f"QP offsets must lie in -{MAX_PLANE_QP}..{MAX_PLANE_QP}, not {(*planes, *space)}")
        if any((*planes, *space)) and self.encoder not in ROI_ENCODERS:
            raise ConfigError(f"{self.codec} takes no QP offsets per plane or region "
                              f"(only {', '.join(ROI_ENCODERS)} do)")
        return replace(self, plane_qp=planes, space_qp=space)  # type: ignore[arg-type]

    def encoder_options(self, crf: float | None = None) -> dict[str, str]:
        """What the encoder is given: rate, speed preset, GOP structure options."""
        opts = dict(self.options)
        if self.rate_option is not None:
            if crf is not None and not 0 <= crf <= 63:
                raise ConfigError(f"--crf {crf:g} is out of range 0..63")
            value = self.rate if crf is None else crf
            if value is not None:
                fractional = ENCODERS[self.encoder].fractional_rate if self.encoder in ENCODERS else False
                if value != int(value) and not (fractional and self.rate_option == "crf"):
                    raise ConfigError(f"{self.codec} takes a whole-number {self.rate_option}, not {value:g}")
                opts[self.rate_option] = f"{value:g}"
        elif crf is not None:
            raise ConfigError(f"preset {self.name} has no rate to override (it is lossless)")
        return pin_threads(self.codec, opts)


# x264 tuned for feature atlases, not pictures: no deblocking filter (it smooths block edges for
# the eye, but atlas tiles are not a picture) and psy-rd 0 (no bits spent on texture the eye would
# miss). Demo scene, feature basis on, crf 18-20: 3 % fewer bytes and +0.02-0.04 dB held-out
# together. Tried, no better: ipratio 2-3 (no change), aq-mode 0/2/3, aq-strength 0.7/1.5,
# qcomp 0.4/0.8, no mb-tree, tune psnr, preset slow.
# x264 writes its version and every option it ran with into an SEI message (NAL unit type 6) in
# each video's first frame: ~600 bytes a GOP that no decoder needs (FFmpeg's reads it only to work
# around bugs of x264 builds from before 2013). Dropped: the demo stream 7,988 -> 7,911 B a frame,
# the same decoded codes (tests/codecs/test_fixed_costs.py). x264 writes no other SEI in these
# presets (no HRD, no open GOP, no intra refresh). x265 writes the same in the stream's header,
# where a packet filter does not reach; its own `info=0` leaves it out (2,310 bytes a GOP).
_X264_NO_SEI = "filter_units=remove_types=6"
_YUV = {("luma", 8): "yuv420p", ("luma", 10): "yuv420p10le", ("444", 8): "yuv444p", ("444", 10): "yuv444p10le"}
_GRAY = {**_YUV, ("luma", 8): "gray", ("luma", 10): "gray10le"}
_SPEEDS = {"fast": {"preset": "fast"}, "slow": {"preset": "slow"}}
ENCODERS: dict[str, Encoder] = {e.key: e for e in [
    Encoder("h264", "libx264", {"preset": "medium", "bf": "0", "x264-params": "no-deblock=1:psy-rd=0,0"},
            fractional_rate=True, pix_fmts=_GRAY, speeds=_SPEEDS, ladder=(14, 18, 23, 28, 33),
            bitstream_filter=_X264_NO_SEI, space_qp=SPACE_QP),
    Encoder("h265", "libx265", {"preset": "medium", "x265-params": "bframes=0:log-level=error:info=0"},
            fractional_rate=True, pix_fmts=_GRAY, speeds=_SPEEDS, ladder=(16, 20, 25, 30, 35)),
    # SVT-AV1 encodes 4:2:0 only (main profile): the luma mosaic with neutral chroma; low delay
    Encoder("av1", "libsvtav1", {"preset": "8", "svtav1-params": "pred-struct=1"},
            pix_fmts={("luma", 8): "yuv420p", ("luma", 10): "yuv420p10le"},
            speeds={"fast": {"preset": "10"}, "slow": {"preset": "5"}}, ladder=(20, 28, 36, 44, 52)),
    Encoder("vp9", "libvpx-vp9", {"deadline": "good", "cpu-used": "4", "b": "0", "row-mt": "1", "auto-alt-ref": "0",
                                  "lag-in-frames": "0"},
            pix_fmts=_YUV, speeds={"fast": {"cpu-used": "5"}, "slow": {"cpu-used": "1"}}, ladder=(20, 28, 36, 44, 52)),
    Encoder("h264-nvenc", "h264_nvenc", {"preset": "p5", "rc": "constqp", "bf": "0"}, rate_option="qp",
            pix_fmts={("luma", 8): "yuv420p"}),
    Encoder("h265-nvenc", "hevc_nvenc", {"preset": "p5", "rc": "constqp", "bf": "0"}, rate_option="qp",
            pix_fmts={("luma", 8): "yuv420p"}),
]}
_H264, _H265 = ENCODERS["h264"], ENCODERS["h265"]


def _preset(encoder: str, name: str, rate: float | None, description: str, packing: str = "luma",
            bit_depth: int = 8, options: dict[str, str] | None = None, **kw) -> Preset:
    """A registry preset: the encoder's variant, with `options` on top of the encoder's (a lossless
    preset names all its options itself) and any other Preset field changed."""
    base = ENCODERS[encoder].variant(name, rate or 0, packing, bit_depth, description=description)
    opts = options if kw.get("lossless") else {**base.options, **(options or {})}
    if kw.get("lossless"):  # every code exact: nothing to allocate
        kw.setdefault("space_qp", (0.0, 0.0))
    return replace(base, rate=rate, options=opts, **kw)


PRESETS: dict[str, Preset] = {p.name: p for p in [
    _preset("h264", "h264-crf16.5", 16.5, "H.264 luma mosaic, crf 16.5 (default: within 0.5 dB of the float model)"),
    _preset("h264", "h264-crf18", 18, "H.264 luma mosaic, crf 18"),
    _preset("h264", "h264-crf20", 20, "H.264 luma mosaic, crf 20"),
    _preset("h264", "h264-crf23", 23, "H.264 luma mosaic, crf 23"),
    _preset("h264", "h264-crf28", 28, "H.264 luma mosaic, crf 28 (small)"),
    _preset("h264", "h264-444-crf18", 18, "H.264 yuv444p triplets, crf 18", packing="444"),
    _preset("h264", "h264-lossless", None, "H.264 luma mosaic, qp 0 (bit-exact codes)", rate_option=None,
            options={"preset": "medium", "bf": "0", "qp": "0"}, lossless=True, feature_basis=False),
    _preset("h265", "h265-crf23", 23, "H.265 luma mosaic, crf 23"),
    _preset("h265", "h265-crf28-slow", 28, "H.265 luma mosaic, crf 28, slow", options={"preset": "slow"}),
    _preset("h265", "h265-10bit-crf23", 23, "H.265 10-bit luma mosaic, crf 23", bit_depth=10),
    _preset("h265", "h265-lossless", None, "H.265 luma mosaic, lossless", rate_option=None,
            options={"preset": "medium", "x265-params": "bframes=0:lossless=1:log-level=error:info=0"}, lossless=True,
            feature_basis=False),
    _preset("av1", "av1-crf35", 35, "AV1 (SVT) yuv420p luma mosaic, crf 35"),
    _preset("av1", "av1-10bit-crf35", 35, "AV1 (SVT) 10-bit luma mosaic, crf 35", bit_depth=10),
    _preset("vp9", "vp9-crf32", 32, "VP9 yuv420p luma mosaic, crf 32"),
    _preset("h264-nvenc", "h264-nvenc", 20, "H.264 NVENC (GPU) luma mosaic, qp 20; falls back to h264-crf18",
            fallback="h264-crf18"),
    _preset("h265-nvenc", "h265-nvenc", 24, "H.265 NVENC (GPU) luma mosaic, qp 24; falls back to h265-crf23",
            fallback="h265-crf23"),
    _preset("h264", "web", 16.5, "H.264 main yuv420p, levels 16-235, neutral chroma, faststart: every browser plays it",
            options={"profile": "main"}, pix_fmt="yuv420p", levels=(16, 235), color_range="tv",
            container_options={"movflags": "+faststart"}),
    # the `web` preset at lower rates: the steps of the adaptive-streaming ladder (LADDERS below)
    *[_preset("h264", f"web-crf{crf}", crf, f"the web preset at crf {crf} (a rung of the `abr` ladder)",
              options={"profile": "main"}, pix_fmt="yuv420p", levels=(16, 235), color_range="tv",
              container_options={"movflags": "+faststart"}) for crf in (20, 24, 29)],
]}

# Named ladders for adaptive streaming (`featvid encode --ladder NAME`): one stream holding every
# rendition of every GOP, a player picking one per GOP. Measured on the demo bake (8 frames, one
# GOP, 30 fps), video bytes per frame / held-out PSNR: web (crf 16.5) 6.51 KiB / 32.00 dB,
# crf 20 4.64 KiB / 31.30 dB, crf 23 3.35 KiB / 30.42 dB, crf 26 2.37 KiB / 28.96 dB,
# crf 29 1.62 KiB / 27.02 dB, crf 32 1.10 KiB / 24.27 dB. `abr` takes four rungs spanning 4x in
# video bytes, steps of 1.4-1.9x (a step under 1.3x buys too little to be worth a switch); all are
# `web`-shaped, so the browser player can switch between every one of them.
LADDERS: dict[str, tuple[str, ...]] = {"abr": ("web", "web-crf20", "web-crf24", "web-crf29")}
DEFAULT_LADDER = "abr"


def ladder_names(ladder: str) -> tuple[str, ...]:
    """The preset names of a ladder: a name from LADDERS, or "PRESET,PRESET,..." (spaces ignored).
    ConfigError for an empty ladder or one naming a preset twice; unknown presets are found by
    get_preset when the ladder is resolved."""
    names = LADDERS.get(ladder.strip()) or tuple(n.strip() for n in ladder.split(",") if n.strip())
    if not names:
        raise ConfigError(f"empty ladder {ladder!r}; give a ladder name ({', '.join(LADDERS)}) or PRESET,PRESET,...")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"ladder {ladder!r} names {', '.join(twice)} twice: two renditions cannot share a name")
    return names


def get_preset(name: str) -> Preset:
    """The preset called `name`; ConfigError listing the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


@functools.lru_cache(maxsize=None)
def encoder_available(codec: str, pix_fmt: str) -> bool:
    """Whether this machine can open `codec` with `pix_fmt` (NVENC needs a GPU): encodes one small frame."""
    import av

    from featvid.codecs.pyav_backend import svt_quiet

    try:
        with svt_quiet(), av.open(io.BytesIO(), "w", format="mp4") as c:
            s = c.add_stream(codec, rate=25)
            s.width, s.height, s.pix_fmt = 256, 256, pix_fmt
            if codec == "libx265":
                s.options = {"x265-params": "log-level=error"}
            # three frames with pts: a one-frame probe of libx265 fails at random (PatchWelcomeError)
            for pts in range(3):
                frame = av.VideoFrame(256, 256, pix_fmt)
                frame.pts = pts
                for p in s.encode(frame):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        return True
    except Exception as e:  # FFmpeg reports a missing device or encoder in several ways
        log.debug("encoder %s (%s) is not available: %s", codec, pix_fmt, e)
        return False


def resolve_preset(name: str | Preset) -> Preset:
    """The preset to actually run: a hardware preset whose encoder cannot open here falls back to
    its software preset with a logged warning. A Preset object (an ad-hoc variant made with
    dataclasses.replace, as the benchmarks do) is taken as it is."""
    preset = name if isinstance(name, Preset) else get_preset(name)
    while not encoder_available(preset.codec, preset.pix_fmt):
        if preset.fallback is None:
            raise CodecError(f"encoder {preset.codec} ({preset.pix_fmt}) of preset {preset.name} is not available here")
        log.warning("encoder %s is not available here (no GPU?): falling back to preset %s", preset.codec, preset.fallback)
        preset = get_preset(preset.fallback)
    return preset
