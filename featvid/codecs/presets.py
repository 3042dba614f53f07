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
import os
from dataclasses import dataclass, field, replace

from featvid.errors import CodecError, ConfigError

log = logging.getLogger(__name__)

# SVT-AV1 prints its banner to stderr unless told otherwise (1 = errors only); the environment is
# the only switch it has, and a user's own setting wins.
os.environ.setdefault("SVT_LOG", "1")

# Measured on the demo scene (8 frames, 48^3, 6 channels, 24 views, float model 32.45 dB, feature
# basis on): crf 16.5 costs 0.41 dB of held-out PSNR for 7.8 KiB/frame (108x smaller than float16
# sparse grids); crf 17 0.49 dB for 7.5 KiB; crf 18 0.57 dB for 6.9 KiB; crf 20 0.91 dB for 5.8 KiB.
# The feature basis moved the knee: crf 20 lost 0.33 dB before it. H.264 luma is also the most
# compatible stream. Re-measure with `python benchmarks/size_ladder.py` after `make demo`.
DEFAULT_PRESET = "h264-crf16.5"


FRACTIONAL_RATE = ("libx264", "libx265")  # encoders whose crf takes a fraction (e.g. 17.5)


@dataclass(frozen=True)
class Preset:
    """One named way to encode a baked folder."""

    name: str
    codec: str  # FFmpeg encoder name (libx264, libx265, libsvtav1, libvpx-vp9, h264_nvenc, ...)
    description: str
    rate_option: str | None  # the encoder option that `--crf` overrides ("crf", "qp", "cq"), None: lossless only
    rate: float | None  # its value (fractional only where the encoder takes it: FRACTIONAL_RATE)
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

    def encoder_options(self, crf: float | None = None) -> dict[str, str]:
        """What the encoder is given: rate, speed preset, GOP structure options."""
        opts = dict(self.options)
        if self.rate_option is not None:
            if crf is not None and not 0 <= crf <= 63:
                raise ConfigError(f"--crf {crf:g} is out of range 0..63")
            value = self.rate if crf is None else crf
            if value is not None:
                if value != int(value) and not (self.codec in FRACTIONAL_RATE and self.rate_option == "crf"):
                    raise ConfigError(f"{self.codec} takes a whole-number {self.rate_option}, not {value:g}")
                opts[self.rate_option] = f"{value:g}"
        elif crf is not None:
            raise ConfigError(f"preset {self.name} has no rate to override (it is lossless)")
        return opts

    def with_rate(self, crf: float | None) -> "Preset":
        return self if crf is None else replace(self, rate=crf)


# x264 tuned for feature atlases, not pictures: no deblocking filter (it smooths block edges for
# the eye, but atlas tiles are not a picture) and psy-rd 0 (no bits spent on texture the eye would
# miss). Demo scene, feature basis on, crf 18-20: 3 % fewer bytes and +0.02-0.04 dB held-out
# together. Tried, no better: ipratio 2-3 (no change), aq-mode 0/2/3, aq-strength 0.7/1.5,
# qcomp 0.4/0.8, no mb-tree, tune psnr, preset slow.
_X264 = {"preset": "medium", "bf": "0", "x264-params": "no-deblock=1:psy-rd=0,0"}
_X264_LOSSLESS = {"preset": "medium", "bf": "0", "qp": "0"}
_X265 = {"preset": "medium", "x265-params": "bframes=0:log-level=error"}
_SVT = {"preset": "8", "svtav1-params": "pred-struct=1"}  # low delay: no frame reordering
_VP9 = {"deadline": "good", "cpu-used": "4", "b": "0", "row-mt": "1", "auto-alt-ref": "0", "lag-in-frames": "0"}
_NVENC = {"preset": "p5", "rc": "constqp", "bf": "0"}

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("h264-crf16.5", "libx264", "H.264 luma mosaic, crf 16.5 (default: within 0.5 dB of the float model)",
           "crf", 16.5, _X264),
    Preset("h264-crf18", "libx264", "H.264 luma mosaic, crf 18", "crf", 18, _X264),
    Preset("h264-crf20", "libx264", "H.264 luma mosaic, crf 20", "crf", 20, _X264),
    Preset("h264-crf23", "libx264", "H.264 luma mosaic, crf 23", "crf", 23, _X264),
    Preset("h264-crf28", "libx264", "H.264 luma mosaic, crf 28 (small)", "crf", 28, _X264),
    Preset("h264-444-crf18", "libx264", "H.264 yuv444p triplets, crf 18", "crf", 18, _X264,
           pix_fmt="yuv444p", packing="yuv444-triplets"),
    Preset("h264-lossless", "libx264", "H.264 luma mosaic, qp 0 (bit-exact codes)", None, None,
           _X264_LOSSLESS, lossless=True, feature_basis=False),
    Preset("h265-crf23", "libx265", "H.265 luma mosaic, crf 23", "crf", 23, _X265),
    Preset("h265-crf28-slow", "libx265", "H.265 luma mosaic, crf 28, slow", "crf", 28, {**_X265, "preset": "slow"}),
    Preset("h265-10bit-crf23", "libx265", "H.265 10-bit luma mosaic, crf 23", "crf", 23, _X265,
           pix_fmt="gray10le", bit_depth=10, levels=(0, 1023)),
    Preset("h265-lossless", "libx265", "H.265 luma mosaic, lossless", None, None,
           {"preset": "medium", "x265-params": "bframes=0:lossless=1:log-level=error"}, lossless=True,
           feature_basis=False),
    Preset("av1-crf35", "libsvtav1", "AV1 (SVT) yuv420p luma mosaic, crf 35", "crf", 35, _SVT, pix_fmt="yuv420p"),
    Preset("av1-10bit-crf35", "libsvtav1", "AV1 (SVT) 10-bit luma mosaic, crf 35", "crf", 35, _SVT,
           pix_fmt="yuv420p10le", bit_depth=10, levels=(0, 1023)),
    Preset("vp9-crf32", "libvpx-vp9", "VP9 yuv420p luma mosaic, crf 32", "crf", 32, _VP9, pix_fmt="yuv420p"),
    Preset("h264-nvenc", "h264_nvenc", "H.264 NVENC (GPU) luma mosaic, qp 20; falls back to h264-crf18", "qp", 20,
           _NVENC, pix_fmt="yuv420p", fallback="h264-crf18"),
    Preset("h265-nvenc", "hevc_nvenc", "H.265 NVENC (GPU) luma mosaic, qp 24; falls back to h265-crf23", "qp", 24,
           _NVENC, pix_fmt="yuv420p", fallback="h265-crf23"),
    Preset("web", "libx264", "H.264 main yuv420p, levels 16-235, neutral chroma, faststart: every browser plays it",
           "crf", 16.5, {**_X264, "profile": "main"}, pix_fmt="yuv420p", levels=(16, 235), color_range="tv",
           container_options={"movflags": "+faststart"}),
]}


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

    try:
        with av.open(io.BytesIO(), "w", format="mp4") as c:
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
