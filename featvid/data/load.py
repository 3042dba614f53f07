"""`load_dataset`: open a dataset folder with the loader its files call for (or the one named).

The formats, each a loader module with an `is_*` test and a `load_*` function:

    blender   D-NeRF / Blender / nerfstudio JSON   transforms_train.json          featvid.data.blender
    ngp       per-frame NGP JSON (V^3, HiFi4G)     <frame>/transforms.json        featvid.data.ngp
              or a static instant-ngp capture      transforms.json + images/
    nhr       NHR / ReRF                           CamPose.inf + Intrinsic.inf    featvid.data.nhr
    colmap    COLMAP-calibrated rig                sparse/0/cameras.bin ...       featvid.data.colmap
    n3dv      N3DV / DyNeRF                        poses_bounds.npy + camNN.mp4   featvid.data.n3dv

A folder that looks like two of them is an error that asks for `--format` (LLFF's imgs2poses,
for one, writes both a COLMAP model and poses_bounds.npy).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from featvid.data import blender, colmap, n3dv, ngp, nhr
from featvid.data.video import MultiViewVideo, check_downscale
from featvid.errors import DatasetError

# name -> (detector, loader, what a folder of that format holds)
FORMATS: dict[str, tuple[Callable[[Path], bool], Callable[..., MultiViewVideo], str]] = {
    "blender": (blender.is_blender, blender.load_blender, "transforms_train.json (D-NeRF/Blender)"),
    "ngp": (ngp.is_ngp, ngp.load_ngp, "numbered frame folders with a transforms.json (per-frame NGP), or one transforms.json (static NGP)"),
    "nhr": (nhr.is_nhr, nhr.load_nhr, "CamPose.inf + Intrinsic.inf (NHR/ReRF)"),
    "colmap": (colmap.is_colmap, colmap.load_colmap, "a COLMAP model in sparse/0 with a video per camera"),
    "n3dv": (n3dv.is_n3dv, n3dv.load_n3dv, "poses_bounds.npy with camNN.mp4 videos (N3DV)"),
}
FORMAT_NAMES = list(FORMATS)
MASK_OPTIONS = ("auto", "none")


def detect_format(path: Path) -> str:
    """The format of a dataset folder, from its files (see the module docstring)."""
    hits = [name for name, (detect, _, _) in FORMATS.items() if detect(path)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise DatasetError(f"{path}: looks like {' and like '.join(hits)}: choose one with --format")
    if not any(path.iterdir()):
        raise DatasetError(f"{path}: empty folder (expected a dataset: {', '.join(FORMAT_NAMES)})")
    if n3dv.camera_names(path):
        raise DatasetError(f"{path}: camNN videos but no {n3dv.POSES_FILE} (N3DV camera poses) and no COLMAP model")
    raise DatasetError(f"{path}: not a dataset: expected " + "; or ".join(what for _, _, what in FORMATS.values()))


def load_dataset(path: str | Path, *, aabb: torch.Tensor | None = None, downscale: float = 1.0,
                 format: str | None = None, masks: str | Path | None = "auto") -> MultiViewVideo:
    """Open a dataset folder as a MultiViewVideo (images read lazily).

    aabb: [2, 3] world box that overrides the dataset's own (None: the dataset's, else estimated
    on first use). downscale: image size divisor (>= 1). format: one of FORMAT_NAMES, or None to
    detect it. masks: "auto" (the masks the layout has), "none", or a folder of per-camera masks.
    A D-NeRF JSON file may also be given directly; its folder is used.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        path = path.parent
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset folder")
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder (expected a dataset folder: {', '.join(FORMAT_NAMES)})")
    check_downscale(downscale)
    if format is None:
        format = detect_format(path)
    if format not in FORMATS:
        raise DatasetError(f"unknown dataset format {format!r} (choose from {', '.join(FORMAT_NAMES)})")
    detect, load, what = FORMATS[format]
    if not detect(path):
        raise DatasetError(f"{path}: not a {format} dataset (expected {what})")
    if format == "blender" and masks is not None and str(masks) not in MASK_OPTIONS:
        raise DatasetError(f"{path}: Blender/D-NeRF datasets carry their masks as the images' alpha; "
                           f"--masks takes only auto or none here")
    return load(path, aabb=aabb, downscale=downscale, masks=masks)
