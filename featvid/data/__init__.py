"""Datasets: cameras and rays, the MultiViewVideo loaders (D-NeRF/Blender JSON, N3DV), the synthetic scenes."""
from featvid.data.cameras import Cameras
from featvid.data.load import load_dataset
from featvid.data.video import MultiViewVideo

__all__ = ["Cameras", "MultiViewVideo", "load_dataset"]
