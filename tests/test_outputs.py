"""No write destroys what the command did not write (issue #26): featvid.outputs' one rule, the
atomic writes' refusals, and every data-loss case of the issue through the CLI: exit 2, one line
on stderr, the input folders byte-identical afterwards.

We run as root, where a chmod'ed folder does not stop a write: a read-only or full file system is
simulated by making the write's system call fail with EROFS / ENOSPC.
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from featvid.atomic import atomic_path, write_bytes, write_json
from featvid.batch import load_job, run_job
from featvid.cli import main
from featvid.errors import FeatvidError, OutputError
from featvid.outputs import BAKED, DEMO, RUN, STREAM, SYNTH, check_not_input, check_output_dir, check_output_file
from tests.batch.helpers import InlineExecutor, write_job
from tests.codecs.synthetic import make_run


# ---- helpers -----------------------------------------------------------------------------------------

def snapshot(*folders: Path) -> dict[str, str]:
    """{path: what it is} of every entry below `folders`: a file's SHA-256, a folder, a FIFO, a link."""
    out = {}
    for folder in folders:
        for p in sorted([folder, *folder.rglob("*")]):
            st = p.lstat()
            if stat.S_ISREG(st.st_mode):
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[str(p)] = {stat.S_IFDIR: "folder", stat.S_IFIFO: "fifo", stat.S_IFLNK: "link"}.get(
                    stat.S_IFMT(st.st_mode), oct(st.st_mode))
    return out


def one_line_error(r, *needles: str) -> str:
    """Exit 2 and one error line on stderr, last (a progress bar may come before it), no traceback."""
    lines = [ln.strip() for ln in r.stderr.replace("\r", "\n").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("featvid: error:")]
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in r.output, r.output
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def invoke(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A finished run, its bake and a stream of it (2 frames, 2 GOPs of 16^3, 3 channels): the three kinds."""
    from featvid.bake import bake_run
    from featvid.codecs import encode_baked

    root = tmp_path_factory.mktemp("outputs")
    run = make_run(root / "run", frames=2, gop=1, shape=(16, 16, 16), channels=3)
    baked = bake_run(run, root / "baked")
    stream = encode_baked(baked, root / "s.fvv", preset="h264-crf23")
    return {"run": run, "baked": baked, "stream": stream}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A 2-frame (as many as the run), 4-view, 8 px synthetic scene (train and eval read it)."""
    from featvid.data.synth import write_synth

    return write_synth(tmp_path_factory.mktemp("data") / "scene", frames=2, views=4, size=8, test_views=1)


# ---- the rule ------------------------------------------------------------------------------------------

def test_each_kind_is_itself_and_no_other(folders):
    """A run, a bake and a stream are each their own kind only: encode never takes a bake or a run
    for a stream (the data loss of issue #26), bake never takes a run or a stream."""
    kinds = {"run": RUN, "baked": BAKED, "stream": STREAM}
    for name, folder in folders.items():
        for kname, kind in kinds.items():
            foreign = kind.foreign(folder)
            assert (foreign is None) == (name == kname), (name, kname, foreign)
    assert "run.json" in STREAM.foreign(folders["run"]) and "baked.json" in STREAM.foreign(folders["baked"])


def test_new_empty_and_same_kind_folders_pass(folders, tmp_path):
    assert check_output_dir(tmp_path / "new" / "deeper", STREAM) == (tmp_path / "new" / "deeper").resolve()
    (tmp_path / "empty").mkdir()
    assert check_output_dir(tmp_path / "empty", BAKED) == (tmp_path / "empty").resolve()
    assert check_output_dir(folders["stream"], STREAM) == folders["stream"].resolve()
    # what a killed write leaves (featvid.atomic's temporaries) does not make a folder foreign
    (tmp_path / "empty" / ".gop_00000.planes.zst.abc123.tmp").write_bytes(b"half")
    check_output_dir(tmp_path / "empty", BAKED)


def test_foreign_folders_are_refused_before_anything_is_touched(tmp_path):
    out = tmp_path / "x"
    (out / "gop_00000").mkdir(parents=True)
    (out / "gop_00000" / "notes.txt").write_text("keep me")
    before = snapshot(out)
    with pytest.raises(OutputError, match=r"holds 'gop_00000/notes.txt', so it is not a featvid stream folder"):
        check_output_dir(out, STREAM)
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "frames").symlink_to(out)  # a link is never followed by a clean-up
    with pytest.raises(OutputError, match=r"'frames' \(a link\)"):
        check_output_dir(tmp_path / "y", RUN)
    (tmp_path / "z").mkdir()
    os.mkfifo(tmp_path / "z" / "manifest.json")
    with pytest.raises(OutputError, match=r"'manifest.json' \(a FIFO\)"):
        check_output_dir(tmp_path / "z", STREAM)
    assert snapshot(out) == before


def test_files_fifos_and_devices_are_no_folders(tmp_path):
    (tmp_path / "f").write_text("a file")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "f", BAKED)
    with pytest.raises(OutputError, match="a parent of it is a file"):
        check_output_dir(tmp_path / "f" / "sub", BAKED)
    os.mkfifo(tmp_path / "p")
    with pytest.raises(OutputError, match="is a FIFO, not a folder"):
        check_output_dir(tmp_path / "p", STREAM)
    with pytest.raises(OutputError, match="is a FIFO, not a regular file"):
        check_output_file(tmp_path / "p")
    with pytest.raises(OutputError, match="is a character device"):
        check_output_file("/dev/null")  # only checked: nothing is written
    with pytest.raises(OutputError, match="is a folder, not a file"):
        check_output_file(tmp_path)
    assert stat.S_ISFIFO(os.stat(tmp_path / "p").st_mode)


def test_a_symlink_is_judged_by_its_target(tmp_path):
    (tmp_path / "real.mp4").write_bytes(b"old")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "real.mp4")
    assert check_output_file(tmp_path / "link.mp4") == (tmp_path / "real.mp4").resolve()
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "to-pipe").symlink_to(tmp_path / "pipe")
    with pytest.raises(OutputError, match="FIFO"):
        check_output_file(tmp_path / "to-pipe")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "run.json").write_text("{}")
    (tmp_path / "to-run").symlink_to(tmp_path / "runs")
    with pytest.raises(OutputError, match="run.json"):
        check_output_dir(tmp_path / "to-run", STREAM)


def test_an_output_is_no_input_nor_inside_one_nor_holds_one(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for out, how in ((inp, "is the input"), (inp / "sub", "is inside the input"), (tmp_path, "holds the input")):
        with pytest.raises(OutputError, match=how):
            check_not_input(out, [inp])
    (tmp_path / "alias").symlink_to(inp)
    with pytest.raises(OutputError, match="is the input"):
        check_output_dir(tmp_path / "alias", BAKED, [inp])
    check_not_input(tmp_path / "beside", [inp])


def test_demo_and_synth_kinds(tmp_path):
    demo = tmp_path / "demo"
    for sub in ("scene", "run", "scene.fvv"):
        (demo / sub).mkdir(parents=True)
    (demo / "demo.json").write_text("{}")
    check_output_dir(demo, DEMO)
    (demo / "thesis.tex").write_text("keep me")
    with pytest.raises(OutputError, match="thesis.tex"):
        check_output_dir(demo, DEMO)
    (tmp_path / "s" / "train").mkdir(parents=True)
    (tmp_path / "s" / "train" / "f0000_v00.png").write_bytes(b"png")
    check_output_dir(tmp_path / "s", SYNTH)
    (tmp_path / "s" / "train" / "raw.exr").write_bytes(b"exr")
    with pytest.raises(OutputError, match="train/raw.exr"):
        check_output_dir(tmp_path / "s", SYNTH)


# ---- atomic writes ---------------------------------------------------------------------------------------

def test_atomic_writes_never_replace_a_fifo_or_a_folder(tmp_path):
    os.mkfifo(tmp_path / "p")
    with pytest.raises(OutputError, match="is a FIFO, not a regular file; refusing to replace it"):
        write_json(tmp_path / "p", {"a": 1})
    assert stat.S_ISFIFO(os.stat(tmp_path / "p").st_mode)
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        write_bytes(tmp_path / "d", b"x")
    assert (tmp_path / "d").is_dir() and not list(tmp_path.glob(".*.tmp"))


def _fail(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


@pytest.mark.parametrize("where, code", [("mkstemp", errno.EROFS), ("replace", errno.ENOSPC),
                                         ("mkdir", errno.EROFS), ("write", errno.ENOSPC)])
def test_a_refused_write_is_one_line_and_leaves_the_old_file(tmp_path, monkeypatch, where, code):
    target = tmp_path / "sub" / "f.json" if where == "mkdir" else tmp_path / "f.json"
    if where != "mkdir":
        target.write_text("old")
    patch = {"mkstemp": (tempfile, "mkstemp"), "replace": (os, "replace"), "mkdir": (Path, "mkdir"),
             "write": (Path, "write_bytes")}[where]
    monkeypatch.setattr(*patch, _fail(code))
    with pytest.raises(OutputError) as e:
        write_json(target, {"new": True})
    monkeypatch.undo()
    msg = str(e.value)
    named = target.parent if where == "mkdir" else target  # the folder that cannot be made
    assert msg == f"{named}: cannot write ({os.strerror(code)})" and "\n" not in msg
    assert isinstance(e.value, FeatvidError) and isinstance(e.value.__cause__, OSError)
    assert not list(tmp_path.rglob(".*.tmp"))  # the temporary went
    if where != "mkdir":
        assert target.read_text() == "old"


def test_other_errors_pass_through_atomic_path(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "f") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert not list(tmp_path.iterdir())


# ---- the data-loss cases of issue #26, through the CLI ----------------------------------------------------

def test_encode_into_its_own_bake_is_refused(folders):
    before = snapshot(*folders.values())
    one_line_error(invoke("encode", folders["baked"], "--out", folders["baked"]), "is the input")
    assert snapshot(*folders.values()) == before


def test_encode_into_a_run_is_refused(folders):
    before = snapshot(*folders.values())
    one_line_error(invoke("encode", folders["baked"], "--out", folders["run"]), "run.json", "not a featvid stream folder")
    assert snapshot(*folders.values()) == before


def test_bake_into_its_run_a_stream_or_inside_the_run_is_refused(folders):
    before = snapshot(*folders.values())
    one_line_error(invoke("bake", folders["run"], "--out", folders["run"]), "is the input")
    one_line_error(invoke("bake", folders["run"], "--out", folders["stream"]), "not a featvid baked folder")
    one_line_error(invoke("bake", folders["run"], "--out", folders["run"] / "baked"), "inside the input")
    assert snapshot(*folders.values()) == before


def test_train_into_a_bake_is_refused_even_with_force(folders, dataset):
    before = snapshot(*folders.values(), dataset)
    for extra in ([], ["--force"]):
        one_line_error(invoke("train", dataset, "--out", folders["baked"], "--preset", "test", "--device", "cpu",
                              *extra), "baked.json", "not a featvid run folder")
    one_line_error(invoke("train", dataset, "--out", dataset / "run", "--preset", "test", "--device", "cpu"),
                   "inside the input")
    assert snapshot(*folders.values(), dataset) == before


def test_fifo_outputs_are_refused_and_stay_fifos(folders, dataset, tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    before = snapshot(*folders.values(), dataset)
    for args in (["encode", folders["baked"], "--out", pipe], ["bake", folders["run"], "--out", pipe],
                 ["synth", pipe, "--frames", "1", "--views", "2", "--test-views", "0", "--size", "8"],
                 ["demo", "--out", pipe, "--frames", "2", "--views", "4"],
                 ["render", folders["stream"], "--out", pipe, "--size", "8x8", "--frames", "1", "--device", "cpu"],
                 ["play", folders["stream"], "--out", pipe, "--size", "8x8", "--frames", "1", "--device", "cpu"],
                 ["eval", folders["stream"], "--data", dataset, "--out", pipe, "--device", "cpu"],
                 ["train", dataset, "--out", pipe, "--preset", "test", "--device", "cpu"]):
        one_line_error(invoke(*args), str(pipe), "FIFO")
        assert stat.S_ISFIFO(os.stat(pipe).st_mode), args
    assert snapshot(*folders.values(), dataset) == before


def test_a_device_output_is_refused(folders, tmp_path):
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's numbers, in tmp_path
    except (PermissionError, OSError):
        pytest.skip("cannot make a device node here")
    one_line_error(invoke("render", folders["stream"], "--out", node, "--size", "8x8", "--frames", "1",
                          "--device", "cpu"), "character device")
    assert stat.S_ISCHR(os.stat(node).st_mode)


def test_an_existing_file_where_a_folder_is_asked_for(folders, dataset, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    one_line_error(invoke("train", dataset, "--out", f, "--preset", "test", "--device", "cpu"), "is a file")
    for args in (["encode", folders["baked"], "--out", f], ["bake", folders["run"], "--out", f]):
        r = invoke(*args)  # click's own check of the option: exit 2, no traceback
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f.read_text() == "keep me"


def test_render_and_eval_files_inside_an_input_are_refused(folders, dataset):
    before = snapshot(*folders.values(), dataset)
    one_line_error(invoke("render", folders["stream"], "--out", folders["stream"] / "manifest.json", "--size", "8x8",
                          "--frames", "1", "--device", "cpu"), "inside the input")
    one_line_error(invoke("eval", folders["stream"], "--data", dataset, "--out", dataset / "transforms_train.json",
                          "--device", "cpu"), "inside the input")
    assert snapshot(*folders.values(), dataset) == before


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_read_only_or_full_file_system_is_one_line(folders, dataset, tmp_path, monkeypatch, fault):
    """bake, encode, render, train, eval and synth on a file system that refuses the write."""
    code = errno.EROFS if fault == "read-only" else errno.ENOSPC
    commands = [["bake", folders["run"], "--out", tmp_path / "b"],
                ["encode", folders["baked"], "--out", tmp_path / "s.fvv"],
                ["render", folders["stream"], "--out", tmp_path / "o.mp4", "--size", "8x8", "--frames", "1",
                 "--device", "cpu", "--hwaccel", "none"],
                ["train", dataset, "--out", tmp_path / "r", "--preset", "test", "--device", "cpu"],
                ["eval", folders["run"], "--data", dataset, "--out", tmp_path / "e.json", "--device", "cpu"],
                ["synth", tmp_path / "syn", "--frames", "1", "--views", "2", "--test-views", "0", "--size", "8"]]
    before = snapshot(*folders.values(), dataset)
    # read-only: no file can be made; full: a file's last step (the rename of the written temporary) fails
    if fault == "read-only":
        monkeypatch.setattr(tempfile, "mkstemp", _fail(code))
        monkeypatch.setattr(tempfile, "mkdtemp", _fail(code))
    else:
        monkeypatch.setattr(os, "replace", _fail(code))
        monkeypatch.setattr(Path, "rename", _fail(code))
    for args in commands:
        one_line_error(invoke(*args), "cannot write", os.strerror(code))
    monkeypatch.undo()
    assert snapshot(*folders.values(), dataset) == before
    assert not list(tmp_path.rglob(".*.tmp"))


def test_a_new_output_folder_on_a_read_only_file_system(folders, tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "mkdir", _fail(errno.EROFS))
    for args in (["bake", folders["run"], "--out", tmp_path / "b"],
                 ["encode", folders["baked"], "--out", tmp_path / "s.fvv"]):
        one_line_error(invoke(*args), "cannot write", "Read-only file system")


# ---- the batch runner ------------------------------------------------------------------------------------

def test_batch_refuses_a_foreign_output_folder_and_keeps_it(tmp_path):
    run = make_run(tmp_path / "runs" / "alpha", frames=2, gop=2, shape=(16, 16, 16), channels=3)
    job = load_job(write_job(tmp_path / "job.toml", {"alpha": run}, presets=("h264-crf23",)))
    seq = job.sequences[0]
    seq.baked.mkdir(parents=True)
    (seq.baked / "notes.txt").write_text("keep me")
    stream = seq.stream_dir(seq.encodes[0])
    stream.mkdir(parents=True)
    (stream / "run.json").write_text("{}")
    before = snapshot(job.out, run)
    report = run_job(job, InlineExecutor(), progress=False)
    assert not report.ok
    assert any("notes.txt" in f.reason and "not a featvid baked folder" in f.reason for f in report.failures), \
        report.table()
    assert snapshot(job.out, run) == before  # nothing written, nothing removed (the stream waited on its bake)
