"""Progress of long loops: a tqdm bar on a terminal, whole lines in a log.

A bar redraws itself with carriage returns: right on a terminal, hundreds of lines in a file (a
`make demo` whose output went to a log wrote 836). So when the stream the progress goes to
(stderr) is not a terminal, `progress_bar` returns a LineProgress instead, which writes no carriage
return and only whole lines, counts and seconds:

    stage bars (leave=True: synth, coarse pass, fine pass)   a line when they start and one when they end
    inner bars (leave=False: one frame's fit, bake, encode)  a line when they end

Both have the part of tqdm's face the package uses: iterate, update, set_postfix(_str), n, total,
refresh, close, and `with`.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm


def is_terminal(file: TextIO) -> bool:
    """Whether `file` is an interactive terminal (a closed or odd stream counts as not)."""
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """A progress counter that writes whole lines (see the module docstring), never a '\\r'."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "",
                 unit: str = "it", leave: bool = True, initial: int = 0, disable: bool = False,
                 file: TextIO | None = None):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable = iterable
        self.total = total
        self.n = initial
        self.desc, self.unit, self.leave, self.disable = desc, unit, leave, disable
        self.file = file
        self.postfix = ""
        self.closed = False
        self.started = time.perf_counter()
        if leave:
            self._write(self._count())

    def _count(self) -> str:
        return f"{self.n}/{self.total} {self.unit}" if self.total is not None else f"{self.n} {self.unit}"

    def _write(self, text: str) -> None:
        if self.disable:
            return
        file = self.file if self.file is not None else sys.stderr  # looked up late: pytest swaps it
        file.write(f"{self.desc}: {text}\n" if self.desc else f"{text}\n")
        file.flush()  # interleaves in order with the CLI's own lines in a `2>&1` log

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("this progress counter was made without an iterable")
        try:
            for item in self.iterable:
                yield item
                self.n += 1
        except BaseException:  # an error in the loop, or its consumer dropped it (GeneratorExit)
            self.closed = True  # no end line for a loop that did not finish: an error is the one line
            raise
        self.close()  # the loop ran to its end

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def refresh(self) -> None:
        """Nothing to redraw: lines are written only at the start and the end."""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        seconds = time.perf_counter() - self.started
        self._write(f"{self._count()} in {seconds:.1f} s" + (f" ({self.postfix})" if self.postfix else ""))

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if exc_type is not None:
            self.closed = True  # as in __iter__: the error, not a count, is what the user reads
        self.close()


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             leave: bool = True, initial: int = 0, disable: bool = False,
             file: TextIO | None = None) -> tqdm | LineProgress:
    """A progress counter over `iterable` (or updated by hand up to `total`) written to `file`
    (default stderr): a tqdm bar when that is a terminal, a LineProgress otherwise. leave: a stage
    (its lines stay) rather than an inner loop; disable: write nothing."""
    stream = file if file is not None else sys.stderr
    if is_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, initial=initial, disable=disable,
                    file=stream)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, leave=leave, initial=initial,
                        disable=disable, file=file)
