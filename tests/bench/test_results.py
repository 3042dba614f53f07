"""The one results writer every benchmark ends with (featvid.bench.results)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from featvid.bench.plot import figure
from featvid.bench.results import plain_json, write_results


def test_write_results_writes_json_markdown_and_plot(tmp_path: Path):
    fig, (ax,) = figure(3, 2)
    ax.plot([0, 1], [1, 0])
    data = {"psnr": 31.5, "nan": math.nan, "inf": math.inf, "path": tmp_path, "n": np.int64(3),
            "pair": (1, -math.inf), "ok": True, "none": None}
    files = write_results(tmp_path / "out", "bench", data, "# title", fig)
    assert files == {"json": tmp_path / "out" / "bench.json", "markdown": tmp_path / "out" / "bench.md",
                     "plot": tmp_path / "out" / "bench.png"}
    # strict JSON: a reader that refuses NaN takes it
    back = json.loads(files["json"].read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert back == {"psnr": 31.5, "nan": "nan", "inf": "inf", "path": str(tmp_path), "n": 3, "pair": [1, "-inf"],
                    "ok": True, "none": None}
    assert files["markdown"].read_text() == "# title\n"
    assert files["plot"].read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bench.json", "bench.md", "bench.png"]  # no temp files


def test_no_figure_no_png_and_a_plot_name_of_its_own(tmp_path: Path):
    files = write_results(tmp_path, "playback", {"fps": 30.0}, "table\n")
    assert set(files) == {"json", "markdown"} and not (tmp_path / "playback.png").exists()
    fig, _ = figure(2, 2)
    files = write_results(tmp_path, "results", {}, "", fig, plot_name="rd")
    assert files["plot"] == tmp_path / "rd.png" and files["plot"].is_file()


def test_plain_json_leaves_json_alone():
    value = {"a": [1, 2.5, "x", None, False], "b": {"c": -0.0}}
    assert plain_json(value) == value
