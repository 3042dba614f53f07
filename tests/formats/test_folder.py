"""The one folder pattern (featvid.formats.folder): format and version refused the same way in a
run, a bake and a stream; file records required unless the read is a legacy one; one staleness rule
for single and ladder streams; planes and features named the same in every folder."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from featvid.bake import bake_run
from featvid.batch.jobfile import EncodeSpec
from featvid.cli import LEGACY_ENV as CLI_LEGACY_ENV
from featvid.cli import main
from featvid.codecs import encode_baked, open_stream
from featvid.codecs.manifest import Manifest, stream_is_current
from featvid.codecs.presets import ladder_names
from featvid.errors import FormatError, StreamError
from featvid.formats.baked import Baked
from featvid.formats.folder import LEGACY_ENV, FolderFormat, legacy_read
from featvid.formats.run import FILES, Run, read_run_file
from featvid.formats.synthetic import make_run
from featvid import pipeline

LADDER = ("web", "web-crf29")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A synthetic run (3 features), its bake, a one-preset stream and a two-rendition ladder."""
    root = tmp_path_factory.mktemp("folders")
    run = make_run(root / "run", frames=4, gop=2, shape=(16, 16, 16), channels=3)
    baked = bake_run(run, root / "baked")
    single = encode_baked(baked, root / "single.fvv", preset="web")
    ladder = encode_baked(baked, root / "ladder.fvv", ladder=",".join(LADDER))
    return {"run": run, "baked": baked, "single": single, "ladder": ladder}


@pytest.fixture()
def copies(made, tmp_path) -> dict[str, Path]:
    """Private copies to break."""
    return {k: Path(shutil.copytree(v, tmp_path / v.name)) for k, v in made.items()}


@pytest.fixture(autouse=True)
def no_legacy_env(monkeypatch):
    """Every test starts without FEATVID_LEGACY_READ (and --legacy-read's setting is undone after)."""
    monkeypatch.setenv(LEGACY_ENV, "0")


def _edit(path: Path, change) -> None:
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))


# -- format and version ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, meta, read, what", [
    ("run", "run.json", Run, "a featvid run folder"),
    ("baked", "baked.json", Baked, "a featvid baked folder"),
    ("single", "manifest.json", open_stream, "a featvid stream"),
])
def test_every_folder_refuses_another_format_or_version_the_same_way(copies, kind, meta, read, what):
    path = copies[kind]
    text = (path / meta).read_text()
    _edit(path / meta, lambda d: d.update(format="something-else"))
    with pytest.raises(FormatError, match=f"{meta}: not {what}.*'something-else'"):
        read(path)
    (path / meta).write_text(text)
    _edit(path / meta, lambda d: d.update(version=99))
    with pytest.raises(FormatError, match=f"{meta}: {what}.*version 99 is not supported.*upgrade featvid"):
        read(path)
    (path / meta).write_text("[" * 100_000)  # nested too deep: refused by featvid.limits.read_json
    with pytest.raises(FormatError, match="nested too deep"):
        read(path)
    (path / meta).unlink()
    with pytest.raises(FormatError, match=f"not {what}, or an unfinished one \\(no {meta}\\)"):
        read(path)


def test_a_stream_refuses_with_stream_error_and_a_run_or_bake_with_format_error(copies):
    """StreamError is for streams only: a broken run or bake is a FormatError that is not one."""
    _edit(copies["run"] / "run.json", lambda d: d.update(fps=-1))
    _edit(copies["baked"] / "baked.json", lambda d: d.update(grid_shape=[1, 1, 1]))
    _edit(copies["single"] / "manifest.json", lambda d: d.update(fps=-1))
    for path, read in ((copies["run"], Run), (copies["baked"], Baked)):
        with pytest.raises(FormatError) as e:
            read(path)
        assert not isinstance(e.value, StreamError), e.value
    with pytest.raises(StreamError, match="manifest.json: fps must be"):  # a schema field, named as the stream's
        open_stream(copies["single"])


# -- records -------------------------------------------------------------------------------------------
def test_folders_without_records_are_refused_unless_read_as_legacy(copies, caplog, monkeypatch):
    (copies["run"] / FILES).unlink()
    _edit(copies["baked"] / "baked.json", lambda d: d.update(files={}))  # empty counts as none
    _edit(copies["single"] / "manifest.json", lambda d: d.pop("files"))
    readers = ((copies["run"], Run), (copies["baked"], Baked), (copies["single"], open_stream))
    for path, read in readers:
        with pytest.raises(FormatError, match="records no file hashes.*--legacy-read"):
            read(path)
    with caplog.at_level(logging.WARNING, logger="featvid.formats.folder"):
        folders: list[FolderFormat] = [read(path, legacy=True) for path, read in readers]
    assert caplog.text.count("records no file hashes") == 3
    run, baked, stream = folders
    run.frame(1), baked.atlas(0), stream.decode_gop(0)  # read, unverified
    assert not any(f.summary()["verified"] for f in folders)
    monkeypatch.setenv(LEGACY_ENV, "1")  # the environment variable asks the same
    assert legacy_read() and Run(copies["run"]).files == {}
    for path, _ in readers:  # nothing to verify against, even as legacy
        r = CliRunner().invoke(main, ["--legacy-read", "verify", str(path)])
        assert r.exit_code == 2 and "no file hashes" in r.output, r.output


def test_the_cli_flag_is_the_environment_variable():
    assert CLI_LEGACY_ENV == LEGACY_ENV
    assert legacy_read(True) and not legacy_read(False) and not legacy_read()  # no_legacy_env: "0"


def test_an_empty_run_table_does_not_let_a_corrupted_frame_bake(copies, tmp_path):
    """Issue 26: an empty files.json let a flipped frame bake with exit 0. A run just begun has an
    empty table, so it opens; every file it does not record is refused on read."""
    run = copies["run"]
    _edit(run / FILES, lambda d: d.update(files={}))
    frame = run / "frames/00001.safetensors"
    data = bytearray(frame.read_bytes())
    data[-8:] = bytes(b ^ 0xFF for b in data[-8:])
    frame.write_bytes(bytes(data))
    assert Run(run).files == {}
    with pytest.raises(FormatError, match="frames/00001.safetensors: not listed in files.json"):
        Run(run).frame(1)
    with pytest.raises(FormatError, match="mlp.safetensors: not listed in files.json"):
        read_run_file(run, "mlp.safetensors", "MLP file")
    r = CliRunner().invoke(main, ["bake", str(run), "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "not listed in files.json" in r.output, r.output
    assert not (tmp_path / "b" / "baked.json").exists()
    Run(run, legacy=False)  # still opens: an empty table is a run just begun, not an old one


def test_a_file_the_records_do_not_list_is_refused(copies):
    _edit(copies["run"] / FILES, lambda d: d["files"].pop("gop_00000.fvmap"))
    with pytest.raises(FormatError, match="gop_00000.fvmap: not listed in files.json"):
        Run(copies["run"]).mapping(0)
    assert Run(copies["run"]).mapping(1) is not None


def test_verify_is_one_loop_over_the_records(made):
    for kind in ("run", "baked", "single", "ladder"):
        folder = {"run": Run, "baked": Baked}.get(kind, open_stream)(made[kind])
        checked = dict(folder.verify())
        assert checked and checked == {n: r.bytes for n, r in folder.files.items()}, kind


def test_verify_refuses_a_link_out_of_the_folder_even_to_the_right_bytes(copies, tmp_path):
    baked = copies["baked"]
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copyfile(baked / "mlp.safetensors", outside)  # the recorded bytes, but not the folder's file
    (baked / "mlp.safetensors").unlink()
    (baked / "mlp.safetensors").symlink_to(outside)
    with pytest.raises(FormatError, match="mlp.safetensors: a link to .*outside the folder"):
        list(Baked(baked).verify())


# -- one staleness rule ---------------------------------------------------------------------------
def test_a_single_stream_is_current_for_its_preset_only(made):
    s = made["single"]
    assert stream_is_current(s, "web") and pipeline.stream_is_current is stream_is_current
    assert not stream_is_current(s, "web-crf29") and not stream_is_current(s, LADDER)
    assert not stream_is_current(s, "web", crf=30)  # another rate: other encoder options
    assert not stream_is_current(s, "web", basis=not Manifest.read(s).mlp.get("feature_basis", "none") != "none")
    assert not stream_is_current(s, "nope") and not stream_is_current(s.parent / "missing.fvv", "web")
    assert Manifest.read(s).differs(["web-crf29"]) == "with preset 'web'"


def test_a_ladder_stream_is_judged_by_its_renditions(made):
    """pipeline.stream_is_current used to read the version-1 "codec" block: every ladder was stale."""
    s = made["ladder"]
    assert stream_is_current(s, LADDER) and stream_is_current(s, ladder_names(",".join(LADDER)))
    assert not stream_is_current(s, "web")  # its first rendition alone is another stream
    assert not stream_is_current(s, tuple(reversed(LADDER)))
    m = Manifest.read(s)
    assert m.differs(["web", "web-crf24"]) == "with the renditions web, web-crf29"
    backend = m.renditions[0].codec.backend
    assert m.differs(LADDER, backend=backend) is None and m.differs(LADDER, backend="other") is not None


def test_the_batch_planner_asks_the_same_rule(made, tmp_path):
    from featvid.batch.jobfile import Sequence
    from featvid.batch.planner import StreamOutput

    seq = Sequence("s", tmp_path, None, made["baked"], None, ())

    def differs(spec: EncodeSpec, stream: Path) -> str | None:
        out = StreamOutput(seq, spec, "pyav", 2, [])
        out.path = stream
        return out._differs()

    assert differs(EncodeSpec(None, ladder=LADDER, name="l"), made["ladder"]) is None
    assert differs(EncodeSpec("web", name="w"), made["single"]) is None
    assert differs(EncodeSpec("web", name="w"), made["ladder"]) == "with the renditions web, web-crf29"


def test_a_stream_without_records_is_never_current(copies):
    _edit(copies["single"] / "manifest.json", lambda d: d.pop("files"))
    assert not stream_is_current(copies["single"], "web")
    assert "no file hashes" in Manifest.read(copies["single"]).differs(["web"])


# -- planes and features -------------------------------------------------------------------------
def test_planes_and_features_mean_the_same_in_every_folder(made):
    """On disk run.json's "num_channels" is C and baked.json's / the manifest's "channels" is
    P = 1 + C (files of today read as they are); in Python every folder says num_planes and
    num_features, and `featvid info` shows "planes" and "features"."""
    on_disk = {k: json.loads((made[k] / f).read_text())
               for k, f in (("run", "run.json"), ("baked", "baked.json"), ("single", "manifest.json"))}
    assert on_disk["run"]["num_channels"] == 3 and on_disk["baked"]["channels"] == on_disk["single"]["channels"] == 4
    folders = [Run(made["run"]), Baked(made["baked"]), open_stream(made["single"]), open_stream(made["ladder"])]
    for f in folders:
        assert (f.num_planes, f.num_features) == (4, 3), f
        summary = f.summary()
        assert (summary["planes"], summary["features"]) == (4, 3) and "channels" not in summary, summary
    m = Manifest.read(made["single"])
    assert (m.num_planes, m.num_features, m.mlp_config.in_features) == (4, 3, 3)
    assert Run(made["run"]).mlp().config.in_features == 3
