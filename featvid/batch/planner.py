"""The job planner: a job file becomes outputs (a baked folder, streams), each a small state
machine that hands the runner its next tasks as the last ones finish.

    bake of a run:  open (resume or start over) -> one task per GOP -> finish (baked.json last)
    bake of PLY frames (Gaussians): one task, the whole bake (featvid.bake.gaussians)
    stream:         open (plan, fit the basis; resume or start over) -> one task per GOP -> finish
                    (manifest last); it waits for its sequence's bake
    either, when the sequence names a dataset: score (held-out PSNR / SSIM, OUTPUT.eval.json)

An output that is already finished is kept as it is, never rewritten: a stream whose manifest is
there (and was made with the same preset, options, basis and back end: otherwise that output
fails, saying so), a bake whose baked.json is there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from featvid.bake.atlas import baked_from
from featvid.formats.baked import Baked
from featvid.formats.run import Run
from featvid.batch import tasks
from featvid.batch.jobfile import EncodeSpec, Job, Sequence
from featvid.codecs.manifest import MANIFEST, Manifest
from featvid.errors import FeatvidError, FormatError
from featvid.gaussians.ply import ply_frames
from featvid.limits import read_json


@dataclass
class Task:
    """One unit of work of an output."""

    output: "Output"
    step: str  # "open", "gop", "finish", "score"
    fn: Callable[..., Any]
    args: tuple
    gop: int | None = None
    attempts: int = 0  # failed attempts so far

    @property
    def label(self) -> str:
        """Names the sequence, the output and the GOP, e.g. "dancer / web.fvv: encode GOP 3"."""
        what = f"GOP {self.gop}" if self.gop is not None else self.step
        return f"{self.output.label}: {self.output.verb} {what}" if self.step == "gop" else \
            f"{self.output.label}: {what}"


class Output:
    """One thing a job makes, with what the summary reports of it."""

    kind = ""
    verb = ""

    def __init__(self, sequence: str, name: str, path: Path, gops_total: int = 0,
                 deps: list["Output"] | None = None, data: Path | None = None) -> None:
        self.sequence = sequence
        self.name = name
        self.path = path
        self.gops_total = gops_total
        self.deps = deps or []
        self.data = data  # the dataset to score on, or None
        self.status = "waiting"  # -> running -> done | kept | failed | skipped
        self.gops_done = 0
        self.seconds = 0.0  # task time, summed over workers
        self.failures = 0  # failed attempts, retried or not
        self.error: str | None = None
        self.score: dict[str, float] | None = None
        self.entries: dict[int, Any] = {}  # GOP -> its entry, for the finishing task
        self.share: Callable[[Any], Any] = lambda v: v  # the executor's, set by the runner

    @property
    def label(self) -> str:
        return f"{self.sequence} / {self.name}"

    @property
    def finished(self) -> bool:
        """Its files are complete (its score may still be running)."""
        return self.status in ("done", "kept")

    def begin(self) -> list[Task]:
        """Its first tasks, once every output it depends on is finished."""
        raise NotImplementedError

    def take(self, task: Task, value: Any) -> list[Task]:
        """A task of this output returned `value`: the tasks that follow (open -> every GOP not
        done yet -> finish -> score)."""
        if task.step == "open":
            self.entries = self._opened(value)
            self.gops_done = len(self.entries)
            todo = [self._gop_task(g) for g in range(self.gops_total) if g not in self.entries]
            return todo or [self._finish()]
        if task.step == "gop":
            self.entries[task.gop] = value
            self.gops_done = len(self.entries)
            return [self._finish()] if self.gops_done == self.gops_total else []
        if task.step == "finish":
            self.status = "done"
            return self._score_tasks()
        return self._took_score(value)

    def _opened(self, value: Any) -> dict[int, Any]:
        """What the open task returned: the GOPs already done {g: entry}."""
        raise NotImplementedError

    def _gop_task(self, g: int) -> Task:
        raise NotImplementedError

    def _finish(self) -> Task:
        raise NotImplementedError

    def fail(self, task: Task | None, why: str) -> None:
        """`task` failed for good (None: before any task ran)."""
        if task is not None and task.step == "score":  # the output itself is complete
            self.error = f"score: {why}"
        else:
            self.status, self.error = "failed", why

    def skip(self, why: str) -> None:
        self.status, self.error = "skipped", why

    # scores
    @property
    def score_file(self) -> Path:
        return self.path.parent / f"{self.path.name}.eval.json"

    def score_source(self) -> Path:
        return self.path

    def _score_tasks(self) -> list[Task]:
        if self.data is None:
            return []
        try:
            d = read_json(self.score_file, str(self.score_file))
            self.score = {"psnr": float(d["mean_psnr"]), "ssim": float(d["mean_ssim"])}
            return []  # scored by an earlier job
        except (FormatError, ValueError, KeyError, TypeError):
            return [Task(self, "score", tasks.score, (self.score_source(), self.data, self.score_file))]

    def _took_score(self, value: dict[str, float]) -> list[Task]:
        self.score = value
        return []


class BakeOutput(Output):
    """A run baked into OUT/<sequence>/baked, GOP by GOP."""

    kind = "bake"
    verb = "bake"

    def __init__(self, seq: Sequence, deps: list[Output] | None = None) -> None:
        assert seq.run is not None
        self.run_dir = seq.run
        gops = 0 if deps else len(Run(seq.run).gops)  # a run the job trains: counted once it is trained
        super().__init__(seq.name, "baked", seq.baked, gops, deps, data=seq.data)

    @property
    def score_file(self) -> Path:
        return self.path.parent / "run.eval.json"  # the float model: what every stream is measured against

    def score_source(self) -> Path:
        return self.run_dir

    def begin(self) -> list[Task]:
        if not self.gops_total:
            try:
                self.gops_total = len(Run(self.run_dir).gops)
            except FeatvidError as e:
                self.fail(None, str(e))
                return []
        if (self.path / "baked.json").is_file():
            try:
                baked = Baked(self.path)
            except FeatvidError as e:
                self.fail(None, f"holds an unreadable bake ({e}); remove it to bake again")
                return []
            if len(baked.gops) != self.gops_total:
                self.fail(None, f"holds a bake of {len(baked.gops)} GOPs, the run has {self.gops_total}; "
                                "remove it to bake again")
                return []
            try:
                same_run = baked_from(Run(self.run_dir), baked)
            except FeatvidError as e:
                self.fail(None, str(e))
                return []
            if not same_run:
                self.fail(None, "holds a bake of another run (the run was trained again since, or by an older "
                                "featvid); remove it to bake again")
                return []
            self.status, self.gops_done = "kept", self.gops_total
            return self._score_tasks()
        self.status = "running"
        return [Task(self, "open", tasks.open_bake, (self.run_dir, self.path))]

    def _opened(self, value: dict[int, Any]) -> dict[int, Any]:
        return dict(value)

    def _gop_task(self, g: int) -> Task:
        return Task(self, "gop", tasks.bake_gop_task, (self.run_dir, g, self.path), gop=g)

    def _finish(self) -> Task:
        entries = [self.entries[g] for g in range(self.gops_total)]
        return Task(self, "finish", tasks.finish_bake_task, (self.run_dir, self.path, entries))


class GaussianBakeOutput(Output):
    """A folder of 3DGS PLY frames baked into OUT/<sequence>/baked in one task, as `featvid bake`
    does (bake_gaussians writes the whole bake; a killed one is baked again from the start)."""

    kind = "bake"
    verb = "bake"

    def __init__(self, seq: Sequence) -> None:
        assert seq.ply is not None
        super().__init__(seq.name, "baked", seq.baked, gops_total=1)  # its GOP count once it is baked
        self.ply, self.options = seq.ply, dict(seq.ply_options)

    def begin(self) -> list[Task]:
        if (self.path / "baked.json").is_file():
            kept = self._kept()
            if isinstance(kept, str):
                self.fail(None, f"holds a bake {kept}; remove it to bake again")
            else:
                self.status, self.gops_total, self.gops_done = "kept", kept, kept
            return []
        self.status = "running"
        return [Task(self, "bake", tasks.bake_gaussians_task, (self.ply, self.path, self.options))]

    def _kept(self) -> int | str:
        """The GOP count of the finished bake there when it is of these frames (it is kept), else
        how it differs."""
        try:
            baked = Baked(self.path)
            sources = [p.name for p in ply_frames(self.ply)]
        except FeatvidError as e:
            return f"that cannot be read ({e})"
        if baked.gaussians is None:
            return "of a run, not of Gaussian PLY frames"
        if baked.meta.get("sources") != sources:
            return f"of other PLY frames than the {len(sources)} in {self.ply}"
        degree = self.options.get("sh_degree")
        if degree is not None and baked.gaussians.sh_degree != degree:
            return f"of SH degree {baked.gaussians.sh_degree}, not {degree}"
        return len(baked.gops)

    def take(self, task: Task, value: int) -> list[Task]:
        self.status, self.gops_total, self.gops_done = "done", value, value
        return []


class StreamOutput(Output):
    """One stream OUT/<sequence>/<name>.fvv of a bake, GOP by GOP."""

    kind = "stream"
    verb = "encode"

    def __init__(self, seq: Sequence, spec: EncodeSpec, backend: str, gops_total: int,
                 deps: list[Output]) -> None:
        super().__init__(seq.name, f"{spec.name}.fvv", seq.stream_dir(spec), gops_total, deps, seq.data)
        self.baked, self.spec, self.backend = seq.baked, spec, backend
        self.plan: Any = None  # the EncodePlan, as the executor shares it

    def begin(self) -> list[Task]:
        if (self.path / MANIFEST).is_file():
            why = self._differs()
            if why:
                self.fail(None, f"holds a finished stream made {why}; it is never rewritten: remove it or "
                                "give this encode another name")
                return []
            self.status, self.gops_done = "kept", self.gops_total
            return self._score_tasks()
        self.status = "running"
        s = self.spec
        return [Task(self, "open", tasks.plan_stream,
                     (self.baked, self.path, s.preset, s.crf, self.backend, s.basis, s.ladder, s.plane_qp,
                      s.space_qp))]

    def _opened(self, value: tuple[Any, dict[int, Any]]) -> dict[int, Any]:
        plan, kept = value
        self.gops_total = len(plan.baked.gops)
        self.plan = self.share(plan)  # sent to every GOP task: Ray puts it in its object store once
        return dict(kept)

    def _gop_task(self, g: int) -> Task:
        return Task(self, "gop", tasks.encode_gop_task, (self.plan, g), gop=g)

    def _finish(self) -> Task:
        return Task(self, "finish", tasks.finish_stream, (self.plan, [self.entries[g] for g in range(self.gops_total)]))

    def _differs(self) -> str | None:
        """How the finished stream there differs from this encode ("with preset x", ...), or None
        (Manifest.differs: the one staleness rule)."""
        try:
            m = Manifest.read(self.path)
        except FeatvidError as e:
            return f"by something else (unreadable manifest: {e})"
        self.gops_total = len(m.gops)  # unknown before where the job makes the bake (PLY frames, train)
        return m.differs(self.spec.wanted(), self.spec.crf, self.backend, self.spec.basis)


class TrainOutput(Output):
    """A sequence's run trained (or resumed) into OUT/<sequence>/run, one task on one worker
    (a config with segments trains them one after another there: featvid.train.segments)."""

    kind = "train"
    verb = "train"

    def __init__(self, seq: Sequence) -> None:
        assert seq.train is not None and seq.run is not None and seq.data is not None
        super().__init__(seq.name, "run", seq.run, gops_total=1)  # one unit on the progress bar
        self.spec, self.dataset = seq.train, seq.data

    def begin(self) -> list[Task]:
        self.status = "running"
        return [Task(self, "train", tasks.train_task, (self.dataset, self.path, self.spec.preset,
                                                       dict(self.spec.overrides)))]

    def take(self, task: Task, value: Any) -> list[Task]:
        self.status, self.gops_done = "done", 1
        return []


class SingleTask(Output):
    """One task of its own (what `featvid bench` runs through an executor: one point each)."""

    kind = "task"

    def __init__(self, name: str, fn: Callable[..., Any], args: tuple) -> None:
        super().__init__("", name, Path(name), gops_total=1)  # one unit on the progress bar
        self.fn, self.args = fn, args
        self.value: Any = None

    @property
    def label(self) -> str:
        return self.name

    def begin(self) -> list[Task]:
        self.status = "running"
        return [Task(self, "run", self.fn, self.args)]

    def take(self, task: Task, value: Any) -> list[Task]:
        self.value, self.status, self.gops_done = value, "done", 1
        return []


def plan_job(job: Job) -> list[Output]:
    """The outputs of a job, in the job file's order (each sequence's bake before its streams).
    An input that cannot be read makes its outputs failed ones, reported with the rest."""
    outputs: list[Output] = []
    for seq in job.sequences:
        deps: list[Output] = []
        gops = 0
        if seq.train is not None:
            deps = [TrainOutput(seq)]
            outputs.append(deps[0])
        if seq.ply is not None:
            deps = [GaussianBakeOutput(seq)]
            outputs.append(deps[0])
        if seq.run is not None:
            try:
                bake: Output = BakeOutput(seq, deps)
                gops = bake.gops_total
            except FeatvidError as e:
                bake = Output(seq.name, "baked", seq.baked)
                bake.fail(None, str(e))
            outputs.append(bake)
            deps = [bake]
        unreadable = None
        if seq.run is None and seq.ply is None:
            try:
                gops = len(Baked(seq.baked).gops)
            except FeatvidError as e:
                unreadable = str(e)
        for spec in seq.encodes:
            outputs.append(StreamOutput(seq, spec, job.backend, gops, deps))
            if unreadable:
                outputs[-1].fail(None, unreadable)
    return outputs
