"""Codecs: quantization, packing, presets, PyAV and FFmpeg-CLI back ends, the stream manifest and reader.

    encode_baked(baked_dir, "NAME.fvv", preset=...)   baked folder (featvid.formats.baked) -> stream folder
    open_stream("NAME.fvv").frame(t)                 stream -> SparseGrid

Nothing here imports the trainer or the baker: a player needs only this package and featvid.field.
"""
from featvid.codecs.encode import encode_baked
from featvid.codecs.manifest import Manifest
from featvid.codecs.presets import DEFAULT_PRESET, PRESETS, Preset, get_preset
from featvid.codecs.stream import Stream, open_stream

__all__ = ["encode_baked", "Manifest", "DEFAULT_PRESET", "PRESETS", "Preset", "get_preset", "Stream", "open_stream"]
