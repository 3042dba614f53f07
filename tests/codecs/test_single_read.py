"""Single read of videos: the stream reader reads a GOP's video once, verifies those bytes against
the manifest's SHA-256, and hands the same bytes to the decoder back end, so a file swapped on disk
between the check and the decode is never decoded unverified (both back ends: PyAV from memory,
the ffmpeg binary from an anonymous in-memory file)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from featvid.codecs import open_stream
from featvid.codecs.backends import get_backend
from featvid.codecs.manifest import Manifest
from featvid.errors import FormatError
from featvid.field import files


@pytest.fixture()
def copy(tiny_stream, tmp_path) -> Path:
    """A private copy of the session's stream (default preset: moov atom after the media data)."""
    return Path(shutil.copytree(tiny_stream, tmp_path / "s.fvv"))


def _flip(path: Path, offset: int, n: int = 16) -> None:
    data = bytearray(path.read_bytes())
    data[offset:offset + n] = bytes(b ^ 0xFF for b in data[offset:offset + n])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("decoder", ["pyav", "ffmpeg"])
def test_a_video_swapped_after_its_check_is_not_decoded(copy, monkeypatch, decoder):
    """The file is altered (16 bytes flipped) right after its hash matched: what is decoded is
    still the verified content, code for code."""
    reference = open_stream(copy, hwaccel="none").decode_codes(0)  # [F, P, H, W] from the pristine file
    video = Manifest.read(copy).gops[0].video
    checked = files.check_record
    swapped = []

    def check_then_swap(path, want, found, recorded_in, error=FormatError):
        checked(path, want, found, recorded_in, error)  # the bytes matched the manifest ...
        if path == copy / video and not swapped:  # ... then someone rewrites the file on disk
            _flip(path, path.stat().st_size // 2)
            swapped.append(video)

    monkeypatch.setattr(files, "check_record", check_then_swap)
    codes = open_stream(copy, hwaccel="none", decoder=decoder).decode_codes(0)
    assert swapped == [video]
    np.testing.assert_array_equal(codes, reference)


@pytest.mark.parametrize("decoder", ["pyav", "ffmpeg"])
def test_decoding_bytes_matches_decoding_the_file(tiny_stream, decoder):
    """The bytes entry point of each back end gives the frames its path entry point gives."""
    backend = get_backend(decoder)
    path = tiny_stream / Manifest.read(tiny_stream).gops[0].video
    by_path = list(backend.decode(path))
    by_bytes = list(backend.decode_bytes(path.read_bytes(), path))
    assert len(by_bytes) == len(by_path) > 0
    for a, b in zip(by_path, by_bytes):
        assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("decoder", ["pyav", "ffmpeg"])
def test_junk_bytes_are_a_stream_error_naming_the_file(tiny_stream, decoder):
    from featvid.errors import StreamError

    with pytest.raises(StreamError, match="gop_00000/atlas.mp4: unreadable or corrupt video"):
        list(get_backend(decoder).decode_bytes(b"\0" * 4096, tiny_stream / "gop_00000" / "atlas.mp4"))


def test_the_ffmpeg_back_end_without_memfd_decodes_from_a_private_temporary_file(tiny_stream, monkeypatch):
    """Where the system has no memfd (macOS), the bytes go to a private temporary file instead."""
    import os

    backend = get_backend("ffmpeg")
    path = tiny_stream / Manifest.read(tiny_stream).gops[0].video
    with_memfd = list(backend.decode_bytes(path.read_bytes(), path))
    monkeypatch.delattr(os, "memfd_create", raising=False)
    without = list(backend.decode_bytes(path.read_bytes(), path))
    assert len(without) == len(with_memfd) > 0
    assert all(np.array_equal(x, y) for a, b in zip(with_memfd, without) for x, y in zip(a, b))
