"""Fixed costs (issue 27): the manifest states each quantization range in the fewest digits that
decode bit for bit as the range the encoder used, and stays under a byte floor per GOP."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from featvid.bake.atlas import bake_run
from featvid.codecs import DEFAULT_PRESET, encode_baked, open_stream
from featvid.codecs.encode import gop_planes, stream_basis, written_range
from featvid.codecs.quantize import density_clamp, dequantize
from featvid.formats.baked import Baked
from tests.codecs.synthetic import make_run

LEVELS = [(0, 255), (16, 235), (0, 1023), (0, 65535)]


@pytest.fixture(scope="module")
def baked(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fixed")
    return bake_run(make_run(root / "run", frames=4, gop=2, shape=(24, 24, 24), channels=4), root / "baked")


@pytest.fixture(scope="module")
def ladder(baked, tmp_path_factory) -> Path:
    """Two renditions of two code ranges ([0, 255] and the web preset's [16, 235]) sharing ranges."""
    return encode_baked(baked, tmp_path_factory.mktemp("ladder") / "s.fvv", ladder=[DEFAULT_PRESET, "web"])


def _ranges(n: int, seed: int = 0) -> list[tuple[float, float]]:
    """Ranges of the kinds the encoder makes: float32 extremes, equal-step feature ranges (float64
    centres), the density window."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lo = float(np.float32(rng.uniform(-3, 1)))
        hi = lo + float(np.float32(rng.uniform(1e-3, 4)))
        if i % 3 == 1:
            lo, hi = (lo + hi - 2.5) / 2, (lo + hi + 2.5) / 2
        if i % 5 == 2:
            lo, hi = density_clamp(rng.uniform(0.2, 1.0))
        out.append((lo, hi))
    return out


@pytest.mark.parametrize("levels", [[lv] for lv in LEVELS] + [LEVELS[:2]])
def test_written_range_decodes_every_code_the_same(levels):
    ranges = _ranges(200)
    short = [written_range(lo, hi, levels) for lo, hi in ranges]
    for a, b in levels:
        q = np.arange(a, b + 1, dtype=np.uint16)[None].repeat(len(ranges), 0)  # [R, codes]: every code
        assert np.array_equal(dequantize(q, ranges, (a, b)).numpy(), dequantize(q, short, (a, b)).numpy())
        # the web player's uniforms: lo and (hi - lo) / (b - a), in float32
        for (lo, hi), (x, y) in zip(ranges, short):
            assert np.float32(lo) == np.float32(x) and np.float32((hi - lo) / (b - a)) == np.float32((y - x) / (b - a))
    full, written = len(json.dumps(ranges)), len(json.dumps(short))
    # measured: 8,479 -> 4,948 to 5,102 characters (0.58-0.60 of the float64 reprs) by code range
    assert written < 0.63 * full, (written, full)


def test_written_range_keeps_a_range_it_cannot_shorten():
    assert written_range(0.0, 1.0, [(0, 255)]) == (0.0, 1.0)
    lo, hi = 0.1 + 2**-40, 0.7 - 2**-40  # decimals near them all decode alike in float32: shortened
    assert written_range(lo, hi, [(0, 255)]) == (0.1, 0.7)


def test_short_ranges_decode_as_the_encoders_ranges(baked, ladder, tmp_path):
    """A stream decodes to the same grids, bit for bit, with its manifest's short ranges as with the
    float64 ranges the encoder quantized over (what a manifest stated before issue 27): in both
    renditions' code ranges. The full-repr manifest (an older stream's) still reads."""
    b = Baked(baked)
    short = open_stream(ladder, hwaccel="none")
    A = stream_basis(b, b.mlp())
    full_ranges = [gop_planes(b.atlas(g), b.mapping(g), b.render_settings.step_ratio, A)[1] for g in range(len(b.gops))]
    old = tmp_path / "old.fvv"
    old.mkdir()
    for f in ladder.rglob("*"):
        if f.is_file() and f.name != "manifest.json":
            (old / f.relative_to(ladder)).parent.mkdir(exist_ok=True)
            (old / f.relative_to(ladder)).write_bytes(f.read_bytes())
    d = json.loads((ladder / "manifest.json").read_text())
    for g, r in zip(d["gops"], full_ranges):
        g["ranges"] = [list(x) for x in r]
    (old / "manifest.json").write_text(json.dumps(d, separators=(",", ":")))
    before = open_stream(old, hwaccel="none")
    assert len(json.dumps(d)) > len((ladder / "manifest.json").read_text())  # the short ranges are shorter
    for g in range(short.num_gops):
        assert short.manifest.gops[g].ranges != before.manifest.gops[g].ranges  # else nothing is tested
        for name in short.renditions:
            got, want = short.decode_values(g, rendition=name), before.decode_values(g, rendition=name)
            assert torch.equal(got, want), (g, name)


def test_manifest_bytes_per_gop_floor(baked, tmp_path):
    """manifest.json of a one-rendition stream of 2 GOPs, 5 planes (the default preset), per GOP
    (the stream's own fields shared by its 2 GOPs). Measured: 1,112 B before issue 27 (ranges in
    float64 reprs), 1,024 B after."""
    s = encode_baked(baked, tmp_path / "s.fvv")
    per_gop = (s / "manifest.json").stat().st_size / len(open_stream(s, hwaccel="none").manifest.gops)
    assert per_gop < 1060, per_gop


@pytest.mark.parametrize("backend", ["pyav", "ffmpeg"])
def test_x264_videos_carry_no_sei_and_decode_the_same(backend, tmp_path):
    """x264's SEI (its version and options, ~600 B in each GOP's first frame) is dropped on the way
    to the file by both back ends; the frames decode to the same codes as with it."""
    from dataclasses import replace

    from featvid.codecs.backends import get_backend
    from featvid.codecs.presets import get_preset
    from featvid.codecs.video import VideoSpec

    p = get_preset(DEFAULT_PRESET)
    assert p.bitstream_filter == "filter_units=remove_types=6"
    rng = np.random.default_rng(0)
    frames = [[(rng.integers(0, 8, (64, 96)) * 32).astype(np.uint8)] for _ in range(3)]
    spec = VideoSpec(96, 64, 30.0, p.codec, p.pix_fmt, p.encoder_options(), p.container_options, p.color_range, 3,
                     p.bitstream_filter)
    be = get_backend(backend)
    sizes, decoded = {}, {}
    for name, s in (("without", spec), ("with", replace(spec, bitstream_filter=""))):
        path = tmp_path / f"{name}.mp4"
        be.encode(path, iter(frames), s)
        data = path.read_bytes()
        assert (b"x264 - core" in data) == (name == "with")
        sizes[name] = len(data)
        decoded[name] = [np.array(f[0]) for f in be.decode(path)]
    assert len(decoded["without"]) == 3
    assert all(np.array_equal(a, b) for a, b in zip(decoded["without"], decoded["with"]))
    assert 500 < sizes["with"] - sizes["without"] < 800  # measured 615 (x264 core 165)


def test_x265_videos_carry_no_info_sei(tmp_path):
    """x265 writes its version and options into the stream's header, which no packet filter reaches;
    `info=0` in every H.265 preset's x265-params leaves it out (measured: 2,310 bytes a video)."""
    from featvid.codecs.backends import get_backend
    from featvid.codecs.presets import PRESETS
    from featvid.codecs.video import VideoSpec

    frames = [[np.full((64, 96), 40 * i, np.uint8)] for i in range(2)]
    for name in ("h265-crf23", "h265-lossless"):
        p = PRESETS[name]
        assert "info=0" in p.options["x265-params"]
        spec = VideoSpec(96, 64, 30.0, p.codec, p.pix_fmt, p.encoder_options(), p.container_options, p.color_range,
                         2, p.bitstream_filter)
        path = tmp_path / f"{name}.mp4"
        get_backend("pyav").encode(path, iter(frames), spec)
        assert b"x265 (build" not in path.read_bytes()
        assert len(list(get_backend("pyav").decode(path))) == 2
