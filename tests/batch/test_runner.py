"""The planner and runner on real tasks, run in the test process (InlineExecutor): the outputs are
what the plain commands make, a resumed job redoes only what is not staged, a failing task is
retried a bounded number of times and reported while the rest completes, and a finished output
is never rewritten. (The process pool and Ray run the same tasks: test_local.py, test_ray.py.)"""
from __future__ import annotations

import json
import math

import pytest

from featvid.batch import load_job, run_job
from featvid.batch import tasks as T
from featvid.batch.staging import Staging, entry_from_dict, entry_to_dict, round_trips
from featvid.codecs import encode_baked
from featvid.codecs.manifest import GopEntry
from featvid.metrics import bytes_per_frame
from tests.batch.helpers import PRESETS, InlineExecutor, content, make_runs, raw_bytes, write_job


def test_job_makes_what_the_plain_commands_make(batch_runs, reference, tmp_path):
    job = load_job(write_job(tmp_path / "job.toml", batch_runs))
    ex = InlineExecutor()
    report = run_job(job, ex, progress=False)
    assert report.ok, report.table()
    # per sequence: open + 3 GOPs + finish for the bake, then the same for each stream
    assert ex.calls.count("bake_gop_task") == 6 and ex.calls.count("encode_gop_task") == 12
    assert ex.calls.count("finish_stream") == 4 and ex.calls.count("finish_bake_task") == 2
    for seq in batch_runs:
        for name, digest in reference[seq].items():
            assert content(job.out / seq / name) == digest, (seq, name)
    assert not list(job.out.rglob(".*.parts")), "staging folders are gone once outputs are finished"
    rows = {(r.sequence, r.output): r for r in report.rows}
    r = rows[("beta", "h265-crf23.fvv")]
    assert (r.status, r.gops_done, r.gops_total, r.frames) == ("done", 3, 3, 6)
    assert r.bytes_per_frame == pytest.approx(bytes_per_frame(job.out / "beta" / "h265-crf23.fvv", 6))
    table = report.table()
    assert "beta" in table and "h265-crf23.fvv" in table and "6 outputs: 6 made, 0 kept" in table
    json.dumps(report.to_json())

    # a second run keeps everything: no task runs, no byte changes
    before = raw_bytes(job.out)
    ex2 = InlineExecutor()
    again = run_job(job, ex2, progress=False)
    assert again.ok and ex2.calls == [] and {r.status for r in again.rows} == {"kept"}
    assert raw_bytes(job.out) == before


def test_a_killed_stream_resumes_with_its_staged_gops(batch_runs, reference, tmp_path):
    """What a job killed mid-stream leaves: GOPs 0 and 1 staged (GOP 0 with a temporary file of a
    killed write beside it), GOP 2 half written, no MLP, no manifest. The rerun encodes GOP 2 only."""
    job = load_job(write_job(tmp_path / "job.toml", {"alpha": batch_runs["alpha"]}, presets=PRESETS[:1]))
    seq = job.sequences[0]
    assert run_job(job, InlineExecutor(), progress=False).ok  # bake + stream
    stream = seq.stream_dir(seq.encodes[0])
    for p in [stream / "manifest.json", stream / "mlp.safetensors"]:
        p.unlink()
    plan, kept = T.plan_stream(seq.baked, stream, PRESETS[0], None, "pyav", None)
    assert kept == {}  # no staging: it started over
    for g in (0, 1):
        T.encode_gop_task(plan, g)
    stamps = {p: p.stat().st_mtime_ns for p in stream.glob("gop_0000[01]/*")}
    assert len(stamps) == 4
    (stream / "gop_00000" / ".atlas.mp4.x1y2.tmp").write_bytes(b"cut short")
    (stream / "gop_00002").mkdir()
    (stream / "gop_00002" / "atlas.mp4").write_bytes(b"half a video")

    ex = InlineExecutor()
    report = run_job(job, ex, progress=False)
    assert report.ok, report.table()
    assert ex.calls == ["plan_stream", "encode_gop_task", "finish_stream"]  # the bake is kept, GOP 2 only
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # staged GOPs were not rewritten
    assert content(stream) == reference["alpha"][f"{PRESETS[0]}.fvv"]
    assert not Staging(stream).path.exists()

    # staged records of another plan (another preset, another bake) are not trusted
    (stream / "manifest.json").unlink()
    Staging(stream).start("some other plan")
    ex = InlineExecutor()
    assert run_job(job, ex, progress=False).ok
    assert ex.calls.count("encode_gop_task") == 3
    assert content(stream) == reference["alpha"][f"{PRESETS[0]}.fvv"]


def test_a_failing_task_is_retried_then_reported_and_the_rest_completes(reference, tmp_path):
    runs = make_runs(tmp_path, nan_in="beta")  # beta's last frame holds a NaN: its GOP 2 cannot be baked
    job = load_job(write_job(tmp_path / "job.toml", runs, retries=2))
    ex = InlineExecutor()
    report = run_job(job, ex, progress=False)
    assert not report.ok
    (f,) = report.failures
    assert (f.label, f.sequence, f.output, f.step, f.gop, f.attempts) == \
        ("beta / baked: bake GOP 2", "beta", "baked", "gop", 2, 3)  # 1 + retries attempts
    assert "NaN" in f.reason
    assert ex.calls.count("bake_gop_task") == 3 + 2 + 3  # alpha's 3, beta's GOPs 0 and 1, GOP 2 three times
    status = {(r.sequence, r.output): (r.status, r.note) for r in report.rows}
    assert status[("beta", "baked")][0] == "failed"
    for p in PRESETS:
        assert status[("beta", f"{p}.fvv")] == ("skipped", "not made: beta / baked failed")
        assert content(job.out / "alpha" / f"{p}.fvv") == reference["alpha"][f"{p}.fvv"]
    assert not (job.out / "beta" / f"{PRESETS[0]}.fvv").exists()
    assert "FAILED beta / baked: bake GOP 2 after 3 attempts: FormatError" in report.table()

    # rerun: the finished outputs are kept, beta's two good GOPs stay staged, GOP 2 fails again
    ex = InlineExecutor()
    again = run_job(job, ex, progress=False)
    assert ex.calls == ["open_bake"] + ["bake_gop_task"] * 3
    assert [r.status for r in again.rows if r.sequence == "alpha"] == ["kept"] * 3


def test_a_finished_stream_is_never_rewritten(batch_runs, tmp_path):
    job = load_job(write_job(tmp_path / "job.toml", {"alpha": batch_runs["alpha"]}))
    seq = job.sequences[0]
    assert run_job(load_job(write_job(tmp_path / "bake.toml", {"alpha": batch_runs["alpha"]}, presets=())),
                   InlineExecutor(), progress=False).ok  # the bake alone
    squatter = seq.stream_dir(seq.encodes[0])  # where h264-crf16.5 goes: a stream of another preset
    encode_baked(seq.baked, squatter, preset="web")
    before = raw_bytes(squatter)
    report = run_job(job, InlineExecutor(), progress=False)
    rows = {r.output: r for r in report.rows}
    assert rows[f"{PRESETS[0]}.fvv"].status == "failed" and "never rewritten" in rows[f"{PRESETS[0]}.fvv"].note
    assert "with preset 'web'" in rows[f"{PRESETS[0]}.fvv"].note
    assert rows[f"{PRESETS[1]}.fvv"].status == "done" and rows["baked"].status == "kept"
    assert raw_bytes(squatter) == before and not report.ok


def test_entries_survive_their_json_records(batch_runs, tmp_path):
    """The staged record of a GOP gives back the very entry the finishing task needs."""
    baked = T.bake_gop_task(batch_runs["beta"], 1, tmp_path / "baked")
    assert round_trips(baked) and entry_from_dict(type(baked), json.loads(json.dumps(entry_to_dict(baked)))) == baked
    T.finish_bake_task(batch_runs["beta"], tmp_path / "baked",
                       [T.bake_gop_task(batch_runs["beta"], g, tmp_path / "baked") for g in (0, 1, 2)])
    plan, _ = T.plan_stream(tmp_path / "baked", tmp_path / "s.fvv", "h264-crf16.5", None, "pyav", None)
    entry = T.encode_gop_task(plan, 1)
    back = entry_from_dict(GopEntry, json.loads(json.dumps(entry_to_dict(entry))))
    assert back == entry and all(isinstance(r, tuple) for r in back.ranges)
    kept = Staging(tmp_path / "s.fvv").kept(3)
    assert list(kept) == [1] and entry_from_dict(GopEntry, kept[1]) == entry
    (tmp_path / "s.fvv" / entry.mapping).write_bytes(b"changed")  # a file that is no longer what was recorded
    assert Staging(tmp_path / "s.fvv").kept(3) == {}


def test_scores_on_a_dataset(run_with_data, tmp_path):
    """With `data`, every output is scored on the held-out views (the bake's row: the run itself),
    written beside it, and not scored again by the next run."""
    from featvid.pipeline import evaluate_source

    run, data = run_with_data
    job_file = tmp_path / "job.toml"
    job_file.write_text(f'encode = ["{PRESETS[0]}"]\n[[sequence]]\nname = "solo"\nrun = "{run}"\ndata = "{data}"\n')
    job = load_job(job_file)
    report = run_job(job, InlineExecutor(), progress=False)
    assert report.ok, report.table()
    rows = {r.output: r for r in report.rows}
    stream = job.out / "solo" / f"{PRESETS[0]}.fvv"
    assert rows[f"{PRESETS[0]}.fvv"].psnr == pytest.approx(evaluate_source(stream, data).mean_psnr)
    assert rows["baked"].psnr == pytest.approx(evaluate_source(run, data).mean_psnr)
    assert all(math.isfinite(r.psnr) and 0 < r.ssim <= 1 for r in report.rows)
    assert json.loads((job.out / "solo" / f"{PRESETS[0]}.fvv.eval.json").read_text())["mean_psnr"] == rows[
        f"{PRESETS[0]}.fvv"].psnr
    assert (job.out / "solo" / "run.eval.json").is_file()
    ex = InlineExecutor()
    again = run_job(job, ex, progress=False)
    assert ex.calls == [] and {r.output: r.psnr for r in again.rows} == {r.output: r.psnr for r in report.rows}


def test_a_ladder_is_one_stream_of_every_rendition(batch_runs, tmp_path):
    """`{ladder = [...]}` makes what `featvid encode --ladder` makes (one stream, a video per
    rendition per GOP); a rerun keeps it, and a one-preset stream in its place is not rewritten."""
    job_file = tmp_path / "job.toml"
    ladder = '{ladder = ["%s", "%s"], name = "abr2"}' % PRESETS
    job_file.write_text(f'encode = [{ladder}]\n[[sequence]]\nname = "alpha"\nrun = "{batch_runs["alpha"]}"\n')
    job = load_job(job_file)
    ex = InlineExecutor()
    report = run_job(job, ex, progress=False)
    assert report.ok, report.table()
    assert ex.calls.count("encode_gop_task") == 3  # one task a GOP, every rendition in it
    stream = job.out / "alpha" / "abr2.fvv"
    assert content(stream) == content(encode_baked(job.sequences[0].baked, tmp_path / "ref.fvv", ladder=list(PRESETS)))
    row = {r.output: r for r in report.rows}["abr2.fvv"]
    assert list(row.renditions) == list(PRESETS) and all(b > 0 for b in row.renditions.values())
    assert row.note.startswith("video KiB/frame h264-crf16.5 ")
    ex = InlineExecutor()
    assert run_job(job, ex, progress=False).ok and ex.calls == []  # kept

    job_file.write_text(job_file.read_text().replace(ladder, '{preset = "%s", name = "abr2"}' % PRESETS[0]))
    before = raw_bytes(stream)
    again = run_job(load_job(job_file), InlineExecutor(), progress=False)
    row = {r.output: r for r in again.rows}["abr2.fvv"]
    assert row.status == "failed" and "with the renditions h264-crf16.5, h265-crf23" in row.note
    assert raw_bytes(stream) == before


def test_qp_offsets_make_what_encode_makes_and_count_as_the_stream(tmp_path):
    """An encode with `space_qp` makes the bytes `featvid encode --space-qp` makes (a contracted
    run, where the offsets apply); a rerun keeps it, and the same name with other offsets is a
    stream made otherwise, never rewritten."""
    from featvid.codecs import open_stream
    from featvid.formats.synthetic import make_run

    run = make_run(tmp_path / "runs" / "c", frames=2, gop=2, shape=(24, 24, 24), channels=4, space="contracted")
    job_file = tmp_path / "job.toml"
    entry = '{preset = "h264-crf16.5", space_qp = [-4, 4], plane_qp = [-1], name = "s"}'
    job_file.write_text(f'encode = [{entry}]\n[[sequence]]\nname = "c"\nrun = "{run}"\n')
    job = load_job(job_file)
    report = run_job(job, InlineExecutor(), progress=False)
    assert report.ok, report.table()
    stream = job.out / "c" / "s.fvv"
    ref = encode_baked(job.sequences[0].baked, tmp_path / "ref.fvv", preset="h264-crf16.5", space_qp=(-4, 4),
                       plane_qp=(-1,))
    assert content(stream) == content(ref)
    codec = open_stream(stream).manifest.renditions[0].codec
    assert tuple(codec.space_qp) == (-4.0, 4.0) and tuple(codec.plane_qp) == (-1.0,)
    ex = InlineExecutor()
    assert run_job(job, ex, progress=False).ok and ex.calls == []  # kept: the same offsets

    job_file.write_text(job_file.read_text().replace("space_qp = [-4, 4], ", ""))  # the preset's own: -2, +3
    before = raw_bytes(stream)
    again = run_job(load_job(job_file), InlineExecutor(), progress=False)
    row = {r.output: r for r in again.rows}["s.fvv"]
    assert row.status == "failed" and "with other QP offsets" in row.note and raw_bytes(stream) == before
