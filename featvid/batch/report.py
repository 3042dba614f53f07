"""What a batch job reports: one row per output (status, GOPs, bytes per frame, scores, time,
failed attempts) and every task that failed for good, as a table and as JSON."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from featvid.codecs.manifest import MANIFEST
from featvid.errors import FormatError
from featvid.limits import read_json
from featvid.metrics import bytes_per_frame


@dataclass(frozen=True)
class Failure:
    """A task that failed after all its attempts: which sequence, output and GOP, and why."""

    label: str  # e.g. "dancer / web.fvv: encode GOP 3"
    sequence: str
    output: str
    step: str  # "plan" (before any task), "open", "gop", "finish", "score"
    gop: int | None
    attempts: int
    reason: str


@dataclass
class Row:
    """One output of the job."""

    sequence: str
    output: str
    kind: str  # "bake", "stream", "task"
    path: str
    status: str  # "done" (made now), "kept" (finished before), "failed", "skipped"
    gops_done: int
    gops_total: int
    frames: int | None = None
    bytes_per_frame: float | None = None  # every file of the folder / frames
    renditions: dict[str, float] | None = None  # a ladder's: video bytes per frame of each rendition
    psnr: float | None = None  # held-out, dB (a bake's row: the run's float model)
    ssim: float | None = None
    seconds: float = 0.0  # task time summed over workers
    failures: int = 0  # failed attempts (retried or not)
    note: str = ""


@dataclass
class BatchReport:
    """A finished (or partly failed) job."""

    rows: list[Row]
    failures: list[Failure]
    wall_s: float
    startup_s: float  # the executor's start (pool processes or Ray), not in wall_s
    executor: str
    workers: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures and all(r.status in ("done", "kept") for r in self.rows)

    def table(self) -> str:
        """The summary table, one line per output, then the totals and every failure."""
        head = ["sequence", "output", "status", "GOPs", "KiB/frame", "PSNR dB", "SSIM", "task s", "failed", "note"]
        lines = [head]
        for r in self.rows:
            lines.append([r.sequence, r.output, r.status, f"{r.gops_done}/{r.gops_total}",
                          _num(None if r.bytes_per_frame is None else r.bytes_per_frame / 1024, 2), _num(r.psnr, 2),
                          _num(r.ssim, 4), f"{r.seconds:.1f}", str(r.failures), r.note[:80]])
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        text = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
        text.insert(1, "  ".join("-" * w for w in widths))
        made = sum(r.status == "done" for r in self.rows)
        kept = sum(r.status == "kept" for r in self.rows)
        bad = len(self.rows) - made - kept
        where = (f"on {self.executor} with {self.workers} workers (+ {self.startup_s:.1f} s to start them)"
                 if self.startup_s > 0 else f"on {self.executor} (not started: nothing to run)")
        text.append(f"{len(self.rows)} outputs: {made} made, {kept} kept, {bad} failed or skipped; "
                    f"{self.wall_s:.1f} s {where}")
        for f in self.failures:
            text.append(f"FAILED {f.label}" + (f" after {f.attempts} attempts" if f.attempts else "") + f": {f.reason}")
        return "\n".join(text)

    def to_json(self) -> dict[str, Any]:
        return {"executor": self.executor, "workers": self.workers, "wall_s": self.wall_s,
                "startup_s": self.startup_s, "ok": self.ok, "outputs": [asdict(r) for r in self.rows],
                "failures": [asdict(f) for f in self.failures], **self.extra}


def _num(x: float | None, digits: int) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _frames(kind: str, path) -> int | None:
    """The frame count a finished output's own metadata gives."""
    meta = path / (MANIFEST if kind == "stream" else "baked.json")
    try:
        return int(read_json(meta, str(meta))["frames"])
    except (FormatError, ValueError, KeyError, TypeError):
        return None


def _renditions(path) -> dict[str, float] | None:
    """A finished ladder stream's video bytes per frame, per rendition (None for one rendition)."""
    try:
        m = read_json(path / MANIFEST, str(path / MANIFEST))
        if len(m.get("renditions", ())) < 2:
            return None
        return {str(r["name"]): int(r["bytes"]) / int(m["frames"]) for r in m["renditions"]}
    except (FormatError, ValueError, KeyError, TypeError, AttributeError, ZeroDivisionError):
        return None


def summarize(outputs: list, failures: list[Failure], wall_s: float, executor: Any) -> BatchReport:
    """The report of a job's outputs after the runner is done with them."""
    rows = []
    for o in outputs:
        row = Row(o.sequence, o.name, o.kind, str(o.path), o.status, o.gops_done, o.gops_total,
                  seconds=o.seconds, failures=o.failures, note=o.error or "")
        if o.status in ("done", "kept") and o.kind in ("stream", "bake"):
            row.frames = _frames(o.kind, o.path)
            row.bytes_per_frame = bytes_per_frame(o.path, row.frames) if row.frames else None
            row.renditions = _renditions(o.path) if o.kind == "stream" else None
            if row.renditions and not row.note:  # KiB/frame is the whole stream: every rendition
                row.note = "video KiB/frame " + ", ".join(f"{n} {b / 1024:.2f}" for n, b in row.renditions.items())
        if o.score:
            row.psnr, row.ssim = o.score.get("psnr"), o.score.get("ssim")
        rows.append(row)
    return BatchReport(rows, failures, wall_s, executor.startup_s, executor.name, executor.workers)
