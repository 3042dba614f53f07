"""`load_dataset`: open a dataset folder with the loader its files call for."""
from __future__ import annotations

from pathlib import Path

import torch

from featvid.data import blender, n3dv
from featvid.data.video import MultiViewVideo, check_downscale
from featvid.errors import DatasetError


def load_dataset(path: str | Path, *, aabb: torch.Tensor | None = None, downscale: float = 1.0) -> MultiViewVideo:
    """Open a dataset folder: D-NeRF/Blender JSON (`transforms_train.json`) or N3DV (`poses_bounds.npy` + `camNN.mp4`).

    aabb: [2, 3] world box that overrides the dataset's own. downscale: image size divisor (>= 1).
    A D-NeRF JSON file may also be given directly; its folder is used.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        path = path.parent
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset folder")
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder (expected a D-NeRF/Blender or N3DV dataset folder)")
    check_downscale(downscale)
    if blender.is_blender(path):
        return blender.load_blender(path, aabb=aabb, downscale=downscale)
    if n3dv.is_n3dv(path):
        return n3dv.load_n3dv(path, aabb=aabb, downscale=downscale)
    if not any(path.iterdir()):
        raise DatasetError(f"{path}: empty folder (expected a D-NeRF/Blender or N3DV dataset)")
    raise DatasetError(f"{path}: not a dataset: expected transforms_train.json (D-NeRF/Blender) "
                       f"or poses_bounds.npy with camNN.mp4 videos (N3DV)")
