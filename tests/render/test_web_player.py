"""The web player, end to end in headless Chromium: WebCodecs decode + WebGL2 ray marching of a
`web` preset stream must match the Python reference renderer on the same decoded grids.

Runs Debian's chromium through playwright (no GPU here: WebGL2 runs on SwiftShader). Skips with
the reason where playwright or a Chromium binary is missing, or the browser cannot start.
"""
from __future__ import annotations

import base64
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from featvid.data.cameras import Cameras, image_rays, intrinsics_from_fov, look_at
from featvid.field.volume import Volume, render_image, render_rays
from featvid.render.serve import serve

SIZE = 40  # pixels: SwiftShader runs the shader on the CPU
PSNR_FLOOR = 55.0  # dB, browser vs Python renderer on the same decoded frame (measured 58.8-61.3)
CHROMIUM_ARGS = [
    "--no-sandbox",  # the test may run as root
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-quic",
    "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",  # WebGL2 without a GPU
]


def _chromium_path() -> str | None:
    for p in (os.environ.get("FEATVID_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser",
              shutil.which("chromium"), shutil.which("google-chrome")):
        if p and Path(p).is_file():
            return p
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    exe = _chromium_path()
    if exe is None:
        pytest.skip("no Chromium binary found (set FEATVID_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        except Exception as e:  # noqa: BLE001 (any launch failure means: no browser here)
            pytest.skip(f"Chromium at {exe} does not start: {str(e).splitlines()[0]}")
        yield b
        b.close()


@pytest.fixture
def page(browser, web_stream):
    server = serve(web_stream, port=0)
    server.start()
    # A small window: SwiftShader runs the shader on the CPU, and the page draws at window size.
    pg = browser.new_page(viewport={"width": 64, "height": 48})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        pg.goto(server.url + "?paused=1")
        pg.wait_for_function("window.featvid && (window.featvid.player || window.featvid.error)", timeout=60_000)
        err = pg.evaluate("window.featvid.error")
        for missing in ("cannot decode H.264", "no WebGL2", "no WebCodecs"):
            if err and missing in err:  # a browser build without the capability, not a player bug
                pytest.skip(f"this Chromium cannot run the player: {err}")
        assert err is None, f"player failed: {err}; page errors: {errors}"
        yield pg
    finally:
        pg.close()
        server.close()


def _camera(aabb: torch.Tensor, width: int, height: int) -> Cameras:
    """A camera outside the box, looking at its centre from an oblique angle (no axis-aligned rays)."""
    centre, half = aabb.mean(0), (aabb[1] - aabb[0]).norm() / 2
    eye = centre + half * torch.tensor([1.1, -0.9, 0.7])
    return Cameras(intrinsics_from_fov(0.8, height, width), look_at(eye[None], centre), height, width)


def _browser_image(page, cams: Cameras, t: int) -> tuple[np.ndarray, dict]:
    info = page.evaluate("args => featvid.renderFrame(args)", {
        "c2w": cams.c2w[0].flatten().tolist(), "K": cams.K[0].flatten().tolist(),
        "width": cams.width, "height": cams.height, "t": t})
    px = page.evaluate("featvid.readPixels()")
    assert (px["width"], px["height"]) == (cams.width, cams.height)
    rgba = np.frombuffer(base64.b64decode(px["rgba"]), np.uint8).reshape(cams.height, cams.width, 4)
    return rgba[..., :3].astype(np.float32) / 255.0, info


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def test_browser_matches_python_renderer(page, web_stream):
    from featvid.codecs import open_stream

    stream = open_stream(web_stream, hwaccel="none")
    mlp = stream.mlp()
    cams = _camera(stream.aabb, SIZE, SIZE)
    origins, dirs = image_rays(cams, 0)
    # The first frame and the last (another GOP when there are several, decoded past its keyframe).
    for t in sorted({0, stream.num_frames - 1}):
        vol = Volume.from_grid(stream.frame(t))
        ref = render_image(vol, mlp, origins, dirs, stream.render_settings).numpy()
        # The scene must fill much of the view, or matching the background would prove nothing.
        acc = render_rays(vol, mlp, origins.reshape(-1, 3), dirs.reshape(-1, 3), stream.render_settings)["acc"]
        solid = (acc > 0.5).reshape(SIZE, SIZE).numpy()
        assert solid.mean() > 0.02, "test camera does not see the scene"
        img, info = _browser_image(page, cams, t)
        assert info["frame"] == t and info["gop"] == stream.gop_of(t)
        psnr, psnr_solid = _psnr(img, ref), _psnr(img[solid], ref[solid])
        print(f"frame {t}: browser vs reference PSNR {psnr:.1f} dB, {psnr_solid:.1f} dB on the scene's pixels")
        assert psnr >= PSNR_FLOOR, f"frame {t}: browser vs reference PSNR {psnr:.1f} dB < {PSNR_FLOOR} dB"
        assert psnr_solid >= PSNR_FLOOR, f"frame {t}: PSNR on the scene's pixels {psnr_solid:.1f} dB < {PSNR_FLOOR} dB"


def test_player_draws_orbits_and_plays(page):
    before = page.evaluate("featvid.readPixels()")["rgba"]
    fps = page.evaluate("featvid.measureFps(3)")  # three requestAnimationFrame-paced draws, orbiting
    print(f"web player: {fps:.1f} fps at {SIZE}x{SIZE} on {page.evaluate('featvid.player.renderer.description()')}")
    after = page.evaluate("featvid.readPixels()")["rgba"]
    assert after != before, "the orbiting camera drew nothing new"
    page.evaluate("featvid.release(); featvid.player.playing = true")
    page.wait_for_function("featvid.player.frame > 0 || featvid.player.manifest.frames === 1", timeout=30_000)
    stats = page.inner_text("#stats")
    assert "KB/frame" in stats and "GOP" in stats and "fps" in stats


def test_other_presets_get_a_clear_message(browser, tiny_stream):
    server = serve(tiny_stream, port=0)
    server.start()
    pg = browser.new_page(viewport={"width": 64, "height": 48})
    try:
        pg.goto(server.url)
        pg.wait_for_function("window.featvid && window.featvid.error", timeout=30_000)
        assert "web" in pg.evaluate("window.featvid.error")
        assert pg.is_visible("#message")
    finally:
        pg.close()
        server.close()
