"""Round trips of the baseline codecs on small synthetic grid sequences built here."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featvid.bench.baselines import (
    Encoded,
    Float16Zstd,
    ReRFCodec,
    Uint8Zstd,
    quant_table,
)
from featvid.errors import ConfigError, StreamError
from featvid.field.grid import SparseGrid


def _sequence(frames: int = 4, n: int = 24, channels: int = 4, seed: int = 0, speed: float = 1.0) -> list[SparseGrid]:
    """A moving ball of smooth fields (plus a little noise) in an n^3 grid; `speed` scales the motion."""
    rng = np.random.default_rng(seed)
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    x = torch.linspace(-1, 1, n)
    X, Y, Z = torch.meshgrid(x, x, x, indexing="ij")
    out = []
    for t in range(frames):
        cx = -0.2 + 0.1 * speed * t
        r2 = (X - cx) ** 2 + Y**2 + Z**2
        occ = r2 < 0.5
        dens = 10.0 - 20.0 * r2
        feats = [torch.sin(3 * X + k + 0.2 * speed * t) * torch.cos(2 * Y - k) + 0.3 * Z for k in range(channels)]
        vol = torch.stack([dens, *feats]) + 0.01 * torch.from_numpy(rng.standard_normal((1 + channels, n, n, n))).float()
        out.append(SparseGrid.from_dense(vol, occ, aabb))
    return out


def _dense_error(a: SparseGrid, b: SparseGrid) -> torch.Tensor:
    """Per-channel max |a - b| over a's stored vertices. [1 + C]"""
    da, db = a.to_dense(), b.to_dense()
    occ = a.occupancy()
    return (da[:, occ] - db[:, occ]).abs().amax(dim=1)


def _channel_span(g: SparseGrid) -> torch.Tensor:
    v = torch.cat([g.density[:, None], g.features], 1)
    return v.amax(0) - v.amin(0)


def test_fp16_round_trip_is_within_half_precision():
    grids = _sequence()
    enc = Float16Zstd().encode(grids)
    dec = Float16Zstd().decode(Encoded(enc.name, enc.num_frames, [bytes(c) for c in enc.chunks]))
    assert len(dec) == len(grids)
    for a, b in zip(grids, dec):
        assert torch.equal(a.occupancy(), b.occupancy())
        vals = torch.cat([a.density[:, None], a.features], 1).abs().amax(0)
        # float16 keeps 11 significant bits: relative error <= 2^-11
        assert (_dense_error(a, b) <= vals * 2.0**-11 + 1e-6).all()
    raw = sum(g.coords.numel() * 4 + (1 + g.num_channels) * len(g.coords) * 4 for g in grids)
    assert enc.nbytes < raw / 2


def test_u8_round_trip_is_within_half_a_step():
    grids = _sequence()
    codec = Uint8Zstd()
    enc = codec.encode(grids)
    dec = codec.decode(enc)
    for a, b in zip(grids, dec):
        assert torch.equal(a.occupancy(), b.occupancy())
        err = _dense_error(a, b)
        assert (err <= _channel_span(a) / 510 * 1.001 + 1e-6).all()
        assert (err > 0).any()  # it is lossy
    assert enc.nbytes < Float16Zstd().encode(grids).nbytes


def test_rerf_more_quality_costs_more_bytes_and_gives_less_error():
    grids = _sequence(frames=5)
    results = []
    for q in (50.0, 85.0, 98.0):
        codec = ReRFCodec(quality=q, gof=3)  # two groups: a keyframe + residuals, then a new keyframe
        enc = codec.encode(grids)
        dec = codec.decode(enc)
        assert len(dec) == len(grids)
        mse = 0.0
        for a, b in zip(grids, dec):
            # decoded occupancy covers every stored vertex (whole cubes are kept)
            assert (b.occupancy() | ~a.occupancy()).all()
            occ = a.occupancy()
            d = (a.to_dense()[:, occ] - b.to_dense()[:, occ]) / _channel_span(a)[:, None]
            mse += float((d**2).mean()) / len(grids)
        results.append((enc.nbytes, mse))
    sizes, errors = zip(*results)
    assert sizes[0] < sizes[1] < sizes[2]
    assert errors[0] > errors[1] > errors[2]
    assert 10 * math.log10(1 / errors[2]) > 40  # quality 98 is near-transparent (dB of channel range)
    # and far smaller than the lossless-ish baselines at its low end
    assert sizes[0] < Uint8Zstd().encode(grids).nbytes


def test_rerf_residuals_are_cheaper_than_keyframes():
    grids = _sequence(frames=4, speed=0.05)  # slow motion, as between frames of a real capture
    all_key = ReRFCodec(quality=90.0, gof=1).encode(grids).nbytes
    grouped = ReRFCodec(quality=90.0, gof=4).encode(grids).nbytes
    assert grouped < all_key


def test_quant_table_grows_with_frequency_and_shrinks_with_quality():
    t = quant_table(75.0)
    assert t[0, 0, 0] < t[1, 0, 0] < t[1, 1, 0] < t[7, 7, 7]
    assert (quant_table(95.0) < t).all()
    with pytest.raises(ConfigError):
        quant_table(0.0)


def test_corrupt_chunks_are_refused():
    grids = _sequence(frames=2)
    for codec in (Float16Zstd(), Uint8Zstd(), ReRFCodec(quality=80.0)):
        enc = codec.encode(grids)
        bad = Encoded(enc.name, enc.num_frames, [enc.chunks[0][:-7], *enc.chunks[1:]])
        with pytest.raises(StreamError):
            codec.decode(bad)


def test_mismatched_frames_are_refused():
    a = _sequence(frames=1, n=16)[0]
    b = _sequence(frames=1, n=20)[0]
    with pytest.raises(ConfigError):
        Float16Zstd().encode([a, b])
