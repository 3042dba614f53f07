"""One edited number in a file must not make a command hang, allocate without bound or print NaN:
each is refused on read, with one line naming the file and the field, and exit status 2.

The numbers come from the outside probe of issue 15 (step_ratio 1e-9 ran render until killed,
num_frames 1e9 hung info, frames 1e12 tried to allocate 4 TB, step_ratio 0 / NaN, an inverted
aabb and ranges of +-1e300 or inf gave blank or NaN output with exit 0)."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from featvid.cli import main
from featvid.errors import FormatError, StreamError
from featvid.field.volume import STEP_RATIO_RANGE, RenderSettings


def one_line_error(r, *needles: str) -> None:
    """Exit 2 with one line on stderr (a progress bar may come first), no traceback."""
    lines = [line.strip() for line in r.output.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("featvid: error:")]
    assert r.exit_code == 2, r.output
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in r.output, r.output
    for n in needles:
        assert n in errors[0], (n, errors[0])


def edit_json(path: Path, change) -> None:
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))  # NaN and Infinity are written as JSON's extension literals


@pytest.mark.parametrize("step", [1e-9, 0, 0.0, -0.5, math.nan, math.inf, -math.inf, 1e9, "0.5", True, None])
def test_render_settings_refuse_a_step_ratio_out_of_range(step):
    with pytest.raises(FormatError, match="step_ratio"):
        RenderSettings.from_dict({"step_ratio": step}, "manifest.json")


def test_render_settings_take_the_range_ends():
    lo, hi = STEP_RATIO_RANGE
    assert RenderSettings.from_dict({"step_ratio": lo}).step_ratio == lo
    assert RenderSettings.from_dict({"step_ratio": hi}).step_ratio == hi
    with pytest.raises(FormatError, match="near"):
        RenderSettings.from_dict({"step_ratio": 0.5, "near": math.nan})
    with pytest.raises(FormatError, match="background"):
        RenderSettings.from_dict({"step_ratio": 0.5, "background": [1, 1]})


@pytest.fixture(scope="module")
def stream_copy(tiny_stream, tmp_path_factory) -> Path:
    """A pristine copy of the session's stream; each test edits its own copy of the manifest."""
    return Path(shutil.copytree(tiny_stream, tmp_path_factory.mktemp("untrusted") / "s.fvv"))


def _range0(d, value):
    d["gops"][0]["ranges"][0] = value


def _frames_plus_one(d):
    d["frames"] += 1


@pytest.mark.parametrize("change, field", [
    (lambda d: d["render"].update(step_ratio=1e-9), "step_ratio"),
    (lambda d: d["render"].update(step_ratio=0), "step_ratio"),
    (lambda d: d["render"].update(step_ratio=-1), "step_ratio"),
    (lambda d: d["render"].update(step_ratio=math.nan), "step_ratio"),
    (lambda d: d.update(frames=10**12), "frames"),
    (lambda d: d.update(frames=1e9), "frames"),
    (lambda d: d.update(frames=0, gops=[]), "frames"),
    (lambda d: d.update(frames=-4), "frames"),
    (_frames_plus_one, "GOP"),  # frames must equal the sum of the GOPs' frames
    (lambda d: d["gops"][0].update(frames=10**12), "GOP 0"),
    (lambda d: _range0(d, [-1e300, 1e300]), "ranges"),
    (lambda d: _range0(d, [-math.inf, math.inf]), "ranges"),
    (lambda d: _range0(d, [math.nan, 1.0]), "ranges"),
    (lambda d: _range0(d, [1.0, -1.0]), "ranges"),
    (lambda d: d.update(aabb=[[1, 1, 1], [-1, -1, -1]]), "aabb"),
    (lambda d: d.update(aabb=[[-1, -1], [1, 1]]), "aabb"),
    (lambda d: d.update(aabb=[[-1, -1, math.nan], [1, 1, 1]]), "aabb"),
    (lambda d: d["codec"].update(levels=[0, 65535]), "levels"),  # 8-bit codes
    (lambda d: d["gops"][0]["mosaic"].update(cols=0), "mosaic"),
    (lambda d: d.update(grid_shape=[10**6, 8, 8]), "grid_shape"),
    (lambda d: d.update(fps=math.nan), "fps"),
])
def test_an_edited_manifest_number_is_one_line_and_exit_2(stream_copy, tmp_path, change, field):
    s = Path(shutil.copytree(stream_copy, tmp_path / "s.fvv"))
    edit_json(s / "manifest.json", change)
    one_line_error(CliRunner().invoke(main, ["info", str(s)]), "manifest.json", field)
    one_line_error(CliRunner().invoke(main, ["render", str(s), "--out", str(tmp_path / "o.mp4"), "--size", "8x8",
                                             "--frames", "1", "--device", "cpu"]), field)


def test_levels_that_need_more_bits_than_the_video_holds_are_refused(stream_copy, tmp_path):
    """bit_depth 16 and levels [0, 65535] fit each other, but the video decodes to 8-bit samples."""
    s = Path(shutil.copytree(stream_copy, tmp_path / "s.fvv"))
    edit_json(s / "manifest.json", lambda d: d["codec"].update(bit_depth=16, levels=[0, 65535]))
    assert CliRunner().invoke(main, ["info", str(s)]).exit_code == 0  # the manifest alone is consistent
    one_line_error(CliRunner().invoke(main, ["render", str(s), "--out", str(tmp_path / "o.mp4"), "--size", "8x8",
                                             "--frames", "1", "--device", "cpu"]), "8-bit samples", "16-bit codes")


def test_a_gop_claiming_a_million_frames_allocates_only_what_its_video_holds(stream_copy, tiny_dataset, tmp_path):
    """Within the ceiling and tiling the frames, so the manifest reads; the decoder must not size
    its buffer by the claim (it tried 100 GiB: shape (7, 999998, 15360)) but stop at the video's end."""
    s = Path(shutil.copytree(stream_copy, tmp_path / "s.fvv"))

    def claim(d):
        d["gops"][-1]["frames"] += 1_000_000 - d["frames"]
        d["frames"] = 1_000_000

    edit_json(s / "manifest.json", claim)
    from featvid.codecs import open_stream

    stream = open_stream(s, hwaccel="none")
    with pytest.raises(StreamError, match="frames decoded, the GOP has 99999"):
        stream.decode_gop(stream.num_gops - 1)
    one_line_error(CliRunner().invoke(main, ["eval", str(s), "--data", str(tiny_dataset), "--device", "cpu"]),
                   "frames decoded")


@pytest.fixture(scope="module")
def run_copy(tiny_run, tmp_path_factory) -> Path:
    return Path(shutil.copytree(tiny_run, tmp_path_factory.mktemp("untrusted_run") / "run"))


def _run_frames_plus_one(d):
    d["num_frames"] += 1


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(num_frames=10**9), "num_frames"),
    (lambda d: d.update(num_frames=1e9), "num_frames"),
    (lambda d: d.update(num_frames=-3), "num_frames"),
    (lambda d: d.update(num_frames=0), "num_frames"),
    (_run_frames_plus_one, "GOP"),  # num_frames must equal the sum of the GOPs' frames
    (lambda d: d["render"].update(step_ratio=1e-9), "step_ratio"),
    (lambda d: d["render"].update(step_ratio=math.nan), "step_ratio"),
    (lambda d: d.update(aabb=[[1, 1, 1], [-1, -1, -1]]), "aabb"),
    (lambda d: d.update(grid_shape=[0, 8, 8]), "grid_shape"),
])
def test_an_edited_run_number_is_one_line_and_exit_2(run_copy, tmp_path, change, field):
    run = tmp_path / "run"
    shutil.copytree(run_copy, run)
    edit_json(run / "run.json", change)
    one_line_error(CliRunner().invoke(main, ["info", str(run)]), "run.json", field)
    one_line_error(CliRunner().invoke(main, ["bake", str(run), "--out", str(tmp_path / "baked")]), "run.json", field)
