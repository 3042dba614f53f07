"""The job file: TOML and JSON read the same, paths resolve beside the file, and every mistake is
a ConfigError naming its place before anything runs."""
from __future__ import annotations

import json

import pytest

from featvid.batch import load_job
from featvid.batch.jobfile import toml_reader
from featvid.errors import ConfigError

TOML = """
out = "results"
retries = 3
encode = ["h264-crf16.5"]

[[sequence]]
run = "runs/dancer"
data = "data/dancer"

[[sequence]]
name = "hoop"
baked = "/shared/bakes/hoop"
encode = ["web", {preset = "h265-crf23", crf = [20, 26.5]}, {preset = "h264-lossless", name = "exact"}]
"""


def test_toml_and_json_are_the_same_job(tmp_path):
    a = load_job(_write(tmp_path / "job.toml", TOML))
    b = load_job(_write(tmp_path / "job.json", json.dumps(toml_reader().loads(TOML))))
    assert a.sequences == b.sequences and a.out == b.out == (tmp_path / "results").resolve()
    assert a.retries == 3 and a.backend == "pyav"
    dancer, hoop = a.sequences
    assert dancer.name == "dancer" and dancer.run == (tmp_path / "runs/dancer").resolve()
    assert dancer.baked == a.out / "dancer" / "baked" and dancer.data == (tmp_path / "data/dancer").resolve()
    assert [e.name for e in dancer.encodes] == ["h264-crf16.5"]  # the job's default encodes
    assert hoop.run is None and str(hoop.baked) == "/shared/bakes/hoop" and hoop.data is None
    assert [(e.name, e.preset, e.crf) for e in hoop.encodes] == [
        ("web", "web", None), ("h265-crf23-crf20", "h265-crf23", 20.0), ("h265-crf23-crf26.5", "h265-crf23", 26.5),
        ("exact", "h264-lossless", None)]
    assert hoop.stream_dir(hoop.encodes[1]) == a.out / "hoop" / "h265-crf23-crf20.fvv"
    assert hoop.encodes[1].presets == ("h265-crf23",)


def test_ladders(tmp_path):
    """A ladder is one stream: a named ladder (named after it), a comma list or a list (named "ladder")."""
    job = load_job(_write(tmp_path / "job.toml", '[[sequence]]\nrun = "r"\nencode = [{ladder = "abr"}, '
                                                 '{ladder = ["web", "h264-crf20"], basis = false}, '
                                                 '{ladder = "web, web-crf29", name = "two"}]\n'))
    abr, listed, two = job.sequences[0].encodes
    assert (abr.name, abr.preset, abr.ladder) == ("abr", None, ("web", "web-crf20", "web-crf24", "web-crf29"))
    assert (listed.name, listed.ladder, listed.basis) == ("ladder-no-basis", ("web", "h264-crf20"), False)
    assert (two.name, two.presets) == ("two", ("web", "web-crf29"))


def test_qp_offsets(tmp_path):
    """`plane_qp` / `space_qp` as `featvid encode --plane-qp / --space-qp` take them: a list, or
    "none"; what the planner compares a finished stream with is the preset with those offsets."""
    job = load_job(_write(tmp_path / "job.toml", '[[sequence]]\nrun = "r"\nencode = ['
                          '{preset = "h264-crf16.5", plane_qp = [-2, 0, 1], crf = [18, 20]}, '
                          '{preset = "h264-crf16.5", plane_qp = "none", space_qp = [-1, 2.5], name = "own"}, '
                          '"h264-crf18"]\n'))
    a18, a20, own, plain = job.sequences[0].encodes
    assert (a18.name, a18.crf, a18.plane_qp, a18.space_qp) == ("h264-crf16.5-crf18", 18.0, (-2.0, 0.0, 1.0), None)
    assert a20.plane_qp == (-2.0, 0.0, 1.0) and (own.plane_qp, own.space_qp) == ((), (-1.0, 2.5))
    p = own.wanted()[0]
    assert (p.name, p.plane_qp, p.space_qp) == ("h264-crf16.5", (), (-1.0, 2.5))
    assert a18.wanted()[0].space_qp == (-2.0, 3.0)  # not given: the preset's own
    assert plain.wanted() == ["h264-crf18"] and plain.plane_qp is None


@pytest.mark.parametrize("text, message", [
    ('[[sequence]]\nrun = "r"\nbakd = "x"\n', "unknown key 'bakd'"),
    ('[[sequence]]\nrun = "r"\nbaked = "b"\n', "either run"),
    ('[[sequence]]\nname = "x"\n', "either run"),
    ('out = "o"\n', "no sequences"),
    ('[[sequence]]\nrun = "r"\nencode = ["h264-crf99"]\n', "unknown preset 'h264-crf99'"),
    ('[[sequence]]\nrun = "r"\nencode = [{preset = "h264-lossless", crf = 20}]\n', "lossless"),
    ('[[sequence]]\nrun = "r"\nencode = [{preset = "av1-crf35", crf = 30.5}]\n', "whole-number"),
    ('[[sequence]]\nrun = "r"\nencode = [{preset = "h264-crf18", crf = 99}]\n', "out of range"),
    ('[[sequence]]\nrun = "r"\nencode = ["web", "web"]\n', "two encodes write web.fvv"),
    ('[[sequence]]\nrun = "a/r"\n[[sequence]]\nrun = "b/r"\n', "two sequences are named 'r'"),
    ('[[sequence]]\nbaked = "b"\n', "needs at least one encode"),
    ('[[sequence]]\nrun = "r"\nname = "../up"\n', "plain"),
    ('retries = 100\n[[sequence]]\nrun = "r"\n', "retries"),
    ('backend = "gstreamer"\n[[sequence]]\nrun = "r"\n', "unknown backend"),
    ('[[sequence]\nrun = "r"\n', "not a readable job file"),
    ('[[sequence]]\nrun = "r"\nencode = [{ladder = "abr", preset = "web"}]\n', "takes no preset or crf"),
    ('[[sequence]]\nrun = "r"\nencode = [{ladder = "nope"}]\n', "unknown preset 'nope'"),
    ('[[sequence]]\nrun = "r"\nencode = [{ladder = ["web", "web"]}]\n', "names web twice"),
    ('[[sequence]]\nrun = "r"\nencode = [{ladder = []}]\n', "a ladder is a name"),
    ('[[sequence]]\nrun = "r"\nencode = [{ladder = "abr"}, {ladder = "web,web-crf20", name = "abr"}]\n',
     "two encodes write abr.fvv"),
    ('[[sequence]]\nrun = "r"\nencode = [{ladder = "abr", space_qp = "none"}]\n', "a ladder takes its presets"),
    ('[[sequence]]\nrun = "r"\nencode = [{preset = "h264-crf16.5", space_qp = [-2]}]\n', "two numbers"),
    ('[[sequence]]\nrun = "r"\nencode = [{preset = "h264-crf16.5", plane_qp = "-2,0"}]\n', "list of numbers"),
    ('[[sequence]]\nrun = "r"\nencode = [{preset = "h264-crf16.5", plane_qp = [true]}]\n', "list of numbers"),
    ('[[sequence]]\nrun = "r"\nencode = [{preset = "h264-crf16.5", plane_qp = [-13]}]\n', "-12..12"),
    ('[[sequence]]\nrun = "r"\nencode = [{preset = "av1-crf35", plane_qp = [-2]}]\n', "takes no QP offsets"),
])
def test_mistakes_are_config_errors_naming_the_place(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_job(_write(tmp_path / "job.toml", text))


def test_other_suffixes_and_missing_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=".toml or .json"):
        load_job(_write(tmp_path / "job.yaml", "out: x\n"))
    with pytest.raises(ConfigError, match="no such job file"):
        load_job(tmp_path / "missing.toml")


def _write(path, text):
    path.write_text(text)
    return path


def test_the_documented_example_is_a_valid_job(tmp_path):
    """docs/batch.md's TOML example reads as the job it describes."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "batch.md").read_text()
    start = doc.index("```toml\n") + len("```toml\n")
    job = load_job(_write(tmp_path / "job.toml", doc[start:doc.index("```", start)]))
    dancer, hoop = job.sequences
    assert [e.name for e in dancer.encodes] == ["h264-crf16.5"] and dancer.data is not None
    assert [e.name for e in hoop.encodes] == ["web", "h265-crf23-crf20", "h265-crf23-crf23", "h265-crf23-crf26",
                                             "exact", "h264-crf18-no-basis", "flat", "abr", "two"]
    flat = hoop.encodes[6]
    assert (flat.preset, flat.plane_qp, flat.space_qp) == ("h264-crf16.5", None, (0.0, 0.0))
    assert hoop.encodes[-1].ladder == ("web", "web-crf24")
