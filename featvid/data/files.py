"""Reading a dataset's metadata files, with errors that name the file (and the line or key).

Shared by the loaders: text files of numbers (NHR's .inf, COLMAP's .txt), JSON objects with a
"frames" list (Blender / nerfstudio and NGP transforms), their numeric keys and their 4x4 poses.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from featvid.errors import DatasetError


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not a text file: {e}") from e


def read_frames_json(path: Path, allow_empty: bool = True) -> dict:
    """A JSON object with a "frames" list (transforms.json files)."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DatasetError(f"{path}: cannot read: {e.strerror or e}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or (not allow_empty and not meta["frames"]):
        raise DatasetError(f"{path}: expected an object with a{'' if allow_empty else ' non-empty'} \"frames\" list")
    return meta


def json_number(meta: dict, entry: dict, key: str, path: Path) -> float | None:
    """A per-entry value if present, else the top-level one, else None; it must be a finite number."""
    value = entry.get(key, meta.get(key))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DatasetError(f"{path}: bad {key!r} value {value!r}")
    return float(value)


def json_pose(entry: dict, path: Path, image: Path) -> np.ndarray:
    """An entry's "transform_matrix" (4x4, or 3x4 completed with [0, 0, 0, 1]) as float64 [4, 4]."""
    try:
        m = np.asarray(entry["transform_matrix"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{path}: {image.name} has no numeric 4x4 \"transform_matrix\"") from e
    if m.shape == (3, 4):
        m = np.concatenate([m, [[0.0, 0.0, 0.0, 1.0]]])
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise DatasetError(f"{path}: {image.name}: \"transform_matrix\" must be a finite 4x4 matrix (NaN or wrong shape)")
    return m


def parse_floats(path: Path, line_no: int, tokens: list[str]) -> list[float]:
    """Finite numbers from a line's tokens."""
    try:
        values = [float(x) for x in tokens]
    except ValueError:
        raise DatasetError(f"{path}: line {line_no}: not numbers: {' '.join(tokens)[:60]!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise DatasetError(f"{path}: line {line_no}: NaN or infinite value")
    return values
