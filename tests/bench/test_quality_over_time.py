"""benchmarks/quality_over_time.py without training: rows taken from an earlier result (`--from`),
the BD-rate matrix, and every output written; earlier results of another setup refused."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from featvid.train.config import preset
from featvid.errors import FeatvidError

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "quality_over_time.py"
SETUP = {"scene": "crossing", "frames": 3, "views": 6, "size": 16, "preset": "test"}
NAMES = ["default", "motion", "before"]


def _module():
    spec = importlib.util.spec_from_file_location("quality_over_time", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(mod, name: str, psnr: list[float], ladder: list[tuple[float, float]]) -> dict:
    """A variant row as run_variant writes it (ladder: (bytes per frame, PSNR) per crf)."""
    return {"variant": name, "overrides": mod.VARIANTS[name], "config": preset("test", **mod.VARIANTS[name]).to_dict(),
            "float_psnr": psnr, "float_mean": sum(psnr) / len(psnr), "stream_psnr": psnr,
            "stream_mean": sum(psnr) / len(psnr), "stream_bytes_per_frame": ladder[1][0],
            "worst_drop_db": psnr[0] - min(psnr), "mean_drop_db": psnr[0] - sum(psnr) / len(psnr),
            "seconds_per_frame": [5.0, 1.0, 1.0], "iters": [300, 40, 40], "gops": [[0, 3]],
            "keyframes": [{"frame": 0, "why": "first frame"}], "train_wall_s_this_time": 7.0,
            "ladder": [{"crf": c, "bytes_per_frame": b, "psnr": p, "per_frame": [p] * 3}
                       for c, (b, p) in zip(mod.LADDER, ladder)]}


def _earlier(mod, path: Path, **setup) -> Path:
    # `default` reaches each PSNR with 20 % fewer bytes than `motion`; `before` never gets near either
    motion = [(4000.0, 28.0), (3000.0, 27.0), (2000.0, 26.0), (1500.0, 25.0)]
    rows = [_row(mod, "default", [30.0, 29.8, 29.9], [(0.8 * b, p) for b, p in motion]),
            _row(mod, "motion", [30.0, 29.0, 28.5], motion),
            _row(mod, "before", [30.0, 22.0, 21.0], [(b, p - 8) for b, p in motion])]
    path.write_text(json.dumps({"benchmark": "quality_over_time", **{**SETUP, **setup}, "variants": rows}))
    return path


def test_rows_from_an_earlier_result_make_the_tables_and_plot(tmp_path: Path):
    mod = _module()
    earlier = _earlier(mod, tmp_path / "earlier.json")
    out = tmp_path / "results"
    argv = ["--scene", "crossing", "--frames", "3", "--views", "6", "--size", "16", "--preset", "test",
            "--variants", "default,motion,before", "--from", str(earlier), "--out", str(out), "--cache", str(tmp_path / "cache")]
    assert mod.main(argv) == 0
    result = json.loads((out / "quality_over_time.json").read_text())
    assert [v["variant"] for v in result["variants"]] == ["default", "motion", "before"]
    assert all(v["from"] == str(earlier) for v in result["variants"])
    assert result["bd_rate"]["motion"]["default"] == pytest.approx(-20.0, abs=0.5)
    assert result["bd_rate"]["default"]["motion"] == pytest.approx(25.0, abs=0.5)
    assert result["bd_rate"]["before"]["default"] is None  # PSNR ranges apart: no BD-rate
    md = (out / "quality_over_time.md").read_text()
    assert "| default |  | -20.0 % | - |" in md and "| motion | +25.0 % |  | - |" in md  # row against column
    assert "| default | 30.00 | 29.80 (+0.20) | 29.90 (+0.10) |" in md
    assert (out / "quality_over_time.png").stat().st_size > 10_000
    assert not (tmp_path / "cache").exists()  # nothing trained, so no scene rendered either


def test_earlier_results_of_another_setup_or_config_are_refused(tmp_path: Path):
    mod = _module()
    other = _earlier(mod, tmp_path / "other.json", size=32)
    with pytest.raises(FeatvidError, match="not .*'size': 16"):
        mod.earlier_rows([other], SETUP, NAMES)
    changed = json.loads(_earlier(mod, tmp_path / "changed.json").read_text())
    changed["variants"][1]["config"]["schedule"]["frame_iters"] += 1
    (tmp_path / "changed.json").write_text(json.dumps(changed))
    with pytest.raises(FeatvidError, match="'motion' was trained with another config"):
        mod.earlier_rows([tmp_path / "changed.json"], SETUP, NAMES)
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(FeatvidError, match="not a quality_over_time result"):
        mod.earlier_rows([tmp_path / "junk.json"], SETUP, NAMES)
    with pytest.raises(FeatvidError, match="not readable JSON"):
        mod.earlier_rows([tmp_path / "missing.json"], SETUP, NAMES)


def test_rows_are_taken_by_the_config_they_trained_whatever_their_name(tmp_path: Path):
    """`default` measured before the density TV existed (no such field, so off) is today's `no-tv`;
    today's `default` (TV on) is not it, and then needs a row of its own config."""
    mod = _module()
    setup = {**SETUP, "preset": "fast"}
    old = preset("fast", density_tv_weight=0.0).flat()  # results files held the flat form then
    del old["density_tv_weight"]
    earlier = {"benchmark": "quality_over_time", **setup,
               "variants": [{"variant": "default", "config": old, "from": "old.json"}]}
    (tmp_path / "old.json").write_text(json.dumps(earlier))
    rows = mod.earlier_rows([tmp_path / "old.json"], setup, ["no-tv"])
    assert list(rows) == ["no-tv"] and rows["no-tv"]["variant"] == "no-tv" and rows["no-tv"]["from"] == "old.json"
    with pytest.raises(FeatvidError, match="'default' was trained with another config"):
        mod.earlier_rows([tmp_path / "old.json"], setup, ["no-tv", "default"])
    tv = {"benchmark": "quality_over_time", **setup,
          "variants": [{"variant": "tv3e-3", "config": preset("fast").to_dict()}]}
    (tmp_path / "tv.json").write_text(json.dumps(tv))
    rows = mod.earlier_rows([tmp_path / "old.json", tmp_path / "tv.json"], setup, ["no-tv", "default"])
    assert rows["default"]["config"]["losses"]["density_tv_weight"] > 0 and rows["no-tv"]["from"] == "old.json"
