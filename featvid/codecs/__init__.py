"""Codecs: quantization, packing, presets, PyAV and FFmpeg-CLI back ends, the stream manifest and reader.

    bake_run(run_dir, baked_dir)                     run folder -> baked folder (featvid.bake.atlas)
    encode_baked(baked_dir, "NAME.fvv", preset=...)   baked folder -> stream folder
    open_stream("NAME.fvv").frame(t)                 stream -> SparseGrid
"""
from featvid.bake.atlas import bake_run
from featvid.codecs.encode import encode_baked, encode_run
from featvid.codecs.manifest import Manifest
from featvid.codecs.presets import DEFAULT_PRESET, PRESETS, Preset, get_preset
from featvid.codecs.stream import Stream, open_stream

__all__ = ["bake_run", "encode_baked", "encode_run", "Manifest", "DEFAULT_PRESET", "PRESETS", "Preset",
           "get_preset", "Stream", "open_stream"]
