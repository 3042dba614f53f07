"""Figures for benchmark reports: matplotlib's object API on the Agg canvas, so that plotting
touches no global state (no pyplot, no `matplotlib.use`), and PNGs written atomically."""
from __future__ import annotations

from pathlib import Path

from featvid.atomic import atomic_path


def figure(width: float, height: float, ncols: int = 1):
    """(figure, [axes]) of ncols side by side, `width` x `height` inches."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def save_png(fig, path: str | Path, dpi: int = 120) -> None:
    """Write the figure as a PNG at `path`, atomically."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
