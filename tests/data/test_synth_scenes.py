"""The built-in scenes that look like real captures (room, forward): the backdrop fills every image,
the rigs are what they claim, the scoring masks hold the subject only and never reach training,
and the masked-on-white variant has the same cameras."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from featvid.cli import main
from featvid.data import load_dataset
from featvid.data.synth import (BACKDROP_SCENES, RIG_TARGET, SCENE_AABB, SCORE_MASKS, SURFACE_WIDTH, _box, get_scene,
                                render_cameras, write_synth)
from featvid.errors import ConfigError

SIZE, FRAMES, VIEWS, TEST_VIEWS = 32, 2, 6, 2


@pytest.fixture(scope="module", params=["room", "forward"])
def pair(request, tmp_path_factory):
    """(scene name, the scene with its backdrop, the same subject on white), written tiny."""
    root = tmp_path_factory.mktemp(request.param)
    start = time.perf_counter()
    full = write_synth(root / "full", scene=request.param, frames=FRAMES, views=VIEWS, size=SIZE, test_views=TEST_VIEWS)
    seconds = time.perf_counter() - start
    white = write_synth(root / "white", scene=request.param, frames=FRAMES, views=VIEWS, size=SIZE,
                        test_views=TEST_VIEWS, backdrop=False)
    print(f"{request.param}: {FRAMES} frames x {VIEWS} views at {SIZE} px in {seconds:.1f} s")
    return request.param, full, white


def test_registry_lists_the_backdrop_scenes():
    assert BACKDROP_SCENES == ["room", "forward"]
    with pytest.raises(ConfigError, match="no backdrop"):
        get_scene("dancer", 0, backdrop=False)


def test_backdrop_fills_every_image_and_is_textured(pair):
    name, full, _ = pair
    meta = json.loads((full / "transforms_train.json").read_text())
    assert "aabb" not in meta and meta["subject_aabb"] == [[-1.0] * 3, [1.0] * 3] and meta["backdrop"] is True
    video = load_dataset(full)
    assert (video.num_frames, video.num_views, video.test_views) == (FRAMES, VIEWS, [4, 5])
    assert not video.has_masks and video.mask(0, 0) is None  # opaque RGB: training sees the whole image
    for t in range(FRAMES):
        for v in range(VIEWS):
            img = video.image(t, v)  # [H, W, 3]
            fg = video.score_mask(t, v)  # [H, W]
            assert fg is not None
            # the white background never shows: every ray ends on the room or the wall
            assert float((img > 0.99).all(-1).float().mean()) < 0.02
            back = img[fg < 0.01]  # [B, 3] pixels that see only the backdrop
            assert len(back) > 0.5 * SIZE * SIZE
            assert float(back.std(0).min()) > 0.04  # textured, not one flat colour (measured 0.07-0.13)
    # nothing escapes the march: the analytic render is opaque everywhere
    scene = get_scene(name, 0)
    cams, _, _ = scene.rig(VIEWS, 16, TEST_VIEWS)
    assert float(render_cameras(scene, cams, 0.1)[..., 3].min()) == 1.0


def test_score_masks_cover_the_subject_only(pair):
    _, full, white = pair
    a, b = load_dataset(full), load_dataset(white)
    for t in range(FRAMES):
        for v in range(VIEWS):
            fg = a.score_mask(t, v)
            assert torch.equal(fg, b.score_mask(t, v))  # the same masks in both variants
            assert torch.allclose(fg, b.mask(t, v), atol=1 / 255)  # ... and they are the subject's alpha
            assert 0.03 < float(fg.mean()) < 0.5  # measured 0.08-0.15
            solid, empty = fg == 1.0, fg == 0.0
            # where the mask is full, the room's image is the subject's own colour; where it is empty,
            # the white variant is white: the mask holds the subject and nothing of the room
            diff = (a.image(t, v)[solid] - b.image(t, v)[solid]).abs()  # [S, 3]
            # equal but for 8-bit rounding and a pixel or two where the stage meets the floor
            assert float(diff.mean()) < 0.1 / 255  # measured <= 0.031 / 255
            assert float((diff > 2 / 255).any(-1).float().mean()) < 0.02  # measured <= 0.0102
            assert bool((b.image(t, v)[empty] > 0.99).all())
    # the folder the loader reads them from, and the image names they follow
    assert sorted(p.name for p in (full / SCORE_MASKS).iterdir())[0] == "f0000_v00.png"


def test_white_variant_has_the_same_cameras(pair):
    _, full, white = pair
    a, b = load_dataset(full), load_dataset(white)
    assert (a.train_views, a.test_views) == (b.train_views, b.test_views)
    for t in range(FRAMES):
        ca, cb = a.cameras_at(t), b.cameras_at(t)
        assert torch.equal(ca.K, cb.K) and torch.equal(ca.c2w, cb.c2w)
    meta = json.loads((white / "transforms_train.json").read_text())
    assert meta["aabb"] == [[-1.0] * 3, [1.0] * 3] and meta["backdrop"] is False
    assert b.has_masks  # RGBA on white, as the other scenes


@pytest.mark.parametrize("name", BACKDROP_SCENES)
def test_fast_sdf_equals_the_min_over_parts(name):
    # the backdrop scenes skip the subject where the backdrop is nearer than its box: the same values
    scene = get_scene(name, 0)
    g = torch.Generator().manual_seed(0)
    lo, hi = scene.bounds
    p = torch.cat([lo + (hi - lo) * torch.rand(3000, 3, generator=g), 1.2 * torch.rand(1000, 3, generator=g) - 0.6])
    backdrop = torch.stack([d for d, _ in scene.backdrop_parts(p)]).amin(0)
    near = _box(p, SCENE_AABB[1]) < backdrop  # where the subject may be nearer than the backdrop
    assert 500 < int(near.sum()) < 3900
    for u in (0.0, 0.37):
        full = torch.stack([d for d, _ in scene.parts(p, u)]).amin(0)
        fast = scene.sdf(p, u)
        assert torch.allclose(fast[near], full[near], rtol=0, atol=1e-6)  # matmuls round by batch size
        # elsewhere the backdrop's exact distance: never below the full min, never near any density
        assert torch.equal(fast[~near], backdrop[~near]) and bool((fast >= full - 1e-6).all())
        assert bool((full[fast != full] > 10 * SURFACE_WIDTH).all())


def test_room_rig_is_a_ring_inside_the_room():
    scene = get_scene("room", 0)
    cams, train, test = scene.rig(12, 16, 2)
    assert train == list(range(10)) and test == [10, 11]
    c = cams.centers  # [12, 3]
    inside = (c[:, :2].abs() < scene.HALF - 1.5).all(-1) & (c[:, 2] < scene.CEILING_Z - 1.0)
    assert bool(inside.all())
    forward = cams.c2w[:, :3, 2]  # [12, 3] viewing directions (OpenCV +z)
    to_target = torch.tensor(RIG_TARGET) - c
    assert bool((torch.nn.functional.cosine_similarity(forward, to_target, dim=-1) > 0.999).all())
    assert float(torch.cdist(c[test], c[train]).min()) > 0.3  # held-out views are new positions


def test_forward_rig_is_a_small_plane_looking_forward():
    scene = get_scene("forward", 0)
    cams, train, test = scene.rig(12, 16, 2)
    c = cams.centers
    assert torch.allclose(c[:, 1], torch.full((12,), scene.CAMERA_Y))  # one plane
    spread = c[:, [0, 2]].amax(0) - c[:, [0, 2]].amin(0)
    assert float(spread.max()) <= 1.0  # small against the 11 units to the wall
    assert bool((cams.c2w[:, 1, 2] > 0.95).all())  # all looking forward (+y), at the subject
    # held-out views lie between the training ones
    lo, hi = c[train][:, [0, 2]].amin(0), c[train][:, [0, 2]].amax(0)
    assert bool(((c[test][:, [0, 2]] > lo) & (c[test][:, [0, 2]] < hi)).all())
    assert scene.WALL_Y - 0.0 >= 5 * 1.6  # the wall is >= 5x the subject's width behind it


def test_cli_backdrop_option(tmp_path):
    result = CliRunner().invoke(main, ["synth", str(tmp_path / "x"), "--backdrop", "none", "--views", "3",
                                       "--size", "8", "--frames", "1"])
    assert result.exit_code == 2 and "--backdrop" in result.output and not (tmp_path / "x").exists()
    out = tmp_path / "w"
    result = CliRunner().invoke(main, ["synth", str(out), "--scene", "forward", "--backdrop", "none", "--views", "3",
                                       "--test-views", "1", "--size", "8", "--frames", "1"])
    assert result.exit_code == 0, result.output
    assert "(no backdrop)" in result.output and (out / SCORE_MASKS / "f0000_v02.png").is_file()
    assert np.isclose(json.loads((out / "transforms_test.json").read_text())["camera_angle_x"], np.radians(60))
