"""A rate the optimizer can follow (issue 27): a differentiable estimate of the bits H.264 spends
on one frame's atlas planes.

What the encoder does to a frame (featvid.codecs.encode, default preset h264-crf16.5): each GOP
quantizes every plane over its range to 8-bit codes 0..255, tiles the planes into one luma image
(`luma-mosaic`, gray) and x264 codes the GOP as one keyframe then P-frames. The model follows it:

    residual r = planes            (I-frame: the first of a GOP)
               = planes - previous (P-frame: zero motion -- a vertex keeps its pixel through a GOP)
    c          = DCT_BxB(r) per block (orthonormal DCT-II, B = 4 or 8, block rows x block cols)
    I-frame DC : replaced by its difference to the left block's DC (the top one's in the first
                 column), standing in for intra prediction, which makes a flat area cost nothing
    step       = 0.625 * 2^(qp / 6)          (H.264 quantizer step, Richardson, "The H.264
                 Advanced Video Compression Standard", 2nd ed., table 7.2; x264's crf ~ its qp)
    bits       = sum over coefficients of log2(1 + |c| / step)              (I-frame)
               = sum over coefficients of 0.5 log2(1 + (c / step)^2)        (P-frame)

log2(1 + |c|/step) grows like the Exp-Golomb / CAVLC length of the quantized level |c|/step for
large levels, is 0 at c = 0 and smooth in between (no hard rounding, so gradients reach
coefficients under one step too, as Balle et al., "End-to-end optimized image compression",
ICLR 2017, get with additive noise). For a P-frame the Cauchy form 0.5 log2(1 + (c/step)^2) is
used: the same length for large levels, but residual coefficients under a step cost almost
nothing, as x264's dead zone and skipped macroblocks make them. Measured on a trained 16-frame
bake (benchmarks/rate_model.py, 4x4 blocks, crf 16.5 / 22 / 28), the Cauchy form ranked P-frames
by Spearman 0.69 / 0.65 / 0.64 against 0.41 / 0.46 / 0.57 for the Laplace form, and ranked
I-frames worse (0.38 / -0.12 / -0.47 against 0.76 / 0.66 / 0.43): each frame type keeps its own.
x264 codes I-frames finer than P-frames (ipratio 1.4: qp - 6 log2 1.4 ~ qp - 2.9), so an I-frame
is estimated at qp - INTRA_QP_OFFSET.

It is an estimate for ranking and trading, not a byte count: benchmarks/rate_model.py measures its
correlation with x264's real per-frame sizes on baked atlases (results/rate_model.md) and the
ratio real / estimated there.
"""
from __future__ import annotations

import math

import torch

from featvid.errors import TrainingError

INTRA_QP_OFFSET = 6 * math.log2(1.4)  # x264's default ipratio 1.4 as a QP offset (~2.91)


def qstep(qp: float) -> float:
    """H.264's quantizer step for a QP: 0.625 * 2^(qp / 6) (codes, i.e. 0..255 units)."""
    return 0.625 * 2.0 ** (qp / 6.0)


def dct_matrix(block: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """The orthonormal DCT-II matrix D [B, B]: coefficients = D @ x @ D.T for a block x [B, B]."""
    n = torch.arange(block, dtype=torch.float64)
    k = n[:, None]
    d = torch.cos(math.pi * (2 * n[None, :] + 1) * k / (2 * block))  # [B (k), B (n)]
    d[0] *= 1 / math.sqrt(2)
    d *= math.sqrt(2 / block)
    return d.to(dtype=dtype, device=device)


def to_blocks(planes: torch.Tensor, block: int) -> torch.Tensor:
    """Planes [P, H, W] -> blocks [P, H_b, W_b, B, B], the border padded by replication (a padded
    pixel repeats its neighbour, so it adds no texture and, in a residual, nothing at all)."""
    P, H, W = planes.shape
    ph, pw = -H % block, -W % block
    if ph or pw:
        planes = torch.nn.functional.pad(planes[:, None], (0, pw, 0, ph), mode="replicate")[:, 0]  # [P, H', W']
    Hb, Wb = planes.shape[1] // block, planes.shape[2] // block
    return planes.reshape(P, Hb, block, Wb, block).permute(0, 1, 3, 2, 4)  # [P, H_b, W_b, B, B]


def block_dct(planes: torch.Tensor, block: int = 8) -> torch.Tensor:
    """Orthonormal block DCT of planes [P, H, W] -> coefficients [P, H_b, W_b, B, B] (same units)."""
    return blocks_dct(to_blocks(planes, block))


def blocks_dct(blocks: torch.Tensor) -> torch.Tensor:
    """The DCT D @ x @ D.T of every block of blocks [..., B, B], as one matrix product of the
    blocks flattened to B*B values with kron(D, D) (a [B*B, B*B] matrix): one GEMM, where a
    batched product of B x B matrices runs at a fraction of the speed. -> [..., B, B]."""
    B = blocks.shape[-1]
    d = dct_matrix(B, blocks.dtype, blocks.device)  # [B, B]
    flat = blocks.reshape(-1, B * B)  # [M, B*B] (row-major: x[i, j] at i * B + j)
    return (flat @ torch.kron(d, d).T).reshape(blocks.shape)  # vec(D x D^T) = kron(D, D) vec(x)


def predict_dc(coeffs: torch.Tensor) -> torch.Tensor:
    """Intra frames: each block's DC minus its left neighbour's (the top neighbour's in the first
    block column; the first block against mid-grey 128), coefficients [P, H_b, W_b, B, B] -> the
    predicted DCs [P, H_b, W_b]."""
    B = coeffs.shape[-1]
    dc = coeffs[..., 0, 0]  # [P, H_b, W_b]
    left = torch.cat([dc[:, :, :1], dc[:, :, :-1]], dim=2)  # [P, H_b, W_b]: first column predicted below
    first = torch.cat([torch.full_like(dc[:, :1, 0], 128.0 * B), dc[:, :-1, 0]], dim=1)  # [P, H_b]: top neighbour
    left = torch.cat([first[:, :, None], left[:, :, 1:]], dim=2)
    return dc - left


class _LaplaceBits(torch.autograd.Function):
    """sum log2(1 + |c| / step) over c (any shape), with its gradient sign(c) / ((step + |c|) ln 2)
    written out: autograd would keep and revisit each intermediate tensor of the coefficients' size."""

    @staticmethod
    def forward(ctx, c: torch.Tensor, step: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(c)
        ctx.step = step
        return torch.log1p(c.abs().mul_(1 / step)).sum() / math.log(2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (c,) = ctx.saved_tensors
        return torch.sign(c).div_(c.abs().add_(ctx.step)).mul_(grad / math.log(2)), None


class _CauchyBits(torch.autograd.Function):
    """sum 0.5 log2(1 + (c / step)^2) over c (any shape), with its gradient c / ((step^2 + c^2) ln 2)
    written out."""

    @staticmethod
    def forward(ctx, c: torch.Tensor, step: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(c)
        ctx.step = step
        return torch.log1p(c.square().mul_(1 / step ** 2)).sum() / (2 * math.log(2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (c,) = ctx.saved_tensors
        return c.div(c.square().add_(ctx.step ** 2)).mul_(grad / math.log(2)), None


def blocks_bits(blocks: torch.Tensor, intra: bool, qp: float) -> torch.Tensor:
    """Estimated bits of blocks [P, H_b, W_b, B, B] in code units laid out as in their planes (the
    I-frame's DC is predicted from the left / top block): a frame's own blocks when `intra`, else
    its residual against the previous frame (`frame_bits` has the model)."""
    coeffs = blocks_dct(blocks)  # [P, H_b, W_b, B, B]
    if not intra:
        return _CauchyBits.apply(coeffs, qstep(qp))
    step = qstep(qp - INTRA_QP_OFFSET)
    dc = coeffs[..., 0, 0]  # [P, H_b, W_b]: charged as predicted, not as is
    return (_LaplaceBits.apply(coeffs, step) - _LaplaceBits.apply(dc, step)
            + _LaplaceBits.apply(predict_dc(coeffs), step))


def frame_bits(planes: torch.Tensor, previous: torch.Tensor | None, qp: float, block: int = 4) -> torch.Tensor:
    """Estimated bits H.264 spends on one frame's atlas planes (a differentiable scalar).

    planes [P, H, W]: the frame's planes in code units (0..255: (v - lo) / (hi - lo) * 255 over the
        GOP's range, as the encoder quantizes them; left unrounded so gradients flow).
    previous [P, H, W] or None: the previous frame's planes (a P-frame), None for the GOP's first
        frame (an I-frame). Detach it to charge only the current frame for the change.
    qp: the codec's quantizer (x264's crf is a fair stand-in); block: the DCT size, 4 (x264's
        transform, and the atlas's 4 x 4 z-slices: it ranked frames best, results/rate_model.md) or 8.
    Formula and sources: the module docstring. Bits, summed over all planes' pixels, padding included.
    """
    if previous is None:
        return blocks_bits(to_blocks(planes, block), True, qp)
    if previous.shape != planes.shape:
        raise TrainingError(f"previous planes {tuple(previous.shape)} do not match {tuple(planes.shape)}")
    return blocks_bits(to_blocks(planes - previous, block), False, qp)
