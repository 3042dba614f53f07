"""The probe of issue 26, replayed: each case a real `featvid` process, as a hostile user runs it.

Every case must end with exit status 2 and one line on stderr, within PROBE_SECONDS and with a
peak resident size under PROBE_BYTES, and leave every input folder byte-identical. The files a
case plants (bombs) come with their records rewritten, as an attacker would: the size and hash
checks pass, and the bound that holds is the one inside the reader.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from featvid.formats.synthetic import make_run
from tests.fuzz.test_bombs import gzip_of_zeros_after, mapping_header, png_of_zeros, png_video, zstd_rle_frame

PROBE_SECONDS = 60.0  # the bounds per case
PROBE_BYTES = 1536 << 20
# The CLI in a child that reports its own peak resident size (KiB) when it exits, whichever way.
CHILD = """
import atexit, os, resource, sys
atexit.register(lambda: open(os.environ["PROBE_RSS"], "w").write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))
from featvid.cli import main
sys.argv[0] = "featvid"
main()
"""


def featvid(*args: str | Path, tmp: Path) -> tuple[int, list[str], float, int]:
    """Run `featvid ARGS`: (exit status, stderr lines, seconds, peak resident bytes)."""
    rss = tmp / "rss"
    env = {**os.environ, "PROBE_RSS": str(rss)}
    env.pop("FEATVID_DEBUG", None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=PROBE_SECONDS * 2, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    peak = int(rss.read_text()) * 1024 if rss.is_file() else 0
    return done.returncode, done.stderr.strip().splitlines(), seconds, peak


def snapshot(*folders: Path) -> dict[str, str]:
    """SHA-256 of every file under the folders (what must not change), and each special file's kind."""
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if p.is_fifo():
                out[str(p)] = "fifo"
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def refused(*args: str | Path, tmp: Path, keep: tuple[Path, ...] = (), status: int = 2) -> str:
    """The case must be refused in one line, in bounds, its inputs untouched; returns the line."""
    before = snapshot(*keep)
    code, err, seconds, peak = featvid(*args, tmp=tmp)
    assert code == status and len(err) == 1, (code, err)
    assert seconds < PROBE_SECONDS and peak < PROBE_BYTES, (seconds, peak)
    assert snapshot(*keep) == before
    return err[0]


def replant(folder: Path, meta: str, name: str, data: bytes) -> None:
    """Put `data` at folder/name and record it in the folder's JSON `meta` (files table and any GOP
    byte count), so that only the reader's own bounds stand in the way."""
    (folder / name).write_bytes(data)
    d = json.loads((folder / meta).read_text())
    d["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    for g in d.get("gops", []):
        for kind, field in (("mapping", "mapping"), ("video", "video")):
            if g.get(field) == name and isinstance(g.get("bytes"), dict):
                g["bytes"][kind] = len(data)
    (folder / meta).write_text(json.dumps(d))


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A run, its bake and its stream, made once (synthetic grids: no training)."""
    root = tmp_path_factory.mktemp("probe")
    run = make_run(root / "run", frames=4, gop=2)
    baked, stream = root / "baked", root / "scene.fvv"
    for args in (("bake", run, "--out", baked), ("encode", baked, "--out", stream)):
        code, err, _, _ = featvid(*args, tmp=root)
        assert code == 0, err
    return {"run": run, "baked": baked, "stream": stream, "root": root}


def copy_of(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# ---- data loss ------------------------------------------------------------------------------------

def test_encode_into_its_own_bake_or_a_run_or_a_fifo(made, tmp_path):
    baked, run = made["baked"], made["run"]
    refused("encode", baked, "--out", baked, tmp=tmp_path, keep=(baked,))
    refused("encode", baked, "--out", run, tmp=tmp_path, keep=(baked, run))
    fifo = tmp_path / "out.fvv"
    os.mkfifo(fifo)
    refused("encode", baked, "--out", fifo, tmp=tmp_path, keep=(baked,))
    assert fifo.is_fifo()
    taken = tmp_path / "file"
    taken.write_text("mine")
    refused("encode", baked, "--out", taken, tmp=tmp_path, keep=(baked,))
    assert taken.read_text() == "mine"


# ---- unbounded reads ------------------------------------------------------------------------------

def test_a_gzip_bomb_mapping_in_a_stream(made, tmp_path):
    stream = copy_of(made["stream"], tmp_path / "s.fvv")
    name = json.loads((stream / "manifest.json").read_text())["gops"][0]["mapping"]
    replant(stream, "manifest.json", name, gzip_of_zeros_after(b"FVMAP1\n", 2048))  # 2 GiB inflated
    refused("play", stream, "--decode-only", tmp=tmp_path, keep=(stream,))


def test_a_mapping_of_a_1024_cubed_grid_in_a_stream(made, tmp_path):
    import gzip

    stream = copy_of(made["stream"], tmp_path / "s.fvv")
    name = json.loads((stream / "manifest.json").read_text())["gops"][0]["mapping"]
    codes = np.ones(4096, dtype="<u4").tobytes()
    replant(stream, "manifest.json", name, gzip.compress(mapping_header([1024, 1024, 1024], 4096) + codes))
    refused("play", stream, "--decode-only", tmp=tmp_path, keep=(stream,))


def test_a_video_of_huge_png_frames_in_a_stream(made, tmp_path):
    stream = copy_of(made["stream"], tmp_path / "s.fvv")
    name = json.loads((stream / "manifest.json").read_text())["gops"][0]["video"]
    replant(stream, "manifest.json", name, png_video(png_of_zeros(16000, 16000), 4, (16000, 16000)))
    refused("play", stream, "--decode-only", tmp=tmp_path, keep=(stream,))


def test_a_zstd_bomb_planes_file_in_a_bake(made, tmp_path):
    baked = copy_of(made["baked"], tmp_path / "baked")
    name = json.loads((baked / "baked.json").read_text())["gops"][0]["planes"]
    head = json.dumps({"planes": {"dtype": "F32", "shape": [2, 5, 4096, 40960], "data_offsets": [0, 3355443200]}})
    head = head.encode() + b" " * (-len(head) % 8)
    replant(baked, "baked.json", name, zstd_rle_frame(len(head).to_bytes(8, "little") + head, 3_355_443_200))
    refused("encode", baked, "--out", tmp_path / "s.fvv", tmp=tmp_path, keep=(baked,))


def test_a_npy_header_claiming_a_billion_rows(tmp_path):
    data = tmp_path / "n3dv"
    data.mkdir()
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000, 17), }"
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    (data / "poses_bounds.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
    for cam in range(2):
        (data / f"cam{cam:02d}.mp4").write_bytes(b"")
    refused("info", data, "--format", "n3dv", tmp=tmp_path, keep=(data,))


def test_deeply_nested_json_in_a_manifest(made, tmp_path):
    stream = copy_of(made["stream"], tmp_path / "s.fvv")
    (stream / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    refused("info", stream, tmp=tmp_path, keep=(stream,))


# ---- tracebacks and late checks -------------------------------------------------------------------

def test_a_name_of_245_characters_and_405_bytes(made, tmp_path):
    name = "é" * 160 + "a" * 85  # 245 characters, 405 bytes in UTF-8
    assert len(name) == 245 and len(name.encode()) == 405
    refused("encode", made["baked"], "--out", tmp_path / name, tmp=tmp_path, keep=(made["baked"],))


def test_options_are_checked_before_any_work(made, tmp_path):
    started = time.perf_counter()
    refused("demo", "--preset", "nope", "--out", tmp_path / "demo", tmp=tmp_path)
    assert not (tmp_path / "demo").exists() and time.perf_counter() - started < 30
    refused("train", tmp_path, "--out", tmp_path / "run", "--temporal-weight", "inf", tmp=tmp_path)
    refused("play", made["stream"], "--duration", "inf", tmp=tmp_path, keep=(made["stream"],))
    refused("encode", made["baked"], "--out", tmp_path / "x.fvv", "--no-such-option", tmp=tmp_path)


def test_a_batch_job_with_a_hundred_thousand_rates(made, tmp_path):
    job = tmp_path / "job.toml"
    crfs = ", ".join(str(20 + i % 10) for i in range(100_000))
    job.write_text(f'[[sequence]]\nname = "a"\nbaked = "{made["baked"]}"\n'
                   f'encode = [{{ preset = "h264-crf16.5", crf = [{crfs}] }}]\n')
    refused("batch", job, tmp=tmp_path, keep=(made["baked"],))


# ---- integrity that cannot be switched off ----------------------------------------------------------

def test_an_empty_files_table_does_not_let_a_corrupt_frame_bake(made, tmp_path):
    run = copy_of(made["run"], tmp_path / "run")
    (run / "files.json").write_text(json.dumps({"format": "featvid-files", "version": 1, "files": {}}))
    frame = sorted((run / "frames").iterdir())[1]
    frame.write_bytes(frame.read_bytes()[:-8] + b"\xff" * 8)
    refused("bake", run, "--out", tmp_path / "baked", tmp=tmp_path, keep=(run,))
    assert not (tmp_path / "baked" / "baked.json").exists()
