"""Rendition ladders (adaptive streaming): one stream, every GOP in every rendition, version 2 of
the manifest; a one-rendition ladder is today's version-1 stream byte for byte; bad ladders and
holes (a rendition's video missing in one GOP)."""
from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

from featvid.bake.atlas import bake_run
from featvid.formats.baked import Baked
from featvid.cli import main
from featvid.codecs import encode_baked, get_preset, open_stream, presets
from featvid.codecs.encode import (encode_gop, finish_encode, gop_codes, plan_encode, prepare_out, stream_basis,
                                   written_range)
from featvid.codecs.manifest import Manifest
from featvid.codecs.presets import LADDERS
from featvid.errors import CodecError, ConfigError, StreamError
from tests.codecs.synthetic import make_run

LADDER = ("web", "web-crf24", "web-crf29")


@pytest.fixture(scope="module")
def baked(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ladder")
    return bake_run(make_run(root / "run", frames=6, gop=2, shape=(24, 24, 24), channels=4), root / "baked")


@pytest.fixture(scope="module")
def ladder(baked) -> Path:
    return encode_baked(baked, baked.parent / "ladder.fvv", ladder=",".join(LADDER))


@pytest.fixture()
def copy(ladder, tmp_path) -> Path:
    return Path(shutil.copytree(ladder, tmp_path / "ladder.fvv"))


def _psnr_codes(got: np.ndarray, want: np.ndarray, peak: float) -> float:
    mse = float(((got.astype(float) - want.astype(float)) ** 2).mean())
    return 10 * math.log10(peak**2 / max(mse, 1e-12))


def test_ladder_manifest_lists_renditions_with_bitrates_and_sizes(ladder):
    d = json.loads((ladder / "manifest.json").read_text())
    assert d["version"] == 2 and "codec" not in d  # a version-1 reader stops at the version
    assert [r["name"] for r in d["renditions"]] == list(LADDER)
    m = Manifest.read(ladder)
    assert m.rendition_names == list(LADDER) and m.codec.preset == "web"
    fps, frames = m.fps, m.frames
    for r in m.renditions:
        sizes = [g.videos[r.name].bytes for g in m.gops]
        assert sizes == [(ladder / g.videos[r.name].file).stat().st_size for g in m.gops]
        assert r.bytes == sum(sizes)
        assert r.average_bps == round(8 * sum(sizes) * fps / frames)
        assert r.peak_bps == round(max(8 * s * fps / g.frames for s, g in zip(sizes, m.gops))) >= r.average_bps
        assert r.codec.options["crf"] == f"{get_preset(r.name).rate:g}"
    rates = [r.average_bps for r in m.renditions]
    assert rates == sorted(rates, reverse=True) and rates[0] > 1.3 * rates[-1]  # measured 1.7x here
    for g in m.gops:  # one mapping and one set of ranges per GOP, shared by every rendition
        assert sorted(p.name for p in (ladder / g.dir).iterdir()) == sorted(
            ["mapping.fvmap"] + [f"{n}.mp4" for n in LADDER])
    total = sum(f.stat().st_size for f in ladder.rglob("*") if f.is_file() and f.name != "manifest.json")
    assert m.bytes["total_without_manifest"] == total
    m.write(ladder.parent / "again.json")  # round trip, same bytes
    assert (ladder.parent / "again.json").read_bytes() == (ladder / "manifest.json").read_bytes()


def test_every_rendition_decodes_from_its_own_keyframe(ladder, baked):
    s = open_stream(ladder, hwaccel="none")
    b = Baked(baked)
    A = stream_basis(b, b.mlp())
    quality = {}
    for name in LADDER:
        for g, e in enumerate(s.manifest.gops):
            video = ladder / e.videos[name].file
            with av.open(str(video)) as c:  # each rendition of each GOP starts with a keyframe
                first = next(p for p in c.demux(c.streams.video[0]) if p.size > 0)
                assert first.is_keyframe, (name, g)
            want, ranges = gop_codes(b.atlas(g), b.mapping(g), b.render_settings.step_ratio, get_preset(name), A)
            levels = sorted({get_preset(n).levels for n in LADDER})  # the manifest states them in short digits
            assert [written_range(lo, hi, levels) for lo, hi in ranges] == e.ranges  # renditions share them
            got = s.decode_codes(g, rendition=name)
            assert got.shape == want.shape
            quality[name, g] = _psnr_codes(got, want, 219)
            assert len(s.decode_gop(g, rendition=name)) == e.frames
    # code PSNR over the 219 codes of the web range; measured web 42.8-42.9 dB, crf 24 35.4-35.5, crf 29 30.9-31.2
    floors = {"web": 42.0, "web-crf24": 34.8, "web-crf29": 30.3}
    for (name, g), q in quality.items():
        assert q > floors[name], (name, g, q)
    for g in range(s.num_gops):  # and they are different encodes
        assert quality["web", g] > quality["web-crf24", g] + 2 > quality["web-crf29", g] + 3


def test_a_one_rendition_ladder_is_todays_version_1_stream(baked, tmp_path):
    one = encode_baked(baked, tmp_path / "one.fvv", ladder="web")
    ref = encode_baked(baked, tmp_path / "ref.fvv", preset="web")
    assert json.loads((one / "manifest.json").read_text())["version"] == 1
    assert (one / "manifest.json").read_bytes() == (ref / "manifest.json").read_bytes()
    for f in ref.rglob("*.mp4"):
        assert (one / f.relative_to(ref)).read_bytes() == f.read_bytes()
    assert [p.name for p in (one / "gop_00000").iterdir()] != [] and (one / "gop_00000" / "atlas.mp4").is_file()
    s = open_stream(one, hwaccel="none")
    assert s.renditions == ["web"] and s.summary()["renditions"][0]["name"] == "web"


def test_gops_encoded_in_any_order_give_the_same_bytes(baked, ladder, tmp_path):
    """The batch contract: one encode_gop = every rendition of one GOP; any order, same files."""
    plan = plan_encode(baked, tmp_path / "rev.fvv", ladder=list(LADDER))
    prepare_out(plan.out)
    entries = {g: encode_gop(plan, g) for g in reversed(range(len(plan.baked.gops)))}
    import pickle

    entries = {g: pickle.loads(pickle.dumps(e)) for g, e in entries.items()}  # a result crosses processes
    out = finish_encode(plan, [entries[g] for g in sorted(entries)])
    assert (out / "manifest.json").read_bytes() == (ladder / "manifest.json").read_bytes()
    for f in ladder.rglob("gop_*/*"):
        assert (out / f.relative_to(ladder)).read_bytes() == f.read_bytes(), f


def test_named_default_ladder():
    assert presets.DEFAULT_LADDER in LADDERS
    names = LADDERS[presets.DEFAULT_LADDER]
    assert 3 <= len(names) <= 5
    for n in names:  # all web-shaped: the browser can switch between every rung
        p = get_preset(n)
        assert (p.codec, p.pix_fmt, p.packing, p.levels) == ("libx264", "yuv420p", "luma-mosaic", (16, 235))
    rates = [get_preset(n).rate for n in names]
    assert rates == sorted(rates)


def test_bad_ladders_are_refused_before_anything_is_written(baked, tmp_path, monkeypatch):
    out = tmp_path / "bad.fvv"
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        encode_baked(baked, out, ladder="web,nope")
    with pytest.raises(ConfigError, match="web-crf24 twice"):
        encode_baked(baked, out, ladder="web-crf24,web,web-crf24")
    with pytest.raises(ConfigError, match="empty ladder"):
        encode_baked(baked, out, ladder=" , ")
    with pytest.raises(ConfigError, match="not both"):
        encode_baked(baked, out, preset="web", ladder="web,web-crf29")
    with pytest.raises(ConfigError, match="crf"):
        encode_baked(baked, out, crf=20, ladder="web,web-crf29")
    with pytest.raises(ConfigError, match="feature basis"):
        encode_baked(baked, out, ladder="web,h264-lossless")
    # an encoder this machine cannot open, with no fallback
    real = presets.encoder_available
    monkeypatch.setattr(presets, "encoder_available", lambda codec, pix: codec != "libx265" and real(codec, pix))
    with pytest.raises(CodecError, match="libx265.*not available"):
        encode_baked(baked, out, ladder="web,h265-crf23")
    # a hardware preset falling back onto another rung of the ladder: two renditions of one name
    with pytest.raises(ConfigError, match="two renditions named h264-crf18.*h264-nvenc fell back"):
        encode_baked(baked, out, ladder="h264-crf18,h264-nvenc")
    assert not out.exists()


def test_a_hole_falls_back_to_the_nearest_rendition_and_is_reported(copy, caplog):
    (copy / "gop_00001" / "web-crf24.mp4").unlink()
    with caplog.at_level(logging.WARNING):
        s = open_stream(copy, hwaccel="none")
    assert s.holes() == {1: ["web-crf24"]} and "GOP 1" in caplog.text
    assert s.available(1) == ["web", "web-crf29"] and s.available(0) == list(LADDER)
    assert s.summary()["holes"] == [{"gop": 1, "rendition": "web-crf24", "file": "gop_00001/web-crf24.mp4"}]
    assert s.resolve_rendition(1, "web-crf24") == ("web-crf29", True)  # the next lower first
    assert s.resolve_rendition(0, "web-crf24") == ("web-crf24", False)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        codes = s.decode_codes(1, rendition="web-crf24")
    assert "decoding rendition web-crf29 instead" in caplog.text
    assert np.array_equal(codes, s.decode_codes(1, rendition="web-crf29"))
    (copy / "gop_00001" / "web-crf29.mp4").unlink()  # nothing lower left: the next higher
    assert open_stream(copy, hwaccel="none").resolve_rendition(1, "web-crf29") == ("web", True)
    r = CliRunner().invoke(main, ["info", str(copy)])
    assert r.exit_code == 0, r.output
    assert "holes: 2" in r.output and "GOP 1: no web-crf24 video (gop_00001/web-crf24.mp4 is missing)" in r.output
    (copy / "gop_00001" / "web.mp4").unlink()
    with pytest.raises(StreamError, match="gop_00001/web.mp4 named in the manifest is missing.*every other rendition"):
        open_stream(copy)


def _edit(path: Path, change) -> None:
    d = json.loads((path / "manifest.json").read_text())
    change(d)
    (path / "manifest.json").write_text(json.dumps(d))


@pytest.mark.parametrize("change,message", [
    (lambda d: d["gops"][1]["videos"].pop("web-crf24"), "GOP 1 lists videos of"),
    (lambda d: d["renditions"][1].update(name="web"), "two renditions are named web"),
    (lambda d: d["renditions"].__setitem__(slice(None), []), "non-empty list"),
    (lambda d: d["renditions"][0].update(name="../x"), "rendition name"),
    (lambda d: d["gops"][0]["videos"]["web"].update(file="../../x.mp4"), "not a plain name"),
    (lambda d: d["renditions"][2]["codec"].update(levels=[0, 300]), "rendition web-crf29: levels"),
    (lambda d: d["renditions"][0].pop("bitrate"), "average"),
    (lambda d: d.update(version=1), "malformed manifest"),  # a ladder stamped version 1
])
def test_a_broken_version_2_manifest_is_refused(copy, change, message):
    _edit(copy, change)
    with pytest.raises(StreamError, match=message):
        open_stream(copy)


def test_encode_and_info_cli(baked, tmp_path):
    r = CliRunner().invoke(main, ["encode", str(baked), "--out", str(tmp_path / "abr.fvv"), "--ladder", "abr"])
    assert r.exit_code == 0, r.output
    assert "4 renditions" in r.output and all(f"rendition {n} " in r.output for n in LADDERS["abr"])
    r = CliRunner().invoke(main, ["info", str(tmp_path / "abr.fvv")])
    assert r.exit_code == 0 and "renditions: 4" in r.output and "holes: none" in r.output
    r = CliRunner().invoke(main, ["encode", str(baked), "--out", str(tmp_path / "x.fvv"), "--ladder", "abr",
                                  "--preset", "web"])
    assert r.exit_code == 2 and "takes no --preset" in r.output
    r = CliRunner().invoke(main, ["encode", str(baked), "--out", str(tmp_path / "x.fvv"), "--ladder", "web,web"])
    assert r.exit_code == 2 and "twice" in r.output
