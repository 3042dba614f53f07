"""Baseline codecs for sequences of SparseGrids: what a feature video has to beat.

Each baseline turns a list of per-frame grids into self-contained bytes (`Encoded.chunks`) and
decodes those bytes, and nothing else, back into grids, so that benchmarks measure size and
quality on a real round trip:

- `Float16Zstd`: the stored float16 grid, zstd-compressed (what a run folder holds, compressed).
- `Uint8Zstd`: per-frame, per-channel min/max quantization to 8 bits, then zstd (lossless after
  the quantization).
- `ReRFCodec`: the codec of ReRF (CVPR 2023) as PAPERS.md describes it: groups of frames, 8^3
  cubes (only occupied ones coded), keyframe intra and later frames as residuals against the
  previous *decoded* frame, 3D DCT, a JPEG-style quantization table scaled by a quality factor,
  entropy coding of DC and AC (here: a range coder from `constriction` with a quantized Laplace
  model per channel and frequency band, instead of ReRF's Huffman tables), zstd for cube
  coordinates.

Layout of every chunk: a tiny section container (`_pack`): uint32 count, uint32 lengths, payloads.
Headers are JSON; arrays are little-endian raw bytes. Nothing is pickled.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import zstandard

from featvid.codecs.quantize import dequantize, fix_range, quantize
from featvid.errors import ConfigError, FormatError, StreamError
from featvid.field.grid import SparseGrid, flat_vertex_index
from featvid.field.mapping import demorton3, morton3
from featvid.limits import read_json

ZSTD_LEVEL = 19  # the strongest ordinary level: baselines get the best general-purpose compressor


@dataclass
class Encoded:
    """A baseline's bitstream: self-contained byte chunks for `num_frames` frames."""

    name: str
    num_frames: int
    chunks: list[bytes]

    @property
    def nbytes(self) -> int:
        """Total size in bytes of every chunk."""
        return sum(len(c) for c in self.chunks)

    @property
    def bytes_per_frame(self) -> float:
        """Bytes per frame (the codec payload only; callers add the MLP like a stream does)."""
        return self.nbytes / max(1, self.num_frames)


class Baseline(Protocol):
    """A grid-sequence codec: `decode(encode(grids))` returns grids of the same scene."""

    name: str

    def encode(self, grids: list[SparseGrid]) -> Encoded: ...

    def decode(self, encoded: Encoded) -> list[SparseGrid]: ...


# ---- shared helpers ---------------------------------------------------------------------------------

def _pack(sections: list[bytes]) -> bytes:
    """Length-prefixed concatenation of byte sections."""
    head = struct.pack(f"<I{len(sections)}I", len(sections), *(len(s) for s in sections))
    return head + b"".join(sections)


def _unpack(data: bytes) -> list[bytes]:
    """Inverse of `_pack`; raises StreamError on truncated data."""
    try:
        (n,) = struct.unpack_from("<I", data, 0)
        lengths = struct.unpack_from(f"<{n}I", data, 4)
    except struct.error as e:
        raise StreamError(f"baseline chunk is truncated ({e})") from e
    pos = 4 + 4 * n
    out = []
    for length in lengths:
        out.append(data[pos:pos + length])
        pos += length
    if pos != len(data):
        raise StreamError("baseline chunk is truncated or has trailing bytes")
    return out


def _header(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _read_header(data: bytes) -> dict:
    try:
        return read_json(data, "baseline header")
    except FormatError as e:
        raise StreamError(f"baseline header is corrupt ({e})") from e


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)


def _unzstd(data: bytes) -> bytes:
    try:
        return zstandard.ZstdDecompressor().decompress(data)
    except zstandard.ZstdError as e:
        raise StreamError(f"baseline payload is corrupt ({e})") from e


def _sorted_frame(grid: SparseGrid) -> tuple[np.ndarray, np.ndarray]:
    """(flat vertex indices [N] sorted, values [1 + C, N] float32 in the same order)."""
    flat = grid.flat_index().numpy()
    order = np.argsort(flat, kind="stable")
    values = torch.cat([grid.density[:, None], grid.features], dim=1).numpy().T[:, order]  # [1 + C, N]
    return flat[order], np.ascontiguousarray(values, dtype=np.float32)


def _encode_coords(flat: np.ndarray) -> bytes:
    """Sorted flat vertex indices -> zstd of their uint32 gaps (small numbers, compress well)."""
    return _zstd(np.diff(flat, prepend=0).astype("<u4").tobytes())


def _decode_coords(data: bytes, shape: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of `_encode_coords`: -> coords [N, 3] int32."""
    flat = np.cumsum(np.frombuffer(_unzstd(data), dtype="<u4").astype(np.int64))
    _, ny, nz = shape
    if len(flat) and flat[-1] >= math.prod(shape):
        raise StreamError("baseline coordinates fall outside the grid")
    return torch.from_numpy(np.stack([flat // (ny * nz), (flat // nz) % ny, flat % nz], -1).astype(np.int32))


def _check_sequence(grids: list[SparseGrid]) -> None:
    if not grids:
        raise ConfigError("a baseline needs at least one frame")
    g0 = grids[0]
    for g in grids[1:]:
        if g.shape != g0.shape or g.num_channels != g0.num_channels or not torch.equal(g.aabb, g0.aabb):
            raise ConfigError("every frame of a sequence needs the same grid shape, channels and box")


def _grid(header: dict, coords: torch.Tensor, values: np.ndarray) -> SparseGrid:
    """SparseGrid from a frame header (aabb, shape) and values [1 + C, N]."""
    v = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    return SparseGrid(torch.tensor(header["aabb"], dtype=torch.float32), tuple(header["shape"]), coords,
                      v[0].clone(), v[1:].T.contiguous()).validate()


# ---- 1. float16 + zstd ------------------------------------------------------------------------------

class Float16Zstd:
    """Each frame: coordinates (zstd of index gaps) + density and features as float16 planes, zstd."""

    name = "fp16+zstd"

    def encode(self, grids: list[SparseGrid]) -> Encoded:
        _check_sequence(grids)
        chunks = []
        for g in grids:
            flat, values = _sorted_frame(g)
            head = {"aabb": g.aabb.tolist(), "shape": list(g.shape), "channels": values.shape[0], "n": len(flat)}
            # planar (channel after channel) so that zstd sees runs of similar numbers
            chunks.append(_pack([_header(head), _encode_coords(flat), _zstd(values.astype("<f2").tobytes())]))
        return Encoded(self.name, len(grids), chunks)

    def decode(self, encoded: Encoded) -> list[SparseGrid]:
        return _decode_frames(encoded, lambda head, payload: np.frombuffer(payload, dtype="<f2").astype(np.float32))


# ---- 2. 8-bit + zstd ----------------------------------------------------------------------------------

class Uint8Zstd:
    """Each frame: per-channel [lo, hi] quantization to 8 bits (the stream's rule,
    `featvid.codecs.quantize`: round to nearest, a constant channel written with hi = lo + 1),
    planar, zstd. Decoded values are within half a step, (hi - lo) / 510, of the originals.
    """

    name = "u8+zstd"
    levels = (0, 255)

    def encode(self, grids: list[SparseGrid]) -> Encoded:
        _check_sequence(grids)
        chunks = []
        for g in grids:
            flat, values = _sorted_frame(g)  # values [1 + C, N]
            if values.shape[1]:
                ranges = [fix_range(lo, hi) for lo, hi in zip(values.min(axis=1), values.max(axis=1))]
            else:
                ranges = [(0.0, 1.0)] * values.shape[0]
            q = quantize(torch.from_numpy(values), ranges, self.levels).astype(np.uint8)
            head = {"aabb": g.aabb.tolist(), "shape": list(g.shape), "channels": values.shape[0], "n": len(flat),
                    "ranges": [list(r) for r in ranges]}
            chunks.append(_pack([_header(head), _encode_coords(flat), _zstd(q.tobytes())]))
        return Encoded(self.name, len(grids), chunks)

    def decode(self, encoded: Encoded) -> list[SparseGrid]:
        def values(head: dict, payload: bytes) -> np.ndarray:
            q = _reshape(np.frombuffer(payload, dtype=np.uint8), head["channels"], head["n"])
            return dequantize(q.copy(), [fix_range(lo, hi) for lo, hi in head["ranges"]], self.levels).numpy()

        return _decode_frames(encoded, values)


def _decode_frames(encoded: Encoded, values_of) -> list[SparseGrid]:
    """The frames of a per-frame baseline (chunks of header, coordinates, zstd payload):
    values_of(header, payload) -> values [1 + C, N] (or flat)."""
    out = []
    for chunk in encoded.chunks:
        head_b, coords_b, values_b = _expect(_unpack(chunk), 3)
        head = _read_header(head_b)
        coords = _decode_coords(coords_b, tuple(head["shape"]))
        if head.get("n") != len(coords):
            raise StreamError("baseline header does not match its coordinates")
        values = values_of(head, _unzstd(values_b))
        out.append(_grid(head, coords, _reshape(values.reshape(-1), head["channels"], len(coords))))
    return out


def _expect(sections: list[bytes], n: int) -> list[bytes]:
    if len(sections) != n:
        raise StreamError(f"baseline chunk has {len(sections)} sections, expected {n}")
    return sections


def _reshape(values: np.ndarray, channels: int, n: int) -> np.ndarray:
    if values.size != channels * n:
        raise StreamError("baseline payload size does not match its header")
    return values.reshape(channels, n)


# ---- 3. ReRF-style: cubes, residuals, 3D DCT, quantization table, range coding ------------------------

CUBE = 8  # voxels per cube side, as ReRF
NUM_BANDS = 3 * (CUBE - 1) + 1  # frequency bands u + v + w = 0 .. 21; band 0 is DC


def _band_index() -> np.ndarray:
    """[8, 8, 8] band u + v + w of every DCT coefficient."""
    u, v, w = np.meshgrid(*(np.arange(CUBE),) * 3, indexing="ij")
    return u + v + w


_BAND = _band_index()


def quant_table(quality: float) -> np.ndarray:
    """JPEG-style 3D quantization table [8, 8, 8], in units of 1/255 of a channel's range.

    The base step grows with frequency, 16 at DC to 100 at the highest band (about JPEG's
    luminance table, 16 .. 121), and is scaled by the JPEG quality rule: quality 50 keeps the
    base table, higher quality shrinks it (95 -> x0.1), lower grows it.
    """
    if not 1 <= quality <= 100:
        raise ConfigError(f"ReRF quality must be in 1..100, got {quality}")
    base = 16.0 + 4.0 * _BAND  # [8, 8, 8]
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality  # percent, as libjpeg
    # JPEG clips steps at 1 code; our steps are fractions of a range, so clip at 1/8 of a code
    return np.maximum(base * scale / 100.0, 0.125)


# Scale codes: the Laplace scale b of a (channel, band) group, quantized as b = 2^((code - 128) / 8);
# code 0 marks a group whose symbols are all zero (nothing is range coded for it).
_CODES = np.arange(1, 256)
_SCALES = 2.0 ** ((_CODES - 128) / 8.0)
# E|k| of the Laplace of scale b quantized to integers: exp(-1/(2b)) / (1 - exp(-1/b)).
with np.errstate(over="ignore", under="ignore", divide="ignore"):
    _LOG_MEAN_ABS = np.log(np.exp(-0.5 / _SCALES) / -np.expm1(-1.0 / _SCALES))


def _scale_code(mean_abs: float) -> int:
    """The code whose quantized Laplace has the mean |symbol| closest to `mean_abs` (moment fit).

    Fitting the quantized distribution, not the continuous one, matters when most symbols are 0:
    b = mean |k| would then make every non-zero symbol nearly impossible (and so very expensive).
    """
    if mean_abs <= 0:
        return 0
    return int(_CODES[np.argmin(np.abs(_LOG_MEAN_ABS - math.log(mean_abs)))])


def _scale_of(code: int) -> float:
    return float(_SCALES[code - 1])


@dataclass
class ReRFCodec:
    """ReRF's residual-cube codec; `quality` (1..100) sets the rate, `gof` the group of frames."""

    quality: float = 90.0
    gof: int = 20

    @property
    def name(self) -> str:
        return f"rerf-q{self.quality:g}"

    def encode(self, grids: list[SparseGrid]) -> Encoded:
        _check_sequence(grids)
        if self.gof < 1:
            raise ConfigError(f"ReRF group of frames must be >= 1, got {self.gof}")
        table = quant_table(self.quality)
        chunks = [self._encode_group(grids[s:s + self.gof], table) for s in range(0, len(grids), self.gof)]
        return Encoded(self.name, len(grids), chunks)

    def decode(self, encoded: Encoded) -> list[SparseGrid]:
        out: list[SparseGrid] = []
        for chunk in encoded.chunks:
            out += self._decode_group(chunk)
        if len(out) != encoded.num_frames:
            raise StreamError(f"ReRF stream holds {len(out)} frames, expected {encoded.num_frames}")
        return out

    # -- one group of frames --------------------------------------------------------------------------
    def _encode_group(self, grids: list[SparseGrid], table: np.ndarray) -> bytes:
        import constriction
        from scipy.fft import dctn, idctn

        g0 = grids[0]
        shape = g0.shape
        # the cubes coded in this group: every 8^3 cube with an occupied vertex in any frame
        union = grids[0].occupancy().clone()
        for g in grids[1:]:
            union |= g.occupancy()
        cubes = _occupied_cubes(union.numpy())  # [M, 3] Morton order
        P = 1 + g0.num_channels
        # per-channel range of the keyframe's stored values: the unit of the quantization table
        vals0 = torch.cat([g0.density[:, None], g0.features], 1).numpy()  # [N, P]
        span = (vals0.max(0) - vals0.min(0)) if len(vals0) else np.ones(P, np.float32)
        span = np.where(span > 0, span, 1.0).astype(np.float32)
        step = table[None] * (span / 255.0)[:, None, None, None]  # [P, 8, 8, 8]
        head = {"quality": self.quality, "frames": len(grids), "aabb": g0.aabb.tolist(), "shape": list(shape),
                "channels": P, "span": span.tolist()}
        sections = [_header(head), _zstd(np.diff(morton3(cubes), prepend=np.uint64(0)).astype("<u8").tobytes())]
        prev = np.zeros((len(cubes), P, CUBE, CUBE, CUBE), np.float32)  # decoded reference
        for i, g in enumerate(grids):
            x = _gather_cubes(g.to_dense().numpy(), cubes)  # [M, P, 8, 8, 8]
            coef = dctn(x - prev, axes=(2, 3, 4), norm="ortho")
            q = np.rint(coef / step[None]).astype(np.int32)  # [M, P, 8, 8, 8]
            # in-loop decoding: the next frame predicts from what the decoder will have
            prev = prev + idctn(q * step[None], axes=(2, 3, 4), norm="ortho").astype(np.float32)
            sym = q.copy()
            if i == 0 and len(cubes) > 1:
                # keyframe DC: predicted from the previous cube's DC (DPCM along the Morton order)
                dc = q[:, :, 0, 0, 0]
                sym[1:, :, 0, 0, 0] = dc[1:] - dc[:-1]
            sections.append(_encode_symbols(sym, constriction))
        return _pack(sections)

    def _decode_group(self, chunk: bytes) -> list[SparseGrid]:
        import constriction
        from scipy.fft import idctn

        sections = _unpack(chunk)
        if len(sections) < 2:
            raise StreamError("ReRF chunk is truncated")
        head = _read_header(sections[0])
        shape = tuple(head["shape"])
        P = int(head["channels"])
        if len(sections) != 2 + int(head["frames"]):
            raise StreamError("ReRF chunk frame count does not match its header")
        codes = np.cumsum(np.frombuffer(_unzstd(sections[1]), dtype="<u8"), dtype=np.uint64)
        cubes = demorton3(codes)  # [M, 3]
        table = quant_table(float(head["quality"]))
        step = table[None] * (np.asarray(head["span"], np.float32) / 255.0)[:, None, None, None]
        coords, gather = _cube_vertices(cubes, shape)
        prev = np.zeros((len(cubes), P, CUBE, CUBE, CUBE), np.float32)
        out = []
        for i, payload in enumerate(sections[2:]):
            q = _decode_symbols(payload, len(cubes), P, constriction)
            if i == 0 and len(cubes) > 1:
                q[:, :, 0, 0, 0] = np.cumsum(q[:, :, 0, 0, 0], axis=0)
            prev = prev + idctn(q * step[None], axes=(2, 3, 4), norm="ortho").astype(np.float32)
            values = prev.transpose(1, 0, 2, 3, 4).reshape(P, -1)[:, gather]  # [P, N]
            out.append(_grid(head, coords, values))
        return out


def _occupied_cubes(occ: np.ndarray) -> np.ndarray:
    """[M, 3] int64 coordinates of 8^3 cubes holding a set vertex of occ [nx, ny, nz], Morton order."""
    nb = [math.ceil(n / CUBE) for n in occ.shape]
    padded = np.zeros([n * CUBE for n in nb], bool)
    padded[: occ.shape[0], : occ.shape[1], : occ.shape[2]] = occ
    per_cube = padded.reshape(nb[0], CUBE, nb[1], CUBE, nb[2], CUBE).any(axis=(1, 3, 5))
    cubes = np.argwhere(per_cube).astype(np.int64)
    return cubes[np.argsort(morton3(cubes), kind="stable")]


def _gather_cubes(volume: np.ndarray, cubes: np.ndarray) -> np.ndarray:
    """Dense volume [P, nx, ny, nz] -> its cubes [M, P, 8, 8, 8] (zero beyond the grid)."""
    P = volume.shape[0]
    nb = [math.ceil(n / CUBE) * CUBE for n in volume.shape[1:]]
    padded = np.zeros([P, *nb], np.float32)
    padded[:, : volume.shape[1], : volume.shape[2], : volume.shape[3]] = volume
    c = cubes * CUBE
    r = np.arange(CUBE)
    ii = (c[:, 0, None] + r)[:, :, None, None]  # [M, 8, 1, 1]
    jj = (c[:, 1, None] + r)[:, None, :, None]
    kk = (c[:, 2, None] + r)[:, None, None, :]
    return padded[:, ii, jj, kk].transpose(1, 0, 2, 3, 4)  # [M, P, 8, 8, 8]


def _cube_vertices(cubes: np.ndarray, shape: tuple[int, int, int]) -> tuple[torch.Tensor, np.ndarray]:
    """The decoded occupancy: every in-grid vertex of the cubes, sorted by flat index.

    Returns (coords [N, 3] int32, gather [N]) where gather indexes the cube values flattened
    as [M * 8 * 8 * 8] (the layout of `values[p]` in `_decode_group`).
    """
    local = np.stack(np.meshgrid(*(np.arange(CUBE),) * 3, indexing="ij"), -1).reshape(-1, 3)  # [512, 3]
    verts = (cubes[:, None] * CUBE + local[None]).reshape(-1, 3)  # [M * 512, 3]
    inside = (verts < np.asarray(shape)).all(-1)
    flat = flat_vertex_index(verts[:, 0], verts[:, 1], verts[:, 2], shape)
    pos = np.nonzero(inside)[0]
    order = np.argsort(flat[pos], kind="stable")
    gather = pos[order]
    return torch.from_numpy(verts[gather].astype(np.int32)), gather


def _encode_symbols(sym: np.ndarray, constriction) -> bytes:
    """Range-code quantized coefficients [M, P, 8, 8, 8] with one Laplace model per (channel, band).

    Section layout: header (int32 max |symbol|, uint8 scale codes [P, 22]) + uint32 words.
    """
    M, P = sym.shape[:2]
    bound = int(np.abs(sym).max()) if sym.size else 0
    codes = np.zeros((P, NUM_BANDS), np.uint8)
    encoder = constriction.stream.queue.RangeEncoder()
    for p in range(P):
        per_band = sym[:, p].reshape(M, -1)  # [M, 512]
        for b in range(NUM_BANDS):
            s = per_band[:, _BAND.reshape(-1) == b].reshape(-1).astype(np.int32)
            codes[p, b] = _scale_code(float(np.abs(s).mean()) if s.size else 0.0)
            if codes[p, b]:
                model = constriction.stream.model.QuantizedLaplace(-bound, bound, 0.0, _scale_of(codes[p, b]))
                encoder.encode(s, model)
    words = encoder.get_compressed().astype("<u4")
    return struct.pack("<i", bound) + codes.tobytes() + words.tobytes()


def _decode_symbols(data: bytes, M: int, P: int, constriction) -> np.ndarray:
    """Inverse of `_encode_symbols` -> quantized coefficients [M, P, 8, 8, 8] int32."""
    head = 4 + P * NUM_BANDS
    if len(data) < head or (len(data) - head) % 4:
        raise StreamError("ReRF frame payload is truncated")
    (bound,) = struct.unpack_from("<i", data, 0)
    codes = np.frombuffer(data, np.uint8, P * NUM_BANDS, 4).reshape(P, NUM_BANDS)
    words = np.frombuffer(data, "<u4", offset=head).astype(np.uint32)
    decoder = constriction.stream.queue.RangeDecoder(words)
    out = np.zeros((M, P, CUBE ** 3), np.int32)
    band = _BAND.reshape(-1)
    for p in range(P):
        for b in range(NUM_BANDS):
            if codes[p, b]:
                sel = band == b
                model = constriction.stream.model.QuantizedLaplace(-bound, bound, 0.0, _scale_of(int(codes[p, b])))
                out[:, p, sel] = np.asarray(decoder.decode(model, M * int(sel.sum()))).reshape(M, -1)
    return out.reshape(M, P, CUBE, CUBE, CUBE)

