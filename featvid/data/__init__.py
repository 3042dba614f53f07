"""Datasets: cameras and rays, the MultiViewVideo loaders (D-NeRF/Blender JSON, N3DV), the synthetic scenes."""
from featvid.data.cameras import Cameras
from featvid.data.dataset import MultiViewVideo, load_dataset

__all__ = ["Cameras", "MultiViewVideo", "load_dataset"]
