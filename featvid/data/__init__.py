"""Datasets: cameras and rays, the MultiViewVideo loaders (Blender JSON, per-frame NGP, NHR/ReRF, COLMAP, N3DV)
with their frame sources, masks, undistortion and scene-box estimate, and the synthetic scenes."""
from featvid.data.cameras import Cameras
from featvid.data.load import load_dataset
from featvid.data.video import MultiViewVideo

__all__ = ["Cameras", "MultiViewVideo", "load_dataset"]
