"""Gaussian streams, the format half (issue 29, docs/gaussians.md): 3DGS PLY import and export,
the generator, the baker, the encoder's Gaussian path and the decoder."""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from featvid.cli import main
from featvid.errors import ConfigError, FormatError, StreamError
from featvid.gaussians.layout import (GaussianLayout, StreamLayout, curve_pixels, from_atlas, from_planes,
                                      join_position_codes, morton_order, normalized_quats, position_codes,
                                      to_atlas, to_planes)
from featvid.gaussians.model import Gaussians
from featvid.gaussians.ply import read_ply, write_ply

FIELDS = ("means", "sh", "opacity", "log_scales", "quats")


def _hand_ply(path: Path, n: int = 5, fmt: str = "binary_little_endian", rest: int = 9, drop: str = "",
              count: int | None = None, cut: int = 0, nan: bool = False) -> np.ndarray:
    """A 3DGS PLY written by hand (no featvid code): x y z as float, nx ny nz, f_dc, `rest` f_rest,
    opacity as double, scales, rot; returns the values [n, 14 + rest] in PLY order (no normals)."""
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(rest)] \
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    names = [x for x in names if x != drop]
    types = ["double" if x == "opacity" else "float" for x in names]
    head = f"ply\nformat {fmt} 1.0\ncomment written by hand\nelement vertex {n if count is None else count}\n"
    head += "".join(f"property {t} {x}\n" for t, x in zip(types, names)) + "end_header\n"
    rng = np.random.default_rng(1)
    values = rng.normal(size=(n, len(names))).astype(np.float32)
    if nan:
        values[2, 1] = np.nan
    rec = struct.Struct("<" + "".join("d" if t == "double" else "f" for t in types))
    body = b"".join(rec.pack(*row) for row in values.tolist())
    path.write_bytes(head.encode() + body[:len(body) - cut])
    keep = [i for i, x in enumerate(names) if x not in ("nx", "ny", "nz")]
    return values[:, keep]


def test_hand_written_ply_imports(tmp_path):
    v = _hand_ply(tmp_path / "a.ply", n=5, rest=9)  # SH degree 1
    g = read_ply(tmp_path / "a.ply")
    assert g.count == 5 and g.sh_degree == 1
    assert np.array_equal(g.means.numpy(), v[:, 0:3])
    assert np.array_equal(g.sh[:, 0].numpy(), v[:, 3:6])
    # f_rest is channel-major: f_rest_j = sh[:, 1 + j % 3, j // 3] for K - 1 = 3
    for j in range(9):
        assert np.array_equal(g.sh[:, 1 + j % 3, j // 3].numpy(), v[:, 6 + j])
    assert np.array_equal(g.opacity.numpy(), v[:, 15])  # a double property, read as float32
    assert np.array_equal(g.log_scales.numpy(), v[:, 16:19])
    assert np.array_equal(g.quats.numpy(), v[:, 19:23])


@pytest.mark.parametrize("kind, message", [
    ("ascii", "binary_little_endian"),
    ("big", "binary_little_endian"),
    ("missing", "lacks property scale_1"),
    ("nan", "NaN"),
    ("huge", "vertices"),
    ("claims", "holds"),
    ("truncated", "holds"),
    ("rest", "f_rest"),
])
def test_malformed_ply_is_one_line(tmp_path, kind, message):
    folder = tmp_path / "seq"
    folder.mkdir()
    p = folder / "frame_00000.ply"
    args = {"ascii": dict(fmt="ascii"), "big": dict(fmt="binary_big_endian"), "missing": dict(drop="scale_1"),
            "nan": dict(nan=True), "huge": dict(count=10 ** 9), "claims": dict(count=1000),
            "truncated": dict(cut=3), "rest": dict(rest=7)}[kind]
    _hand_ply(p, **args)
    with pytest.raises(FormatError, match=message):
        read_ply(p)
    r = CliRunner().invoke(main, ["bake", str(folder), "--out", str(tmp_path / "baked")])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and message in lines[0], r.stderr
    if kind != "nan":  # every header is checked before anything is written (values when they are read)
        assert not (tmp_path / "baked").exists()
    assert not (tmp_path / "baked" / "baked.json").exists()


def test_not_a_ply(tmp_path):
    (tmp_path / "x.ply").write_bytes(b"hello")
    with pytest.raises(FormatError, match="not a PLY"):
        read_ply(tmp_path / "x.ply")
    (tmp_path / "y.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\n" + b"comment x\n" * 10000)
    with pytest.raises(FormatError, match="end_header"):
        read_ply(tmp_path / "y.ply")


def _random_gaussians(n: int, degree: int = 3, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    return Gaussians(torch.rand(n, 3, generator=g) * 2 - 1, torch.randn(n, k, 3, generator=g) * 0.3,
                     torch.randn(n, generator=g), torch.randn(n, 3, generator=g) - 4, torch.randn(n, 4, generator=g))


def test_ply_write_read_is_exact(tmp_path):
    g = _random_gaussians(100)
    write_ply(tmp_path / "g.ply", g)
    h = read_ply(tmp_path / "g.ply")
    assert all(torch.equal(getattr(g, f), getattr(h, f)) for f in FIELDS)


def test_layout_pieces_invert():
    pix = curve_pixels(24, 24)
    assert sorted(pix.tolist()) == list(range(24 * 24))
    assert pix[:4].tolist() == [0, 1, 24, 25]  # the 2D Morton curve: a 2 x 2 block first
    g = _random_gaussians(500)
    order = morton_order(g.means)
    assert sorted(order.tolist()) == list(range(500))
    v = to_planes(g)  # [P_b, N]
    assert v.shape == (59, 500)
    assert torch.equal(from_atlas(to_atlas(v, 24), 500), v)
    h = from_planes(v, 3)
    assert torch.equal(h.sh, g.sh) and torch.equal(h.means, g.means)
    assert torch.allclose(h.quats, normalized_quats(g.quats)) and (h.quats[:, 0] >= 0).all()
    # positions: 16 bits, error at most half a step of 1/65535 of the range
    ranges = [(-1.0, 1.0)] * 3
    high, low = position_codes(g.means.T, ranges)
    back = join_position_codes(high, low.astype(np.float32), ranges)
    assert (back - g.means.T).abs().max() <= 2 / 65535 / 2 + 1e-6


def test_stream_layout_file_round_trips_and_is_checked():
    high = np.random.default_rng(0).integers(0, 256, (3, 3, 50), dtype=np.uint8)
    data = StreamLayout(GaussianLayout(50, (8, 8)), high).to_bytes()
    assert np.array_equal(StreamLayout.from_bytes(data, "x", (8, 8), 3).high, high)
    with pytest.raises(FormatError, match="manifest says"):
        StreamLayout.from_bytes(data, "x", (8, 8), 4)
    with pytest.raises(FormatError):
        StreamLayout.from_bytes(data[:-9], "x", (8, 8), 3)
    with pytest.raises(FormatError, match="count"):
        GaussianLayout.from_bytes(b'{"format":"featvid-gaussian-layout","version":1,"count":100,"atlas":[8,8],'
                                  b'"curve":"morton2d"}', "x")


def test_plan_gops_splits_where_counts_change():
    from featvid.bake.gaussians import plan_gops

    assert plan_gops([5, 5, 5, 5, 5], 2) == [(0, 2), (2, 2), (4, 1)]
    assert plan_gops([5, 5, 6, 6, 6], 15) == [(0, 2), (2, 3)]


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> Path:
    """2000 generated Gaussians, 4 frames, SH degree 3."""
    from featvid.gaussians.generate import write_gaussian_sequence

    out = tmp_path_factory.mktemp("gs") / "seq"
    write_gaussian_sequence(out, "dancer", 2000, 4)
    return out


def _truth(seq: Path, stream, t: int) -> Gaussians:
    """Frame t of the input in the stream's order (the GOP's Morton order of its first frame)."""
    start = stream.manifest.gops[stream.gop_of(t)].start
    order = morton_order(read_ply(seq / f"frame_{start:05d}.ply").means)
    g = read_ply(seq / f"frame_{t:05d}.ply")
    return Gaussians(*(getattr(g, f)[order] for f in FIELDS))


def test_generated_sequence(sequence):
    frames = sorted(sequence.glob("*.ply"))
    assert len(frames) == 4
    g0, g3 = read_ply(frames[0]), read_ply(frames[3])
    assert g0.count == g3.count == 2000 and g0.sh_degree == 3
    moved = (g3.means - g0.means).norm(dim=1)
    assert 0.01 < float(moved.mean()) < 0.2  # they follow the dancer (measured 0.039)
    assert float(torch.sigmoid(g0.opacity).mean()) > 0.85


def test_bake_encode_export_round_trip(sequence, tmp_path):
    from featvid.codecs import open_stream
    from featvid.codecs.gaussians import decode_gaussians, decode_gaussians_gop
    from featvid.formats.baked import Baked

    baked, stream_dir = tmp_path / "baked", tmp_path / "s.fvv"
    r = CliRunner().invoke(main, ["bake", str(sequence), "--out", str(baked), "--gop", "3"])
    assert r.exit_code == 0, r.output
    b = Baked(baked)
    assert b.representation == "gaussians" and [(e.start, e.frames) for e in b.gops] == [(0, 3), (3, 1)]
    r = CliRunner().invoke(main, ["verify", str(baked)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["encode", str(baked), "--out", str(stream_dir), "--preset", "h264-lossless"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((stream_dir / "manifest.json").read_text())
    assert manifest["representation"] == "gaussians" and manifest["channels"] == 59
    assert "mlp" not in manifest and "grid_shape" not in manifest
    stream = open_stream(stream_dir)
    assert stream.representation == "gaussians"
    assert [n for n, _ in stream.verify()] == ["gop_00000/layout.fvgl", "gop_00000/atlas.mp4",
                                                "gop_00001/layout.fvgl", "gop_00001/atlas.mp4"]
    # the stated error: positions (hi - lo) / 131070, every other value (hi - lo) / 510 (8-bit codes)
    for t in (1, 3):
        g, want = decode_gaussians(stream, t), _truth(sequence, stream, t)
        e = stream.manifest.gops[stream.gop_of(t)]
        span = torch.tensor([hi - lo for lo, hi in e.ranges])
        assert ((g.means - want.means).abs() <= span[:3] / 131070 + 1e-6).all()
        rest = torch.cat([g.sh[:, 0], g.sh[:, 1:].permute(0, 2, 1).reshape(2000, -1), g.opacity[:, None],
                          g.log_scales], 1) - torch.cat([want.sh[:, 0], want.sh[:, 1:].permute(0, 2, 1).reshape(2000, -1),
                                                         want.opacity[:, None], want.log_scales], 1)
        assert (rest.abs() <= span[3:-4] / 510 + 1e-5).all()
        assert (g.quats - normalized_quats(want.quats)).abs().max() < 0.01  # codes, then renormalised
    assert torch.equal(decode_gaussians_gop(stream, 0)[1].means, decode_gaussians(stream, 1).means)
    r = CliRunner().invoke(main, ["export", str(stream_dir), "--frame", "3", "--out", str(tmp_path / "f3.ply")])
    assert r.exit_code == 0, r.output
    exported = read_ply(tmp_path / "f3.ply")
    assert all(torch.equal(getattr(exported, f), getattr(decode_gaussians(stream, 3), f)) for f in FIELDS)
    with pytest.raises(StreamError, match="no MLP"):
        stream.mlp()
    r = CliRunner().invoke(main, ["export", str(stream_dir), "--frame", "4", "--out", str(tmp_path / "f4.ply")])
    assert r.exit_code == 2 and "out of range" in r.stderr


def test_lossy_ladder_and_sh_degree(sequence, tmp_path):
    """The default preset's error, a ladder of two code ranges (web: 16..235), SH degree reduction."""
    from featvid.codecs import encode_baked, open_stream
    from featvid.codecs.gaussians import decode_gaussians

    from featvid.bake.gaussians import bake_gaussians

    bake_gaussians(sequence, tmp_path / "b1", gop=4, sh_degree=1)
    encode_baked(tmp_path / "b1", tmp_path / "l.fvv", ladder="h264-crf16.5,web")
    stream = open_stream(tmp_path / "l.fvv")
    assert stream.manifest.version == 2 and stream.num_planes == 14 + 9
    want = _truth(sequence, stream, 2)
    for name in ("h264-crf16.5", "web"):
        g = decode_gaussians(stream, 2, rendition=name)
        assert g.sh_degree == 1
        pos = (g.means - want.means).abs()
        # the high byte is lossless: position errors stay tiny (measured max 0.00054 crf16.5, 0.00045 web;
        # the range is 1.7; with the high byte in the video too the mean alone was 0.0074)
        assert float(pos.max()) < 0.0008, name
        dc = (g.sh[:, 0] - want.sh[:, 0]).abs().mean()
        assert float(dc) < 0.045, (name, float(dc))  # measured 0.033 (crf16.5), 0.036 (web) of a range of 3


def test_manifest_representation_is_checked(sequence, tmp_path):
    from featvid.bake.gaussians import bake_gaussians
    from featvid.codecs import encode_baked, open_stream

    bake_gaussians(sequence, tmp_path / "b", gop=4, sh_degree=0)
    with pytest.raises(ConfigError, match="QP offsets"):  # its planes are no grid's: nothing measured there
        encode_baked(tmp_path / "b", tmp_path / "q.fvv", plane_qp=(-2,))
    encode_baked(tmp_path / "b", tmp_path / "s.fvv")
    path = tmp_path / "s.fvv" / "manifest.json"
    m = json.loads(path.read_text())
    path.write_text(json.dumps({**m, "representation": "meshes"}))
    with pytest.raises(StreamError, match="representation"):
        open_stream(tmp_path / "s.fvv")
    path.write_text(json.dumps({**m, "gaussians": {**m["gaussians"], "sh_degree": 2}}))
    with pytest.raises(StreamError, match="planes"):
        open_stream(tmp_path / "s.fvv")
    path.write_text(json.dumps({**m, "channels": 15}))
    with pytest.raises(StreamError, match="channels"):
        open_stream(tmp_path / "s.fvv")


def test_counts_that_change_start_a_gop_and_synth_cli(tmp_path):
    from featvid.codecs import encode_baked, open_stream
    from featvid.codecs.gaussians import decode_gaussians

    seq = tmp_path / "seq"
    seq.mkdir()
    for t, n in enumerate([100, 100, 120]):
        write_ply(seq / f"f{t}.ply", _random_gaussians(n, degree=0, seed=t))
    r = CliRunner().invoke(main, ["bake", str(seq), "--out", str(tmp_path / "b"), "--fps", "25"])
    assert r.exit_code == 0, r.output
    encode_baked(tmp_path / "b", tmp_path / "s.fvv")
    stream = open_stream(tmp_path / "s.fvv")
    assert [(e.start, e.frames) for e in stream.manifest.gops] == [(0, 2), (2, 1)] and stream.fps == 25
    assert decode_gaussians(stream, 2).count == 120 and decode_gaussians(stream, 1).count == 100
    r = CliRunner().invoke(main, ["bake", str(seq), "--out", str(tmp_path / "b2"), "--background", "2,0,0"])
    assert r.exit_code == 2 and "--background" in r.stderr
    r = CliRunner().invoke(main, ["synth-gaussians", str(tmp_path / "g"), "--count", "300", "--frames", "2"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["frame_00000.ply", "frame_00001.ply"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    r = CliRunner().invoke(main, ["synth-gaussians", str(tmp_path / "other"), "--count", "300", "--frames", "1"])
    assert r.exit_code == 2 and (tmp_path / "other" / "notes.txt").exists()  # a foreign folder is refused
