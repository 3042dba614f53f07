"""A resumed run is the run that was not interrupted, byte for byte (issue 15 item 7): the resume
runs in another process with another PYTHONHASHSEED, so anything that hangs on hash order (a set
iterated, safetensors' metadata order) shows here."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from featvid.formats.run import FILES, Run, frame_name
from featvid.train.config import preset
from tests.fixtures.train import TINY_RUN_GOP, TINY_RUN_GRID, TINY_RUN_PRESET

ROOT = Path(__file__).resolve().parents[2]


def _kill_after(run: Path, last: int) -> None:
    """Leave `run` as a kill right after frame `last` was finished would: later frames' files,
    log lines and records gone."""
    r = Run(run)
    later = range(last + 1, r.num_frames)
    for t in later:
        (run / frame_name(t)).unlink()
    lines = [ln for ln in (run / "log.jsonl").read_text().splitlines() if json.loads(ln)["frame"] <= last]
    (run / "log.jsonl").write_text("".join(ln + "\n" for ln in lines))
    files = json.loads((run / FILES).read_text())
    for t in later:
        files["files"].pop(frame_name(t))
    (run / FILES).write_text(json.dumps(files))


def test_a_run_resumed_after_frame_1_in_another_process_is_bit_identical(tiny_run, tiny_dataset, tmp_path):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    _kill_after(run, 1)
    seed = "4242" if os.environ.get("PYTHONHASHSEED") != "4242" else "4343"  # never the parent's
    code = ("from featvid.train.config import preset; from featvid.train.train import train; "
            f"train({str(tiny_dataset)!r}, {str(run)!r}, preset({TINY_RUN_PRESET!r}, grid_resolution={TINY_RUN_GRID}, "
            f"gop={TINY_RUN_GOP}), device='cpu')")
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    whole = json.loads((tiny_run / FILES).read_text())["files"]
    assert json.loads((run / FILES).read_text())["files"] == whole  # every file: size and SHA-256
    for name in [*whole, "run.json"]:
        assert (run / name).read_bytes() == (tiny_run / name).read_bytes(), name
    strip = ("seconds", "train_seconds")  # wall-clock figures: the only thing that may differ
    assert [{k: v for k, v in r.items() if k not in strip} for r in Run(run).log()] == \
        [{k: v for k, v in r.items() if k not in strip} for r in Run(tiny_run).log()]


class _Killed(Exception):
    pass


def test_a_kill_during_a_keyframe_refresh_resumes_as_the_run_that_was_not_killed(tiny_dataset, tmp_path, monkeypatch):
    """A refresh writes its GOP split (run.json, a new mapping) once its refit is kept (a refresh
    that would not pay leaves nothing, featvid.train.refresh), and the refitted frame after it: a
    kill between the two used to leave frame 2 in a GOP of its own, so the resumed run fitted it
    warm on the new mapping and kept that -- another frame than the uninterrupted run's keyframe."""
    from featvid.train import train as trainer
    from featvid.train.train import train
    from tests.train.test_train import micro

    real_judge, real_append = trainer._judge, trainer._append_log

    def judge(scene, t, grid, mlp):
        """Frame 2's warm fit, in the GOP of the coarse pass, is judged 10 dB poorer: it is refreshed."""
        scores = real_judge(scene, t, grid, mlp)
        unsplit = Run(scene.out).gops[Run(scene.out).gop_of(t)].start < t
        return {k: v - 10 for k, v in scores.items()} if t == 2 and unsplit else scores

    monkeypatch.setattr(trainer, "_judge", judge)
    config = micro(gop=4)
    whole = train(tiny_dataset, tmp_path / "whole", config, frames=(0, 3), device="cpu")
    assert [g.start for g in whole.gops] == [0, 2] and whole.log()[2]["keyframe"]

    def append(out, record):
        if record["frame"] == 2:
            raise _Killed  # the split is on disk, frame 2 is not
        return real_append(out, record)

    monkeypatch.setattr(trainer, "_append_log", append)
    cut = tmp_path / "cut"
    try:
        train(tiny_dataset, cut, config, frames=(0, 3), device="cpu")
    except _Killed:
        pass
    assert [g.start for g in Run(cut).gops] == [0, 2] and Run(cut).finished_frames() == [0, 1]
    monkeypatch.setattr(trainer, "_append_log", real_append)
    train(tiny_dataset, cut, config, frames=(0, 3), device="cpu")
    for name in [*json.loads((whole.path / FILES).read_text())["files"], "run.json"]:
        assert (whole.path / name).read_bytes() == (cut / name).read_bytes(), name
    assert [r["keyframe"] for r in Run(cut).log()] == [True, False, True]


def test_a_resumed_run_keeps_its_grid_box_when_the_rule_for_it_changed(tiny_run, tiny_dataset, tmp_path, monkeypatch):
    """The grid's box comes from a rule (featvid.train.train.inner_box / grid_box) that a new featvid
    may change (how far the inner box grows past a ring of cameras, say): a run resumed after such a
    change keeps the box of run.json, which its finished frames and mappings index, and ends as the
    run that was not interrupted."""
    from featvid.train import train as trainer

    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    _kill_after(run, 1)
    monkeypatch.setattr(trainer, "grid_box", lambda box, space: box * 1.5)  # another rule than the run's
    trainer.train(tiny_dataset, run, preset(TINY_RUN_PRESET, grid_resolution=TINY_RUN_GRID, gop=TINY_RUN_GOP),
                  device="cpu")
    for name in [*json.loads((tiny_run / FILES).read_text())["files"], "run.json"]:
        assert (run / name).read_bytes() == (tiny_run / name).read_bytes(), name
