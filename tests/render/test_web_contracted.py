"""The web player on a contracted grid (issue 25, unbounded scenes): the WebGL2 shader's contracted
ray marching (raymarch.glsl, chosen by the manifest's render.space) equals the Python reference
renderer on the same decoded frame, in headless Chromium, to the box test's PSNR floor.
Skips where test_web_player skips (no playwright, no Chromium, no WebGL2/WebCodecs)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from featvid.data.cameras import Cameras, image_rays, intrinsics_from_fov, look_at
from featvid.field.grid import SparseGrid
from featvid.field.mapping import Mapping
from featvid.field.mlp import MLPConfig, TinyMLP
from featvid.field.volume import RenderSettings, Volume, render_image, render_rays
from featvid.formats.run import frame_name, write_run_file, write_run_meta
from featvid.formats.synthetic import smooth_volume
from tests.render.test_web_player import PSNR_FLOOR, _browser_image, _open_page, _psnr, browser  # noqa: F401

SIZE = 40  # pixels (SwiftShader runs the shader on the CPU)
# PSNR_FLOOR is the box test's, 55 dB; measured here 58.9-62.7 dB (59.0-59.3 on the scene's pixels)
SHAPE = (24, 24, 24)
CHANNELS = 4
AABB = torch.tensor([[-2.0, -2.0, -2.0], [2.0, 2.0, 2.0]])  # inner box: centre 0, half size 1


def _grid(t: int) -> SparseGrid:
    """A ball in the inner box, a wall in the near shell (contracted radius ~1.5, world ~2) and a
    backdrop in the far shell (contracted radius > 1.8, world > 5), smooth values (a codec-friendly
    atlas), drifting with t."""
    axes = [torch.linspace(-2, 2, n) for n in SHAPE]
    x, y, z = torch.meshgrid(*axes, indexing="ij")
    rho = torch.stack([x.abs(), y.abs(), z.abs()]).amax(0)
    ball = ((x - 0.05 * t) ** 2 + y**2 + z**2).sqrt() < 0.7
    wall = (rho > 1.35) & (rho < 1.65) & (y > 0.2)
    backdrop = (rho > 1.8) & (x < 0.0)
    vol = smooth_volume(SHAPE, 1 + CHANNELS, t, seed=2)
    vol[0] = 8 + 6 * vol[0]  # raw density: thin to opaque
    return SparseGrid.from_dense(vol, ball | wall | backdrop, AABB)


def _contracted_run(path: Path, frames: int = 2) -> Path:
    """A finished run folder (as featvid.formats.synthetic.make_run writes) of a contracted grid."""
    grids = [_grid(t) for t in range(frames)]
    arch = MLPConfig(in_features=CHANNELS, hidden=16, layers=2, view_freqs=1)
    render = RenderSettings(space="contracted").to_dict()
    path.mkdir(parents=True)
    write_run_meta(path, {"num_frames": frames, "fps": 10.0, "aabb": AABB.tolist(), "grid_shape": list(SHAPE),
                          "num_channels": CHANNELS, "mlp": arch.to_dict(), "render": render,
                          "gops": [{"start": 0, "frames": frames, "mapping": "gop_00000.fvmap"}]})
    write_run_file(path, "gop_00000.fvmap", Mapping.from_union([g.occupancy() for g in grids]).to_bytes())
    for t, g in enumerate(grids):
        write_run_file(path, frame_name(t), g.to_bytes())
    torch.manual_seed(0)
    write_run_file(path, "mlp.safetensors", TinyMLP(arch).to_bytes())
    return path


@pytest.fixture(scope="module")
def contracted_stream(tmp_path_factory) -> Path:
    from featvid.bake import bake_run
    from featvid.codecs import encode_baked

    root = tmp_path_factory.mktemp("contracted")
    stream = encode_baked(bake_run(_contracted_run(root / "run"), root / "baked"), root / "c.fvv", preset="web")
    assert json.loads((stream / "manifest.json").read_text())["render"]["space"] == "contracted"
    return stream


CAMERAS = {  # name: (eye, field of view)
    "near": ((0.4, -1.6, 0.5), 1.6),  # outside the inner box: rays cross the ball, the wall, the backdrop
    "far": ((40.0, -30.0, 18.0), 0.6),  # far outside the grid's box (r ~ 40 > r_far = 11.5)
}


def test_browser_matches_python_renderer_on_a_contracted_grid(browser, contracted_stream):  # noqa: F811
    from featvid.codecs import open_stream

    stream = open_stream(contracted_stream, hwaccel="none")
    assert stream.render_settings.space == "contracted"
    mlp = stream.mlp()
    pg, server = _open_page(browser, contracted_stream)
    try:
        for name, (eye, fov) in CAMERAS.items():
            cams = Cameras(intrinsics_from_fov(fov, SIZE, SIZE), look_at(torch.tensor([eye]), torch.zeros(3))[0],
                           SIZE, SIZE)
            origins, dirs = image_rays(cams, 0)
            for t in (0, stream.num_frames - 1):
                vol = Volume.from_grid(stream.frame(t))
                ref = render_image(vol, mlp, origins, dirs, stream.render_settings).numpy()
                acc = render_rays(vol, mlp, origins.reshape(-1, 3), dirs.reshape(-1, 3),
                                  stream.render_settings)["acc"].reshape(SIZE, SIZE).numpy()
                solid = acc > 0.5
                assert solid.mean() > 0.05, f"camera {name} does not see the scene"
                if name == "far":
                    assert (acc == 0).mean() > 0.1, "the far camera must have rays that miss everything"
                # read as a box grid, the same frame would look different, so the test can tell (measured
                # 12.0 / 10.7 dB from the contracted image, near / far camera)
                as_box = render_image(vol, mlp, origins, dirs, RenderSettings(space="box")).numpy()
                assert _psnr(as_box, ref) < PSNR_FLOOR - 20, _psnr(as_box, ref)
                img, info = _browser_image(pg, cams, t)
                assert info["frame"] == t
                psnr, psnr_solid = _psnr(img, ref), _psnr(img[solid], ref[solid])
                print(f"{name} camera, frame {t}: browser vs reference {psnr:.1f} dB, {psnr_solid:.1f} dB on the scene")
                assert psnr >= PSNR_FLOOR, f"{name} camera, frame {t}: {psnr:.1f} dB < {PSNR_FLOOR} dB"
                assert psnr_solid >= PSNR_FLOOR
        # the orbit frames the subject, the inner box (half size 1: half diagonal sqrt(3)), not the far field
        assert abs(pg.evaluate("featvid.player.camera.size") - 3**0.5) < 1e-6
        # the manifest's space is checked: another one is refused with the manifest, "box" is read
        answers = pg.evaluate("""async () => {
            const { parseManifest } = await import("./stream.js");
            const text = await (await fetch("stream/manifest.json")).text();
            return ["sphere", "box"].map((space) => {
                const m = JSON.parse(text);
                m.render.space = space;
                try { parseManifest(JSON.stringify(m)); return null; } catch (e) { return e.message; }
            });
        }""")
        assert answers == ['manifest: render space "sphere" is not one this player draws (box, contracted)', None]
    finally:
        pg.close()
        server.close()
