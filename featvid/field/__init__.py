"""The representation every stage shares: one frame's sparse grid, a GOP's mapping into atlases,
the tiny MLP, and the reference volume renderer that defines what an image of them is.

    SparseGrid   one frame: density + C features on the occupied vertices   (grid.py)
    Mapping      one GOP: grid blocks <-> 8x8 atlas tiles                    (mapping.py)
    TinyMLP      accumulated feature + view direction -> RGB                 (mlp.py)
    Volume, RenderSettings, render_rays, render_image, optical_depth         (volume.py)
    Gop          frames [start, start + frames) sharing one mapping          (gop.py)
    evaluate     held-out PSNR / SSIM of frames against a dataset             (evaluate.py)

It imports nothing from the stages (bake, codecs, render): they all import it.
"""
from featvid.field.gop import Gop
from featvid.field.grid import SparseGrid, grid_shape_for
from featvid.field.mapping import BLOCK, TILE, Mapping
from featvid.field.mlp import MLPConfig, TinyMLP
from featvid.field.volume import (
           DENSITY_RANGE,
           DENSITY_SHIFT,
           RenderSettings,
           Volume,
           optical_depth,
)

__all__ = ["Gop", "SparseGrid", "grid_shape_for", "BLOCK", "TILE", "Mapping", "MLPConfig", "TinyMLP",
           "DENSITY_RANGE", "DENSITY_SHIFT", "RenderSettings", "Volume", "optical_depth"]
