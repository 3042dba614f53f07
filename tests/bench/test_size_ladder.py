"""benchmarks/size_ladder.py on the tiny run: every output written, the figures consistent."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from featvid.bake.atlas import bake_run

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "size_ladder.py"


def _module():
    spec = importlib.util.spec_from_file_location("size_ladder", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_size_ladder_writes_json_markdown_and_plot(tiny_run: Path, tiny_dataset: Path, tmp_path: Path):
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "run").symlink_to(tiny_run)
    (demo / "scene").symlink_to(tiny_dataset)
    bake_run(tiny_run, demo / "baked")
    out = tmp_path / "results"
    assert _module().main(["--demo", str(demo), "--crf", "22,30", "--presets", "", "--out", str(out)]) == 0
    result = json.loads((out / "size_ladder.json").read_text())
    points = result["points"]
    assert len(points) == 2 + 2 + 1  # ladder with and without the basis, the default preset
    ladder = sorted((p for p in points if p["preset"] == "ladder" and p["feature_basis"] != "none"),
                    key=lambda p: p["crf"])
    assert ladder[0]["bytes_per_frame"] > ladder[1]["bytes_per_frame"]  # lower crf, more bytes
    # the tiny run (float model 28.0 dB): crf 22 loses 1.0-1.2 dB, crf 30 5.2-5.6 dB, the default 0.4 dB
    floors = {22.0: 1.6, 30.0: 6.2}
    for p in points:
        assert abs(p["ratio"] - result["float16_bytes_per_frame"] / p["bytes_per_frame"]) < 1e-9
        assert abs(p["loss_db"] - (result["float"]["psnr"] - p["psnr"])) < 1e-9
        assert p["loss_db"] < floors.get(p["crf"] if p["preset"] == "ladder" else None, 0.8), p
    assert {p["feature_basis"] for p in points} == {"sensitivity-klt", "none"}
    assert "| ladder |" in (out / "size_ladder.md").read_text()
    assert (out / "size_ladder.png").read_bytes()[:4] == b"\x89PNG"


def test_size_ladder_reports_a_missing_demo(tmp_path: Path, capsys):
    assert _module().main(["--demo", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2
    assert "error" in capsys.readouterr().err
