"""Every failure of the command line is one line on stderr (issue 26, "one line, always"):
usage errors and FeatvidErrors exit 2, anything unexpected exits 1 through the last-resort
handler (the traceback only with --debug or FEATVID_DEBUG=1); options are checked before any
work; names too long for the file system and tiny images are refused or handled cleanly."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from featvid.cli import main
from featvid.errors import ConfigError, FeatvidError, FormatError, StreamError

LONG_NAME = "é" * 160 + "a" * 85  # 245 characters, 405 bytes in UTF-8
assert (len(LONG_NAME), len(LONG_NAME.encode())) == (245, 405)


def one_line(result, code: int) -> str:
    """The single line a CliRunner result printed on stderr, after checking the exit status."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def featvid(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The installed console script (the pyproject entry point), or `python -m featvid.cli`."""
    script = Path(sys.executable).parent / "featvid"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "featvid.cli"]
    return subprocess.run(command + list(args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


# ---- click's usage errors: one line, exit 2; help unchanged ---------------------------------------

@pytest.mark.parametrize("args, words", [
    (["train", "--bogus"], "No such option"),
    (["train"], "Missing argument 'DATASET'"),
    (["synth", "x", "--size", "3"], "'--size'"),
    (["no-such-command"], "No such command"),
    (["play", ".", "--hwaccel", "warp"], "'--hwaccel'"),
])
def test_usage_errors_are_one_line_and_exit_2(args, words):
    line = one_line(CliRunner().invoke(main, args), 2)
    assert line.startswith("featvid: error: ") and words in line and "--help" in line, line


def test_the_console_script_goes_through_the_same_handler(tmp_path):
    r = featvid("play", str(tmp_path), "--duration", "inf")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a finite number" in r.stderr, r.stderr


def test_help_and_version_are_unchanged():
    r = CliRunner().invoke(main, ["train", "--help"])
    assert r.exit_code == 0 and r.stdout.startswith("Usage: ") and "--temporal-weight" in r.stdout
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and "version" in r.stdout
    r = CliRunner().invoke(main, [])  # bare `featvid`: click's usage and command list, as before
    assert r.exit_code == 2 and "Commands:" in r.output


def test_train_passes_the_loss_weights_it_names(tmp_path, monkeypatch):
    import featvid.pipeline

    seen = {}

    def fake_train(dataset, out, preset_name, overrides, **options):
        seen.update(overrides)
        return "trained"

    monkeypatch.setattr(featvid.pipeline, "train_dataset", fake_train)
    r = CliRunner().invoke(main, ["train", str(tmp_path), "--out", str(tmp_path / "run"), "--rate-weight", "0.001",
                                  "--distortion-weight", "0.01", "--refresh-slope", "1.5"])
    assert r.exit_code == 0, r.output
    assert seen["rate_weight"] == 0.001 and seen["distortion_weight"] == 0.01 and seen["refresh_slope"] == 1.5
    for given, want in (("h264-crf20", "h264-crf20"), ("none", "")):  # --codec-loop PRESET, or none: off
        seen.clear()
        r = CliRunner().invoke(main, ["train", str(tmp_path), "--out", str(tmp_path / "run"), "--codec-loop", given])
        assert r.exit_code == 0 and seen["codec_loop"] == want, r.output
    for option in ("--rate-weight", "--refresh-slope"):
        r = CliRunner().invoke(main, ["train", str(tmp_path), "--out", str(tmp_path / "run"), option, "-1"])
        assert r.exit_code == 2, option
    # --set: any flat config field, its value read as JSON; the switch of random backgrounds
    seen.clear()
    r = CliRunner().invoke(main, ["train", str(tmp_path), "--out", str(tmp_path / "run"), "--no-random-background",
                                  "--set", "keyframe_tv_weight=0.003", "--set", "space=contracted"])
    assert r.exit_code == 0, r.output
    assert seen["keyframe_tv_weight"] == 0.003 and seen["space"] == "contracted" and seen["random_background"] is False
    for bad, words in ((["--set", "keyframe_tv_weight"], ["NAME=VALUE"]),
                       (["--grid", "64", "--set", "grid_resolution=32"], ["grid_resolution", "both given"])):
        r = CliRunner().invoke(main, ["train", str(tmp_path), "--out", str(tmp_path / "run"), *bad])
        assert r.exit_code == 2 and all(w in r.output for w in words), r.output


def test_train_refuses_a_codec_loop_it_cannot_run_before_training(tiny_dataset, tmp_path):
    r = CliRunner().invoke(main, ["train", str(tiny_dataset), "--out", str(tmp_path / "run"), "--preset", "test",
                                  "--codec-loop", "no-such-preset"])
    assert "no-such-preset" in one_line(r, 2)
    assert not (tmp_path / "run" / "frames").exists()  # nothing trained


# ---- the last-resort handler ------------------------------------------------------------------------

def _break_info(monkeypatch, error: BaseException) -> None:
    import featvid.pipeline

    def describe(*args, **kwargs):
        raise error

    monkeypatch.setattr(featvid.pipeline, "describe", describe)


@pytest.mark.parametrize("error", [RuntimeError("boom\nsecond line"), MemoryError(), RecursionError("too deep"),
                                   KeyError("x"), ZeroDivisionError("division by zero")])
def test_an_unexpected_error_is_one_line_and_exit_1(tmp_path, monkeypatch, error):
    monkeypatch.delenv("FEATVID_DEBUG", raising=False)
    _break_info(monkeypatch, error)
    line = one_line(CliRunner().invoke(main, ["info", str(tmp_path)]), 1)
    assert line.startswith(f"featvid: internal error: {type(error).__name__}: "), line
    assert line.endswith("(run with --debug or FEATVID_DEBUG=1 for the traceback)"), line
    if isinstance(error, RuntimeError) and not isinstance(error, RecursionError):
        assert "boom second line" in line


def test_debug_and_the_environment_show_the_traceback(tmp_path, monkeypatch):
    _break_info(monkeypatch, RuntimeError("boom"))
    monkeypatch.delenv("FEATVID_DEBUG", raising=False)
    r = CliRunner().invoke(main, ["--debug", "info", str(tmp_path)])
    assert r.exit_code == 1 and isinstance(r.exception, RuntimeError)  # re-raised: Python prints the traceback
    r = CliRunner(env={"FEATVID_DEBUG": "1"}).invoke(main, ["info", str(tmp_path)])
    assert r.exit_code == 1 and isinstance(r.exception, RuntimeError)
    r = CliRunner(env={"FEATVID_DEBUG": "0"}).invoke(main, ["info", str(tmp_path)])
    one_line(r, 1)


def test_debug_traceback_from_the_real_process(tmp_path):
    code = ("import featvid.pipeline as p\n"
            "def describe(*a, **k): raise RuntimeError('boom')\n"
            "p.describe = describe\n"
            "from featvid.cli import main\nmain()\n")
    args = [sys.executable, "-c", code, "info", str(tmp_path)]
    # one line without it: test_an_unexpected_error_is_one_line_and_exit_1 (one process start is enough here)
    loud = subprocess.run(args, capture_output=True, text=True, timeout=120, env={**os.environ, "FEATVID_DEBUG": "1"})
    assert loud.returncode == 1 and "Traceback (most recent call last)" in loud.stderr, loud.stderr
    assert "RuntimeError: boom" in loud.stderr and "internal error" not in loud.stderr


def test_featvid_errors_and_file_system_refusals_are_exit_2(tmp_path, monkeypatch):
    monkeypatch.delenv("FEATVID_DEBUG", raising=False)
    _break_info(monkeypatch, StreamError("bad\nstream"))
    assert one_line(CliRunner().invoke(main, ["info", str(tmp_path)]), 2) == "featvid: error: bad stream"
    for code in (errno.ENOSPC, errno.EROFS, errno.ENAMETOOLONG):
        _break_info(monkeypatch, OSError(code, os.strerror(code), str(tmp_path / "out")))
        line = one_line(CliRunner().invoke(main, ["info", str(tmp_path)]), 2)
        assert line == f"featvid: error: {tmp_path / 'out'}: {os.strerror(code)}", line


# ---- options checked before any work -----------------------------------------------------------

def test_demo_refuses_an_unknown_preset_at_once(tmp_path):
    out = tmp_path / "demo"
    for option in ("--preset", "--codec-preset", "--scene"):
        t0 = time.monotonic()
        line = one_line(CliRunner().invoke(main, ["demo", "--out", str(out), option, "nope"]), 2)
        assert time.monotonic() - t0 < 2  # measured ~0.01 s; the synthesis ran a minute before the refusal
        assert line.startswith(f"featvid: error: Invalid value for '{option}': 'nope' is not one of "), line
    assert not out.exists()


def test_run_demo_checks_its_names_before_the_first_step(tmp_path):
    from featvid.pipeline import run_demo

    for kwargs, words in (({"preset_name": "nope"}, "train preset"), ({"codec_preset": "nope"}, "unknown preset"),
                          ({"scene": "nope"}, "unknown scene")):
        with pytest.raises(ConfigError, match=words):
            run_demo(tmp_path / "demo", **kwargs)
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("args", [
    ["train", "DATA", "--out", "RUN", "--temporal-weight", "inf"],
    ["train", "DATA", "--out", "RUN", "--temporal-weight", "nan"],
    ["train", "DATA", "--out", "RUN", "--spatial-weight", "-1"],
    ["train", "DATA", "--out", "RUN", "--density-tv", "inf"],
    ["train", "DATA", "--out", "RUN", "--refresh-margin", "nan"],
    ["train", "DATA", "--out", "RUN", "--downscale", "inf"],
    ["train", "DATA", "--out", "RUN", "--seed", "-1"],
    ["train", "DATA", "--out", "RUN", "--seed", str(2**70)],
    ["synth", "RUN", "--seed", "-5"],
    ["encode", "DATA", "--out", "RUN", "--crf", "inf"],
    ["play", "DATA", "--duration", "inf"],
    ["play", "DATA", "--fps", "nan"],
    ["play", "DATA", "--bandwidth", "inf"],
    ["render", "DATA", "--out", "RUN/x.mp4", "--fps", "inf"],
])
def test_non_finite_or_negative_numbers_are_refused_before_any_work(tmp_path, args):
    (tmp_path / "data").mkdir()
    args = [str(tmp_path / "data") if a == "DATA" else a.replace("RUN", str(tmp_path / "run")) for a in args]
    t0 = time.monotonic()
    line = one_line(CliRunner().invoke(main, args), 2)
    assert time.monotonic() - t0 < 5
    assert line.startswith("featvid: error: Invalid value for '--"), line
    assert not (tmp_path / "run").exists()


# ---- batch job files: ceilings before per-entry checks ---------------------------------------------

def _job(tmp_path: Path, crf: list, sequences: int = 1) -> Path:
    job = {"sequence": [{"run": "r", "name": f"s{i}", "encode": [{"preset": "h264-crf18", "crf": crf}]}
                        for i in range(sequences)]}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    return path


def test_a_huge_crf_list_is_refused_at_once(tmp_path):
    from featvid.batch.jobfile import MAX_CRF_LIST, MAX_OUTPUTS, load_job

    path = _job(tmp_path, [18 + (i % 30) / 10 for i in range(100_000)])
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=f"100000 rates; a crf list holds at most {MAX_CRF_LIST}"):
        load_job(path)
    assert time.monotonic() - t0 < 2  # measured 0.2 s on a loaded 2-core machine; the per-entry checks took minutes
    line = one_line(CliRunner().invoke(main, ["batch", str(path)]), 2)
    assert "at most" in line
    with pytest.raises(ConfigError, match=f"more than {MAX_OUTPUTS} outputs"):
        load_job(_job(tmp_path, list(range(18, 18 + MAX_CRF_LIST)), sequences=MAX_OUTPUTS // MAX_CRF_LIST + 1))
    load_job(_job(tmp_path, [18, 20, 22], sequences=3))  # a job within the ceilings still loads


# ---- names too long for the file system -----------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["synth", "TMP/LONG"],
    ["train", "TMP", "--out", "TMP/LONG"],
    ["bake", "TMP", "--out", "TMP/LONG/baked"],
    ["eval", "TMP", "--data", "TMP", "--out", "TMP/LONG.json"],
    ["info", "TMP/LONG"],
])
def test_a_name_of_405_bytes_is_one_line_exit_2(tmp_path, args):
    args = [a.replace("TMP", str(tmp_path)).replace("LONG", LONG_NAME) for a in args]
    line = one_line(CliRunner().invoke(main, args), 2)
    assert line.startswith("featvid: error: "), line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_check_path_length(tmp_path):
    from featvid.names import NAME_MAX_BYTES, TEMP_MARGIN_BYTES, check_path_length, safe_name

    with pytest.raises(ConfigError, match="405 bytes"):
        check_path_length(tmp_path / LONG_NAME)
    with pytest.raises(ConfigError, match="405 bytes"):
        check_path_length(tmp_path / LONG_NAME / "x")
    longest = "a" * NAME_MAX_BYTES
    (tmp_path / longest).mkdir()  # an existing name may use every byte the file system allows
    assert check_path_length(tmp_path / longest) == tmp_path / longest
    with pytest.raises(ConfigError, match="to spare"):  # a new one leaves room for its temporary file
        check_path_length(tmp_path / ("b" * NAME_MAX_BYTES))
    check_path_length(tmp_path / ("b" * (NAME_MAX_BYTES - TEMP_MARGIN_BYTES)))
    with pytest.raises(ConfigError, match="path of"):
        check_path_length("/".join(["d" * 200] * 30))
    with pytest.raises(FormatError, match="not a plain name"):
        safe_name(LONG_NAME, "video")
    assert issubclass(ConfigError, FeatvidError)


# ---- SSIM of tiny images -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 7, 3), (7, 1, 3), (2, 2, 3), (4, 1, 1, 3)])
def test_ssim_of_tiny_images_is_the_per_pixel_luminance_term(shape):
    from featvid.metrics import ssim

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(shape, generator=g), torch.rand(shape, generator=g)
    c1 = 0.01 ** 2
    expected = float(((2 * a * b + c1) / (a * a + b * b + c1)).mean())  # a 1-px window: contrast-structure is 1
    assert ssim(a, b) == pytest.approx(expected, abs=1e-5)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert 0 < ssim(a, b) < 1
