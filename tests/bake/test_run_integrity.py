"""Runs and bakes record every file's size and SHA-256 and are checked on read (issue 15 items 1, 3,
4, 5): a flipped byte in a frame, mapping, MLP, plane or samples file is refused with one line
naming the file; a frame that does not match run.json, duplicate coordinates, NaN MLP weights, a
mapping name outside the run folder and a junk line in log.jsonl are refused the same way; runs and
bakes from before the records still read, with a warning."""
from __future__ import annotations

import gzip
import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from featvid.formats.baked import Baked
from featvid.formats.run import FILES, Run, frame_name, write_run_file
from featvid.cli import main
from featvid.errors import FormatError
from featvid.field.grid import SparseGrid
from featvid.field.mapping import Mapping
from featvid.field.mlp import TinyMLP
from tests.codecs.test_integrity import flip, one_line_error
from tests.field.test_untrusted import edit_json


@pytest.fixture()
def run(tiny_run, tmp_path) -> Path:
    """A private copy of the session's run to break."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


@pytest.fixture()
def baked(tiny_baked, tmp_path) -> Path:
    """A private copy of the session's baked folder to break."""
    return Path(shutil.copytree(tiny_baked, tmp_path / "baked"))


# -- records -------------------------------------------------------------------------------------
def test_a_run_records_every_file_it_consists_of(tiny_run):
    records = json.loads((tiny_run / FILES).read_text())["files"]
    r = Run(tiny_run)
    want = {"mlp.safetensors", *(g.mapping for g in r.gops), *(frame_name(t) for t in range(r.num_frames)),
            *(f"coarse/{t:05d}.safetensors" for t in range(r.num_frames))}
    assert set(records) == want
    for name, rec in records.items():
        data = (tiny_run / name).read_bytes()
        assert rec["bytes"] == len(data)
    out = CliRunner().invoke(main, ["verify", str(tiny_run)])
    assert out.exit_code == 0, out.output
    assert f"{len(want)} files" in out.output and "files.json" in out.output


def test_a_bake_records_every_file_it_consists_of(tiny_baked):
    b = Baked(tiny_baked)
    assert set(b.files) == set(b.named_files()) and len(b.named_files()) == 1 + 3 * len(b.gops)
    out = CliRunner().invoke(main, ["verify", str(tiny_baked), "-q"])
    assert out.exit_code == 0 and "baked.json" in out.output, out.output


@pytest.mark.parametrize("folder, name, read", [
    ("run", "frames/00001.safetensors", lambda p: Run(p).frame(1)),
    ("run", "gop_00000.fvmap", lambda p: Run(p).mapping(0)),
    ("run", "mlp.safetensors", lambda p: Run(p).mlp()),
    ("baked", "gop_00001.planes.zst", lambda p: Baked(p).atlas(1)),
    ("baked", "gop_00000.samples", lambda p: Baked(p).samples()),
    ("baked", "gop_00001.fvmap", lambda p: Baked(p).mapping(1)),
    ("baked", "mlp.safetensors", lambda p: Baked(p).mlp()),
])
def test_a_flipped_run_or_baked_file_is_refused_naming_it(request, folder, name, read):
    path = request.getfixturevalue(folder)
    flip(path / name, (path / name).stat().st_size // 2, 4)
    with pytest.raises(FormatError, match=f"{name}: SHA-256 differs"):
        read(path)
    one_line_error(CliRunner().invoke(main, ["verify", str(path)]), name, "SHA-256")


def _after_the_bar(r):
    """`r` with its error line on a line of its own (the bake's progress bar ends without a newline
    under CliRunner, which is not a terminal)."""
    return SimpleNamespace(exit_code=r.exit_code, output=r.output.replace("featvid: error:", "\nfeatvid: error:"))


def test_a_flipped_frame_stops_the_bake(run, tmp_path):
    flip(run / "frames/00002.safetensors", 200, 8)
    one_line_error(_after_the_bar(CliRunner().invoke(main, ["bake", str(run), "--out", str(tmp_path / "b")])),
                   "frames/00002.safetensors", "SHA-256")


def test_a_truncated_coarse_grid_is_refused_on_resume(run):
    path = run / "coarse/00003.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    (run / frame_name(3)).unlink()
    from featvid.train.train import _load_coarse

    with pytest.raises(FormatError, match="coarse/00003.safetensors: .* bytes, files.json records"):
        _load_coarse(run, 3, Run(run).aabb, torch.device("cpu"))


def test_an_unlisted_file_in_a_recorded_bake_is_refused(baked):
    edit_json(baked / "baked.json", lambda d: d["files"].pop("gop_00000.samples"))
    with pytest.raises(FormatError, match="files lists no size and SHA-256 for gop_00000.samples"):
        Baked(baked)


def test_runs_and_bakes_without_records_are_refused_unless_read_as_legacy(run, baked, caplog, monkeypatch):
    (run / FILES).unlink()
    edit_json(baked / "baked.json", lambda d: d.pop("files"))
    for read in (Run, Baked):
        with pytest.raises(FormatError, match="records no file hashes.*--legacy-read"):
            read(run if read is Run else baked)
    one_line_error(CliRunner().invoke(main, ["info", str(run)]), "no file hashes", "--legacy-read")
    with caplog.at_level(logging.WARNING):
        r, b = Run(run, legacy=True), Baked(baked, legacy=True)
        r.frame(0), r.mapping(1), r.mlp(), b.atlas(0), b.mlp()
    assert "records no file hashes" in caplog.text
    monkeypatch.setenv("FEATVID_LEGACY_READ", "0")  # restored after the test: --legacy-read sets it to 1
    out = CliRunner().invoke(main, ["--legacy-read", "info", str(baked)])
    assert out.exit_code == 0, out.output
    one_line_error(CliRunner().invoke(main, ["--legacy-read", "verify", str(run)]), "no file hashes")


def test_resuming_an_old_run_records_the_files_already_there(run):
    (run / FILES).unlink()
    grid = Run(run, legacy=True).frame(3)
    write_run_file(run, frame_name(3), grid.to_bytes())
    r = Run(run)
    assert len(r.files) == 1 + len(r.gops) + 2 * r.num_frames  # the old files adopted, the new one recorded
    assert list(r.verify())


# -- run files against run.json ------------------------------------------------------------------
def _rewrite_frame(run: Path, t: int, change) -> None:
    """Frame t of `run` changed by `change(grid) -> grid`, recorded in files.json (consistent
    bytes: only the run.json cross-checks can tell)."""
    grid = SparseGrid.from_bytes((run / frame_name(t)).read_bytes())
    write_run_file(run, frame_name(t), change(grid).to_bytes())


@pytest.mark.parametrize("change, needle", [
    (lambda g: SparseGrid(g.aabb, (g.shape[0] + 1, *g.shape[1:]), g.coords, g.density, g.features), "does not match run.json"),
    (lambda g: SparseGrid(g.aabb * 2, g.shape, g.coords, g.density, g.features), "does not match run.json"),
    (lambda g: SparseGrid(g.aabb, g.shape, g.coords, g.density, g.features[:, :2].contiguous()), "2 features"),
    (lambda g: SparseGrid(torch.zeros(3, 3), g.shape, g.coords, g.density, g.features), "aabb"),
])
def test_a_frame_that_differs_from_run_json_is_one_line_and_exit_2(run, tiny_dataset, change, needle):
    _rewrite_frame(run, 1, change)
    with pytest.raises(FormatError, match=needle):
        Run(run).frame(1)
    one_line_error(CliRunner().invoke(main, ["eval", str(run), "--data", str(tiny_dataset), "--device", "cpu"]),
                   "frames/00001.safetensors")


def test_duplicate_coordinates_in_a_frame_are_refused(run):
    def doubled(g: SparseGrid) -> SparseGrid:
        return SparseGrid(g.aabb, g.shape, torch.cat([g.coords, g.coords[:3]]), torch.cat([g.density, g.density[:3] + 1]),
                          torch.cat([g.features, g.features[:3]]))

    with pytest.raises(FormatError, match="3 vertices twice"):
        _rewrite_frame(run, 1, lambda g: doubled(g).validate())
    data = doubled(Run(run).frame(1)).to_bytes()  # `to_bytes` writes what it is given
    write_run_file(run, frame_name(1), data)
    with pytest.raises(FormatError, match="frames/00001.safetensors: grid stores 3 vertices twice"):
        Run(run).frame(1)


def _mapping_with_deltas(m: Mapping, deltas: np.ndarray) -> bytes:
    raw = gzip.decompress(m.to_bytes())
    end = raw.index(b"\n", 7)
    header = json.loads(raw[7:end])
    header["num_blocks"] = len(deltas)
    return gzip.compress(raw[:7] + json.dumps(header).encode() + b"\n" + deltas.astype("<u4").tobytes())


def test_duplicate_or_outside_blocks_in_a_mapping_are_refused(tiny_run):
    m = Run(tiny_run).mapping(0)
    deltas = np.frombuffer(gzip.decompress(m.to_bytes()).split(b"\n", 2)[2], dtype="<u4")
    assert Mapping.from_bytes(_mapping_with_deltas(m, deltas)).num_blocks == m.num_blocks
    twice = np.concatenate([deltas[:5], [0], deltas[5:]])
    with pytest.raises(FormatError, match="m.fvmap: the mapping lists a block twice"):
        Mapping.from_bytes(_mapping_with_deltas(m, twice), "m.fvmap")
    far = np.concatenate([deltas, [1 << 29]])
    with pytest.raises(FormatError, match="outside its grid"):
        Mapping.from_bytes(_mapping_with_deltas(m, far), "m.fvmap")


@pytest.mark.parametrize("name", ["ABSOLUTE", "../secret.txt", "frames/../../secret.txt"])
def test_a_mapping_name_outside_the_run_is_refused_without_opening_it(run, tmp_path, name):
    secret = tmp_path / "secret.txt"  # beside the run folder: what `..` reaches
    secret.write_bytes(b"SECRET-BYTES-0123456789")
    name = str(secret) if name == "ABSOLUTE" else name
    edit_json(run / "run.json", lambda d: d["gops"][0].update(mapping=name))
    r = CliRunner().invoke(main, ["info", str(run)])
    one_line_error(r, "run.json", "GOP 0 mapping")
    assert "SECRET" not in r.output


def test_nan_mlp_weights_are_refused_naming_the_file(run):
    mlp = Run(run).mlp()
    with torch.no_grad():
        mlp.out.weight[0, 0] = float("nan")
    with pytest.raises(FormatError, match="x.safetensors: the MLP holds NaN"):
        TinyMLP.from_bytes(mlp.to_bytes(), "x.safetensors")
    write_run_file(run, "mlp.safetensors", mlp.to_bytes())  # recorded: only the value check can tell
    one_line_error(_after_the_bar(CliRunner().invoke(main, ["bake", str(run), "--out", str(run.parent / "b")])),
                   "mlp.safetensors", "NaN")


def test_the_same_grid_and_mlp_give_the_same_bytes(tiny_run):
    """safetensors writes its metadata in hash order (issue #584): our writers sort the header."""
    r = Run(tiny_run)
    grid, mlp = r.frame(0), r.mlp()
    assert len({grid.to_bytes(meta={"frame": 0, "gop": 0, "a": 1, "b": 2}) for _ in range(12)}) == 1
    assert len({mlp.to_bytes() for _ in range(12)}) == 1
    assert grid.to_bytes(meta={"frame": 0, "gop": 0}) == (tiny_run / frame_name(0)).read_bytes()


# -- log.jsonl on resume -------------------------------------------------------------------------------
def _train_args(run: Path, dataset: Path) -> list[str]:
    from tests.fixtures.train import TINY_RUN_GOP, TINY_RUN_GRID, TINY_RUN_PRESET

    return ["train", str(dataset), "--out", str(run), "--preset", TINY_RUN_PRESET, "--grid", str(TINY_RUN_GRID),
            "--gop", str(TINY_RUN_GOP), "--device", "cpu"]


@pytest.mark.parametrize("junk", ['{"frame": "1", "keyframe": false}', '{"frame": 1, "psnr_val": "high"}', "not json"])
def test_a_junk_line_in_place_of_a_finished_frames_record_is_one_line(run, tiny_dataset, junk):
    lines = (run / "log.jsonl").read_text().splitlines()
    lines[1] = junk  # frame 1's record
    (run / "log.jsonl").write_text("\n".join(lines[:3]) + "\n")
    (run / frame_name(3)).unlink()  # killed in frame 3: resume at 3 reads frames 0..2's records
    one_line_error(CliRunner().invoke(main, _train_args(run, tiny_dataset)), "log.jsonl",
                   "no record of finished frame 1")


def test_a_junk_extra_line_is_skipped_with_a_warning(run, caplog):
    good = Run(run).log()
    with open(run / "log.jsonl", "a") as f:
        f.write('{"frame": [3], "psn\n')  # a torn write, or an edit
    with caplog.at_level(logging.WARNING):
        assert Run(run).log() == good
    assert "line 5" in caplog.text
