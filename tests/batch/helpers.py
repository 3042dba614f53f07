"""What the batch tests share: tiny runs and job files, a content digest of output folders, and an
executor that runs tasks in the test process (for the runner's logic; the real executors are
tested on real jobs)."""
from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path

from featvid.batch.executors import call
from featvid.bench.digest import content_digest as content  # noqa: F401 (the tests' name)
from featvid.formats.synthetic import make_run

PRESETS = ("h264-crf16.5", "h265-crf23")


def make_runs(root: Path, names=("alpha", "beta"), frames: int = 6, gop: int = 2, nan_in: str | None = None) -> dict[str, Path]:
    """Finished synthetic run folders (24^3, 4 channels, GOPs of `gop` frames), one seed each;
    the run named `nan_in` gets a NaN in its last frame (its last GOP cannot be baked)."""
    return {n: make_run(root / "runs" / n, frames=frames, gop=gop, shape=(24, 24, 24), channels=4, seed=i,
                        nan_frame=frames - 1 if n == nan_in else None) for i, n in enumerate(names)}


def write_job(path: Path, runs: dict[str, Path], presets=PRESETS, retries: int = 1, out: str = "out") -> Path:
    """A TOML job: every run baked and encoded with every preset into `out` beside the file."""
    lines = [f'out = "{out}"', f"retries = {retries}", "encode = [" + ", ".join(f'"{p}"' for p in presets) + "]"]
    for name, run in runs.items():
        lines += ["", "[[sequence]]", f'name = "{name}"', f'run = "{run}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def raw_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


class InlineExecutor:
    """Runs each task at once in this process (the executor protocol of featvid.batch.executors)."""

    name = "inline"

    def __init__(self) -> None:
        self.workers, self.startup_s, self.calls = 1, 0.0, []

    def start(self) -> None:
        pass

    def share(self, value):
        return value

    def submit(self, fn, *args) -> cf.Future:
        self.calls.append(fn.__name__)
        f: cf.Future = cf.Future()
        try:
            f.set_result(call(fn, *args))
        except Exception as e:
            f.set_exception(e)
        return f

    def wait(self, handles):
        return [handles[0]]

    def result(self, handle):
        return handle.result()

    def lost_all(self, exc) -> bool:
        return False

    def recover(self) -> None:
        pass

    def close(self) -> None:
        pass
