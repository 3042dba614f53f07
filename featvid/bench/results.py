"""One way to write a benchmark's results: NAME.json for programs, NAME.md for people, NAME.png.

Every benchmark (benchmarks/*.py, `featvid bench`) ends with `write_results`: each file is written
atomically (featvid.atomic), so a benchmark killed while writing leaves the previous results whole,
and the JSON is strict (no NaN or Infinity, which JSON has not: they become the strings "nan",
"inf", "-inf"; paths become text), so any JSON reader takes it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from featvid.atomic import write_json, write_text
from featvid.bench.plot import save_png


def plain_json(obj: Any) -> Any:
    """`obj` with what strict JSON has no word for spelled out: non-finite floats as "nan", "inf",
    "-inf", paths and other objects as their text, numpy scalars as numbers, tuples as lists."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else ("nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf"))
    if isinstance(obj, dict):
        return {str(k): plain_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_json(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", None) == 0:  # a numpy / torch scalar
        return plain_json(obj.item())
    return str(obj)


def write_results(out_dir: str | Path, name: str, data: dict[str, Any], markdown: str, figure: Any = None,
                  plot_name: str | None = None, dpi: int = 110) -> dict[str, Path]:
    """Write `data` to OUT_DIR/NAME.json, `markdown` to OUT_DIR/NAME.md and, when given, the
    matplotlib `figure` to OUT_DIR/PLOT_NAME.png (PLOT_NAME: NAME unless given), each atomically.
    Returns {"json": path, "markdown": path[, "plot": path]}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / f"{name}.json", "markdown": out / f"{name}.md"}
    write_json(files["json"], plain_json(data))
    write_text(files["markdown"], markdown if markdown.endswith("\n") else markdown + "\n")
    if figure is not None:
        files["plot"] = out / f"{plot_name or name}.png"
        save_png(figure, files["plot"], dpi=dpi)
    return files
