"""A built-in generator of dynamic Gaussian sequences: Gaussians on the surfaces of the synthetic
scenes' moving parts (featvid.data.synth), one 3DGS PLY a frame.

Frame 0: points drawn uniformly in the scene's box, kept inside a thin shell around the surface
(so their density follows the surface's area), projected onto the surface, then `count` of them
kept; each belongs to its nearest part and keeps that part's local (texture) coordinates as its
identity. Every later frame moves each Gaussian to where its part's local coordinates are what
they were at frame 0 (Newton steps on the part's local coordinates: exact for a part that moves
rigidly, close for the twisting and stretching ones), then back onto the part's surface. So
Gaussian i is the same piece of surface in every frame (stable identities, equal counts).

Attributes: flat discs tangent to the surface (scales from the mean spacing, thin along the
normal; the quaternion turns z onto the normal), opacity 0.9 (logit), SH degree 3 with DC from the
scene's shaded colour at that frame and a small view-dependent rest that is a smooth function of
the normal and position plus a little fixed per-Gaussian variation.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch

from featvid.atomic import make_dirs, write_failed
from featvid.data.synth import FPS, SCENES, get_scene, scene_phase
from featvid.errors import ConfigError
from featvid.gaussians.model import SH_C0, Gaussians, sh_coefficients
from featvid.gaussians.ply import write_ply
from featvid.outputs import GAUSSIAN_FRAMES, check_output_dir

SHELL = 0.03  # half-thickness of the shell frame 0's points are drawn in, world units
MAX_COUNT = 5_000_000
NEWTON_STEPS = 2
FD = 1e-3  # finite-difference step for Jacobians and normals, world units


def _part_eval(scene, p: torch.Tensor, part: torch.Tensor, u: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each point's own part's (sdf [P], local [P, 3]) at time u."""
    values = scene.parts(p, u)
    d = torch.stack([v[0] for v in values])  # [K, P]
    local = torch.stack([v[1] for v in values])  # [K, P, 3]
    idx = torch.arange(len(p))
    return d[part, idx], local[part, idx]


def _project(scene, p: torch.Tensor, part: torch.Tensor, u: float, steps: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Points moved onto their part's surface (p - sdf * normal, a few times); (points, normals) [P, 3]."""
    n = torch.zeros_like(p)
    for _ in range(steps):
        offs = torch.eye(3) * FD
        pts = torch.cat([p] + [p + o for o in offs])  # [4P, 3]
        d, _ = _part_eval(scene, pts, part.repeat(4), u)
        d = d.reshape(4, -1)  # [4, P]
        grad = torch.stack([(d[i + 1] - d[0]) / FD for i in range(3)], dim=1)  # [P, 3]
        n = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-9)
        p = p - d[0][:, None] * n
    return p, n


def _track(scene, p: torch.Tensor, part: torch.Tensor, target: torch.Tensor, u: float) -> torch.Tensor:
    """Points moved so that their part's local coordinates at time u are `target` [P, 3]."""
    for _ in range(NEWTON_STEPS):
        offs = torch.eye(3) * FD
        pts = torch.cat([p] + [p + o for o in offs])
        _, loc = _part_eval(scene, pts, part.repeat(4), u)
        loc = loc.reshape(4, -1, 3)
        J = torch.stack([(loc[i + 1] - loc[0]) / FD for i in range(3)], dim=2)  # [P, 3 local, 3 world]
        ok = torch.linalg.det(J).abs() > 1e-4
        step = torch.zeros_like(p)
        if ok.any():
            step[ok] = torch.linalg.solve(J[ok], (target - loc[0])[ok])
        step = torch.where(step.norm(dim=1, keepdim=True) < 0.2, step, torch.zeros_like(step))  # no wild jumps
        p = p + step
    return p


def _quat_z_to(n: torch.Tensor) -> torch.Tensor:
    """Quaternions (w, x, y, z) of the shortest rotation taking +z to unit normals n [P, 3] -> [P, 4]."""
    w = 1.0 + n[:, 2]
    q = torch.stack([w, -n[:, 1], n[:, 0], torch.zeros_like(w)], dim=1)  # z x n = (-n_y, n_x, 0)
    flip = w < 1e-6  # n = -z: half a turn about x
    q[flip] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    return q / q.norm(dim=1, keepdim=True)


def _sh_rest(n: torch.Tensor, p: torch.Tensor, fixed: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """A small, smooth view-dependent SH rest [P, 15, 3] (degree 3): degree 1 follows the normal
    (a soft sheen towards it), degrees 2-3 a low-frequency pattern in position, plus `fixed` [P, 15, 3]."""
    rest = torch.zeros(len(n), 15, 3)
    sheen = 0.12 * (0.3 + colour)  # [P, 3]
    rest[:, 0:3, :] = n[:, [1, 2, 0], None] * sheen[:, None, :]  # SH basis order of degree 1: y, z, x
    k = torch.arange(3, 15, dtype=torch.float32)
    wave = torch.sin(3.0 * p @ torch.tensor([0.7, 1.1, 0.9])[:, None] + 0.8 * k[None])  # [P, 12]
    rest[:, 3:, :] = 0.03 * wave[:, :, None]
    return rest + fixed


def generate_gaussians(scene_name: str, count: int, frames: int, seed: int = 0,
                       progress: Callable[[int], None] | None = None) -> list[Gaussians]:
    """`frames` frames of `count` Gaussians on scene `scene_name` (one of featvid's synth scenes),
    SH degree 3, Gaussian i the same piece of surface in every frame."""
    if not 1 <= count <= MAX_COUNT:
        raise ConfigError(f"--count must be in 1..{MAX_COUNT}, got {count}")
    if frames < 1:
        raise ConfigError(f"--frames must be at least 1, got {frames}")
    return list(iter_gaussians(scene_name, count, frames, seed, progress))


def iter_gaussians(scene_name: str, count: int, frames: int, seed: int = 0,
                   progress: Callable[[int], None] | None = None):
    """The frames of `generate_gaussians`, one at a time (a 50k x 30 sequence need not be held)."""
    if scene_name not in SCENES:
        raise ConfigError(f"unknown synth scene {scene_name!r}; choose from {', '.join(SCENES)}")
    # a backdrop scene's subject alone: Gaussians on the room's walls would be most of them
    scene = get_scene(scene_name, seed, backdrop=False) if SCENES[scene_name].has_backdrop else get_scene(scene_name, seed)
    gen = torch.Generator().manual_seed(seed)
    lo, hi = scene.bounds[0], scene.bounds[1]
    u0 = scene_phase(0, FPS)
    # frame 0: uniform points in the box kept in the surface's shell, so they spread by area
    kept: list[torch.Tensor] = []
    total, drawn = 0, 0
    while total < 2 * count and drawn < 400 * count + 1_000_000:
        pts = lo + (hi - lo) * torch.rand(200_000, 3, generator=gen)
        drawn += len(pts)
        near = pts[scene.sdf(pts, u0).abs() < SHELL]
        kept.append(near)
        total += len(near)
    shell = torch.cat(kept)
    if len(shell) < count:
        raise ConfigError(f"scene {scene_name} yielded {len(shell)} surface points, fewer than --count {count}")
    # spacing from the shell: its volume ~ area * 2 SHELL, and count discs share the area
    volume = float((hi - lo).prod()) * len(shell) / drawn
    spacing = math.sqrt(volume / (2 * SHELL) / count)
    p0 = shell[torch.randperm(len(shell), generator=gen)[:count]]
    part = torch.stack([v[0] for v in scene.parts(p0, u0)]).argmin(0)  # [N] nearest part
    p0, _ = _project(scene, p0, part, u0)
    _, target = _part_eval(scene, p0, part, u0)  # the identity: local coordinates at frame 0
    log_scales = torch.log(torch.tensor([spacing, spacing, 0.15 * spacing])) \
        + 0.05 * torch.randn(count, 3, generator=gen)  # a little per-Gaussian variety, as a fit has
    opacity = torch.full((count,), math.log(0.9 / 0.1)) + 0.05 * torch.randn(count, generator=gen)
    fixed = 0.005 * torch.randn(count, 15, 3, generator=gen)
    p = p0
    for t in range(frames):
        u = scene_phase(t, FPS)
        if t > 0:
            p = _track(scene, p, part, target, u)
        p, n = _project(scene, p, part, u)
        colour = scene.shade(p, u)  # [N, 3] in [0, 1]
        sh = torch.zeros(count, sh_coefficients(3), 3)
        sh[:, 0, :] = (colour - 0.5) / SH_C0
        sh[:, 1:, :] = _sh_rest(n, p, fixed, colour)
        if progress is not None:
            progress(t)
        yield Gaussians(p.float().contiguous(), sh, opacity.clone(), log_scales.float().clone(),
                        _quat_z_to(n)).validate()


def write_gaussian_sequence(out: str | Path, scene_name: str, count: int, frames: int, seed: int = 0,
                            progress: Callable[[int], None] | None = None) -> Path:
    """Generate a sequence and write it as out/frame_00000.ply, ... (one 3DGS PLY a frame)."""
    out = Path(out)
    if not 1 <= count <= MAX_COUNT:
        raise ConfigError(f"--count must be in 1..{MAX_COUNT}, got {count}")
    if frames < 1:
        raise ConfigError(f"--frames must be at least 1, got {frames}")
    check_output_dir(out, GAUSSIAN_FRAMES)  # new, empty or an earlier sequence: nothing else is touched
    make_dirs(out)
    try:
        for old in out.glob("frame_*.ply"):  # an earlier, maybe longer, sequence
            old.unlink()
    except OSError as e:
        raise write_failed(out, e) from e
    for t, g in enumerate(iter_gaussians(scene_name, count, frames, seed, progress)):
        write_ply(out / f"frame_{t:05d}.ply", g)
    return out
