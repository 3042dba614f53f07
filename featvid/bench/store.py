"""The benchmark's results file: one JSON line per finished point, so a rerun skips them."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from featvid.errors import FormatError
from featvid.limits import read_json


class ResultStore:
    """Finished points as JSON lines; a point counts as done when its id and fingerprint match."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    row = read_json(line, str(path))
                except FormatError:
                    continue  # a line cut short by a killed run
                if isinstance(row, dict) and "id" in row:
                    self.rows[row["id"]] = row

    def get(self, point_id: str, fingerprint: str) -> dict | None:
        row = self.rows.get(point_id)
        return row if row is not None and row.get("fingerprint") == fingerprint else None

    def add(self, row: dict) -> None:
        """Append one finished point (flushed to disk at once: a killed run keeps it)."""
        self.rows[row["id"]] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row, default=_json_default) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _json_default(x: Any) -> Any:
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x)}")


