"""The built-in synthetic scenes: determinism, motion, bounds, the rig, and synth -> load round trip."""
from __future__ import annotations

import math

import pytest
import torch

from featvid.data import load_dataset
from featvid.data.cameras import Cameras, intrinsics_from_fov, look_at
from featvid.data.synth import (
    RIG_TARGET,
    SCENE_AABB,
    SCENES,
    SUBJECT_SCENES,
    SURFACE_WIDTH,
    get_scene,
    render_cameras,
    render_scene,
    scene_phase,
    synth_rig,
    write_synth,
)
from featvid.errors import ConfigError, FeatvidError
from tests.fixtures.data import (
    TINY_FRAMES,
    TINY_SEED,
    TINY_SIZE,
    TINY_TEST_VIEWS,
    TINY_VIEWS,
)


def _front_camera(size: int = 24) -> Cameras:
    c2w = look_at(torch.tensor([[0.0, -3.0, 0.4]]), torch.tensor(RIG_TARGET))
    return Cameras(intrinsics_from_fov(math.radians(40), size, size), c2w, size, size)


def test_registry_has_distinct_scenes():
    assert {"dancer", "orbits"} <= set(SCENES)
    cam = _front_camera()
    a = render_scene("dancer", cam, 0, 4)
    b = render_scene("orbits", cam, 0, 4)
    assert (a - b).abs().mean() > 0.05
    with pytest.raises(ConfigError, match="unknown synth scene"):
        render_scene("nope", cam, 0, 4)
    with pytest.raises(ConfigError, match="out of range"):
        render_scene("dancer", cam, 4, 4)


@pytest.mark.parametrize("name", sorted(SUBJECT_SCENES))  # the backdrop scenes: tests/data/test_synth_scenes.py
def test_render_is_deterministic_dynamic_and_opaque(name):
    cam = _front_camera()
    a = render_scene(name, cam, 1, 4, seed=3)
    assert a.shape == (1, 24, 24, 4) and a.dtype == torch.float32
    assert torch.equal(a, render_scene(name, cam, 1, 4, seed=3))
    assert (a >= 0).all() and (a <= 1).all()
    alpha = a[..., 3]
    assert (alpha == 1).float().mean() > 0.15  # solid objects are opaque
    assert (alpha == 0).float().mean() > 0.05  # and background shows around them
    assert (a - render_scene(name, cam, 3, 4, seed=3)).abs().mean() > 0.01  # it moves
    assert (a - render_scene(name, cam, 1, 4, seed=4)).abs().mean() > 1e-3  # the seed matters
    # textured: opaque pixels are not one flat colour
    assert a[..., :3][alpha == 1].std(0).min() > 0.05


@pytest.mark.parametrize("name", sorted(SUBJECT_SCENES))  # the backdrop scenes: tests/data/test_synth_scenes.py
def test_everything_stays_inside_the_box(name):
    # density is zero wherever the SDF exceeds SURFACE_WIDTH; check the box's faces at every time
    g = torch.linspace(-1, 1, 41)
    a, b = torch.meshgrid(g, g, indexing="ij")
    faces = []
    for axis in range(3):
        for side in (-1.0, 1.0):
            p = torch.zeros(41 * 41, 3)
            others = [i for i in range(3) if i != axis]
            p[:, others[0]], p[:, others[1]], p[:, axis] = a.reshape(-1), b.reshape(-1), side
            faces.append(p)
    pts = torch.cat(faces) * SCENE_AABB[1]
    scene = get_scene(name, 0)
    for u in torch.linspace(0, 1, 9).tolist():
        assert float(scene.sdf(pts, u).min()) > SURFACE_WIDTH


def test_static_part_does_not_move():
    # a camera looking straight down at the stage's edge sees only the static stage
    c2w = look_at(torch.tensor([[0.0, -0.7, 0.0]]), torch.tensor([0.0, -0.7, -1.0]), up=torch.tensor([0.0, 1.0, 0.0]))
    cam = Cameras(intrinsics_from_fov(math.radians(6), 8, 8), c2w, 8, 8)
    a, b = render_scene("dancer", cam, 0, 5), render_scene("dancer", cam, 4, 5)
    assert (a[..., 3] == 1).all()
    # frames 0 and 4 are different poses; the static stage may differ only by sphere-tracing noise,
    # far below one 8-bit level (1/255)
    assert torch.allclose(a, b, atol=1e-3)


def test_rig_test_views_are_new_positions():
    cams, train, test = synth_rig(12, 32, 2)
    assert train == list(range(10)) and test == [10, 11]
    c = cams.centers
    dist = torch.cdist(c[test], c[train])
    assert dist.min() > 0.3
    assert (c[:, 2] > RIG_TARGET[2]).all()  # upper hemisphere
    # every camera looks at the scene's centre: it projects to the image centre
    uv, depth = cams.project(torch.tensor([RIG_TARGET]))
    assert torch.allclose(uv[:, 0], torch.tensor([16.0, 16.0]), atol=1e-3) and (depth > 0).all()
    with pytest.raises(ConfigError):
        synth_rig(2, 32, 2)


def test_synth_then_load_gives_same_cameras_and_pixels(tiny_dataset):
    video = load_dataset(tiny_dataset)
    assert (video.num_frames, video.num_views, video.height, video.width) == (TINY_FRAMES, TINY_VIEWS, TINY_SIZE, TINY_SIZE)
    assert video.test_views == list(range(TINY_VIEWS - TINY_TEST_VIEWS, TINY_VIEWS))
    assert torch.equal(video.aabb, SCENE_AABB) and video.fps == 30.0 and video.background == (1.0, 1.0, 1.0)
    cams, _, _ = synth_rig(TINY_VIEWS, TINY_SIZE, TINY_TEST_VIEWS)
    loaded = video.cameras_at(2)
    assert torch.allclose(loaded.c2w, cams.c2w, atol=1e-5)
    assert torch.allclose(loaded.K, cams.K, atol=1e-3)
    # the same pixels: ground truth rendered now, composited, vs the PNG read back (8-bit rounding)
    rgba = render_scene("dancer", cams[[1, 7]], 2, TINY_FRAMES, seed=TINY_SEED)
    gt = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    assert (video.images(2, [1, 7]) - gt).abs().max() < 2.5 / 255
    # a point the generator rendered lands in the same pixel through the loaded cameras
    uv_gen, _ = cams.project(torch.tensor([[0.5, 0.3, -0.4]]))
    uv_load, _ = loaded.project(torch.tensor([[0.5, 0.3, -0.4]]))
    assert torch.allclose(uv_gen, uv_load, atol=1e-3)


def test_write_synth_refuses_foreign_folder_and_replaces_its_own(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FeatvidError, match="not empty"):
        write_synth(tmp_path, frames=1, views=2, size=8, test_views=1)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    out = write_synth(tmp_path / "s", frames=2, views=3, size=8, test_views=1)
    out = write_synth(out, scene="orbits", frames=1, views=2, size=8, test_views=0)
    video = load_dataset(out)
    assert (video.num_frames, video.num_views, video.test_views) == (1, 2, [])
    assert not (out / "train" / "f0001_v00.png").exists()  # nothing stale left from the first write
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left
    with pytest.raises(ConfigError):
        write_synth(tmp_path / "t", frames=0)


def test_pixels_average_their_area():
    """Ground truth pixels are the alpha-weighted mean of 2 x 2 rays over the pixel (a camera
    integrates its pixel's area): the same as one ray a pixel at twice the size, box-filtered."""
    scene, cam = get_scene("dancer", 0), _front_camera(16)
    small = render_cameras(scene, cam, 0.1, supersample=2)  # [1, 16, 16, 4]
    fine = render_cameras(scene, cam.scaled(2), 0.1, supersample=1).reshape(1, 16, 2, 16, 2, 4)
    alpha = fine[..., 3].mean(dim=(2, 4))
    premult = (fine[..., :3] * fine[..., 3:]).mean(dim=(2, 4))
    assert torch.allclose(small[..., 3], alpha, atol=1e-6)
    covered = alpha > 1e-3
    assert covered.any() and (~covered).any()
    assert torch.allclose(small[..., :3][covered] * alpha[covered][:, None], premult[covered], atol=1e-5)
    # and silhouettes are soft: some pixels are partly covered
    assert ((alpha > 0.05) & (alpha < 0.95)).any()


def test_crossing_scene_moves_fast_casts_shadows_and_mixes_lenses(tmp_path):
    """The fast-motion scene: balls travel about a third of their radius per frame at 30 fps, the
    floor is shaded by their moving shadows, and each camera has its own focal length in the JSON."""
    scene = get_scene("crossing")
    g = torch.linspace(-1, 1, 81)
    pts = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)

    def centre(t: int) -> torch.Tensor:  # ball A's centre: where its own SDF is lowest
        return pts[scene.parts(pts, scene_phase(t, 30.0))[1][0].argmin()]

    step = float((centre(1) - centre(0)).norm())
    assert 0.05 < step < 0.12, step  # ~0.083 a frame for a 0.25 radius ball (grid step 0.025)
    # a floor point under ball A: lit at one time, shadowed when the ball passes over it
    lit = get_scene("crossing")
    p = torch.tensor([[0.0, 0.0, -0.739]])
    vis = torch.stack([lit.light_visibility(p, u) for u in torch.linspace(0, 1, 60).tolist()])
    assert float(vis.max()) > 0.95 and float(vis.min()) < 0.3
    out = write_synth(tmp_path / "c", scene="crossing", frames=2, views=5, size=16, test_views=1)
    video = load_dataset(out)
    f = video.cameras_at(0).K[:, 0, 0]
    assert len(set(round(float(x), 3) for x in f)) == 5  # five lenses
    cams, _, _ = synth_rig(5, 16, 1, get_scene("crossing").fov_range)
    assert torch.allclose(video.cameras_at(1).K, cams.K, atol=1e-4)
    uv, depth = cams.project(torch.tensor([RIG_TARGET]))
    assert torch.allclose(uv, torch.full_like(uv, 8.0), atol=1e-3) and (depth > 0).all()
