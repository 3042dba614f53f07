"""Progress output: a bar on a terminal, whole lines in a log (issue #24: a `make demo` whose
output went to a file wrote 836 lines of redrawn bars)."""
from __future__ import annotations

import io
from pathlib import Path

from click.testing import CliRunner
from tqdm import tqdm

from featvid.cli import main
from featvid.progress import LineProgress, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_at_the_start_and_the_end_of_a_stage():
    log = io.StringIO()
    bar = progress_bar(range(3), desc="coarse pass", unit="frame", file=log)
    assert isinstance(bar, LineProgress)
    assert list(bar) == [0, 1, 2]  # the end of the loop closes it, as tqdm does
    lines = log.getvalue().splitlines()
    assert lines[0] == "coarse pass: 0/3 frame"
    assert lines[1].startswith("coarse pass: 3/3 frame in ") and lines[1].endswith(" s")
    assert len(lines) == 2 and "\r" not in log.getvalue()


def test_an_inner_loop_writes_one_line_with_its_count_and_postfix():
    log = io.StringIO()
    bar = progress_bar(total=60, initial=5, desc="frame 3", unit="it", leave=False, file=log)
    assert log.getvalue() == ""  # nothing until it ends
    for _ in range(10):
        bar.update(1)
    bar.set_postfix(psnr="31.20", iters=15)
    bar.refresh()
    bar.close()
    bar.close()  # a second close writes nothing
    assert log.getvalue().splitlines() == [log.getvalue().splitlines()[0]]
    line = log.getvalue().splitlines()[0]
    assert line.startswith("frame 3: 15/60 it in ") and line.endswith(" s (psnr=31.20, iters=15)")


def test_no_total_a_with_block_and_disable():
    log = io.StringIO()
    with progress_bar(desc="decode", unit="frame", leave=False, file=log) as bar:
        bar.update(8)
    assert log.getvalue().startswith("decode: 8 frame in ")
    quiet = io.StringIO()
    for _ in progress_bar(range(4), desc="synth", disable=True, file=quiet):
        pass
    assert quiet.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar():
    term = _Terminal()
    bar = progress_bar(range(2), desc="synth", file=term)
    assert isinstance(bar, tqdm)
    list(bar)
    assert "\r" in term.getvalue()  # redrawn in place, as on any terminal


def test_the_pipeline_in_a_log_is_a_few_whole_lines(tmp_path: Path, tiny_dataset: Path, tiny_run: Path):
    """The demo's stages after training through the CLI with stdout and stderr not terminals
    (CliRunner), on the session's tiny run (4 frames, 2 GOPs): whole lines only, a bounded number.
    (The trainer's bars are the same helper: a line a stage's start and end, one a frame's fit.)"""
    runner = CliRunner()
    baked, stream, orbit = tmp_path / "baked", tmp_path / "s.fvv", tmp_path / "orbit.mp4"
    text = ""
    for args in (["synth", str(tmp_path / "scene"), "--frames", "2", "--views", "3", "--size", "16"],
                 ["bake", str(tiny_run), "--out", str(baked)],
                 ["encode", str(baked), "--out", str(stream)],
                 ["eval", str(stream), "--data", str(tiny_dataset), "--device", "cpu"],
                 ["render", str(stream), "--path", "orbit", "--out", str(orbit), "--size", "32x32", "--device", "cpu"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        text += result.output  # stdout and stderr, interleaved as in a `2>&1` log
    lines = text.splitlines()
    assert "\r" not in text
    assert sum(line.startswith("synth dancer: ") for line in lines) == 2  # start and end
    assert sum(line.startswith("bake: 2/2 GOP in ") for line in lines) == 1
    assert sum(line.startswith("encode h264") for line in lines) == 1
    assert sum(line.startswith("play: 4/4 frame in ") for line in lines) == 1
    assert len(lines) <= 22, text  # measured: 18 lines (5 of them progress, 7 the eval table)
