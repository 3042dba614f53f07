"""Stream integrity: the manifest records every file's size and SHA-256, readers refuse a file that
differs (one line, exit 2, naming it), `featvid verify` checks a whole stream, and a stream from
before the hashes still reads, with a warning."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from featvid.bake.atlas import bake_run
from featvid.cli import main
from featvid.codecs import encode_baked, open_stream
from featvid.codecs.manifest import Manifest
from featvid.errors import FormatError, StreamError
from tests.codecs.synthetic import make_run


@pytest.fixture()
def copy(tiny_stream, tmp_path) -> Path:
    """A private copy of the session's stream to break."""
    return Path(shutil.copytree(tiny_stream, tmp_path / "s.fvv"))


def one_line_error(r, *needles: str) -> None:
    """The CLI failed the project's way: exit 2, one line, no traceback, naming `needles`."""
    lines = [line.strip() for line in r.output.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("featvid: error:")]
    assert r.exit_code == 2, r.output
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in r.output, r.output
    assert all("error" not in line for line in lines[:-1]), r.output  # before it, a progress bar at most
    for n in needles:
        assert n in errors[0], (n, errors[0])


def flip(path: Path, offset: int, n: int = 16) -> None:
    """Invert n bytes of `path` at `offset` (the size stays the same: only the hash can tell)."""
    data = bytearray(path.read_bytes())
    assert offset + n <= len(data)
    data[offset:offset + n] = bytes(b ^ 0xFF for b in data[offset:offset + n])
    path.write_bytes(bytes(data))


def test_the_manifest_records_size_and_sha256_of_every_file(tiny_stream):
    m = Manifest.read(tiny_stream)
    named = m.named_files()
    assert sorted(m.files) == sorted(named) and len(named) == 1 + 2 * len(m.gops)  # MLP + mapping, video a GOP
    for name, rec in m.files.items():
        data = (tiny_stream / name).read_bytes()
        assert rec.bytes == len(data) and rec.sha256 == hashlib.sha256(data).hexdigest(), name
    r = CliRunner().invoke(main, ["verify", str(tiny_stream)])
    assert r.exit_code == 0, r.output
    ok = [line for line in r.output.splitlines() if line.startswith("OK ")]
    assert len(ok) == len(named) and f"{len(named)} files" in r.output.splitlines()[-1]


def test_a_ladder_records_every_rendition(tmp_path):
    root = tmp_path
    baked = bake_run(make_run(root / "run", frames=4, gop=2, shape=(16, 16, 16), channels=3), root / "baked")
    s = open_stream(encode_baked(baked, root / "l.fvv", ladder="web,web-crf29"), hwaccel="none")
    assert s.manifest.version == 2
    assert sorted(s.manifest.files) == sorted(s.manifest.named_files()) and len(s.manifest.files) == 1 + 2 * 3
    assert [n for n, _ in s.verify()] == s.manifest.named_files()
    flip(s.path / "gop_00001" / "web-crf29.mp4", 200)
    with pytest.raises(StreamError, match="web-crf29.mp4: SHA-256 differs"):
        list(open_stream(s.path).verify())


def test_16_flipped_bytes_in_a_video_are_refused_by_eval_render_verify(copy, tiny_dataset, tmp_path):
    video = copy / Manifest.read(copy).gops[0].video
    flip(video, video.stat().st_size // 2)
    run = CliRunner().invoke
    one_line_error(run(main, ["verify", str(copy)]), video.name, "SHA-256")
    one_line_error(run(main, ["eval", str(copy), "--data", str(tiny_dataset), "--device", "cpu"]),
                   "gop_00000", "SHA-256")
    one_line_error(run(main, ["render", str(copy), "--out", str(tmp_path / "o.mp4"), "--size", "16x16",
                              "--frames", "2", "--device", "cpu"]), "gop_00000", "SHA-256")
    assert not (tmp_path / "o.mp4").exists()
    one_line_error(run(main, ["play", str(copy), "--fps", "1000", "--size", "8x8", "--device", "cpu",
                              "--frames", "2"]), "gop_00000", "SHA-256")
    assert run(main, ["info", str(copy)]).exit_code == 0  # sizes agree: only a hash tells; info does not hash


def test_a_flipped_mapping_or_mlp_is_refused_by_the_reader(copy):
    m = Manifest.read(copy)
    flip(copy / m.gops[0].mapping, 40, n=4)
    flip(copy / m.mlp["file"], (copy / m.mlp["file"]).stat().st_size - 20, n=4)
    s = open_stream(copy, hwaccel="none")
    with pytest.raises(FormatError, match="mapping.fvmap: SHA-256 differs"):
        s.decode_gop(0)
    with pytest.raises(FormatError, match="mlp.safetensors: SHA-256 differs"):
        s.mlp()


def test_a_truncated_file_is_reported_by_info_and_verify(copy):
    video = copy / Manifest.read(copy).gops[-1].video
    size = video.stat().st_size
    video.write_bytes(video.read_bytes()[: size // 2])
    run = CliRunner().invoke
    one_line_error(run(main, ["info", str(copy)]), video.name, f"{size // 2} bytes on disk", f"records {size}")
    one_line_error(run(main, ["verify", str(copy)]), video.name, f"records {size}")


def test_a_stream_without_hashes_reads_only_as_legacy_with_a_warning(copy, caplog, monkeypatch):
    d = json.loads((copy / "manifest.json").read_text())
    del d["files"]
    (copy / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(StreamError, match="the manifest records no file hashes.*--legacy-read"):
        open_stream(copy, hwaccel="none")
    one_line_error(CliRunner().invoke(main, ["info", str(copy)]), "no file hashes")
    with caplog.at_level(logging.WARNING, logger="featvid.formats.folder"):
        s = open_stream(copy, hwaccel="none", legacy=True)
    assert "records no file hashes" in caplog.text
    assert len(s.decode_gop(0)) == s.manifest.gops[0].frames and s.mlp() is not None
    monkeypatch.setenv("FEATVID_LEGACY_READ", "0")  # restored after the test: --legacy-read sets it to 1
    assert CliRunner().invoke(main, ["--legacy-read", "info", str(copy)]).exit_code == 0
    one_line_error(CliRunner().invoke(main, ["verify", str(copy)]), "no file hashes")
    video = copy / s.manifest.gops[0].video  # the GOPs' own sizes still show a truncated copy
    video.write_bytes(video.read_bytes()[:100])
    one_line_error(CliRunner().invoke(main, ["info", str(copy)]), video.name, "100 bytes on disk")


@pytest.mark.parametrize("change, message", [
    (lambda f: f.update({"mlp.safetensors": {**f["mlp.safetensors"], "sha256": "0" * 63}}), "64 lower-case hex"),
    (lambda f: f["mlp.safetensors"].update(bytes=-1), "bytes must be an integer"),
    (lambda f: f.pop("mlp.safetensors"), "no size and SHA-256 for mlp.safetensors"),
    (lambda f: f.update({"../x": f["mlp.safetensors"]}), "x"),
    (lambda f: f["gop_00000/mapping.fvmap"].update(bytes=f["gop_00000/mapping.fvmap"]["bytes"] + 1), "files records"),
])
def test_a_broken_files_table_is_refused(copy, change, message):
    d = json.loads((copy / "manifest.json").read_text())
    change(d["files"])
    (copy / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(StreamError, match=message):
        open_stream(copy)
    one_line_error(CliRunner().invoke(main, ["verify", str(copy)]))
