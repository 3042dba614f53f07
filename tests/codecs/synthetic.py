"""Tiny synthetic run folders for the codec and baker tests: they live in the package
(featvid.formats.synthetic), where the benchmarks find them too."""
from featvid.formats.synthetic import make_grid, make_run

__all__ = ["make_grid", "make_run"]
