// The featvid web player: fetch a stream progressively, decode each GOP with WebCodecs, and
// ray-march the current frame with WebGL2. UI: orbit/zoom camera (mouse, touch, wheel),
// play/pause/seek, stats overlay. Test hook: window.featvid (see the bottom of this file).
//
// URL query: ?stream=URL (default "stream/", where `featvid serve` puts it), ?paused=1, ?t=FRAME,
// ?scale=0.5 (render resolution relative to the window).

import { decodeGop } from "./decode.js";
import { Renderer } from "./renderer.js";
import { RemoteStream, blockLookup } from "./stream.js";

// Decoded GOPs kept in memory: the current one and the next. A GOP is decoded whole (frames *
// mosaic bytes, e.g. 30 * 2048^2 = 120 MB), so this bounds the player's memory.
const KEEP_DECODED = 2;

const $ = (id) => document.getElementById(id);

// ---- camera --------------------------------------------------------------------------------------

const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const norm = (a) => { const l = Math.hypot(...a); return a.map((x) => x / l); };

// OpenCV camera-to-world (row-major 4x4) looking from eye at target: the package's look_at.
function lookAt(eye, target, up) {
  const z = norm(sub(target, eye));
  let x = cross(z, up);
  if (Math.hypot(...x) < 1e-6) x = cross(z, [0, 1, 0]);
  x = norm(x);
  const y = cross(z, x); // y down
  return [x[0], y[0], z[0], eye[0], x[1], y[1], z[1], eye[1], x[2], y[2], z[2], eye[2], 0, 0, 0, 1];
}

const UP_AXES = { "+z": [0, 0, 1], "+y": [0, 1, 0], "-y": [0, -1, 0] };

class OrbitCamera {
  constructor(aabb) {
    this.target = [0, 1, 2].map((i) => 0.5 * (aabb[0][i] + aabb[1][i]));
    this.size = Math.hypot(...sub(aabb[1], aabb[0])) / 2; // half diagonal
    this.up = "+z";
    this.fovX = (50 * Math.PI) / 180;
    this.reset();
  }

  reset() {
    this.azimuth = 0.6;
    this.elevation = 0.35;
    this.radius = 2.2 * this.size;
  }

  orbit(dx, dy) {
    this.azimuth -= dx * 0.008;
    this.elevation = Math.max(-1.55, Math.min(1.55, this.elevation + dy * 0.008));
  }

  zoom(factor) {
    this.radius = Math.max(0.05 * this.size, Math.min(20 * this.size, this.radius * factor));
  }

  // {c2w, K, width, height} for an image of width x height pixels.
  view(width, height) {
    const up = UP_AXES[this.up];
    // two axes perpendicular to up span the orbit's horizontal plane
    const e1 = norm(cross(up, Math.abs(up[0]) < 0.9 ? [1, 0, 0] : [0, 1, 0]));
    const e2 = cross(up, e1);
    const ce = Math.cos(this.elevation);
    const dir = [0, 1, 2].map((i) => ce * (Math.cos(this.azimuth) * e1[i] + Math.sin(this.azimuth) * e2[i]) + Math.sin(this.elevation) * up[i]);
    const eye = this.target.map((t, i) => t + this.radius * dir[i]);
    const f = (0.5 * width) / Math.tan(0.5 * this.fovX);
    return { c2w: lookAt(eye, this.target, up), K: [f, 0, width / 2, 0, f, height / 2, 0, 0, 1], width, height };
  }
}

// ---- player ----------------------------------------------------------------------------------------

class Player {
  constructor(canvas, stream, renderer) {
    this.canvas = canvas;
    this.stream = stream;
    this.renderer = renderer;
    this.manifest = stream.manifest;
    this.camera = new OrbitCamera(this.manifest.aabb);
    this.fixedView = null; // set by the test hook: draw exactly this camera
    this.scale = 1; // render resolution relative to the canvas' CSS size
    this.frame = -1; // frame now in the atlas texture
    this.wanted = 0; // frame the clock asks for
    this.playing = true;
    this.clock = 0; // seconds into the stream
    this.dirty = true;
    this.decoded = new Map(); // GOP index -> Promise of {lookup, frames}
    this.ready = new Map(); // GOP index -> {lookup, frames} once decoded
    this.buffering = false;
    this.drawTimes = [];
    this.lastTick = null;
  }

  decodeGop(i) {
    if (!this.decoded.has(i)) {
      const g = this.manifest.gops[i];
      const p = this.stream.gop(i).then(async (files) => {
        const { frames } = await decodeGop(files.video, g.mosaic.width, g.mosaic.height);
        if (frames.length < g.frames) throw new Error(`GOP ${i}: decoded ${frames.length} of ${g.frames} frames`);
        const gop = { lookup: blockLookup(files.mapping), frames };
        if (this.decoded.get(i) === p) this.ready.set(i, gop); // not if evicted while decoding
        return gop;
      });
      p.catch((e) => showError(e));
      this.decoded.set(i, p);
    }
    return this.decoded.get(i);
  }

  // Keep the current GOP and the next KEEP_DECODED - 1 (wrapping), decode those ahead, drop the rest.
  _schedule(current) {
    const n = this.manifest.gops.length;
    const keep = new Set();
    for (let k = 0; k < Math.min(KEEP_DECODED, n); k++) keep.add((current + k) % n);
    for (const i of [...this.decoded.keys()]) if (!keep.has(i)) { this.decoded.delete(i); this.ready.delete(i); }
    for (const i of keep) this.decodeGop(i);
  }

  // Put frame t into the atlas texture; false when its GOP is not decoded yet.
  _upload(t) {
    const g = this.stream.gopIndexOf(t);
    const gop = this.ready.get(g);
    if (!gop) return false;
    if (this.renderer.gopIndex !== g) this.renderer.setGop(g, this.manifest.gops[g], gop.lookup);
    this.renderer.setFrame(gop.frames[t - this.manifest.gops[g].start]);
    this.frame = t;
    this.dirty = true;
    return true;
  }

  // Show frame t as soon as it is decoded (resolves then).
  async showFrame(t) {
    t = Math.max(0, Math.min(this.manifest.frames - 1, Math.floor(t)));
    const g = this.stream.gopIndexOf(t);
    this._schedule(g);
    await this.decodeGop(g);
    this.wanted = t;
    this.clock = (t + 0.5) / this.manifest.fps; // mid-frame: floor(clock * fps) is t despite rounding
    this._upload(t);
  }

  currentView() {
    if (this.fixedView) return this.fixedView;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(this.canvas.clientWidth * dpr * this.scale));
    const h = Math.max(1, Math.round(this.canvas.clientHeight * dpr * this.scale));
    return this.camera.view(w, h);
  }

  draw() {
    this.renderer.draw(this.currentView());
    this.dirty = false;
    const now = performance.now();
    this.drawTimes.push(now);
    while (this.drawTimes.length > 1 && now - this.drawTimes[0] > 2000) this.drawTimes.shift();
  }

  // One animation frame: advance the clock, upload the frame it asks for, redraw if needed.
  tick(now) {
    const dt = this.lastTick === null ? 0 : (now - this.lastTick) / 1000;
    this.lastTick = now;
    const T = this.manifest.frames;
    if (this.playing && !this.buffering) this.clock += dt;
    this.wanted = Math.floor(this.clock * this.manifest.fps) % T;
    if (this.wanted !== this.frame) {
      const g = this.stream.gopIndexOf(this.wanted);
      this._schedule(g);
      this.buffering = !this._upload(this.wanted);
    } else {
      this.buffering = false;
    }
    const view = this.currentView();
    const key = JSON.stringify(view);
    if (key !== this.lastViewKey) { this.lastViewKey = key; this.dirty = true; }
    if (this.dirty && this.frame >= 0) this.draw();
    this.updateUi();
  }

  fps() {
    const d = this.drawTimes;
    return d.length > 1 ? (1000 * (d.length - 1)) / (d[d.length - 1] - d[0]) : 0;
  }

  updateUi() {
    const m = this.manifest;
    const g = this.frame >= 0 ? this.stream.gopIndexOf(this.frame) : 0;
    const view = this.currentView();
    $("stats").textContent = [
      `${this.fps().toFixed(1)} fps (draws/s)  ${view.width}x${view.height}`,
      `${(this.stream.bytesPerFrame() / 1024).toFixed(1)} KB/frame  ${m.codec.preset}`,
      `frame ${Math.max(0, this.frame) + 1}/${m.frames}  GOP ${g + 1}/${m.gops.length}` + (this.buffering ? "  buffering..." : ""),
      `fetched ${(this.stream.bytesFetched / 1024).toFixed(0)} KB  decode: WebCodecs`,
    ].join("\n");
    $("play").textContent = this.playing ? "Pause" : "Play";
    if (document.activeElement !== $("seek")) $("seek").value = String(Math.max(0, this.frame));
  }

  seek(t) {
    this.clock = (t + 0.5) / this.manifest.fps;
    this.dirty = true;
  }
}

// ---- UI wiring ------------------------------------------------------------------------------------

function showError(e) {
  const msg = e && e.message ? e.message : String(e);
  $("message").textContent = msg;
  $("message").hidden = false;
  window.featvid.error = msg;
  console.error(e);
}

function wireControls(player) {
  const canvas = player.canvas;
  const cam = player.camera;
  const pointers = new Map();
  let pinch = null;
  canvas.addEventListener("pointerdown", (e) => {
    canvas.setPointerCapture(e.pointerId);
    pointers.set(e.pointerId, [e.clientX, e.clientY]);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!pointers.has(e.pointerId)) return;
    const [px, py] = pointers.get(e.pointerId);
    pointers.set(e.pointerId, [e.clientX, e.clientY]);
    if (pointers.size === 1) {
      cam.orbit(e.clientX - px, e.clientY - py);
    } else if (pointers.size === 2) { // pinch: zoom by the change of finger distance
      const [a, b] = [...pointers.values()];
      const dist = Math.hypot(a[0] - b[0], a[1] - b[1]);
      if (pinch) cam.zoom(pinch / Math.max(dist, 1));
      pinch = dist;
    }
  });
  const up = (e) => { pointers.delete(e.pointerId); if (pointers.size < 2) pinch = null; };
  canvas.addEventListener("pointerup", up);
  canvas.addEventListener("pointercancel", up);
  canvas.addEventListener("wheel", (e) => { e.preventDefault(); cam.zoom(Math.exp(e.deltaY * 0.001)); }, { passive: false });
  canvas.addEventListener("dblclick", () => cam.reset());

  $("play").addEventListener("click", () => { player.playing = !player.playing; });
  const seek = $("seek");
  seek.max = String(player.manifest.frames - 1);
  seek.addEventListener("input", () => player.seek(Number(seek.value)));
  $("scale").addEventListener("change", (e) => { player.scale = Number(e.target.value); });
  $("up").addEventListener("change", (e) => { cam.up = e.target.value; });
  window.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (e.key === " ") { player.playing = !player.playing; e.preventDefault(); }
    if (e.key === "ArrowRight") player.seek((player.frame + 1) % player.manifest.frames);
    if (e.key === "ArrowLeft") player.seek((player.frame - 1 + player.manifest.frames) % player.manifest.frames);
  });
}

function base64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
  return btoa(s);
}

async function main() {
  const params = new URLSearchParams(location.search);
  const stream = new RemoteStream(params.get("stream") || "stream/");
  await stream.open();
  const shader = await (await fetch("raymarch.glsl")).text();
  const renderer = new Renderer($("view"), stream.manifest, stream.mlp, shader);
  const player = new Player($("view"), stream, renderer);
  window.featvid.player = player;
  stream.fetchAll(); // progressive: GOP 0 first, the rest in the background
  await player.showFrame(Number(params.get("t") || 0));
  if (params.get("paused") === "1") player.playing = false;
  // A software rasterizer (SwiftShader, no GPU) manages only a few frames a second at full size.
  const scale = params.get("scale") || (/swiftshader|llvmpipe/i.test(renderer.description()) ? "0.25" : "1");
  player.scale = Number(scale);
  $("scale").value = scale;
  wireControls(player);
  const loop = (now) => {
    if (!window.featvid.hold) player.tick(now);
    requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
  return player;
}

// Test hook and scripting API. `ready` resolves once the first frame can be drawn.
window.featvid = {
  error: null,
  hold: false, // true while renderFrame/measureFps own the canvas
  ready: null,

  // Draw stream frame t with a fixed camera {c2w: 16 (row-major, OpenCV), K: 9 (row-major),
  // width, height}. Pauses playback and keeps the view until `release()`. Resolves once drawn.
  async renderFrame({ c2w, K, width, height, t = 0 }) {
    const player = await this.ready;
    player.playing = false;
    this.hold = true;
    player.fixedView = { c2w: Array.from(c2w), K: Array.from(K), width, height };
    await player.showFrame(t);
    player.draw();
    player.renderer.finish();
    return { frame: player.frame, gop: player.stream.gopIndexOf(player.frame) };
  },

  // The canvas as base64 RGBA bytes, top row first.
  async readPixels() {
    const player = await this.ready;
    const { width, height } = player.canvas;
    return { width, height, rgba: base64(player.renderer.readPixels()) };
  },

  // Draw n animation frames back to back (camera orbiting, frames advancing) and report draws/s.
  async measureFps(n = 30) {
    const player = await this.ready;
    this.hold = true;
    const view = player.fixedView;
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      await new Promise((r) => requestAnimationFrame(r));
      player.camera.orbit(4, 0);
      if (!view) player.draw();
      else {
        player.renderer.draw(view);
      }
      player.renderer.finish();
    }
    return (1000 * n) / (performance.now() - start);
  },

  release() {
    this.hold = false;
    if (window.featvid.player) window.featvid.player.fixedView = null;
  },
};
window.featvid.ready = main();
window.featvid.ready.catch(showError);
