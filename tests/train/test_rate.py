"""The rate model (featvid.train.rate): differentiable, ordered the way a codec's bits are, and
ranked like x264's real frame sizes on a small synthetic plane sequence."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from featvid.codecs.presets import ENCODERS, pin_threads
from featvid.train.rate import INTRA_QP_OFFSET, block_dct, dct_matrix, frame_bits, qstep, to_blocks

QP = 16.5  # the default preset's crf (h264-crf16.5)


def smooth_planes(seed: int, shape=(3, 32, 48)) -> torch.Tensor:
    """[P, H, W] smooth planes in code units, mid-range."""
    g = torch.Generator().manual_seed(seed)
    P, H, W = shape
    y, x = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    out = torch.empty(shape)
    for p in range(P):
        k = torch.rand(2, generator=g) * 2
        out[p] = 128 + 60 * torch.sin(2 * torch.pi * (k[0] * x + k[1] * y))
    return out


def noise(seed: int, shape) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_dct_is_orthonormal():
    for b in (4, 8):
        d = dct_matrix(b, torch.float64)
        assert torch.allclose(d @ d.T, torch.eye(b, dtype=torch.float64), atol=1e-12)


def reference_bits(planes: torch.Tensor, previous: torch.Tensor | None, qp: float, block: int) -> torch.Tensor:
    """The model as the module docstring writes it, term by term (autograd's own gradients)."""
    d = dct_matrix(block, planes.dtype)
    if previous is None:
        c = d @ to_blocks(planes, block) @ d.T  # [P, H_b, W_b, B, B]
        dc = c[..., 0, 0]
        left = torch.cat([dc[:, :, :1], dc[:, :, :-1]], dim=2)
        left[:, :, 0] = torch.cat([torch.full_like(dc[:, :1, 0], 128.0 * block), dc[:, :-1, 0]], dim=1)
        c = torch.cat([(dc - left).reshape(-1, 1), c.reshape(-1, block * block)[:, 1:]], dim=1)
        return torch.log2(1 + c.abs() / qstep(qp - INTRA_QP_OFFSET)).sum()
    c = d @ to_blocks(planes - previous, block) @ d.T
    return 0.5 * torch.log2(1 + (c / qstep(qp)) ** 2).sum()


@pytest.mark.parametrize("block", [4, 8])
def test_bits_and_gradients_equal_the_model_term_by_term(block):
    """frame_bits runs the DCT as one matrix product and writes its gradients out: the same
    numbers as the formula, evaluated the plain way (float64: to rounding; no flat block, where a
    coefficient is 0 to rounding and |c|'s gradient takes the rounding's sign)."""
    planes = (255 * torch.rand(3, 24, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    previous = planes.detach() + noise(2, planes.shape).double() * 3
    assert torch.allclose(block_dct(planes, block), dct_matrix(block, planes.dtype) @ to_blocks(planes, block)
                          @ dct_matrix(block, planes.dtype).T, atol=1e-9)
    for prev in (None, previous):
        a = planes.clone().requires_grad_(True)
        b = planes.clone().requires_grad_(True)
        fast, ref = frame_bits(a, prev, QP, block), reference_bits(b, prev, QP, block)
        fast.backward()
        ref.backward()
        assert float(fast.detach()) == pytest.approx(float(ref.detach()), rel=1e-12)
        assert torch.allclose(a.grad, b.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("block", [4, 8])
def test_gradients_are_finite(block):
    planes = smooth_planes(0) + 5 * noise(1, (3, 32, 48))
    planes[0, :8, :8] = 0  # a flat patch: |c| = 0 somewhere
    planes.requires_grad_(True)
    previous = smooth_planes(0)
    for prev in (None, previous):
        planes.grad = None
        bits = frame_bits(planes, prev, QP, block)
        bits.backward()
        assert torch.isfinite(bits) and bits > 0
        assert torch.isfinite(planes.grad).all() and planes.grad.abs().sum() > 0
    # an odd size (padded to whole blocks) differentiates too
    odd = torch.rand(2, 13, 21, requires_grad=True)
    frame_bits(odd * 255, None, QP, block).backward()
    assert torch.isfinite(odd.grad).all()


def test_more_texture_costs_more_bits():
    base = smooth_planes(2)
    costs = [frame_bits(base + a * noise(3, base.shape), None, QP).item() for a in (0, 2, 8, 32)]
    assert costs == sorted(costs) and costs[-1] > 2.5 * costs[0], costs  # measured 2.9x
    # the same for a P-frame's change
    change = [frame_bits(base + a * noise(4, base.shape), base, QP).item() for a in (0.5, 2, 8, 32)]
    assert change == sorted(change) and change[-1] > 100 * change[0], change  # measured 224x


def test_unchanged_p_frame_costs_far_less_than_the_i_frame():
    frame = smooth_planes(4) + 4 * noise(5, (3, 32, 48))
    intra = frame_bits(frame, None, QP).item()
    assert frame_bits(frame, frame, QP).item() == 0.0
    # a change under a tenth of the quantizer step costs well under a tenth of the I-frame
    nudged = frame + 0.1 * qstep(QP) * noise(6, frame.shape)
    assert frame_bits(nudged, frame, QP).item() < 0.1 * intra


def test_coarser_qp_costs_fewer_bits():
    frame = smooth_planes(7) + 6 * noise(8, (3, 32, 48))
    prev = smooth_planes(7)
    for prv in (None, prev):
        costs = [frame_bits(frame, prv, qp).item() for qp in (10, 16.5, 22, 28, 34)]
        assert costs == sorted(costs, reverse=True) and costs[0] > 2 * costs[-1], costs


def slice_bits(packet: bytes) -> int:
    """Bits of the coded slices (NAL types 1 and 5) in an Annex-B packet: x264's first packet also
    holds an SEI of its version and options (~600 bytes), a constant no rate model should chase."""
    starts = [i + 3 for i in range(len(packet) - 3) if packet[i:i + 3] == b"\x00\x00\x01"]
    total = 0
    for a, b in zip(starts, starts[1:] + [len(packet) + 3]):
        if packet[a] & 0x1F in (1, 5):
            total += len(packet[a:b - 3].rstrip(b"\x00"))
    return 8 * total


def x264_frame_bits(frames: list[np.ndarray], gop: int, crf: float) -> list[int]:
    """Real slice bits per frame of `frames` (uint8 [H, W] each) coded by x264 the way the default
    preset codes a GOP (gray, no B-frames, one thread), a keyframe every `gop` frames."""
    import av

    h, w = frames[0].shape
    sizes: dict[int, int] = {}
    with av.open(io.BytesIO(), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "gray"
        s.codec_context.gop_size = gop
        s.options = pin_threads("libx264", {**ENCODERS["h264"].options, "crf": f"{crf:g}"})
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="gray")
            f.pts = i
            for p in s.encode(f):
                sizes[int(p.pts)] = slice_bits(bytes(p))
        for p in s.encode():
            sizes[int(p.pts)] = slice_bits(bytes(p))
    return [sizes[i] for i in range(len(frames))]


def test_estimate_ranks_frames_like_x264():
    """Frames of smooth planes with texture of varying strength (I-frames) and changes of varying
    strength (P-frames), in shuffled order, one 64 x 96 luma plane (2 x 3 cells of 32 x 32) each."""
    rng = np.random.default_rng(0)
    H, W = 64, 96
    base = smooth_planes(9, (1, H, W))[0]

    def texture(seed: int, amp: float) -> torch.Tensor:  # band-limited: blocky noise, upsampled 2x
        n = noise(seed, (H // 2, W // 2)).repeat_interleave(2, 0).repeat_interleave(2, 1)
        return amp * n

    def codes(t: torch.Tensor) -> np.ndarray:
        return t.round().clamp(0, 255).to(torch.uint8).numpy()

    # all-intra: 8 textures
    amps = rng.permutation([0.5, 1, 2, 4, 6, 9, 13, 20])
    intra = [codes(base + texture(10 + i, a)) for i, a in enumerate(amps)]
    real_i = x264_frame_bits([intra[-1], *intra], 1, QP)[1:]  # x264's first frame costs ~1.6x: a warm-up
    est_i = [frame_bits(torch.from_numpy(f).float()[None], None, QP).item() for f in intra]
    # one GOP: a textured keyframe, then 11 frames each changed by noise of a shuffled strength
    steps = rng.permutation([0.3, 0.6, 1, 1.5, 2, 3, 4, 5, 6, 8, 11])
    seq = [base + texture(30, 6)]
    for i, a in enumerate(steps):
        seq.append(seq[-1] + texture(40 + i, a))
    inter = [codes(t) for t in seq]
    real_p = x264_frame_bits(inter, len(inter), QP)[1:]
    est_p = [frame_bits(torch.from_numpy(b).float()[None], torch.from_numpy(a).float()[None], QP).item()
             for a, b in zip(inter[:-1], inter[1:])]
    rho_i = spearmanr(est_i, real_i).statistic
    rho_p = spearmanr(est_p, real_p).statistic
    # measured: I 1.00, P 0.97 (floors near them: a drop means the model stopped following x264)
    assert rho_i >= 0.95, (rho_i, est_i, real_i)
    assert rho_p >= 0.9, (rho_p, est_p, real_p)


def test_keyframe_rate_weight_sets_the_rate_on_keyframes_alone(tiny_dataset, tmp_path):
    """keyframe_rate_weight 0: a keyframe trains as without the rate term (the same bytes); None:
    at rate_weight, as runs before the switch did."""
    from featvid.formats.run import frame_name
    from featvid.train.train import train
    from tests.train.test_train import micro

    def frame0(name, **overrides):
        run = train(tiny_dataset, tmp_path / name, micro(**overrides), frames=(0, 1), device="cpu")
        return (run.path / frame_name(0)).read_bytes()

    plain = frame0("plain")
    assert frame0("warm_only", rate_weight=1.0, keyframe_rate_weight=0.0) == plain
    assert frame0("both", rate_weight=1.0) != plain
