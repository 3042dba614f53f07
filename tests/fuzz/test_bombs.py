"""Bombs: small files whose headers make a reader run away (issue 26, "every read bounded").

Each bomb is built here, small and fast (a few KB to ~2 MB, no giant buffer is ever made to build
it), and read through the public reader under `bounded` (60 s, 1.5 GB of address space above
what the process holds: an allocation past it fails inside the reader, and the test with it). The
reader must refuse with a FeatvidError, one line, before it allocates what the file claims.
"""
from __future__ import annotations

import io
import json
import math
import os
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from featvid.errors import FeatvidError, FormatError
from tests.fuzz.helpers import bounded

BOMB_SECONDS = 60.0  # the bound per case
BOMB_BYTES = 1536 << 20  # 1.5 GB: what a case may add


def refused(call, *args, match: str | None = None, **kwargs) -> str:
    """Call the reader under the bound; it must raise a FeatvidError of one line. Its message."""
    with bounded(BOMB_SECONDS, BOMB_BYTES):
        with pytest.raises(FeatvidError) as info:
            call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    if match is not None:
        assert match in message, message
    return message


# ---- builders -------------------------------------------------------------------------------------

def gzip_of_zeros_after(prefix: bytes, megabytes: int) -> bytes:
    """gzip of `prefix` then `megabytes` MiB of zeros, built from one compressed MiB repeated (each
    flushed to a byte boundary with its history reset, so the copies are identical): ~1 KB a MiB.
    Its trailer's CRC is not computed: a reader that inflates that far has already run away."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: the gzip wrapper is written below
    head = co.compress(prefix) + co.flush(zlib.Z_FULL_FLUSH)
    block = co.compress(bytes(1 << 20)) + co.flush(zlib.Z_FULL_FLUSH)
    tail = co.flush(zlib.Z_FINISH)
    size = (len(prefix) + (megabytes << 20)) & 0xFFFFFFFF
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + head + block * megabytes + tail + struct.pack("<II", 0, size)


def zstd_rle_frame(prefix: bytes, zeros: int, state_size: bool = True) -> bytes:
    """One zstd frame: `prefix` as a raw block, then `zeros` zero bytes as RLE blocks of 128 KiB (4
    bytes each: 3 GB is ~100 KB), with the content size in the frame header when `state_size`."""
    block = 1 << 17
    out = struct.pack("<I", 0xFD2FB528)
    out += bytes([0xC0 if state_size else 0x00, 17 - 10 << 3])  # 8-byte content size; window 2^17
    if state_size:
        out += struct.pack("<Q", len(prefix) + zeros)
    out += struct.pack("<I", len(prefix) << 3)[:3] + prefix  # a raw block (type 0)
    n = math.ceil(zeros / block)
    for i in range(n):
        size = min(block, zeros - i * block)
        out += struct.pack("<I", (size << 3) | (1 << 1) | (i == n - 1))[:3] + b"\0"  # an RLE block (type 1)
    return out


def safetensors_head(tensors: dict[str, tuple[str, list[int], int]], meta: dict | None = None) -> bytes:
    """The first bytes of a safetensors file: its length and JSON header (name -> (dtype, shape,
    bytes)), offsets packed in order; no data."""
    header, at = {}, 0
    for name, (dtype, shape, nbytes) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + nbytes]}
        at += nbytes
    if meta:
        header["__metadata__"] = meta
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def png_of_zeros(width: int, height: int) -> bytes:
    """A gray PNG of width x height zeros: ~1 KB a megapixel, built a row at a time."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    co = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the row
    body = b"".join(co.compress(row) for _ in range(height)) + co.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def png_video(frame: bytes, frames: int, header_size: tuple[int, int]) -> bytes:
    """An MP4 of `frames` copies of the PNG `frame`, its header stating `header_size` (w, h):
    packets muxed as they are, nothing encoded."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("png", rate=30)
        s.width, s.height, s.pix_fmt = header_size[0], header_size[1], "gray"
        for i in range(frames):
            p = av.Packet(frame)
            p.stream, p.pts, p.dts, p.time_base = s, i, i, Fraction(1, 30)
            c.mux(p)
    return buf.getvalue()


@pytest.fixture(scope="module")
def big_png() -> bytes:
    return png_of_zeros(16000, 16000)  # 256 MB a frame decoded; ~250 KB here


# ---- mappings -----------------------------------------------------------------------------------

def mapping_header(grid: list[int], blocks: int) -> bytes:
    return b"FVMAP1\n" + json.dumps({"grid_shape": grid, "block": 4, "tile": 8, "num_blocks": blocks}).encode() + b"\n"


def test_a_gzip_mapping_that_inflates_to_gigabytes_is_refused():
    from featvid.field.mapping import Mapping

    bomb = gzip_of_zeros_after(mapping_header([64, 64, 64], 1), 2048)  # 2 GiB inflated
    assert len(bomb) < 2_500_000  # measured 2,124,000 bytes
    refused(Mapping.from_bytes, bomb, "m.fvmap", match="m.fvmap: not a readable featvid mapping (inflates to more")


def test_a_mapping_of_a_1024_cubed_grid_is_refused_before_any_table():
    from featvid.field.mapping import Mapping

    bomb = zlib.compress(mapping_header([1024, 1024, 1024], 1) + b"\0\0\0\0", wbits=31)  # every axis <= MAX_GRID
    assert len(bomb) < 2048
    refused(Mapping.from_bytes, bomb, "m.fvmap", match="more than the")


def test_a_mapping_claiming_more_blocks_than_an_atlas_may_hold_is_refused():
    from featvid.field.mapping import MAX_BLOCKS, Mapping

    deltas = np.ones(MAX_BLOCKS + 1, dtype="<u4").tobytes()  # every number alone is plausible
    bomb = zlib.compress(mapping_header([320, 320, 320], MAX_BLOCKS + 1) + deltas, wbits=31)
    refused(Mapping.from_bytes, bomb, "m.fvmap", match="num_blocks")


def test_a_large_mapping_is_indexed_a_chunk_at_a_time_within_the_bound():
    """40,000 blocks (three chunks of `vertex_index`): every block's 64 vertices get a pixel, within
    the bound. At the ceiling (MAX_BLOCKS, a 4096 x 4096 atlas) from_bytes + vertex_layout peak at
    +1.45 GB (measured; too slow for this suite on 2 cores)."""
    from featvid.field.mapping import _CHUNK, Mapping

    blocks = 40_000
    assert blocks > 2 * _CHUNK
    deltas = np.ones(blocks, dtype="<u4")
    deltas[0] = 0  # Morton codes 0 .. blocks - 1: inside a 64^3 box of blocks
    data = zlib.compress(mapping_header([256, 256, 256], blocks) + deltas.tobytes(), wbits=31)
    with bounded(BOMB_SECONDS, BOMB_BYTES):
        m = Mapping.from_bytes(data, "m.fvmap")
        index = m.vertex_index()
    used = index[index >= 0]
    assert used.numel() == 64 * blocks and used.unique().numel() == used.numel()


# ---- videos -------------------------------------------------------------------------------------

@pytest.mark.parametrize("decoder", ["pyav", "ffmpeg"])
@pytest.mark.parametrize("header", [(16000, 16000), (64, 64)], ids=["header-says-so", "header-lies"])
def test_a_video_of_huge_png_frames_is_refused_before_decoding(big_png, decoder, header):
    """4 PNG frames of 16000^2 (~1 MB file) where the manifest says 64 x 64: refused from the header
    when it states the size, by the decoder's pixel limit when it lies."""
    from featvid.codecs.backends import get_backend
    from featvid.codecs.video import FrameBound

    video = png_video(big_png, 4, header)
    frames = lambda: list(get_backend(decoder).decode_bytes(video, Path("atlas.mp4"), "none",  # noqa: E731
                                                           FrameBound(64, 64, 4)))
    refused(frames, match="atlas.mp4")


def test_a_video_with_more_frames_than_the_manifest_is_refused_from_its_header():
    from featvid.codecs.backends import get_backend
    from featvid.codecs.video import FrameBound

    video = png_video(png_of_zeros(64, 64), 12, (64, 64))
    refused(lambda: list(get_backend("pyav").decode_bytes(video, Path("a.mp4"), "none", FrameBound(64, 64, 4))),
            match="12 frames, the manifest states 4")


# ---- baked planes -------------------------------------------------------------------------------

PLANES_SHAPE = [30, 13, 1024, 2048]  # 3.3 GB of float32 claimed


@pytest.mark.parametrize("state_size", [True, False], ids=["size-in-frame", "size-unstated"])
@pytest.mark.parametrize("expect", [None, (2, 13, 64, 64)], ids=["no-shape", "baked-json-shape"])
def test_a_zstd_planes_bomb_is_refused(state_size, expect):
    from featvid.formats.baked import read_planes

    n = math.prod(PLANES_SHAPE) * 4
    head = safetensors_head({"planes": ("F32", PLANES_SHAPE, n)}, {"start": "0", "frames": "30"})
    bomb = zstd_rle_frame(head, n, state_size)
    assert len(bomb) < 110_000  # measured 99,894 bytes: the 98 KB
    refused(read_planes, Path("gop_00000.planes.zst"), bomb, expect, match="gop_00000.planes.zst")


def test_a_zstd_planes_file_longer_than_its_header_is_refused():
    """The header states a small tensor; the frame holds gigabytes after it: decompression stops."""
    from featvid.formats.baked import read_planes

    head = safetensors_head({"planes": ("F32", [1, 1, 8, 8], 256)})
    refused(read_planes, Path("p.zst"), zstd_rle_frame(head, 3 << 30, state_size=False), match="p.zst")


# ---- NumPy and safetensors headers --------------------------------------------------------------

def test_a_npy_header_claiming_a_billion_rows_is_refused(tmp_path):
    from featvid.data.n3dv import read_poses_bounds

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 17)})
    path = tmp_path / "poses_bounds.npy"
    path.write_bytes(buf.getvalue() + bytes(17 * 8))
    refused(read_poses_bounds, path, match="poses_bounds.npy: cannot read as a numeric .npy array")


def test_a_npy_file_still_reads(tmp_path):
    from featvid.limits import read_npy

    a = np.arange(34, dtype=np.float64).reshape(2, 17)
    np.save(tmp_path / "a.npy", a)
    assert np.array_equal(read_npy(tmp_path / "a.npy", "a.npy", 1 << 20), a)


@pytest.mark.parametrize("kind", ["grid", "mlp", "canonical"])
@pytest.mark.parametrize("lie", ["header-length", "tensor-shape"])
def test_a_safetensors_header_that_claims_more_than_the_file_is_refused(kind, lie):
    from featvid.field.files import canonical_safetensors
    from featvid.field.grid import SparseGrid
    from featvid.field.mlp import TinyMLP

    if lie == "header-length":
        data = struct.pack("<Q", 1 << 62) + b"{}"
    else:  # a tensor of 10^9 x 10^9 floats in a 100-byte file
        data = safetensors_head({"coords": ("I32", [10**9, 10**9], 4 * 10**18)}, {"shape": "[8, 8, 8]"}) + bytes(64)
    reader = {"grid": SparseGrid.from_bytes, "mlp": TinyMLP.from_bytes, "canonical": canonical_safetensors}[kind]
    refused(reader, data, *(["x.safetensors"] if kind != "canonical" else []))


# ---- JSON ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("reader", ["frames_json", "camera_path", "job"])
def test_deeply_nested_json_is_a_one_line_error(tmp_path, reader):
    from featvid.batch.jobfile import load_job
    from featvid.data.files import read_frames_json
    from featvid.render.paths import load_path_file

    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    call = {"frames_json": lambda: read_frames_json(path), "camera_path": lambda: load_path_file(path, 4),
            "job": lambda: load_job(path)}[reader]
    refused(call, match="deep.json")


# ---- file records -------------------------------------------------------------------------------

def _records(**files: bytes):
    from featvid.field.files import FileRecord

    return {name: FileRecord.of(data) for name, data in files.items()}


def test_a_file_larger_than_its_record_is_refused_before_it_is_read(tmp_path):
    """A recorded 10-byte file replaced by a 64 GiB sparse one: a stat refuses it, nothing is read."""
    from featvid.field.files import read_checked

    (tmp_path / "m.fvmap").write_bytes(b"0123456789")
    records = _records(**{"m.fvmap": b"0123456789"})
    assert read_checked(tmp_path, "m.fvmap", records, "run.json", "mapping") == b"0123456789"
    with open(tmp_path / "m.fvmap", "r+b") as f:
        f.truncate(64 << 30)
    refused(read_checked, tmp_path, "m.fvmap", records, "run.json", "mapping",
            match=f"{64 << 30} bytes, run.json records 10")


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    from featvid.field.files import read_checked

    folder = tmp_path / "run"
    folder.mkdir()
    (tmp_path / "secret").write_bytes(b"0123456789")
    (folder / "m.fvmap").symlink_to(tmp_path / "secret")
    refused(read_checked, folder, "m.fvmap", _records(**{"m.fvmap": b"0123456789"}), "run.json", "mapping",
            match="outside the folder")
    (folder / "inside").write_bytes(b"0123456789")  # a link that stays inside reads
    (folder / "n.fvmap").symlink_to("inside")
    assert read_checked(folder, "n.fvmap", _records(**{"n.fvmap": b"0123456789"}), "run.json", "mapping")


def test_a_fifo_in_place_of_a_file_is_refused_without_blocking(tmp_path):
    from featvid.field.files import read_checked

    os.mkfifo(tmp_path / "m.fvmap")  # opening it for reading would wait for a writer
    refused(read_checked, tmp_path, "m.fvmap", {}, "run.json", "mapping", match="not a regular file")


def test_limits_helpers_refuse_at_their_limit():
    from featvid.limits import gunzip, zstd_decompress

    assert gunzip(zlib.compress(b"x" * 100, wbits=31), "g", 100) == b"x" * 100
    with pytest.raises(FormatError, match="g: inflates to more than the 99"):
        gunzip(zlib.compress(b"x" * 100, wbits=31), "g", 99)
    with pytest.raises(FormatError, match="g: the gzip data is cut short"):
        gunzip(zlib.compress(b"x" * 100, wbits=31)[:-9], "g", 100)
    import zstandard

    z = zstandard.ZstdCompressor().compress(b"y" * 100)
    assert zstd_decompress(z, "z", 100) == b"y" * 100
    with pytest.raises(FormatError, match="z: decompresses to 100 bytes, more than the 99"):
        zstd_decompress(z, "z", 99)
