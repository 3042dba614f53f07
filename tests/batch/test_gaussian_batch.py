"""Gaussian streams through batch jobs (issue 29): a job's sequence naming a folder of 3DGS PLY
frames is baked and encoded on 2 local workers into exactly what plain `featvid bake` + `featvid
encode` make of it, a Gaussian bake named as `baked` is encoded as a grid bake is, a ladder's
renditions decode to the plain streams' Gaussians, and a rerun keeps what is finished and bakes
again what a killed bake left."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from featvid.bake.gaussians import bake_gaussians
from featvid.batch import load_job, run_job
from featvid.codecs import encode_baked
from featvid.codecs.gaussians import decode_gaussians_gop
from featvid.codecs.stream import open_stream
from featvid.errors import ConfigError
from featvid.gaussians.generate import write_gaussian_sequence
from tests.batch.helpers import PRESETS, content, make_runs

FIELDS = ("means", "sh", "opacity", "log_scales", "quats")


def _job(path: Path, frames: Path, baked: Path) -> Path:
    p0, p1 = PRESETS
    path.write_text(f'''out = "out"
retries = 0

[[sequence]]
name = "splats"
run = "{frames}"
gop = 2
sh_degree = 1
encode = ["{p0}", "{p1}", {{ ladder = ["{p0}", "{p1}"], name = "two" }}]

[[sequence]]
name = "prebaked"
baked = "{baked}"
encode = ["{p0}"]
''')
    return path


def test_a_ply_folder_is_baked_and_encoded_as_the_plain_commands_do(pool, tmp_path):
    frames = write_gaussian_sequence(tmp_path / "seq", "dancer", count=300, frames=4, seed=0)
    ref = tmp_path / "ref"
    baked = bake_gaussians(frames, ref / "baked", gop=2, sh_degree=1)  # 2 GOPs of 2 frames
    plain = {p: encode_baked(baked, ref / f"{p}.fvv", preset=p) for p in PRESETS}
    job = load_job(_job(tmp_path / "job.toml", frames, baked))
    (seq, _) = job.sequences
    assert seq.ply == frames.resolve() and seq.run is None and seq.baked == job.out / "splats" / "baked"

    report = run_job(job, pool, progress=False)
    assert report.ok, report.table()
    assert report.workers == 2
    rows = {(r.sequence, r.output): r for r in report.rows}
    assert (rows["splats", "baked"].status, rows["splats", "baked"].gops_total) == ("done", 2)
    out = job.out
    assert content(out / "splats" / "baked") == content(baked)
    for p in PRESETS:
        assert content(out / "splats" / f"{p}.fvv") == content(plain[p]), p
    assert content(out / "prebaked" / f"{PRESETS[0]}.fvv") == content(plain[PRESETS[0]])

    # the ladder: each rendition decodes to the Gaussians of the plain stream of its preset
    ladder = open_stream(out / "splats" / "two.fvv", hwaccel="none")
    assert ladder.representation == "gaussians"
    for p in PRESETS:
        single = open_stream(plain[p], hwaccel="none")
        for g in range(2):
            for a, b in zip(decode_gaussians_gop(ladder, g, rendition=p), decode_gaussians_gop(single, g), strict=True):
                for f in FIELDS:
                    assert torch.equal(getattr(a, f), getattr(b, f)), (p, g, f)

    # a killed bake (no baked.json, a stray GOP of an earlier, longer bake) is baked again from the
    # start; the streams made of the same bake are kept
    (out / "splats" / "baked" / "baked.json").unlink()
    (out / "splats" / "baked" / "gop_00009.layout.json").write_text("{}")
    again = run_job(load_job(tmp_path / "job.toml"), pool, progress=False)
    assert again.ok, again.table()
    status = {(r.sequence, r.output): r.status for r in again.rows}
    assert status.pop(("splats", "baked")) == "done"
    assert set(status.values()) == {"kept"}, status
    assert all(r.gops_done == r.gops_total == 2 for r in again.rows), again.table()  # kept streams count theirs
    assert content(out / "splats" / "baked") == content(baked)

    # a finished bake of other frames is never rewritten: that output fails, its streams wait
    (frames / "frame_00003.ply").rename(frames / "frame_00009.ply")
    other = run_job(load_job(tmp_path / "job.toml"), pool, progress=False)
    status = {(r.sequence, r.output): r.status for r in other.rows}
    assert status["splats", "baked"] == "failed" and status["splats", "two.fvv"] == "skipped", status


def test_bake_options_need_a_ply_folder(tmp_path):
    run = make_runs(tmp_path, names=("grid",), frames=2, gop=2)["grid"]
    job = tmp_path / "job.toml"
    job.write_text(f'encode = ["{PRESETS[0]}"]\n[[sequence]]\nrun = "{run}"\ngop = 2\n')
    with pytest.raises(ConfigError, match="gop applies to a folder of Gaussian PLY frames"):
        load_job(job)
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "frame_00000.ply").write_bytes(b"")  # recognised by name; read when the job runs
    job.write_text(f'encode = ["{PRESETS[0]}"]\n[[sequence]]\nrun = "{frames}"\nsh_degree = 4\n')
    with pytest.raises(ConfigError, match="sh_degree must be an integer in 0..3"):
        load_job(job)
