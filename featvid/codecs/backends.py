"""The registry of codec back ends: the encoder, the stream reader and the CLI choices read it."""
from __future__ import annotations

from featvid.codecs.ffmpeg_backend import FFmpegBackend
from featvid.codecs.pyav_backend import PyAVBackend
from featvid.codecs.video import Backend
from featvid.errors import ConfigError

BACKENDS: dict[str, Backend] = {b.name: b for b in (PyAVBackend(), FFmpegBackend())}
DEFAULT_BACKEND = "pyav"


def get_backend(name: str) -> Backend:
    """The back end called `name`; ConfigError listing the known ones otherwise."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown codec back end {name!r}; known: {', '.join(BACKENDS)}") from None
