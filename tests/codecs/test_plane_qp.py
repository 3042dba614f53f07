"""QP offsets per macroblock (issue 27, bit allocation; featvid.codecs.regions): per atlas plane and,
in a contracted grid, per part of space (inner box, shell), given to the encoder as regions of
interest through both back ends, and recorded in the manifest."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from featvid.bake.atlas import bake_run
from featvid.cli import main
from featvid.codecs import encode_baked, open_stream
from featvid.codecs.backends import get_backend
from featvid.codecs.encode import gop_codes
from featvid.codecs.manifest import Manifest
from featvid.codecs.pack import Mosaic
from featvid.codecs.regions import frame_regions, inner_pixels, map_regions, offset_map
from featvid.codecs.presets import resolve_preset
from featvid.codecs.video import Region, VideoSpec
from featvid.errors import ConfigError, StreamError
from featvid.formats.baked import Baked
from tests.codecs.synthetic import make_run

X264 = {"preset": "medium", "bf": "0", "crf": "16.5", "threads": "1"}


def test_each_plane_offset_covers_its_cells_macroblocks_finest_where_two_cells_meet():
    # 3 x 3 cells of 32 x 40 an atlas apart (a stream made before the pitch): columns meet inside macroblocks
    m = Mosaic((32, 40), 3, 3, 96, 128)
    q = offset_map(m, "luma-mosaic", 7, (-2, 0, 1, 1, 3))  # planes 5, 6 past the list: 0
    assert q.shape == (m.height // 16, m.width // 16) == (6, 8)
    assert q[:2].tolist() == [[-2, -2, -2, 0, 0, 1, 1, 1]] * 2  # x 32..47 holds planes 0 and 1: -2
    assert q[2:4].tolist() == [[1, 1, 1, 3, 3, 0, 0, 0]] * 2  # x 32..47: planes 3 (1) and 4 (3): 1
    assert q[4:].tolist() == [[0] * 8] * 2
    # the layout now: cells 48 apart, so every macroblock holds one plane
    a = Mosaic.layout(7, (32, 40))
    assert a.cell == (32, 48) and a.width == 144
    qa = offset_map(a, "luma-mosaic", 7, (-2, 0, 1, 1, 3))
    assert qa.tolist() == [[-2] * 3 + [0] * 3 + [1] * 3] * 2 + [[1] * 3 + [3] * 3 + [0] * 3] * 2 + [[0] * 9] * 2
    # yuv444 triplets: a cell holds planes 0-2, 3-5, 6; it takes the finest of its planes
    t = offset_map(Mosaic.layout(3, (32, 48)), "yuv444-triplets", 7, (0, -1, 2, 2, 2, 2, 4))
    assert t.tolist() == [[-1] * 3 + [2] * 3] * 2 + [[4] * 3 + [0] * 3] * 2


def test_regions_are_the_maps_runs_without_overlap():
    q = np.zeros((4, 6), dtype=np.float32)
    q[0:2, 1:3] = -2  # a block of two rows
    q[1, 4] = 3
    q[3, :] = 1
    regions = map_regions(q)
    assert sorted(regions, key=lambda r: (r.y, r.x)) == list(regions)
    assert set(regions) == {Region(16, 0, 32, 32, -2.0), Region(64, 16, 16, 16, 3.0), Region(0, 48, 96, 16, 1.0)}
    back = np.zeros_like(q)
    for r in regions:
        assert not back[r.y // 16:(r.y + r.h) // 16, r.x // 16:(r.x + r.w) // 16].any()  # no overlap
        back[r.y // 16:(r.y + r.h) // 16, r.x // 16:(r.x + r.w) // 16] = r.qp_offset
    assert (back == q).all()
    assert map_regions(np.zeros((3, 3))) == ()


def _noise_frames(n: int = 3, shape=(64, 128)) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(0)
    return [[rng.normal(128, 20, shape).clip(0, 255).astype(np.uint8)] for _ in range(n)]


def _coded(backend: str, regions: tuple[Region, ...]) -> tuple[int, list[np.ndarray]]:
    frames = _noise_frames()
    spec = VideoSpec(128, 64, 30.0, "libx264", "gray", X264, gop=len(frames), regions=regions)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "a.mp4"
        be = get_backend(backend)
        be.encode(path, iter(frames), spec)
        decoded = [np.array(f[0]) for f in be.decode(path)]
        size = path.stat().st_size
    errors = [np.abs(o.astype(float) - f[0]) for o, f in zip(decoded, frames)]
    return size, [np.sqrt(np.mean([e[:, :64] ** 2 for e in errors])), np.sqrt(np.mean([e[:, 64:] ** 2 for e in errors]))]


@pytest.mark.parametrize("backend", ["pyav", "ffmpeg"])
def test_a_region_is_coded_at_its_offset_and_the_rest_as_before(backend):
    size, (left, right) = _coded(backend, ())
    finer, (left_f, right_f) = _coded(backend, (Region(0, 0, 64, 64, -6),))
    coarser, (left_c, right_c) = _coded(backend, (Region(0, 0, 64, 64, 6),))
    # measured (x264 crf 16.5, noise of std 20): rms error left 3.27 -> 1.63 at -6, 6.65 at +6;
    # the right half stays at 3.26 +- 0.03
    assert left_f < 0.6 * left and left_c > 1.7 * left
    assert abs(right_f - right) < 0.1 and abs(right_c - right) < 0.1
    assert finer > size > coarser


def test_both_back_ends_code_the_regions_alike():
    """The in-process graph and the CLI's -vf give the encoder the same side data: the same frames."""
    regions = (Region(0, 0, 64, 64, -4), Region(64, 0, 64, 64, 2))
    assert _coded("pyav", regions)[1] == pytest.approx(_coded("ffmpeg", regions)[1], abs=1e-9)


@pytest.fixture(scope="module")
def baked(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pqp")
    return bake_run(make_run(root / "run", frames=2, gop=2, shape=(24, 24, 24), channels=4), root / "baked")


def _code_error(stream: Path, baked: Path) -> np.ndarray:
    """Mean |decoded code - encoded code| per plane over the mapped pixels of GOP 0, [P]."""
    b, s = Baked(baked), open_stream(stream, hwaccel="none")
    mapping = b.mapping(0)
    codes, _ = gop_codes(b.atlas(0), mapping, b.render_settings.step_ratio, resolve_preset("h264-crf16.5"),
                         s.feature_basis())
    used = (mapping.vertex_index() >= 0).numpy()
    got = s.decode_codes(0).reshape(*codes.shape[:2], -1)[:, :, used].astype(float)
    return np.abs(got - codes.reshape(*codes.shape[:2], -1)[:, :, used]).mean(axis=(0, 2))


def test_encode_codes_the_density_plane_finer_and_says_so(baked, tmp_path):
    plain = encode_baked(baked, tmp_path / "plain.fvv", crf=30)
    finer = encode_baked(baked, tmp_path / "finer.fvv", crf=30, plane_qp=(-12,))
    e_plain, e_finer = _code_error(plain, baked), _code_error(finer, baked)
    assert e_finer[0] < 0.5 * e_plain[0]  # measured: 5.47 -> 1.45 codes at crf 30 on this bake
    assert np.allclose(e_finer[1:], e_plain[1:], atol=0.35 * e_plain[1:].max())
    m = json.loads((finer / "manifest.json").read_text())
    assert m["codec"]["plane_qp"] == [-12]
    assert "plane_qp" not in json.loads((plain / "manifest.json").read_text())["codec"]  # as before offsets existed
    assert open_stream(finer).manifest.renditions[0].codec.plane_qp == (-12.0,)


def test_a_manifest_with_a_bad_plane_qp_is_refused(baked, tmp_path):
    s = encode_baked(baked, tmp_path / "s.fvv", plane_qp=(-2, 1))
    m = json.loads((s / "manifest.json").read_text())
    assert Manifest.from_dict(m, "m").renditions[0].codec.plane_qp == (-2.0, 1.0)
    for bad in ("x", [True], ["-2"], [float("nan")]):
        m["codec"]["plane_qp"] = bad
        with pytest.raises(StreamError, match="plane_qp"):
            Manifest.from_dict(json.loads(json.dumps(m)), "m")


def test_offsets_are_refused_where_the_encoder_takes_none():
    assert resolve_preset("h264-crf16.5").with_offsets((-2, 1)).plane_qp == (-2.0, 1.0)
    assert resolve_preset("h265-crf23").with_offsets((-2,), (-1, 2)).space_qp == (-1.0, 2.0)
    for planes, space in (((-2,), None), (None, (0, 2))):
        with pytest.raises(ConfigError, match="per plane"):
            resolve_preset("vp9-crf32").with_offsets(planes, space)
    assert resolve_preset("vp9-crf32").with_offsets((0, 0)).plane_qp == (0.0, 0.0)  # nothing asked of it
    with pytest.raises(ConfigError, match="-12..12"):
        resolve_preset("h264-crf16.5").with_offsets((-20,))
    with pytest.raises(ConfigError, match="two numbers"):
        resolve_preset("h264-crf16.5").with_offsets(None, (1,))


def test_cli_plane_qp(baked, tmp_path):
    r = CliRunner().invoke(main, ["encode", str(baked), "--out", str(tmp_path / "a.fvv"), "--plane-qp", "-3,0,1"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "a.fvv" / "manifest.json").read_text())["codec"]["plane_qp"] == [-3, 0, 1]
    for args, message in ((["--plane-qp", "a,b"], "Q0,Q1"), (["--plane-qp", "-2", "--ladder", "abr"], "--plane-qp"),
                          (["--plane-qp", "-2", "--preset", "vp9-crf32"], "per plane"),
                          (["--space-qp", "1,2,3"], "INNER,SHELL"), (["--space-qp", "2", "--ladder", "abr"], "--space-qp")):
        r = CliRunner().invoke(main, ["encode", str(baked), "--out", str(tmp_path / "b.fvv"), *args])
        assert r.exit_code != 0 and message in r.output, r.output
    assert not (tmp_path / "b.fvv" / "manifest.json").exists()


@pytest.fixture(scope="module")
def contracted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("contracted")
    return bake_run(make_run(root / "run", frames=2, gop=2, shape=(24, 24, 24), channels=4, space="contracted"),
                    root / "baked")


def test_inner_pixels_are_the_vertices_of_the_inner_box_and_one_past_it(contracted):
    mapping = Baked(contracted).mapping(0)
    pix, coords = mapping.vertex_layout()
    inner = inner_pixels(mapping).reshape(-1)[pix.numpy()]  # [N] per vertex
    u = coords.numpy() / 23 * 2 - 1
    assert (inner == (np.abs(u) <= 0.5 + 2 / 23).all(axis=1)).all()
    assert 0 < inner.sum() < len(inner)  # measured: 2,528 of 3,584 vertices


def test_space_offsets_code_the_inner_box_finer_in_a_contracted_grid_only(contracted, baked, tmp_path):
    plain = encode_baked(contracted, tmp_path / "plain.fvv", crf=30)
    spaced = encode_baked(contracted, tmp_path / "spaced.fvv", crf=30, space_qp=(-12, 12))
    b = Baked(contracted)
    used = (b.mapping(0).vertex_index() >= 0).numpy()

    def error(stream):  # mean |code error| over the used pixels (every macroblock here holds an inner vertex)
        s = open_stream(stream, hwaccel="none")
        codes, _ = gop_codes(b.atlas(0), b.mapping(0), b.render_settings.step_ratio,
                             resolve_preset("h264-crf16.5"), s.feature_basis())
        got = s.decode_codes(0).reshape(*codes.shape[:2], -1)[:, :, used].astype(float)
        return np.abs(got - codes.reshape(*codes.shape[:2], -1)[:, :, used]).mean()

    assert error(spaced) < 0.4 * error(plain)  # measured: 4.77 -> 1.41 codes
    assert json.loads((spaced / "manifest.json").read_text())["codec"]["space_qp"] == [-12, 12]
    # a box grid: the same offsets change nothing, and the manifest does not claim them
    a = encode_baked(baked, tmp_path / "a.fvv", crf=30)
    b_ = encode_baked(baked, tmp_path / "b.fvv", crf=30, space_qp=(-12, 12))
    assert (a / "gop_00000" / "atlas.mp4").read_bytes() == (b_ / "gop_00000" / "atlas.mp4").read_bytes()
    assert "space_qp" not in json.loads((b_ / "manifest.json").read_text())["codec"]


def test_space_offsets_split_macroblocks_by_the_part_of_space_they_hold():
    m = Mosaic.layout(2, (32, 32))  # two cells side by side, 2 x 2 macroblocks each
    inner = np.zeros((32, 32), dtype=bool)
    inner[20, 3] = True  # one inner pixel: the cell's lower left macroblock
    q = offset_map(m, "luma-mosaic", 2, (-1,), inner, (-3, 2))
    assert q.tolist() == [[1, 1, 2, 2], [-4, 1, -3, 2]]  # plane offset + space offset, in every cell


def test_the_regions_of_a_frame(contracted, baked):
    b = Baked(contracted)
    m = Mosaic.layout(5, b.gops[0].atlas)
    assert frame_regions(m, "luma-mosaic", 5) == ()
    assert frame_regions(m, "luma-mosaic", 5, (), (0, 4), b.mapping(0), "box") == ()  # a box grid: no space offsets
    regions = frame_regions(m, "luma-mosaic", 5, (-2,), (-1, 2), b.mapping(0), "contracted")
    assert {r.qp_offset for r in regions} <= {-3.0, 0.0 - 2 + 2, -1.0, 2.0} - {0.0}
    assert {r.qp_offset for r in regions} >= {-3.0, -1.0, 2.0}


def test_a_stream_made_with_other_offsets_is_stale(contracted, baked, tmp_path):
    """featvid.pipeline and the batch planner re-encode a stream whose offsets are not the preset's:
    in a contracted grid the H.264 presets' space offsets count, in a box grid they do not apply."""
    default = resolve_preset("h264-crf16.5")
    assert any(default.space_qp)
    made = encode_baked(contracted, tmp_path / "c.fvv")
    assert Manifest.read(made).differs([default.name]) is None
    without = encode_baked(contracted, tmp_path / "c0.fvv", space_qp=(0, 0))
    assert "QP offsets" in Manifest.read(without).differs([default.name])
    planes = encode_baked(baked, tmp_path / "p.fvv", plane_qp=(-1,))
    assert "QP offsets" in Manifest.read(planes).differs([default.name])
    box = encode_baked(baked, tmp_path / "b.fvv", space_qp=(0, 0))
    assert Manifest.read(box).differs([default.name]) is None


def test_thousands_of_regions_encode_alike_through_both_back_ends():
    """A real capture's frame gives ~2,200 regions (the fox: 2,168): more filters than one ffmpeg
    argument holds or ffmpeg-python's graph walk can recurse through."""
    q = np.zeros((48, 96), dtype=np.float32)
    q[::2, ::2], q[1::2, 1::2] = -3, 2  # a checkerboard: every other macroblock its own region
    regions = map_regions(q)
    assert len(regions) == 48 * 96 // 2
    rng = np.random.default_rng(1)
    frames = [[rng.integers(0, 256, (768, 1536), dtype=np.uint8)]]
    spec = VideoSpec(1536, 768, 30.0, "libx264", "gray", {**X264, "crf": "30", "preset": "ultrafast"}, gop=1,
                     regions=regions)
    decoded = []
    with tempfile.TemporaryDirectory() as d:
        for name in ("pyav", "ffmpeg"):
            be = get_backend(name)
            be.encode(Path(d) / f"{name}.mp4", iter(frames), spec)
            decoded.append(np.array(next(iter(be.decode(Path(d) / f"{name}.mp4")))[0]))
    assert (decoded[0] == decoded[1]).all()
    err = np.abs(decoded[0].astype(float) - frames[0][0]).reshape(48, 16, 96, 16).mean(axis=(1, 3))
    assert err[q == -3].mean() < err[q == 2].mean()  # the offsets took effect
