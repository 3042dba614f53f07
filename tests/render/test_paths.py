"""Camera paths: orbit/spiral geometry, path files and their errors."""
import json
import math

import pytest
import torch

from featvid.data.cameras import Cameras, intrinsics_from_fov, look_at
from featvid.errors import RenderError
from featvid.render.paths import (
    CameraPath,
    dataset_path,
    load_path_file,
    make_path,
    orbit,
    path_to_dict,
    spiral,
)

AABB = torch.tensor([[-1.0, -2.0, 0.0], [3.0, 2.0, 2.0]])
CENTRE = AABB.mean(0)


def _looks_at_centre(path: CameraPath) -> bool:
    c2w = path.cameras.c2w
    to_centre = CENTRE - c2w[:, :3, 3]
    to_centre = to_centre / to_centre.norm(dim=-1, keepdim=True)
    return bool(torch.allclose(c2w[:, :3, 2], to_centre, atol=1e-5))


def test_orbit_circles_the_box_and_advances_time():
    p = orbit(AABB, 25, 10, 64, 48, fov_x_deg=60.0)
    assert len(p) == 25 and p.size == (64, 48)
    assert p.times == [i % 10 for i in range(25)]
    assert _looks_at_centre(p)
    eye = p.cameras.centers
    radius = 0.5 * float((AABB[1] - AABB[0]).norm())
    dist = (eye - CENTRE).norm(dim=-1)
    assert torch.allclose(dist, torch.full_like(dist, radius / math.sin(math.radians(30))), rtol=1e-5)
    assert torch.allclose(eye[:, 2], eye[0, 2].expand(25))  # constant elevation
    # the box centre projects to the image centre, in front of every camera
    uv, depth = p.cameras.project(CENTRE[None])
    assert torch.allclose(uv[:, 0, 0], torch.full((25,), 32.0), atol=1e-3) and (depth > 0).all()


def test_spiral_changes_elevation_and_looks_in():
    p = spiral(AABB, 40, 40, 32, 32)
    assert _looks_at_centre(p)
    z = p.cameras.centers[:, 2]
    assert float(z.max() - z.min()) > 1.0


def _write(tmp_path, obj) -> str:
    f = tmp_path / "path.json"
    f.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return str(f)


def _valid() -> dict:
    c2w = look_at(torch.tensor([[0.0, -4.0, 1.0], [4.0, 0.0, 1.0]]), torch.zeros(3))
    return {"width": 40, "height": 30, "fov_x_deg": 45,
            "frames": [{"c2w": c2w[0].tolist(), "t": 3}, {"c2w": c2w[1].tolist()}]}


def test_path_file_round_trip(tmp_path):
    p = load_path_file(_write(tmp_path, _valid()), num_frames=5)
    assert len(p) == 2 and p.times == [3, 1] and p.size == (40, 30)
    assert torch.allclose(p.cameras.K[0], intrinsics_from_fov(math.radians(45), 30, 40))
    again = load_path_file(_write(tmp_path, path_to_dict(p)), num_frames=5)
    assert torch.allclose(again.cameras.c2w, p.cameras.c2w) and again.times == p.times
    # --frames cycles the file, --size rescales the intrinsics per axis
    q = make_path(_write(tmp_path, _valid()), 5, AABB, n=5, size=(80, 90))
    assert q.times == [3, 1, 3, 1, 3] and q.size == (80, 90)
    assert torch.allclose(q.cameras.K[0, 0, 0], p.cameras.K[0, 0, 0] * 2) and torch.allclose(q.cameras.K[0, 1, 2], torch.tensor(45.0))


def test_opengl_convention_flips_axes(tmp_path):
    spec = _valid()
    spec["convention"] = "opengl"
    p = load_path_file(_write(tmp_path, spec), 5)
    q = load_path_file(_write(tmp_path, _valid()), 5)
    assert torch.allclose(p.cameras.c2w[:, :3, 1], -q.cameras.c2w[:, :3, 1])


@pytest.mark.parametrize("mutate, field", [
    (lambda s: s.pop("width"), "width"),
    (lambda s: s.update(height=0), "height"),
    (lambda s: s.update(width="640"), "width"),
    (lambda s: s.pop("fov_x_deg"), "fov_x_deg"),
    (lambda s: s.update(fov_x_deg=500), "fov_x_deg"),
    (lambda s: (s.pop("fov_x_deg"), s.update(K=[[1, 0], [0, 1]])), "K"),
    (lambda s: s.update(frames=[]), "frames"),
    (lambda s: s["frames"][1].update(c2w=[[1, 0, 0], [0, 1, 0], [0, 0, 1]]), "frames[1].c2w"),
    (lambda s: s["frames"][1].update(c2w=[[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), "frames[1].c2w"),
    (lambda s: s["frames"][0].update(t=99), "frames[0].t"),
    (lambda s: s["frames"][0].pop("c2w"), "frames[0]"),
    (lambda s: s.update(convention="blender"), "convention"),
])
def test_path_file_errors_name_the_field(tmp_path, mutate, field):
    spec = _valid()
    mutate(spec)
    with pytest.raises(RenderError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_path_file(_write(tmp_path, spec), num_frames=5)


def test_path_file_not_json_or_missing(tmp_path):
    with pytest.raises(RenderError, match="not valid JSON"):
        load_path_file(_write(tmp_path, "{width: 3"), 5)
    with pytest.raises(RenderError, match="cannot read"):
        load_path_file(tmp_path / "nope.json", 5)
    with pytest.raises(RenderError, match="unknown camera path"):
        make_path("circle", 5, AABB)


def test_bad_sizes_and_counts():
    with pytest.raises(RenderError, match="size"):
        orbit(AABB, 4, 4, 0, 0)
    with pytest.raises(RenderError, match="frames"):
        make_path("orbit", 4, AABB, n=0)
    with pytest.raises(RenderError, match="--data"):
        make_path("test", 4, AABB)


def test_dataset_path_uses_held_out_cameras():
    c2w = look_at(torch.randn(6, 3) * 0.1 + torch.tensor([0.0, -4.0, 0.0]), torch.zeros(3))
    cams = Cameras(intrinsics_from_fov(0.8, 16, 20).expand(6, 3, 3), c2w, 16, 20)

    class Video:  # what dataset_path reads from a MultiViewVideo
        num_frames = 4
        test_views = [1, 4]

        def cameras_at(self, t):
            moved = cams.c2w.clone()
            moved[:, 2, 3] += t  # a rig that rises by one unit a frame
            return Cameras(cams.K, moved, 16, 20)

    p = dataset_path(Video(), 6, num_frames=4)
    assert p.times == [0, 1, 2, 3, 0, 1] and p.size == (20, 16)
    assert torch.allclose(p.cameras.c2w[:3, :2], cams.c2w[[1, 1, 1], :2])
    assert torch.allclose(p.cameras.c2w[3:, :2], cams.c2w[[4, 4, 4], :2])
    assert torch.allclose(p.cameras.c2w[:, 2, 3] - cams.c2w[[1, 1, 1, 4, 4, 4], 2, 3], torch.tensor([0.0, 1, 2, 3, 0, 1]))

    class Monocular(Video):
        test_views = []

    with pytest.raises(RenderError, match="held-out"):
        dataset_path(Monocular(), 6, 4)
