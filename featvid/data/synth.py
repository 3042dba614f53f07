"""The built-in synthetic dynamic scenes, rendered exactly from analytic fields.

A scene is a set of parts, each a signed distance function (SDF) with a texture in the part's own
coordinates (so texture moves and deforms with it). Parts move and deform with the normalised
time u = t / (T - 1) in [0, 1]. The volume density is a smooth ramp of the scene's SDF,

    sigma(x) = SIGMA_MAX * smoothstep((SURFACE_WIDTH - sdf(x)) / (2 * SURFACE_WIDTH)),

which is exactly zero outside the surface shell, so rendering skips empty space by sphere
tracing (exact for a distance bound) and integrates the shell and the inside with small fixed
segments (FINE_STEP world units) over which the density is integrated exactly. Colour is diffuse: albedo times a fixed
light's Lambert term (view-independent), so a voxel grid with a tiny MLP can fit it.

The subject scenes (SUBJECT_SCENES) lie inside the box SCENE_AABB = [-1, 1]^3 on an empty
background; z is up. The backdrop scenes look like real captures: `room` puts the dancer inside a
textured room (cameras on a ring inside it), `forward` films it with a forward-facing rig (cameras
on a small plane, N3DV/LLFF-like) before a textured wall and floor metres behind; their images are
opaque and the march covers the room (`SynthScene.bounds`). Built with backdrop=False they are the
same subject alone, on an empty background, seen by the same cameras. `write_synth` writes a scene
in the D-NeRF/Blender JSON format (featvid.data.blender reads it back); for the backdrop scenes it
also writes the subject's foreground masks, for scoring only (`score_masks/`, see write_synth).
"""
from __future__ import annotations

import logging
import math
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import cv2
import torch

from featvid.atomic import write_failed, write_json
from featvid.data.cameras import (
    Cameras,
    image_rays,
    intrinsics_from_fov,
    look_at,
    opencv_to_opengl,
)
from featvid.errors import ConfigError, FeatvidError, FormatError
from featvid.limits import read_json
from featvid.outputs import SYNTH, check_output_dir
from featvid.progress import progress_bar

log = logging.getLogger(__name__)

SCENE_AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])  # [2, 3] world units
SURFACE_WIDTH = 0.02  # half-thickness of the density ramp around a surface, world units
SIGMA_MAX = 150.0  # density inside objects, 1 / world unit (opaque after ~0.03)
FINE_STEP = 0.01  # segment length near surfaces, world units (density integrated exactly over it)
SAFETY = 0.7  # sphere-tracing step factor: deformed SDFs are only approximately distances
NORMAL_EPS = 0.004  # finite-difference offset for shading normals, world units
LIGHT = torch.tensor([0.45, -0.35, 0.82])  # direction towards the light (normalised below)
FOV_X = math.radians(40.0)  # synth cameras' horizontal field of view
RIG_RADIUS = 3.0  # camera distance from the look-at point, world units
RIG_TARGET = (0.0, 0.0, -0.1)  # where every synth camera looks
FPS = 30.0
GENERATOR = "featvid synth"

# A part evaluated at points: (sdf [P], local coordinates [P, 3] for its texture)
PartValue = tuple[torch.Tensor, torch.Tensor]
Texture = Callable[[torch.Tensor], torch.Tensor]  # local [P, 3] -> albedo [P, 3] in [0, 1]


# ---- SDF primitives (p: [P, 3]; results [P]) ----------------------------------------------------

def _sphere(p: torch.Tensor, r: float | torch.Tensor) -> torch.Tensor:
    return p.norm(dim=-1) - r


def _ellipsoid(p: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Approximate ellipsoid distance (Quilez), radii [3] or [P, 3]."""
    k0 = (p / radii).norm(dim=-1)
    k1 = (p / (radii * radii)).norm(dim=-1).clamp(min=1e-9)
    return k0 * (k0 - 1.0) / k1


def _capsule(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, r: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Capsule of radius r around segment a-b ([3] each); also the position along it (world units). ([P], [P])"""
    ab = b - a
    length = float(ab.norm()) + 1e-12
    ap = p - a
    h = (ap @ (ab / length)).clamp(0.0, length)  # [P]
    return torch.linalg.vector_norm(ap - h[:, None] * (ab / length), dim=-1) - r, h


def _cylinder(p: torch.Tensor, r: float, half_height: float) -> torch.Tensor:
    """Capped cylinder along z, centred at the origin."""
    dx = p[:, :2].norm(dim=-1) - r
    dz = p[:, 2].abs() - half_height
    outside = torch.stack([dx.clamp(min=0), dz.clamp(min=0)], -1).norm(dim=-1)
    return outside + torch.maximum(dx, dz).clamp(max=0)


def _box(p: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    q = p.abs() - half
    return q.clamp(min=0).norm(dim=-1) + q.amax(dim=-1).clamp(max=0)


def _torus(p: torch.Tensor, R: float, r: float) -> torch.Tensor:
    """Torus around the z axis: ring radius R, tube radius r."""
    q = torch.stack([p[:, :2].norm(dim=-1) - R, p[:, 2]], -1)
    return q.norm(dim=-1) - r


def _rot_z(p: torch.Tensor, angle: torch.Tensor | float) -> torch.Tensor:
    """Rotate points [P, 3] about z by angle (radians; scalar or [P])."""
    c, s = torch.cos(torch.as_tensor(angle)), torch.sin(torch.as_tensor(angle))
    x, y = p[:, 0], p[:, 1]
    return torch.stack([c * x - s * y, s * x + c * y, p[:, 2]], -1)


def _rot_x(p: torch.Tensor, angle: torch.Tensor | float) -> torch.Tensor:
    c, s = torch.cos(torch.as_tensor(angle)), torch.sin(torch.as_tensor(angle))
    y, z = p[:, 1], p[:, 2]
    return torch.stack([p[:, 0], c * y - s * z, s * y + c * z], -1)


# ---- textures --------------------------------------------------------------------------------------

def _mix(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Blend colours a, b [3] by w [P] in [0, 1] -> [P, 3]."""
    return a + (b - a) * w[:, None]


def _stripes(x: torch.Tensor, period: float) -> torch.Tensor:
    """Soft stripes in [0, 1] along coordinate x [P] (edges a few percent of a period wide)."""
    return 0.5 + 0.5 * torch.tanh(3.0 * torch.sin(2 * math.pi * x / period))


def _checker(p: torch.Tensor, period: float) -> torch.Tensor:
    """Soft 3D checker in [0, 1] of points [P, 3]."""
    s = torch.sin(math.pi * p / period).prod(dim=-1)
    return 0.5 + 0.5 * torch.tanh(6.0 * s)


class _Noise:
    """Seeded value noise: a periodic random lattice, smoothstep-interpolated."""

    def __init__(self, generator: torch.Generator, size: int = 32) -> None:
        self.size = size
        self.table = torch.rand(size, size, size, generator=generator)  # [G, G, G]

    def __call__(self, p: torch.Tensor, freq: float) -> torch.Tensor:
        """Noise in [0, 1] at points [P, 3] (freq = lattice cells per world unit), two octaves."""
        return 0.65 * self._octave(p * freq) + 0.35 * self._octave(p * (2.03 * freq) + 17.0)

    def _octave(self, x: torch.Tensor) -> torch.Tensor:
        i0 = torch.floor(x)
        f = x - i0
        w = f * f * (3 - 2 * f)  # [P, 3] smoothstep weights
        i0 = i0.long() % self.size
        i1 = (i0 + 1) % self.size
        out = torch.zeros(len(x))
        for cx in (0, 1):
            ix = i1[:, 0] if cx else i0[:, 0]
            wx = w[:, 0] if cx else 1 - w[:, 0]
            for cy in (0, 1):
                iy = i1[:, 1] if cy else i0[:, 1]
                wy = w[:, 1] if cy else 1 - w[:, 1]
                for cz in (0, 1):
                    iz = i1[:, 2] if cz else i0[:, 2]
                    wz = w[:, 2] if cz else 1 - w[:, 2]
                    out = out + self.table[ix, iy, iz] * wx * wy * wz
        return out


# ---- scenes ---------------------------------------------------------------------------------------

class SynthScene:
    """Base of the procedural scenes: `parts(p, u)` and one texture per part, built from a seed.

    shadows: the fixed light is occluded by the scene (soft shadows traced through the SDF), so
    moving parts cast moving shadows. fov_range: the rig's horizontal fields of view in degrees
    (None: every camera FOV_X), spread over the cameras: mixed lenses, as real rigs have.
    """

    name = ""
    description = ""
    shadows = False
    fov_range: tuple[float, float] | None = None
    has_backdrop = False  # a room or wall around the subject, which backdrop=False leaves out
    fov_x = FOV_X  # the rig's horizontal field of view (radians), when fov_range is None
    backdrop = False  # this instance renders it
    bounds = SCENE_AABB  # [2, 3] the region render_rays marches: everything with density lies inside

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.noise = _Noise(self.generator)
        self.phase = float(torch.rand(1, generator=self.generator)) * 2 * math.pi
        self.textures: list[Texture] = []

    def colour(self, r: float, g: float, b: float) -> torch.Tensor:
        """A palette colour, jittered a little by the seed. [3]"""
        jitter = (torch.rand(3, generator=self.generator) - 0.5) * 0.12
        return (torch.tensor([r, g, b]) + jitter).clamp(0.02, 0.98)

    def parts(self, p: torch.Tensor, u: float) -> list[PartValue]:
        """Every part's (sdf [P], local [P, 3]) at points p [P, 3] and normalised time u in [0, 1]."""
        raise NotImplementedError

    def rig(self, views: int, size: int, test_views: int) -> tuple[Cameras, list[int], list[int]]:
        """The scene's cameras: (cameras, train view indices, test view indices); see synth_rig."""
        return synth_rig(views, size, test_views, self.fov_range)

    def sdf(self, p: torch.Tensor, u: float) -> torch.Tensor:
        """Scene signed distance (approximately a distance bound) at points [P, 3]. [P] world units"""
        return torch.stack([d for d, _ in self.parts(p, u)]).amin(dim=0)

    def shade(self, p: torch.Tensor, u: float) -> torch.Tensor:
        """Diffuse colour at points [P, 3]: albedo x (ambient + Lambert of a fixed light). [P, 3] in [0, 1]

        One evaluation of the parts at four tetrahedral offsets gives both the normal (finite
        differences of the SDF) and the albedo (nearest part, local coordinates averaged back to p).
        """
        k = _TETRA  # [4, 3]
        pts = (p[None] + NORMAL_EPS * k[:, None]).reshape(-1, 3)  # [4P, 3]
        values = self.parts(pts, u)
        d = torch.stack([dd for dd, _ in values]).reshape(len(values), 4, -1)  # [K, 4, P]
        n = (k[:, None] * d.amin(0)[..., None]).sum(0)  # [P, 3]
        n = n / n.norm(dim=-1, keepdim=True).clamp(min=1e-9)
        lambert = (n @ _LIGHT).clamp(min=0.0)  # [P]
        if self.shadows:
            lambert = lambert * self.light_visibility(p + 3 * NORMAL_EPS * n, u)
        nearest = d.mean(1).argmin(0)  # [P]
        albedo = torch.zeros(len(p), 3)
        for i, ((_, local), texture) in enumerate(zip(values, self.textures)):
            mask = nearest == i
            if mask.any():
                albedo[mask] = texture(local.reshape(4, -1, 3).mean(0)[mask])
        return albedo.clamp(0, 1) * (0.45 + 0.55 * lambert)[:, None]

    def light_visibility(self, p: torch.Tensor, u: float, steps: int = 24, k: float = 10.0) -> torch.Tensor:
        """How much of the light reaches points [P, 3]: 1 lit, 0 in shadow, soft at the edges (a
        march towards the light through the SDF, Quilez's penumbra estimate). [P] in [0, 1]"""
        vis = torch.ones(len(p))
        t = torch.full((len(p),), 0.02)
        for _ in range(steps):
            h = self.sdf(p + t[:, None] * _LIGHT, u)
            vis = torch.minimum(vis, (k * h / t).clamp(0.0, 1.0))
            t = t + h.clamp(0.01, 0.2)
            if bool((t > 3.0).all()):
                break
        return vis * vis * (3 - 2 * vis)  # smoothstep: a softer penumbra


_TETRA = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, 1.0, 1.0]])
_LIGHT = LIGHT / LIGHT.norm()


def _vec(x: float, y: float, z: float) -> torch.Tensor:
    return torch.tensor([x, y, z])


class Dancer(SynthScene):
    """A figure on a static checkered stage: twisting striped torso, swinging arms, stretching legs,
    a tilted hoop spinning around the waist, and three thin striped posts (static)."""

    name = "dancer"
    description = "a twisting, arm-swinging figure with a spinning hoop on a static checkered stage with thin posts"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        stage_a, stage_b = self.colour(0.93, 0.88, 0.72), self.colour(0.10, 0.45, 0.50)
        post_a, post_b = self.colour(0.85, 0.12, 0.12), self.colour(0.95, 0.95, 0.92)
        torso_a, torso_b = self.colour(0.95, 0.55, 0.10), self.colour(0.55, 0.10, 0.35)
        skin_a, skin_b = self.colour(0.92, 0.72, 0.55), self.colour(0.55, 0.30, 0.20)
        arm_a, arm_b = self.colour(0.15, 0.30, 0.85), self.colour(0.90, 0.92, 0.98)
        leg_a, leg_b = self.colour(0.12, 0.12, 0.30), self.colour(0.55, 0.58, 0.62)
        hoop_a, hoop_b = self.colour(0.90, 0.15, 0.75), self.colour(0.20, 0.85, 0.25)
        n = self.noise
        self.textures = [
            lambda q: _mix(stage_a, stage_b, _checker(q + 0.05, 0.16)) * (0.8 + 0.2 * n(q, 6.0))[:, None],
            lambda q: _mix(post_a, post_b, _stripes(q[:, 2], 0.08)),
            lambda q: _mix(torso_a, torso_b, 0.6 * _stripes(q[:, 2], 0.11) + 0.4 * _stripes(q[:, 0], 0.13))
            * (0.85 + 0.15 * n(q, 8.0))[:, None],
            lambda q: _mix(skin_a, skin_b, (n(q, 9.0) - 0.25).clamp(0, 1)),
            lambda q: _mix(arm_a, arm_b, _stripes(q[:, 0], 0.07)),
            lambda q: _mix(arm_a, arm_b, _stripes(q[:, 0], 0.07)),
            lambda q: _mix(leg_a, leg_b, _checker(q, 0.07)),
            lambda q: _mix(leg_a, leg_b, _checker(q, 0.07)),
            lambda q: _mix(hoop_a, hoop_b, _stripes(torch.atan2(q[:, 1], q[:, 0]), 2 * math.pi / 12)),
        ]

    def parts(self, p: torch.Tensor, u: float) -> list[PartValue]:
        """Stage, posts, torso, head, two arms, two legs, hoop (in the order of `textures`)."""
        w = 2 * math.pi * u  # u: phase of the motion cycle (see scene_phase)
        ph = self.phase
        # stage: a static disc
        stage_c = _vec(0.0, 0.0, -0.85)
        stage = _cylinder(p - stage_c, 0.78, 0.07)
        # three thin static posts at the stage's rim
        posts = []
        for k in range(3):
            a = math.radians(90 + 120 * k)
            base = _vec(0.64 * math.cos(a), 0.64 * math.sin(a), -0.78)
            posts.append(_capsule(p, base, base + _vec(0.0, 0.0, 0.95), 0.025)[0])
        post = torch.stack(posts).amin(0)
        # torso: sways and bobs, turns, and twists (non-rigid) about its own axis
        centre = _vec(0.15 * math.sin(w + ph), 0.08 * math.sin(2 * w), -0.02 + 0.05 * math.sin(2 * w))
        turn = 0.8 * math.sin(w)
        q = _rot_z(p - centre, -turn)  # torso frame
        q_tw = _rot_z(q, -1.4 * math.sin(w + 0.5) * q[:, 2])
        torso = _ellipsoid(q_tw, _vec(0.2, 0.14, 0.28))
        head_q = q - _vec(0.0, 0.0, 0.4)
        head = _sphere(head_q, 0.13)
        # arms: from the shoulders, swinging in the torso's x-z plane
        arms = []
        for side, sign in ((0, 1.0), (1, -1.0)):
            shoulder = _vec(sign * 0.2, 0.0, 0.17)
            swing = -0.9 + 0.7 * math.sin(w * (1 + side) + ph + side)  # radians above horizontal
            hand = shoulder + 0.34 * _vec(sign * math.cos(swing), 0.25 * math.sin(w), math.sin(swing))
            d, h = _capsule(q, shoulder, hand, 0.05)
            arms.append((d, torch.stack([h, q[:, 1], q[:, 2]], -1)))
        # legs: feet fixed on the stage, hips move with the torso, so the legs stretch
        legs = []
        for sign in (1.0, -1.0):
            hip = centre + _rot_z(_vec(sign * 0.09, 0.0, -0.2)[None], turn)[0]
            foot = _vec(sign * 0.14, 0.0, -0.76)
            d, _ = _capsule(p, hip, foot, 0.055)
            legs.append((d, p - foot))
        # hoop: a tilted torus whose tilt precesses about the waist while it spins
        tilted = _rot_x(_rot_z(p - centre - _vec(0.0, 0.0, -0.08), -2 * w), -0.35)
        hoop = _torus(tilted, 0.42, 0.03)
        return [(stage, p - stage_c), (post, p), (torso, q_tw), (head, head_q), arms[0], arms[1], legs[0], legs[1],
                (hoop, _rot_z(tilted, -3 * w))]


class Orbits(SynthScene):
    """Bodies orbiting a static striped pillar on a checkered base: a spinning checkered ball, a
    pulsating striped ellipsoid, a wobbling noisy blob, a thin rod from the pillar to the ball, and a
    thin tilted ring turning around it all."""

    name = "orbits"
    description = "a spinning ball, a pulsating ellipsoid and a wobbling blob orbiting a static pillar, with a thin ring and rod"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        base_a, base_b = self.colour(0.20, 0.20, 0.24), self.colour(0.85, 0.80, 0.70)
        pillar_a, pillar_b = self.colour(0.95, 0.90, 0.30), self.colour(0.30, 0.55, 0.20)
        ball_a, ball_b = self.colour(0.90, 0.20, 0.15), self.colour(0.98, 0.95, 0.90)
        ell_a, ell_b = self.colour(0.15, 0.40, 0.90), self.colour(0.95, 0.75, 0.20)
        blob_a, blob_b = self.colour(0.30, 0.80, 0.70), self.colour(0.40, 0.15, 0.50)
        ring_a, ring_b = self.colour(0.95, 0.95, 0.95), self.colour(0.85, 0.35, 0.05)
        rod = self.colour(0.25, 0.25, 0.28)
        n = self.noise
        self.textures = [
            lambda q: _mix(base_a, base_b, _checker(q + 0.05, 0.2)),
            lambda q: _mix(pillar_a, pillar_b, _stripes(q[:, 2] + 0.3 * torch.atan2(q[:, 1], q[:, 0]) / math.pi, 0.12))
            * (0.8 + 0.2 * n(q, 7.0))[:, None],
            lambda q: _mix(ball_a, ball_b, _checker(q, 0.09)),
            lambda q: _mix(ell_a, ell_b, _stripes(q[:, 0], 0.08)),
            lambda q: _mix(blob_a, blob_b, n(q, 7.0)),
            lambda q: _mix(ring_a, ring_b, _stripes(torch.atan2(q[:, 1], q[:, 0]), 2 * math.pi / 16)),
            lambda q: rod.expand(len(q), 3) * (0.7 + 0.3 * n(q, 12.0))[:, None],
        ]

    def parts(self, p: torch.Tensor, u: float) -> list[PartValue]:
        """Base, pillar, ball, ellipsoid, blob, ring, rod (in the order of `textures`)."""
        w = 2 * math.pi * u
        ph = self.phase
        base_c = _vec(0.0, 0.0, -0.88)
        base = _box(p - base_c, _vec(0.72, 0.72, 0.06))
        pillar_c = _vec(0.0, 0.0, -0.26)
        pillar = _cylinder(p - pillar_c, 0.15, 0.56)

        def orbit(radius: float, height: float, angle: float) -> torch.Tensor:
            return _vec(radius * math.cos(angle), radius * math.sin(angle), height)

        # ball: rigid, spinning about its own tilted axis
        ball_c = orbit(0.6, 0.25, ph + 0.5 * w)
        ball_q = _rot_x(_rot_z(p - ball_c, -3 * w), 0.5)
        ball = _sphere(ball_q, 0.17)
        # ellipsoid: pulsating radii (non-rigid), long axis along its orbit's radius
        ell_angle = ph + 2.1 - 0.35 * w
        ell_q = _rot_z(p - orbit(0.62, -0.15, ell_angle), -ell_angle)
        pulse = 1.0 + 0.3 * math.sin(2 * w)
        ell = _ellipsoid(ell_q, _vec(0.2 * pulse, 0.13 / math.sqrt(pulse), 0.13 / math.sqrt(pulse)))
        # blob: a sphere with travelling bumps (non-rigid)
        blob_q = p - orbit(0.58, -0.5, ph + 4.2 + 0.25 * w)
        bumps = torch.sin(11 * blob_q[:, 0] + 3 * w) * torch.sin(11 * blob_q[:, 1]) * torch.sin(11 * blob_q[:, 2] - 2 * w)
        blob = (_sphere(blob_q, 0.15) + 0.035 * bumps) / 1.4  # /1.4: the bumps steepen the field
        # thin ring turning around everything, and a thin rod from the pillar's top to the ball
        ring_q = _rot_x(_rot_z(p, -0.6 * w), 0.3)
        ring = _torus(ring_q, 0.84, 0.025)
        rod, _ = _capsule(p, _vec(0.0, 0.0, 0.2), ball_c, 0.02)
        return [(base, p - base_c), (pillar, p - pillar_c), (ball, ball_q), (ell, ell_q), (blob, blob_q),
                (ring, ring_q), (rod, p)]


class Crossing(SynthScene):
    """Fast motion for the trainer: two balls crossing on circles above an opaque checkered floor,
    each moving about a third of its radius per frame at 30 fps, a small ball bouncing, and a
    textured box spinning fast; the balls cast moving shadows on the floor, and the rig mixes lenses
    (28-56 degree fields of view, per-image intrinsics in the JSON)."""

    name = "crossing"
    description = "two balls crossing fast above a floor with moving shadows, a bouncing ball, a spinning box; mixed lenses"
    shadows = True
    fov_range = (28.0, 56.0)
    # speeds in scene seconds (u * CYCLE_SECONDS): at 30 fps a frame is 1/30 s
    BALL_SPEED = 2.5  # world units per second: 0.083 a frame, a third of the 0.25 radius
    SPIN = 9.0  # radians per second of the box (0.3 a frame)

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        floor_a, floor_b = self.colour(0.92, 0.90, 0.84), self.colour(0.25, 0.35, 0.45)
        a1, a2 = self.colour(0.90, 0.25, 0.10), self.colour(0.98, 0.85, 0.30)
        b1, b2 = self.colour(0.15, 0.45, 0.90), self.colour(0.95, 0.95, 0.95)
        c1, c2 = self.colour(0.20, 0.75, 0.30), self.colour(0.10, 0.15, 0.10)
        box_a, box_b = self.colour(0.85, 0.15, 0.60), self.colour(0.95, 0.90, 0.20)
        n = self.noise
        self.textures = [
            lambda q: _mix(floor_a, floor_b, _checker(q + 0.05, 0.25)) * (0.85 + 0.15 * n(q, 5.0))[:, None],
            lambda q: _mix(a1, a2, _stripes(q[:, 2] + 0.4 * q[:, 0], 0.09)),
            lambda q: _mix(b1, b2, _checker(q, 0.1)),
            lambda q: _mix(c1, c2, _stripes(q[:, 0], 0.06)),
            lambda q: _mix(box_a, box_b, _checker(q, 0.07)) * (0.8 + 0.2 * n(q, 9.0))[:, None],
        ]

    def parts(self, p: torch.Tensor, u: float) -> list[PartValue]:
        """Floor, ball A, ball B, bouncing ball, spinning box (in the order of `textures`)."""
        sec = u * CYCLE_SECONDS
        ph = self.phase
        floor_c = _vec(0.0, 0.0, -0.8)
        floor = _box(p - floor_c, _vec(0.9, 0.9, 0.06))
        # ball A: radius 0.25 on a circle of 0.55 at constant speed, rolling (texture turns with it)
        wa = self.BALL_SPEED / 0.55
        ang_a = ph + wa * sec
        ca = _vec(0.55 * math.cos(ang_a), 0.55 * math.sin(ang_a), -0.42)
        qa = _rot_z(p - ca, -2.2 * ang_a)
        ball_a = _sphere(qa, 0.25)
        # ball B: radius 0.22, the other way round on a tilted ellipse, so the two cross twice a lap
        wb = self.BALL_SPEED / 0.5
        ang_b = ph + 1.7 - wb * sec
        cb = _vec(0.5 * math.cos(ang_b), 0.42 * math.sin(ang_b), -0.3 + 0.18 * math.sin(ang_b + 0.6))
        qb = _rot_x(p - cb, 2.5 * ang_b)
        ball_b = _sphere(qb, 0.22)
        # a small ball bouncing on the floor near the middle (|sin| height: fast at the bottom)
        bounce = abs(math.sin(4.0 * sec + ph))
        cc = _vec(-0.15, 0.1, -0.62 + 0.55 * bounce)
        qc = p - cc
        ball_c = _sphere(qc, 0.12)
        # a box spinning about z above the middle of the floor
        qbox = _rot_z(p - _vec(0.1, -0.05, -0.05), -self.SPIN * sec)
        box = _box(qbox, _vec(0.16, 0.1, 0.13)) - 0.015
        return [(floor, p - floor_c), (ball_a, qa), (ball_b, qb), (ball_c, qc), (box, qbox)]


# ---- scenes that look like real captures: the dancer before a backdrop ----------------------------------

BACKDROP_FOV_X = math.radians(60.0)  # wider lenses than the subject scenes': the backdrop fills the frame's rim
FLOOR_Z = -0.92  # the stage's underside: the dancer's stage stands on the floor


def _ring(count: int, offset: float, radius: float, elevations: tuple[float, float]) -> torch.Tensor:
    """count camera centres on a ring of `radius` around RIG_TARGET, evenly spread in azimuth from
    `offset`, heights spread over `elevations` (degrees) in a shuffled order. [count, 3]"""
    i = torch.arange(count, dtype=torch.float64)
    azimuth = offset + 2 * math.pi * i / max(1, count)
    lo, hi = elevations
    elevation = torch.deg2rad(lo + (hi - lo) * ((i * 0.618034 + 0.3) % 1.0))  # golden-ratio spread
    eye = torch.stack([torch.cos(elevation) * torch.cos(azimuth), torch.cos(elevation) * torch.sin(azimuth),
                       torch.sin(elevation)], -1)
    return (radius * eye + torch.tensor(RIG_TARGET, dtype=torch.float64)).float()


def _backdrop_rig(train_eye: torch.Tensor, test_eye: torch.Tensor, size: int) -> tuple[Cameras, list[int], list[int]]:
    """Cameras at train then test centres ([N, 3] each), all looking at RIG_TARGET with BACKDROP_FOV_X."""
    eye = torch.cat([train_eye, test_eye])
    c2w = look_at(eye, torch.tensor(RIG_TARGET))
    K = intrinsics_from_fov(BACKDROP_FOV_X, size, size).expand(len(eye), 3, 3).clone()
    n_train = len(train_eye)
    return Cameras(K, c2w, size, size), list(range(n_train)), list(range(n_train, len(eye)))


def _check_rig(views: int, size: int, test_views: int) -> None:
    if views < 1 or not 0 <= test_views < views:
        raise ConfigError(f"need at least one training view: views={views}, test_views={test_views}")
    if size < 8:
        raise ConfigError(f"image size must be at least 8 pixels, got {size}")


class _BackdropScene(Dancer):
    """The dancer (the subject) before backdrop parts, which `backdrop_parts` gives after its own."""

    has_backdrop = True
    fov_x = BACKDROP_FOV_X

    def backdrop_parts(self, p: torch.Tensor) -> list[PartValue]:
        """The backdrop's static parts at points [P, 3], in the order of their textures."""
        raise NotImplementedError

    def parts(self, p: torch.Tensor, u: float) -> list[PartValue]:
        """The dancer's parts, then (with the backdrop) the backdrop's."""
        subject = super().parts(p, u)
        return subject + self.backdrop_parts(p) if self.backdrop else subject

    def sdf(self, p: torch.Tensor, u: float) -> torch.Tensor:
        """As SynthScene.sdf, but the subject is evaluated only where it may be nearer than the backdrop:
        it lies inside SCENE_AABB, so its distance is at least the box's. About twice as fast (most
        rays of these scenes march through the room, far from the subject), and as valid a distance
        bound: equal to the min over the parts wherever the subject is evaluated, else the backdrop's
        exact distance (the subject's approximate SDF may be lower there, far from any density)."""
        if not self.backdrop:
            return super().sdf(p, u)
        out = torch.stack([d for d, _ in self.backdrop_parts(p)]).amin(dim=0)  # [P]
        near = (_box(p, SCENE_AABB[1]) < out).nonzero()[:, 0]
        if len(near):
            subject = torch.stack([d for d, _ in Dancer.parts(self, p[near], u)]).amin(dim=0)
            out[near] = torch.minimum(out[near], subject)
        return out


class Room(_BackdropScene):
    """The dancer inside a textured room: a checkered wooden floor, walls of blotchy colour with
    vertical panels and a darker dado band, a panelled ceiling. Cameras stand on a ring inside the
    room looking at the dancer, so every ray ends on the room: the images are opaque, with no mask
    to separate subject from background (as in a real capture)."""

    name = "room"
    description = "the dancer inside a textured room, cameras on a ring inside it; opaque images"
    HALF = 5.0  # walls at |x|, |y| = 5: ~3x the subject's width (1.6, the stage's) from its centre
    CEILING_Z = 3.5
    RING_RADIUS = 3.0  # cameras 2 units from the walls behind them

    def __init__(self, seed: int = 0, backdrop: bool = True) -> None:
        super().__init__(seed)  # the subject: the same colours, phase and motion as `dancer` of this seed
        self.backdrop = backdrop
        floor_a, floor_b = self.colour(0.62, 0.42, 0.24), self.colour(0.30, 0.18, 0.10)
        wall_a, wall_b, dado = self.colour(0.80, 0.78, 0.62), self.colour(0.45, 0.62, 0.70), self.colour(0.35, 0.22, 0.30)
        ceil_a, ceil_b = self.colour(0.95, 0.94, 0.90), self.colour(0.70, 0.72, 0.78)
        n = self.noise
        if backdrop:
            h = self.HALF + 0.1
            self.bounds = torch.tensor([[-h, -h, FLOOR_Z - 0.1], [h, h, self.CEILING_Z + 0.1]])
            self.textures = self.textures + [
                lambda q: _mix(floor_a, floor_b, _checker(q + 0.05, 0.6)) * (0.8 + 0.2 * n(q, 3.0))[:, None],
                lambda q: _mix(_mix(wall_a, wall_b, n(q, 0.45)) * (0.75 + 0.25 * _stripes(q[:, 0] + q[:, 1], 1.2))[:, None],
                               dado, torch.sigmoid(-8.0 * (q[:, 2] + 0.1))),
                lambda q: _mix(ceil_a, ceil_b, 0.6 * _checker(q, 1.0)),
            ]

    def backdrop_parts(self, p: torch.Tensor) -> list[PartValue]:
        """Floor, walls, ceiling: solid outside the room."""
        walls = torch.minimum(self.HALF - p[:, 0].abs(), self.HALF - p[:, 1].abs())
        return [(p[:, 2] - FLOOR_Z, p), (walls, p), (self.CEILING_Z - p[:, 2], p)]

    def rig(self, views: int, size: int, test_views: int) -> tuple[Cameras, list[int], list[int]]:
        """A ring of cameras inside the room, 5-25 degrees above the dancer's centre; the held-out
        ones between the training ones' azimuths."""
        _check_rig(views, size, test_views)
        n_train = views - test_views
        train = _ring(n_train, 0.0, self.RING_RADIUS, (5.0, 25.0))
        test = _ring(test_views, math.pi / n_train + 0.37, self.RING_RADIUS, (8.0, 20.0))
        return _backdrop_rig(train, test, size)


class Forward(_BackdropScene):
    """The dancer filmed by a forward-facing rig (N3DV/LLFF-like): cameras on a small ellipse in a
    vertical plane 3.2 units in front of it, all looking at it, with a textured wall 8 units behind
    it (5x its width) and a floor that runs from under the cameras to the wall; opaque images."""

    name = "forward"
    description = "the dancer before a textured wall and floor metres behind, forward-facing rig; opaque images"
    WALL_Y = 8.0  # the wall's plane, 5x the subject's width (1.6) behind its centre
    CAMERA_Y = -3.2  # the cameras' plane
    SPREAD = (0.5, 0.3)  # half-width and half-height of the ellipse of training cameras

    def __init__(self, seed: int = 0, backdrop: bool = True) -> None:
        super().__init__(seed)
        self.backdrop = backdrop
        floor_a, floor_b = self.colour(0.55, 0.55, 0.50), self.colour(0.22, 0.28, 0.20)
        wall_a, wall_b, trim = self.colour(0.85, 0.60, 0.45), self.colour(0.30, 0.45, 0.65), self.colour(0.92, 0.90, 0.85)
        n = self.noise
        if backdrop:
            # every camera ray meets the floor or the wall inside these bounds (60 degree lenses)
            self.bounds = torch.tensor([[-10.0, self.CAMERA_Y - 1.0, FLOOR_Z - 0.1], [10.0, self.WALL_Y + 0.1, 9.0]])
            self.textures = self.textures + [
                lambda q: _mix(floor_a, floor_b, _checker(q + 0.05, 1.0)) * (0.8 + 0.2 * n(q, 1.5))[:, None],
                lambda q: _mix(_mix(wall_a, wall_b, n(q, 0.3)), trim, 0.5 * _stripes(q[:, 0] + 0.3 * q[:, 2], 2.5)),
            ]

    def backdrop_parts(self, p: torch.Tensor) -> list[PartValue]:
        """The floor and the wall behind: solid below and beyond."""
        return [(p[:, 2] - FLOOR_Z, p), (self.WALL_Y - p[:, 1], p)]

    def rig(self, views: int, size: int, test_views: int) -> tuple[Cameras, list[int], list[int]]:
        """Training cameras on an ellipse in the plane y = CAMERA_Y, held-out ones inside it (the
        views a forward-facing capture is judged on: between its cameras)."""
        _check_rig(views, size, test_views)
        n_train = views - test_views

        def ellipse(count: int, offset: float, scale: float) -> torch.Tensor:
            a = offset + 2 * math.pi * torch.arange(count, dtype=torch.float32) / max(1, count)
            x, z = scale * self.SPREAD[0] * torch.cos(a), RIG_TARGET[2] + 0.2 + scale * self.SPREAD[1] * torch.sin(a)
            return torch.stack([x, torch.full_like(x, self.CAMERA_Y), z], -1)

        return _backdrop_rig(ellipse(n_train, 0.0, 1.0), ellipse(test_views, 0.4, 0.45), size)


SCENES: dict[str, type[SynthScene]] = {Dancer.name: Dancer, Orbits.name: Orbits, Crossing.name: Crossing,
                                       Room.name: Room, Forward.name: Forward}
SUBJECT_SCENES = [name for name, cls in SCENES.items() if not cls.has_backdrop]  # inside SCENE_AABB, empty background
BACKDROP_SCENES = [name for name, cls in SCENES.items() if cls.has_backdrop]
DEFAULT_SCENE = "dancer"


def get_scene(name: str, seed: int = 0, backdrop: bool = True) -> SynthScene:
    """The named scene built for a seed; ConfigError for an unknown name.

    backdrop=False: a backdrop scene's subject alone (same cameras, empty background); the other
    scenes have no backdrop to leave out.
    """
    if name not in SCENES:
        raise ConfigError(f"unknown synth scene {name!r}; choose from {', '.join(SCENES)}")
    cls = SCENES[name]
    if cls.has_backdrop:
        return cls(seed, backdrop=backdrop)  # type: ignore[call-arg]
    if not backdrop:
        raise ConfigError(f"synth scene {name!r} has no backdrop to leave out (those that do: "
                          f"{', '.join(BACKDROP_SCENES)})")
    return cls(seed)


# ---- rendering ---------------------------------------------------------------------------------------

def _ramp_integral(y: torch.Tensor) -> torch.Tensor:
    """Antiderivative of the clamped smoothstep: 0 below 0, y^3 - y^4 / 2 on [0, 1], then linear."""
    inner = y.clamp(0.0, 1.0)
    return inner ** 3 - 0.5 * inner ** 4 + (y - 1.0).clamp(min=0.0)


def _segment_optical_depth(s0: torch.Tensor, s1: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """Exact integral of sigma along a segment of `length` whose SDF goes linearly from s0 to s1. [M]

    sigma = SIGMA_MAX * smoothstep(y) with y = (SURFACE_WIDTH - sdf) / (2 * SURFACE_WIDTH).
    """
    y0 = (SURFACE_WIDTH - s0) / (2 * SURFACE_WIDTH)
    y1 = (SURFACE_WIDTH - s1) / (2 * SURFACE_WIDTH)
    dy = y1 - y0
    flat = dy.abs() < 1e-6
    mean = (_ramp_integral(y1) - _ramp_integral(y0)) / torch.where(flat, torch.ones_like(dy), dy)
    ym = (0.5 * (y0 + y1)).clamp(0.0, 1.0)
    mean = torch.where(flat, ym * ym * (3 - 2 * ym), mean)  # the ramp's value where the SDF is constant
    return SIGMA_MAX * mean.clamp(min=0.0) * length


@torch.no_grad()
def render_rays(scene: SynthScene, origins: torch.Tensor, dirs: torch.Tensor, u: float) -> torch.Tensor:
    """Volume-render rays [N, 3] (unit dirs) at normalised time u -> RGBA [N, 4].

    Sphere tracing skips space with zero density; near surfaces the march takes FINE_STEP
    segments and integrates the density over each exactly (SDF linear along the segment). Each
    surface crossing (a run of fine segments) is shaded once, at its weight-averaged point: the
    colour varies little across the ~0.03-unit shell, and shading is most of the cost.
    RGB is straight (not premultiplied); alpha = 1 - transmittance.
    """
    n = len(origins)
    lo, hi = scene.bounds[0], scene.bounds[1]
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0, t1 = (lo - origins) / safe, (hi - origins) / safe
    t_near = torch.minimum(t0, t1).amax(-1).clamp(min=0.0)  # [N]
    t_far = torch.maximum(t0, t1).amin(-1)  # [N]
    t = t_near.clone()
    trans = torch.ones(n)  # transmittance so far
    rgb = torch.zeros(n, 3)  # premultiplied colour
    s_prev = torch.zeros(n)  # SDF at the start of the last step
    step_prev = torch.zeros(n)  # length of the last step
    fine_prev = torch.zeros(n, dtype=torch.bool)  # was the last step a fine (integrated) one?
    run_w = torch.zeros(n)  # weight of the current surface crossing
    run_p = torch.zeros(n, 3)  # weight-summed points of the current surface crossing
    crossings: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (rays, weights, points), shaded at the end
    alive = (t_far > t_near).nonzero()[:, 0]  # [A] rays still marching
    # every step but a ray's last is at least FINE_STEP long, so this many iterations always suffice
    max_iters = int(math.ceil(float(torch.linalg.vector_norm(hi - lo)) / FINE_STEP)) + 3
    for _ in range(max_iters):
        if len(alive) == 0:
            break
        ta, o, d = t[alive], origins[alive], dirs[alive]
        p = o + ta[:, None] * d  # [A, 3]
        s = scene.sdf(p, u)  # [A]
        # integrate the fine segment that ended here
        seg = fine_prev[alive].nonzero()[:, 0]
        if len(seg):
            r = alive[seg]
            tau = _segment_optical_depth(s_prev[r], s[seg], step_prev[r])  # [M]
            hit = (tau > 0).nonzero()[:, 0]
            if len(hit):
                r, sh = r[hit], seg[hit]
                mid = p[sh] - (0.5 * step_prev[r])[:, None] * d[sh]
                alpha = 1.0 - torch.exp(-tau[hit])
                weight = trans[r] * alpha
                run_w[r] += weight
                run_p[r] += weight[:, None] * mid
                trans[r] *= 1.0 - alpha
        # next step: fine near a surface, else skip space that surely has zero density
        near = s < SURFACE_WIDTH + FINE_STEP
        step = torch.where(near, torch.full_like(s, FINE_STEP), (SAFETY * (s - SURFACE_WIDTH)).clamp(min=FINE_STEP))
        step = torch.minimum(step, t_far[alive] - ta).clamp(min=0.0)
        s_prev[alive], step_prev[alive], fine_prev[alive] = s, step, near
        t[alive] = ta + step
        keep = (trans[alive] > 1e-4) & (step > 1e-7)
        # shade the crossings that ended: the ray left the shell, became opaque or left the box
        done = alive[(~near | ~keep) & (run_w[alive] > 0)]
        if len(done):
            crossings.append((done, run_w[done], run_p[done] / run_w[done, None]))
            run_w[done], run_p[done] = 0.0, 0.0
        alive = alive[keep]
    if crossings:
        # one shading call for every crossing of every ray: shading is costly per call, not per point
        rays, weights, points = (torch.cat(x) for x in zip(*crossings))
        rgb.index_add_(0, rays, weights[:, None] * scene.shade(points, u))
    acc = torch.where(trans <= 1e-4, torch.ones(n), 1.0 - trans)  # early-terminated rays are opaque
    straight = rgb / acc.clamp(min=1e-6)[:, None]
    return torch.cat([straight.clamp(0, 1), acc[:, None]], -1)


# Rays per pixel side of the ground truth: a camera pixel integrates light over its area, so the
# generator averages SUPERSAMPLE^2 rays a pixel. One ray a pixel aliases the stripes and checkers
# (periods of a few pixels at 64 px), and no view-consistent model can predict aliasing: at 32^3,
# 64 px, the trainer's held-out PSNR was capped by it.
SUPERSAMPLE = 2


def render_cameras(scene: SynthScene, cams: Cameras, u: float, chunk: int = 1 << 18,
                   supersample: int = SUPERSAMPLE) -> torch.Tensor:
    """Every camera of cams at normalised time u, marched together: [N, H, W, 4] RGBA (straight RGB).

    Each pixel is the mean of supersample x supersample rays over its area (alpha-weighted colour).
    """
    s = supersample
    fine = cams.scaled(s) if s > 1 else cams
    o, d = zip(*(image_rays(fine, i) for i in range(len(fine))))
    o, d = torch.stack(o).reshape(-1, 3), torch.stack(d).reshape(-1, 3)  # [N*sH*sW, 3]
    # torch's own thread count: the march is many small element-wise ops, and one thread was once
    # forced here; measured on an idle 2-core machine, two threads render 1.2-1.4x faster
    out = torch.cat([render_rays(scene, o[i:i + chunk], d[i:i + chunk], u) for i in range(0, len(o), chunk)])
    out = out.reshape(len(cams), cams.height, s, cams.width, s, 4)
    alpha = out[..., 3:].mean(dim=(2, 4))  # [N, H, W, 1]
    premult = (out[..., :3] * out[..., 3:]).mean(dim=(2, 4))  # [N, H, W, 3]
    rgb = premult / alpha.clamp(min=1e-8)  # straight colour; 0 where nothing covers the pixel
    return torch.cat([rgb.clamp(0, 1), alpha], dim=-1)


# The scenes' motion repeats every CYCLE_SECONDS of scene time. Motion follows the clock, not the
# clip length, as in a real capture: at 30 fps a frame moves a few degrees, so the sequential
# trainer's warm start and the codec's inter prediction see realistic frame-to-frame change.
CYCLE_SECONDS = 3.0


def frame_time(t: int, num_frames: int) -> float:
    """Normalised time u in [0, 1] of frame t (the D-NeRF JSON `time`)."""
    return t / (num_frames - 1) if num_frames > 1 else 0.0


def scene_phase(t: int, fps: float) -> float:
    """Phase of the scenes' motion cycle at frame t (1.0 = one full cycle)."""
    return t / (fps * CYCLE_SECONDS)


def render_scene(name: str, cams: Cameras, t: int, num_frames: int, seed: int = 0) -> torch.Tensor:
    """Ground truth of scene `name` (seed) at frame t of num_frames, seen by cams (OpenCV convention).

    Returns [N, H, W, 4] float32 RGBA in [0, 1], RGB straight (composite as rgb * a + bg * (1 - a)).
    """
    if not 0 <= t < num_frames:
        raise ConfigError(f"frame {t} out of range 0..{num_frames - 1}")
    return render_cameras(get_scene(name, seed), cams.to("cpu"), scene_phase(t, FPS))


# ---- the camera rig and the dataset on disk ------------------------------------------------------------

def _hemisphere(count: int, offset: float) -> torch.Tensor:
    """count camera centres on the upper hemisphere band (elevation 8-58 deg), golden-angle spiral. [count, 3]"""
    golden = math.pi * (3 - math.sqrt(5))
    i = torch.arange(count, dtype=torch.float64)
    elevation = torch.deg2rad(8 + 50 * (i + 0.5) / count)
    azimuth = offset + golden * i
    ring = torch.cos(elevation)
    eye = torch.stack([ring * torch.cos(azimuth), ring * torch.sin(azimuth), torch.sin(elevation)], -1)
    return (RIG_RADIUS * eye + torch.tensor(RIG_TARGET, dtype=torch.float64)).float()


def synth_rig(views: int, size: int, test_views: int = 2,
              fov_range: tuple[float, float] | None = None) -> tuple[Cameras, list[int], list[int]]:
    """The synth camera rig: views cameras (train first, then test_views held-out ones at other
    positions) on a sphere around the scene, looking at its centre; images size x size pixels.

    fov_range: (narrowest, widest) horizontal field of view in degrees, spread over the cameras in
    a shuffled order (mixed lenses); each camera stands where the scene fills its view as it fills
    FOV_X at RIG_RADIUS. None: every camera FOV_X at RIG_RADIUS.
    Returns (cameras, train view indices, test view indices).
    """
    _check_rig(views, size, test_views)
    train = _hemisphere(views - test_views, 0.0)
    # held-out views: azimuths between the training ones, different elevations
    test = _hemisphere(test_views, math.pi / max(1, views - test_views) + 0.37) if test_views else torch.zeros(0, 3)
    eye = torch.cat([train, test])
    target = torch.tensor(RIG_TARGET)
    if fov_range is None:
        fovs = torch.full((views,), FOV_X, dtype=torch.float64)
    else:
        lo, hi = (math.radians(f) for f in fov_range)
        order = (torch.arange(views) * 7) % views  # a fixed shuffle: neighbours get different lenses
        fovs = lo + (hi - lo) * order.double() / max(1, views - 1)
        # same framing: distance scales with 1 / tan(fov / 2)
        scale = math.tan(FOV_X / 2) / torch.tan(fovs / 2)
        eye = target + (eye - target) * scale[:, None].float()
    c2w = look_at(eye, target)
    K = torch.stack([intrinsics_from_fov(float(f), size, size) for f in fovs])
    n_train = views - test_views
    return Cameras(K, c2w, size, size), list(range(n_train)), list(range(n_train, views))


def _is_synth_folder(folder: Path) -> bool:
    try:
        meta = read_json(folder / "transforms_train.json", str(folder / "transforms_train.json"))
    except FormatError:
        return False
    return isinstance(meta, dict) and meta.get("generator") == GENERATOR


def _write_png(path: Path, rgba: torch.Tensor) -> None:
    """[H, W, 4] float RGBA in [0, 1] -> 8-bit RGBA PNG; [H, W, 3] -> RGB; [H, W] -> grey."""
    img = (rgba.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA if img.shape[-1] == 4 else cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img):
        raise FeatvidError(f"{path}: could not write image")


SCORE_MASKS = "score_masks"  # the folder of a backdrop scene's foreground masks (featvid.data.blender)


def write_synth(out: str | Path, scene: str = DEFAULT_SCENE, frames: int = 8, views: int = 12, size: int = 64,
                seed: int = 0, test_views: int = 2, progress: bool = False, backdrop: bool = True) -> Path:
    """Render a synthetic scene and write it as a D-NeRF/Blender dataset folder `out`.

    frames: T frames at 30 fps (JSON time t / (T - 1)); views: cameras in all, the last test_views
    held out in transforms_test.json; size: image height = width in pixels. The folder is built
    beside `out` and renamed into place, so it is complete or absent; an existing `out` must be
    empty or an earlier synth folder (which is replaced). Returns the folder.

    Subject scenes: RGBA images (alpha = coverage) and the "aabb" SCENE_AABB. Backdrop scenes
    (room, forward): opaque RGB images and no "aabb" (as a real capture: nothing bounds the room;
    "subject_aabb" says where the subject is), or with backdrop=False the subject alone as RGBA
    on white with "aabb", seen by the same cameras. Both forms also write the subject's
    foreground coverage per image, for scoring only: `score_masks/fTTTT_vVV.png` (8-bit grey,
    255 = subject), named by each image's "score_mask_path".
    """
    out = Path(out)
    if not 1 <= frames <= 10000:
        raise ConfigError(f"frames must be in 1..10000, got {frames}")
    if size > 4096:
        raise ConfigError(f"image size must be at most 4096 pixels, got {size}")
    scene_obj = get_scene(scene, seed, backdrop)
    # the subject alone, whose alpha is the foreground mask of a backdrop scene (nothing in the
    # room or before the wall stands between a camera and the subject)
    subject = None if not scene_obj.has_backdrop else get_scene(scene, seed, False) if backdrop else scene_obj
    cams, train_views, test_idx = scene_obj.rig(views, size, test_views)
    check_output_dir(out, SYNTH)  # new, empty or holding a synth dataset's names only: nothing else is replaced
    if out.is_dir() and any(out.iterdir()) and not _is_synth_folder(out):
        raise ConfigError(f"{out}: folder is not empty and not a featvid synth dataset; choose another")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as e:
        raise write_failed(out, e) from e
    try:
        (tmp / "train").mkdir()
        (tmp / "test").mkdir()
        if subject is not None:
            (tmp / SCORE_MASKS).mkdir()
        lists: dict[str, list[dict]] = {"train": [], "test": []}
        for t in progress_bar(range(frames), desc=f"synth {scene}", unit="frame", disable=not progress):
            rgba = render_cameras(scene_obj, cams, scene_phase(t, FPS))  # [V, H, W, 4]
            fg = None
            if subject is not None:
                fg = rgba[..., 3] if subject is scene_obj else render_cameras(subject, cams, scene_phase(t, FPS))[..., 3]
            for v in range(views):
                split = "train" if v in train_views else "test"
                name = f"f{t:04d}_v{v:02d}.png"
                if scene_obj.backdrop:  # opaque: every ray ends on the backdrop (white where one did not)
                    _write_png(tmp / split / name, rgba[v, ..., :3] * rgba[v, ..., 3:] + 1.0 - rgba[v, ..., 3:])
                else:
                    _write_png(tmp / split / name, rgba[v])
                entry = {
                    "file_path": f"./{split}/{name}",
                    "time": frame_time(t, frames),
                    "transform_matrix": opencv_to_opengl(cams.c2w[v]).tolist(),
                }
                if fg is not None:
                    _write_png(tmp / SCORE_MASKS / name, fg[v])
                    entry["score_mask_path"] = f"./{SCORE_MASKS}/{name}"
                if scene_obj.fov_range is not None:  # mixed lenses: per-image intrinsics (nerfstudio keys)
                    K = cams.K[v]
                    entry.update(fl_x=float(K[0, 0]), fl_y=float(K[1, 1]), cx=float(K[0, 2]), cy=float(K[1, 2]))
                lists[split].append(entry)
        for split, entries in lists.items():
            meta: dict = {
                "camera_angle_x": scene_obj.fov_x,
                "generator": GENERATOR,
                "scene": scene,
                "seed": seed,
                "fps": FPS,
                "aabb": SCENE_AABB.tolist(),
                "background": [1.0, 1.0, 1.0],
                "frames": entries,
            }
            if scene_obj.has_backdrop:
                meta["backdrop"] = scene_obj.backdrop
            if scene_obj.backdrop:  # a real capture's box is unknown: the loader estimates one
                meta["subject_aabb"] = meta.pop("aabb")
            write_json(tmp / f"transforms_{split}.json", meta)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):  # read-only, full: one line
            raise write_failed(out, e) from e
        raise
    log.info("wrote %s: scene %s%s, %d frames x %d views, %d px", out, scene,
             "" if backdrop or not scene_obj.has_backdrop else " (no backdrop)", frames, views, size)
    return out
