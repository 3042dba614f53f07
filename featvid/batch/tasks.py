"""The tasks a batch job runs on its workers: plain module functions of picklable arguments.

Per baked folder:  open_bake -> bake_gop (one per GOP, any order, anywhere) -> finish_bake
Per Gaussian bake: bake_gaussians_task (a folder of PLY frames, the whole bake on one worker)
Per stream:        plan_stream -> encode_gop (one per GOP) -> finish_stream
Per trained sequence: train_task (the whole run, on one worker)
Per scored output: score

Every task reads its inputs from and writes its outputs to paths all workers see, each file
atomically (featvid.atomic); a GOP task records itself in the output's staging folder
(featvid.batch.staging) after its files, so a killed job resumes with what was finished.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from featvid.atomic import make_dirs, write_failed, write_json
from featvid.bake.atlas import bake_gop, check_bakeable, finish_bake
from featvid.bake.gaussians import bake_gaussians
from featvid.formats.baked import Baked, BakedGop
from featvid.formats.run import Run
from featvid.batch.staging import (
    Staging,
    entry_from_dict,
    entry_to_dict,
    gop_files,
    round_trips,
    run_fingerprint,
    stream_fingerprint,
    sweep_temporaries,
)
from featvid.codecs.encode import EncodePlan, encode_gop, finish_encode, plan_encode, prepare_out
from featvid.codecs.manifest import MANIFEST, GopEntry
from featvid.outputs import BAKED, STREAM, check_output_dir

log = logging.getLogger(__name__)


def warm_up() -> int:
    """Nothing but the imports every task needs (a pool's start-up cost, measured apart)."""
    import os

    return os.getpid()


# ---- bake ------------------------------------------------------------------------------------------

def prepare_bake_out(out: Path, inputs: list[Path] | tuple[Path, ...] = ()) -> None:
    """Empty a baked folder for a fresh bake; refuse anything but a new, empty or baked folder, or
    an input, before anything is touched (featvid.outputs: the rule of `featvid bake`)."""
    check_output_dir(out, BAKED, inputs)
    try:
        if out.is_dir():
            for p in out.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    except OSError as e:
        raise write_failed(out, e) from e
    make_dirs(out)


def open_bake(run_dir: Path, out: Path) -> dict[int, BakedGop]:
    """Get `out` ready to bake the run: resume what an earlier job of the same run left staged,
    or start over. Returns the GOPs already done."""
    check_output_dir(out, BAKED, [run_dir])  # a resumed bake too: nothing but a bake is written into
    run = Run(run_dir)
    check_bakeable(run)
    staging = Staging(out)
    fingerprint = run_fingerprint(run)
    if staging.fingerprint() == fingerprint and out.is_dir():
        kept = {g: entry_from_dict(BakedGop, d) for g, d in staging.kept(len(run.gops)).items()}
        log.info("%s: resuming, %d of %d GOPs kept", out, len(kept), len(run.gops))
        return kept
    prepare_bake_out(out, [run_dir])
    staging.start(fingerprint)
    return {}


def bake_gop_task(run_dir: Path, g: int, out: Path) -> BakedGop:
    """Bake GOP g of the run into `out` and record it."""
    entry = bake_gop(Run(run_dir), g, out)
    if round_trips(entry):
        Staging(out).record(g, entry_to_dict(entry), [entry.mapping, entry.planes, entry.samples])
    return entry


def bake_gaussians_task(ply_dir: Path, out: Path, options: dict[str, Any]) -> int:
    """Bake a folder of 3DGS PLY frames into `out` (emptied first: what a killed bake left goes) as
    `featvid bake` does, with its gop / sh_degree / fps; returns the bake's GOP count."""
    prepare_bake_out(out, [ply_dir])
    bake_gaussians(ply_dir, out, **options)
    return len(Baked(out).gops)


def finish_bake_task(run_dir: Path, out: Path, entries: list[BakedGop]) -> Path:
    """Write the bake's MLP and baked.json (last); the staging folder goes."""
    sweep_temporaries(out)
    finish_bake(Run(run_dir), out, entries)
    Staging(out).remove()
    return out


# ---- encode -----------------------------------------------------------------------------------------

def plan_stream(baked: Path, out: Path, preset: str | None, crf: float | None, backend: str,
                basis: bool | None, ladder: tuple[str, ...] | None = None,
                plane_qp: tuple[float, ...] | None = None,
                space_qp: tuple[float, ...] | None = None) -> tuple[EncodePlan, dict[int, GopEntry]]:
    """Plan the stream (featvid.codecs.encode.plan_encode: reads, checks, fits the feature basis)
    of one preset or of a ladder of presets (then `preset` is None), and get `out` ready: resume
    what an earlier job of the same plan left staged, or start over. plane_qp, space_qp: the
    preset's QP offsets overridden (None: its own). Returns the plan and the GOPs already done."""
    check_output_dir(out, STREAM, [baked])  # a resumed stream too, and before the plan's fitting
    plan = plan_encode(baked, out, preset, crf, backend, basis, ladder=None if ladder is None else list(ladder),
                       plane_qp=plane_qp, space_qp=space_qp)
    staging = Staging(out)
    fingerprint = stream_fingerprint(plan)
    if staging.fingerprint() == fingerprint and out.is_dir() and not (out / MANIFEST).exists():
        kept = {g: entry_from_dict(GopEntry, d) for g, d in staging.kept(len(plan.baked.gops)).items()}
        log.info("%s: resuming, %d of %d GOPs kept", out, len(kept), len(plan.baked.gops))
        return plan, kept
    prepare_out(out, [baked])
    staging.start(fingerprint)
    return plan, {}


def encode_gop_task(plan: EncodePlan, g: int) -> GopEntry:
    """Encode GOP g of the plan (its folder is written anew) and record it."""
    shutil.rmtree(plan.out / f"gop_{g:05d}", ignore_errors=True)  # what a killed attempt left
    entry = encode_gop(plan, g)
    if round_trips(entry):
        Staging(plan.out).record(g, entry_to_dict(entry), gop_files(plan.out, entry.dir))
    return entry


def finish_stream(plan: EncodePlan, entries: list[GopEntry]) -> Path:
    """Write the stream's MLP and manifest (last); the staging folder goes."""
    sweep_temporaries(plan.out)
    finish_encode(plan, entries)
    Staging(plan.out).remove()
    return plan.out


# ---- train ------------------------------------------------------------------------------------------

def train_task(data: Path, run_dir: Path, preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume) `data` into `run_dir` with a training preset and overrides (TrainConfig
    flat names), as `featvid train` does; returns its figures (frames, GOPs)."""
    from featvid.pipeline import train_dataset

    summary = train_dataset(data, run_dir, preset, overrides)
    return {"frames": summary.frames, "gops": summary.gops}


# ---- scores -----------------------------------------------------------------------------------------

def score(source: Path, data: Path, out_json: Path) -> dict[str, Any]:
    """Held-out PSNR (dB) / SSIM of a run or stream folder on the dataset `data`, written to `out_json`."""
    from featvid.pipeline import evaluate_source

    report = evaluate_source(source, data)
    write_json(out_json, report.to_json())
    return {"psnr": report.mean_psnr, "ssim": report.mean_ssim}
