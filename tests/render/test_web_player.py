"""The web player, end to end in headless Chromium: WebCodecs decode + WebGL2 ray marching of a
`web` preset stream must match the Python reference renderer on the same decoded grids; with a
rendition ladder, every mix of renditions must, and on a throttled network (Chrome DevTools
Protocol `Network.emulateNetworkConditions`) the player steps down and up again without stalling.
A Gaussian stream (issue 29) is drawn as splats (splats.js) and must match featvid.gaussians.raster.

Runs Debian's chromium through playwright (no GPU here: WebGL2 runs on SwiftShader). Skips with
the reason where playwright or a Chromium binary is missing, or the browser cannot start.
"""
from __future__ import annotations

import base64
import math
import os
import shutil
import time
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


def test_cells_a_pitch_apart_are_read_where_they_are(browser, tmp_path):
    """An atlas of 72 rows sits in cells 80 rows apart (whole macroblocks, featvid.codecs.pack): the
    shader reads each plane at its cell's origin, equal to the Python renderer on the same frame."""
    from featvid.bake import bake_run
    from featvid.codecs import encode_baked, open_stream
    from tests.codecs.synthetic import make_run

    run = make_run(tmp_path / "run", frames=2, gop=2, shape=(36, 36, 36), channels=4)
    path = encode_baked(bake_run(run, tmp_path / "baked"), tmp_path / "pitch.fvv", preset="web")
    stream = open_stream(path, hwaccel="none")
    g = stream.manifest.gops[0]
    assert tuple(g.atlas) == (72, 128) and (g.mosaic["cell_height"], g.mosaic["cell_width"]) == (80, 128)
    cams = _camera(stream.aabb, SIZE, SIZE)
    origins, dirs = image_rays(cams, 0)
    pg, server = _open_page(browser, path)
    try:
        for t in (0, 1):
            vol = Volume.from_grid(stream.frame(t))
            ref = render_image(vol, stream.mlp(), origins, dirs, stream.render_settings).numpy()
            img, info = _browser_image(pg, cams, t)
            assert info["frame"] == t
            # the cells read an atlas apart, as a player that ignored the pitch would
            pg.evaluate("""() => {
                const r = featvid.player.renderer;
                r.gl.useProgram(r.program);
                r.gl.uniform2i(r.loc.uCellPitch, 128, 72);
            }""")
            wrong, _ = _browser_image(pg, cams, t)
            print(f"frame {t}: browser vs reference {_psnr(img, ref):.1f} dB; cells an atlas apart {_psnr(wrong, ref):.1f}")
            # smooth synthetic planes look alike 8 rows off, so the floor sits near what is measured:
            # 66.4 / 66.4 dB against 58.8 / 58.3 read an atlas apart
            assert _psnr(img, ref) >= 63.0 and _psnr(wrong, ref) < _psnr(img, ref) - 5
            pg.evaluate("""() => {
                const r = featvid.player.renderer;
                r.gl.useProgram(r.program);
                r.gl.uniform2i(r.loc.uCellPitch, 128, 80);
            }""")
    finally:
        pg.close()
        server.close()


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


# ---- adaptive streaming ---------------------------------------------------------------------------

def _open_page(browser, stream, query: str = "?paused=1"):
    server = serve(stream, port=0)
    server.start()
    pg = browser.new_page(viewport={"width": 64, "height": 48})
    pg.goto(server.url + query)
    pg.wait_for_function("window.featvid && (window.featvid.player || window.featvid.error)", timeout=60_000)
    err = pg.evaluate("window.featvid.error")
    if err and any(m in err for m in ("cannot decode H.264", "no WebGL2", "no WebCodecs")):
        pg.close()
        server.close()
        pytest.skip(f"this Chromium cannot run the player: {err}")
    assert err is None, f"player failed: {err}"
    return pg, server


def test_mixed_renditions_match_python_renderer(browser, ladder_stream):
    """GOP 0 and GOP 1 shown in different renditions, both ways round: each frame matches the
    Python renderer on that rendition's own decode (same floor as above), and the renditions do
    differ by more than the floor allows (so showing the wrong one would fail)."""
    from featvid.codecs import open_stream

    stream = open_stream(ladder_stream, hwaccel="none")
    mlp = stream.mlp()
    cams = _camera(stream.aabb, SIZE, SIZE)
    origins, dirs = image_rays(cams, 0)
    last = stream.num_frames - 1
    assert stream.gop_of(last) != stream.gop_of(0)
    refs = {}
    for t in (0, last):
        for r in ("web", "web-crf29", "web-crf24"):
            refs[t, r] = render_image(Volume.from_grid(stream.frame(t, rendition=r)), mlp, origins, dirs,
                                      stream.render_settings).numpy()
    gap = _psnr(refs[0, "web"], refs[0, "web-crf29"])
    print(f"web vs web-crf29 on frame 0: {gap:.1f} dB")
    assert gap < PSNR_FLOOR, "the renditions render alike: this test could not tell them apart"
    pg, server = _open_page(browser, ladder_stream)
    try:
        for t, r in [(0, "web"), (last, "web-crf29"), (0, "web-crf29"), (last, "web-crf24"), (0, "web")]:
            img, info = _browser_image_in(pg, cams, t, r)
            assert info["frame"] == t and info["rendition"] == r
            psnr = _psnr(img, refs[t, r])
            print(f"frame {t} in {r}: browser vs reference {psnr:.1f} dB")
            assert psnr >= PSNR_FLOOR, f"frame {t} in {r}: {psnr:.1f} dB < {PSNR_FLOOR} dB"
        stats = pg.inner_text("#stats")
        assert "rendition web" in stats and "kbit/s" in stats and "buffer" in stats
    finally:
        pg.close()
        server.close()


def _browser_image_in(page, cams: Cameras, t: int, rendition: str) -> tuple[np.ndarray, dict]:
    info = page.evaluate("args => featvid.renderFrame(args)", {
        "c2w": cams.c2w[0].flatten().tolist(), "K": cams.K[0].flatten().tolist(),
        "width": cams.width, "height": cams.height, "t": t, "rendition": rendition})
    px = page.evaluate("featvid.readPixels()")
    rgba = np.frombuffer(base64.b64decode(px["rgba"]), np.uint8).reshape(cams.height, cams.width, 4)
    return rgba[..., :3].astype(np.float32) / 255.0, info


@pytest.fixture(scope="module")
def abr_stream(tmp_path_factory) -> Path:
    """A ladder with GOPs long enough to throttle: 12 frames at 10 fps in 3 GOPs of 0.4 s. Its
    GOPs are about 30 / 16 / 9 KB (web / web-crf24 / web-crf29: ~540 / 290 / 170 kbit/s)."""
    from featvid.bake.atlas import bake_run
    from featvid.codecs import encode_baked
    from tests.codecs.synthetic import make_run

    root = tmp_path_factory.mktemp("abr")
    baked = bake_run(make_run(root / "run", frames=12, gop=4, shape=(32, 32, 32), channels=4), root / "baked")
    return encode_baked(baked, root / "abr.fvv", ladder="web,web-crf24,web-crf29")


def _throttle(cdp, kbps: float | None) -> None:
    """Chrome's own network emulation: `kbps` kbit/s down and up, no added latency; None: off."""
    rate = -1 if kbps is None else kbps * 1000 / 8  # bytes per second
    cdp.send("Network.emulateNetworkConditions",
             {"offline": False, "latency": 0, "downloadThroughput": rate, "uploadThroughput": rate})


def test_throttled_network_steps_down_and_up_without_stalling(browser, abr_stream):
    """Unthrottled, the player climbs to the top rendition; at 300 kbit/s it steps down (the top
    needs ~540 kbit/s, the middle ~290 on average, the lowest ~170; GOP sizes vary, so the middle
    fits some GOPs): no top, mostly the lowest, fewer bits a second than the link carries; when
    the rate returns it climbs back; no stall is longer than one GOP (0.4 s). Then the viewer's
    manual choice is obeyed."""
    import json

    top, low = "web", "web-crf29"
    pg, server = _open_page(browser, abr_stream, "?scale=0.1")  # 6x5 px: the network is under test, not the shader
    cdp = pg.context.new_cdp_session(pg)
    cdp.send("Network.enable")
    now = lambda: pg.evaluate("performance.now() / 1000")  # noqa: E731 (page clock, as the fetch log's)
    try:
        gop_s = max(pg.evaluate("featvid.abrState()")["gopSeconds"])
        time.sleep(3.5)
        t_drop = now()
        _throttle(cdp, 300)
        time.sleep(5.5)
        t_back = now()
        _throttle(cdp, None)
        time.sleep(3.5)
        state = pg.evaluate("featvid.abrState()")
        log = state["log"]
        print("fetches:", json.dumps([(round(f["at"], 2), f["rendition"], round(f["kbps"])) for f in log]))
        print("stalls:", state["stalls"])
        before = [f["rendition"] for f in log if f["at"] < t_drop]
        during = [f for f in log if t_drop + 2.0 < f["at"] <= t_back]  # 2 s for the estimate to see the drop
        after = [f["rendition"] for f in log if f["at"] > t_back]
        assert before and before[-1] == top, before  # climbed to the top
        down = [f["rendition"] for f in during]
        assert during and top not in down and down.count(low) > len(down) / 2, down  # stepped down
        carried = sum(8 * f["bytes"] for f in during) / (len(during) * gop_s)
        assert carried <= 300e3, carried  # to what the link carries (measured ~250 kbit/s of GOPs a second)
        assert after and after[-1] == top, after  # and up again
        assert max(state["stalls"], default=0.0) <= gop_s and not state["stalling"], state["stalls"]
        stats = pg.inner_text("#stats")
        assert f"rendition {top} (auto)" in stats and "kbit/s" in stats and "buffer" in stats
        # the viewer's choice wins over the rule from the next fetch on
        pg.select_option("#rendition", "web-crf24")
        n = len(log)
        pg.wait_for_function(f"featvid.player.log.length > {n} + 4", timeout=20_000, polling=100)
        state = pg.evaluate("featvid.abrState()")
        assert state["forced"] == "web-crf24" and state["log"][-1]["rendition"] == "web-crf24"
        pg.wait_for_function("document.getElementById('stats').textContent.includes('rendition web-crf24 (manual)')",
                             timeout=10_000, polling=100)
        print("fetches after the manual choice:", [f["rendition"] for f in state["log"][n:]])
    finally:
        pg.close()
        server.close()


def test_a_missing_rendition_file_falls_back_and_says_so(browser, abr_stream, tmp_path):
    copy = Path(shutil.copytree(abr_stream, tmp_path / "holed.fvv"))
    (copy / "gop_00001" / "web-crf24.mp4").unlink()
    pg, server = _open_page(browser, copy)
    try:
        cams = _camera(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), 8, 8)
        _, info = _browser_image_in(pg, cams, 5, "web-crf24")  # frame 5 is in GOP 1
        assert info["gop"] == 1 and info["rendition"] == "web-crf29"  # the next lower one
        _, info = _browser_image_in(pg, cams, 1, "web-crf24")  # GOP 0 still has it
        assert info["rendition"] == "web-crf24"
        notes = pg.evaluate("featvid.abrState()")["notes"]
        assert notes == ["GOP 1: rendition web-crf24 is missing (cannot fetch stream/gop_00001/web-crf24.mp4: "
                         "HTTP 404); playing web-crf29 instead"], notes
        assert "web-crf24 is missing" in pg.inner_text("#stats")
        assert pg.evaluate("window.featvid.error") is None
    finally:
        pg.close()
        server.close()


# ---- integrity: every fetched file checked against the manifest's SHA-256 (crypto.subtle) ----------

def _flip(path: Path, offset: int, n: int = 16) -> None:
    """Invert n bytes of `path` at `offset` (same size: only the hash can tell)."""
    data = bytearray(path.read_bytes())
    data[offset:offset + n] = bytes(b ^ 0xFF for b in data[offset:offset + n])
    path.write_bytes(bytes(data))


def _load(browser, stream: Path, query: str = "?paused=1", after_start=None):
    """A page on `stream` once the player is up or has failed: (page, server, console messages).
    `after_start()` runs once the server has checked the stream and started."""
    server = serve(stream, port=0)
    server.start()
    if after_start:
        after_start()
    pg = browser.new_page(viewport={"width": 64, "height": 48})
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    pg.goto(server.url + query)
    pg.wait_for_function("window.featvid && (window.featvid.error || (window.featvid.player && "
                         "window.featvid.player.frame >= 0))", timeout=60_000)
    return pg, server, console


def test_a_video_with_16_flipped_bytes_is_refused_naming_the_file(browser, web_stream, tmp_path):
    copy = Path(shutil.copytree(web_stream, tmp_path / "bad.fvv"))
    video = copy / "gop_00000" / "atlas.mp4"
    assert video.is_file()
    _flip(video, video.stat().st_size // 2)  # inside the coded frames (the test probe used offset 20000)
    pg, server, _ = _load(browser, copy)
    try:
        err = pg.evaluate("window.featvid.error")
        assert err == ("stream/gop_00000/atlas.mp4: SHA-256 differs from the manifest's (corrupt or altered "
                       "file); not played"), err
        assert pg.is_visible("#message") and "gop_00000/atlas.mp4" in pg.inner_text("#message")
        assert pg.evaluate("featvid.player.frame") == -1  # nothing of it reached the atlas texture
        assert pg.evaluate("featvid.player.decoded.size") == 0  # nor the decoder
    finally:
        pg.close()
        server.close()


def test_a_mapping_cut_short_while_served_is_refused_by_its_size(browser, web_stream, tmp_path):
    """`serve` refuses a stream whose sizes are off when it starts; a file cut short after that (or
    on a CDN) is refused by the player."""
    copy = Path(shutil.copytree(web_stream, tmp_path / "cut.fvv"))
    mapping = copy / "gop_00000" / "mapping.fvmap"
    pg, server, _ = _load(browser, copy, after_start=lambda: mapping.write_bytes(mapping.read_bytes()[:-7]))
    try:
        err = pg.evaluate("window.featvid.error")
        n = mapping.stat().st_size
        assert err == (f"stream/gop_00000/mapping.fvmap: {n} bytes, the manifest records {n + 7} (truncated or "
                       "altered file); not played"), err
    finally:
        pg.close()
        server.close()


def test_a_corrupt_rendition_is_refused_and_nothing_of_it_is_drawn(browser, ladder_stream, tmp_path):
    """A ladder whose GOP 1 web-crf29 video is corrupt: the player fetches it ahead (the lowest
    rendition, nothing measured yet) and stops there, naming it; nothing of GOP 1 is decoded or
    drawn, it is not fetched again, and asking for GOP 1 gives the same error."""
    copy = Path(shutil.copytree(ladder_stream, tmp_path / "ladder.fvv"))
    video = copy / "gop_00001" / "web-crf29.mp4"
    _flip(video, video.stat().st_size // 2)
    pg, server, _ = _load(browser, copy)
    try:
        pg.wait_for_function("window.featvid.error", timeout=30_000)
        want = "stream/gop_00001/web-crf29.mp4: SHA-256 differs from the manifest's (corrupt or altered file); not played"
        assert pg.evaluate("window.featvid.error") == want
        assert pg.evaluate("featvid.player.frame") in (-1, 0)  # GOP 0 at most
        assert pg.evaluate("[...featvid.player.segments.keys(), ...featvid.player.decoded.keys()]").count(1) == 0
        fetched = pg.evaluate("featvid.player.log.length")
        pg.wait_for_timeout(1500)  # longer than the retry delay after an ordinary fetch failure
        assert pg.evaluate("featvid.player.log.length") == fetched and pg.evaluate("featvid.player.fetching") is None
        cams = _camera(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), 8, 8)
        with pytest.raises(Exception, match=r"stream/gop_00001/web-crf29\.mp4: SHA-256 differs"):
            _browser_image_in(pg, cams, 3, "web")
        assert pg.evaluate("featvid.player.frame") in (-1, 0)
    finally:
        pg.close()
        server.close()


def test_a_pristine_stream_is_verified_file_by_file(page, web_stream):
    """Every file the player read besides the manifest was hashed and matched; the cost is printed
    (ms per GOP here, and the browser's SHA-256 rate for GOPs of real size)."""
    from featvid.codecs.manifest import Manifest

    m = Manifest.read(web_stream)
    page.wait_for_function("featvid.player.frame >= 0", timeout=30_000)
    verified = page.evaluate("featvid.player.stream.verified")
    assert m.mlp["file"] in verified and m.gops[0].mapping in verified and m.gops[0].video in verified
    assert all(verified[n] == m.files[n].bytes for n in verified), verified
    log = page.evaluate("featvid.player.log")
    assert log and all(f["verifyMs"] >= 0 for f in log)
    # a files table the player cannot check against is refused with the manifest (serve refuses it too)
    refused = page.evaluate("""async () => {
        const { parseManifest } = await import("./stream.js");
        const text = await (await fetch("stream/manifest.json")).text();
        const changes = [(f) => { delete f["mlp.safetensors"]; }, (f) => { f["mlp.safetensors"].sha256 = "ab"; },
                         (f) => { f["mlp.safetensors"].bytes = -1; }, (f) => { f["mlp.safetensors"] = null; }];
        return changes.map((change) => {
            const m = JSON.parse(text);
            change(m.files);
            try { parseManifest(JSON.stringify(m)); return null; } catch (e) { return e.message; }
        });
    }""")
    assert refused == ['manifest: files lists no valid {bytes, sha256} for "mlp.safetensors"'] * 4, refused
    rate = page.evaluate("""async () => {
        const buf = new Uint8Array(8 << 20).map((_, i) => (i * 2654435761) >>> 24);
        const t0 = performance.now();
        await crypto.subtle.digest("SHA-256", buf);
        return (buf.byteLength / 1e6) / ((performance.now() - t0) / 1000);
    }""")
    print(f"web player verification: {[round(f['verifyMs'], 2) for f in log]} ms per GOP "
          f"({[f['bytes'] for f in log]} bytes); crypto.subtle SHA-256 {rate:.0f} MB/s on 8 MB")


def test_a_stream_without_hashes_plays_with_a_console_warning(browser, web_stream, tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("FEATVID_LEGACY_READ", "1")  # `serve` refuses such a stream unless asked (--legacy-read)
    copy = Path(shutil.copytree(web_stream, tmp_path / "old.fvv"))
    d = json.loads((copy / "manifest.json").read_text())
    del d["files"]  # a stream from before featvid recorded hashes
    (copy / "manifest.json").write_text(json.dumps(d))
    pg, server, console = _load(browser, copy)
    try:
        assert pg.evaluate("window.featvid.error") is None and pg.evaluate("featvid.player.frame") == 0
        warnings = [c for c in console if c.startswith("warning:") and "no file hashes" in c]
        assert len(warnings) == 1, console
        assert pg.evaluate("featvid.player.stream.verified") == {}
    finally:
        pg.close()
        server.close()


def test_outside_a_secure_context_a_stream_with_hashes_is_refused(browser, web_stream):
    """Plain http from a host that is not loopback (here a name playwright routes to the server):
    crypto.subtle is undefined there, and the player refuses to play unverified."""
    server = serve(web_stream, port=0)
    server.start()
    pg = browser.new_page(viewport={"width": 64, "height": 48})

    def forward(route):
        path = route.request.url.split("http://featvid.test/", 1)[1]
        route.fulfill(response=route.fetch(url=server.url + path))

    try:
        pg.route("http://featvid.test/**", forward)
        pg.goto("http://featvid.test/?paused=1")
        pg.wait_for_function("window.featvid && window.featvid.error", timeout=60_000)
        assert pg.evaluate("window.isSecureContext") is False
        err = pg.evaluate("window.featvid.error")
        assert err.startswith("stream/mlp.safetensors: cannot be verified") and "crypto.subtle" in err, err
        assert pg.is_visible("#message")
    finally:
        pg.close()
        server.close()


# ---- Gaussian streams: splats drawn with WebGL2 (splats.js), chosen by the manifest's representation ----

# dB, browser vs featvid.gaussians.raster on the same Gaussians (issue 29 asks >= 35; measured 58.9-59.3
# on the stream, 59.1 on the hand-made set, SwiftShader)
SPLAT_PSNR_FLOOR = 55.0


@pytest.fixture(scope="module")
def gaussian_stream(tmp_path_factory) -> Path:
    """A tiny Gaussian stream in the `web` preset: 2000 Gaussians (SH degree 3) on the dancer scene,
    4 frames in 2 GOPs (built in ~7 s)."""
    from featvid.bake.gaussians import bake_gaussians
    from featvid.codecs import encode_baked
    from featvid.gaussians.generate import write_gaussian_sequence

    root = tmp_path_factory.mktemp("gaussians")
    write_gaussian_sequence(root / "ply", "dancer", count=2000, frames=4)
    return encode_baked(bake_gaussians(root / "ply", root / "baked", gop=2), root / "g.fvv", "web")


def _splat_camera(aabb: torch.Tensor, width: int, height: int) -> Cameras:
    """Close enough that the scene fills much of the view, from an oblique angle."""
    centre, half = aabb.mean(0), (aabb[1] - aabb[0]).norm() / 2
    eye = centre + 0.75 * half * torch.tensor([1.1, -0.9, 0.7])
    return Cameras(intrinsics_from_fov(0.8, height, width), look_at(eye[None], centre), height, width)


def test_gaussian_stream_plays_and_matches_the_python_rasterizer(browser, gaussian_stream):
    """`serve` plays a Gaussian stream: the player picks the splat renderer by the manifest, decodes
    the GOPs' planes (WebCodecs) and layout files, and each frame it draws matches the reference
    rasterizer (featvid.gaussians.raster) on the Python decoder's Gaussians of that frame."""
    from featvid.codecs import open_stream
    from featvid.codecs.gaussians import decode_gaussians
    from featvid.gaussians.raster import render

    stream = open_stream(gaussian_stream, hwaccel="none")
    background = stream.manifest.gaussians.background
    cams = _splat_camera(stream.aabb, SIZE, SIZE)
    pg, server = _open_page(browser, gaussian_stream)
    try:
        assert "splats" in pg.evaluate("featvid.player.renderer.description()")
        last = stream.num_frames - 1
        assert stream.gop_of(last) != stream.gop_of(0)
        for t in (0, last):  # the last frame: another GOP, decoded past its keyframe
            g = decode_gaussians(stream, t)
            ref = render(g, cams, 0, background=background).clamp(0, 1).numpy()
            drawn = (np.abs(ref - np.asarray(background)).sum(-1) > 0.05)  # pixels the splats change
            assert drawn.mean() > 0.2, "test camera does not see the Gaussians"
            img, info = _browser_image(pg, cams, t)
            assert info["frame"] == t and info["gop"] == stream.gop_of(t)
            psnr, psnr_drawn = _psnr(img, ref), _psnr(img[drawn], ref[drawn])
            print(f"Gaussian frame {t}: browser vs raster.py {psnr:.1f} dB, {psnr_drawn:.1f} dB on the splats' pixels")
            assert psnr >= SPLAT_PSNR_FLOOR and psnr_drawn >= SPLAT_PSNR_FLOOR, (psnr, psnr_drawn)
        stats = pg.inner_text("#stats")
        assert "KB/frame" in stats and "GOP 2/2" in stats
        fps = pg.evaluate("featvid.measureFps(3)")
        print(f"splat player: {fps:.1f} fps at {SIZE}x{SIZE}, {g.count} Gaussians, "
              f"{pg.evaluate('featvid.player.renderer.description()')}")
    finally:
        pg.close()
        server.close()


def _raw(g) -> dict:
    return {k: getattr(g, k).flatten().tolist() for k in ("means", "sh", "opacity", "log_scales", "quats")}


def _splat_image(page, g, cams: Cameras, background, worker: bool) -> np.ndarray:
    """Gaussians `g` drawn by splats.js alone (no stream) on a canvas of its own."""
    px = page.evaluate("""async ({ raw, cam, background, worker }) => {
        const { SplatRenderer, activateGaussians } = await import("./splats.js");
        const r = new SplatRenderer(document.createElement("canvas"), { background, worker });
        r.setGaussians(activateGaussians(raw));
        await r.prepare(cam);
        r.draw(cam);
        const px = r.readPixels();
        let s = "";
        for (let i = 0; i < px.length; i += 8192) s += String.fromCharCode.apply(null, px.subarray(i, i + 8192));
        return { rgba: btoa(s), description: r.description() };
    }""", {"raw": _raw(g), "background": list(background), "worker": worker,
           "cam": {"c2w": cams.c2w[0].flatten().tolist(), "K": cams.K[0].flatten().tolist(),
                   "width": cams.width, "height": cams.height}})
    assert ("in a worker" in px["description"]) == worker, px["description"]
    rgba = np.frombuffer(base64.b64decode(px["rgba"]), np.uint8).reshape(cams.height, cams.width, 4)
    return rgba[..., :3].astype(np.float32) / 255.0


def test_splat_renderer_matches_the_python_rasterizer_on_hand_made_gaussians(browser, gaussian_stream):
    """300 random Gaussians: anisotropic, rotated, overlapping, strong SH up to degree 3 (view-
    dependent colour the stream's gentle scene hardly has), some beyond the image border (the
    Jacobian's clamp), two large ones the near plane culls; sorted in the worker and on the main
    thread (the same pixels)."""
    from featvid.gaussians.model import Gaussians
    from featvid.gaussians.raster import render

    gen = torch.Generator().manual_seed(0)
    n = 300
    g = Gaussians(means=torch.randn(n, 3, generator=gen) * 0.5, sh=torch.randn(n, 16, 3, generator=gen) * 0.5,
                  opacity=torch.randn(n, generator=gen) + 1.0, log_scales=torch.randn(n, 3, generator=gen) * 0.3 - 2.5,
                  quats=torch.randn(n, 4, generator=gen)).validate()
    eye = torch.tensor([[1.6, -1.3, 1.0]])
    # two large Gaussians the near plane (0.01) culls: just in front of the eye (z ~ 0.003), and behind it
    near = torch.cat([eye * (1 - 0.003 / eye.norm()), eye * 1.2])
    g = Gaussians(torch.cat([g.means, near]), torch.cat([g.sh, torch.ones(2, 16, 3)]),
                  torch.cat([g.opacity, torch.full((2,), 3.0)]), torch.cat([g.log_scales, torch.full((2, 3), -1.0)]),
                  torch.cat([g.quats, torch.tensor([[1.0, 0, 0, 0]] * 2)])).validate()
    cams = Cameras(intrinsics_from_fov(0.8, SIZE, SIZE), look_at(eye, torch.zeros(1, 3)), SIZE, SIZE)
    background = (1.0, 1.0, 1.0)
    ref = render(g, cams, 0, background=background).clamp(0, 1).numpy()
    # the view-dependent part matters here: without SH degree 1-3 the image is far off
    flat = render(g.with_sh_degree(0), cams, 0, background=background).clamp(0, 1).numpy()
    assert _psnr(flat, ref) < 30, _psnr(flat, ref)
    pg, server = _open_page(browser, gaussian_stream)
    try:
        in_worker = _splat_image(pg, g, cams, background, worker=True)
        here = _splat_image(pg, g, cams, background, worker=False)
        assert np.array_equal(in_worker, here)
        psnr = _psnr(in_worker, ref)
        print(f"hand-made Gaussians: browser vs raster.py {psnr:.1f} dB (without SH rest: {_psnr(flat, ref):.1f} dB)")
        assert psnr >= SPLAT_PSNR_FLOOR, psnr
    finally:
        pg.close()
        server.close()


def test_a_gaussian_layout_file_with_flipped_bytes_is_refused(browser, gaussian_stream, tmp_path):
    """A GOP's layout file (the positions' high bytes) is checked against the manifest's SHA-256
    like every other file: nothing of the GOP is drawn."""
    copy = Path(shutil.copytree(gaussian_stream, tmp_path / "bad.fvv"))
    layout = copy / "gop_00000" / "layout.fvgl"
    _flip(layout, layout.stat().st_size // 2, n=4)
    pg, server, _ = _load(browser, copy)
    try:
        err = pg.evaluate("window.featvid.error")
        assert err == ("stream/gop_00000/layout.fvgl: SHA-256 differs from the manifest's (corrupt or altered "
                       "file); not played"), err
        assert pg.evaluate("featvid.player.frame") == -1
    finally:
        pg.close()
        server.close()
