// The featvid web player: fetch a stream GOP by GOP (adaptive streaming: each GOP in the
// rendition the ABR rule picks from the measured throughput, or the viewer's), decode each GOP
// with WebCodecs, and ray-march the current frame with WebGL2 (a Gaussian stream, whose manifest
// says "representation": "gaussians", is drawn as depth-sorted splats instead: splats.js). UI: orbit/zoom camera (mouse,
// touch, wheel), play/pause/seek, rendition choice, stats overlay (rendition, bitrate, buffer,
// throughput, stalls). Test hook: window.featvid (see the bottom of this file).
//
// URL query: ?stream=URL (default "stream/", where `featvid serve` puts it), ?paused=1, ?t=FRAME,
// ?scale=0.5 (render resolution relative to the window), ?buffer=SECONDS (content fetched ahead,
// default 2), ?rendition=NAME (start with a manual choice).

import { AbrRule, MAX_BUFFER_S } from "./abr.js";
import { decodeGop } from "./decode.js";
import { Renderer } from "./renderer.js";
import { SplatRenderer } from "./splats.js";
import { FetchError, IntegrityError, RemoteStream, blockLookup } from "./stream.js";

// Decoded GOPs kept in memory: the current one and the next. A GOP is decoded whole (frames *
// mosaic bytes, e.g. 30 * 2048^2 = 120 MB), so this bounds the player's memory.
const KEEP_DECODED = 2;
const MEDIA_TICK_MS = 20;

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

// The box the orbit frames: a contracted grid's (render.space, featvid/field/volume.py) subject is its
// inner box, the middle half of its box; the rest is the squeezed far field.
function subjectBox(manifest) {
  if (!manifest.render || manifest.render.space !== "contracted") return manifest.aabb;
  const [lo, hi] = manifest.aabb;
  return [lo.map((v, i) => (3 * v + hi[i]) / 4), hi.map((v, i) => (lo[i] + 3 * v) / 4)];
}

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

// Playback runs on a clock of content seconds since the start that keeps counting across loops:
// content frame n = floor(clock * fps) shows stream frame n % T. A "visit" is one pass through one
// GOP (visit v = GOP v % G of loop floor(v / G)); each visit is fetched, in the rendition the ABR
// rule (or the viewer) picks, then decoded, then shown. The clock stops while the frame it wants is
// not decoded yet: a stall, counted once playback has begun.
//
// The media side (clock, fetches, decodes, stalls: `advance`) runs on a timer every MEDIA_TICK_MS,
// not on animation frames: drawing may be slow (a software GPU draws a few frames a second) and
// must not hold up fetching or the clock. Animation frames only draw (`frame`).
class Player {
  constructor(canvas, stream, renderer, { maxBuffer = MAX_BUFFER_S } = {}) {
    this.canvas = canvas;
    this.stream = stream;
    this.renderer = renderer;
    this.manifest = stream.manifest;
    this.camera = new OrbitCamera(subjectBox(this.manifest));
    this.fixedView = null; // set by the test hook: draw exactly this camera
    this.scale = 1; // render resolution relative to the canvas' CSS size
    this.frame = -1; // stream frame now in the atlas texture
    this.shown = -1; // content frame now in the atlas texture
    this.playing = true;
    this.clock = 0; // content seconds since the start (loops keep counting)
    this.dirty = true;
    this.buffering = false;
    this.drawTimes = [];
    this.lastTick = null;
    // fetching (one request at a time) and the buffer of fetched visits
    this.rule = new AbrRule();
    this.maxBuffer = maxBuffer; // seconds of content fetched ahead at most
    this.forced = null; // the viewer's rendition, or null: the ABR rule's
    this.segments = new Map(); // visit -> fetched files {index, rendition, info, mapping, video, bytes, seconds}
    this.fetching = null; // {visit, promise} of the request in flight
    this.retryAfter = 0; // after a failed fetch, the next try waits until then (ms)
    this.failed = null; // an IntegrityError: a file is not what the manifest records, nothing more is fetched
    this.samples = []; // measured throughputs, bit/s
    this.log = []; // one record per fetch: {visit, gop, rendition, wanted, bytes, seconds, kbps, buffer}
    this.notes = []; // fallbacks taken ("GOP 3: rendition X is missing ...")
    // decoding: the visit on screen and the next one
    this.decoded = new Map(); // visit -> Promise of {key, rendition, lookup, frames, mosaic, levels}
    this.ready = new Map(); // visit -> the same, once decoded
    this.rendition = null; // rendition of the frame on screen
    this.started = false; // a frame has been shown while playing
    this.stallStart = null;
    this.stalls = []; // seconds of each stall since playback began
  }

  // ---- visits and the buffer
  get T() { return this.manifest.frames; }
  get G() { return this.manifest.gops.length; }
  visitOf(n) { return Math.floor(n / this.T) * this.G + this.stream.gopIndexOf(n % this.T); }
  visitGop(v) { return v % this.G; }
  visitStart(v) { return Math.floor(v / this.G) * this.T + this.manifest.gops[v % this.G].start; } // content frame
  position() { return this.clock * this.manifest.fps; } // content frames played

  // Seconds of content fetched ahead of the playhead, up to the first visit not fetched.
  bufferSeconds() {
    let v = this.visitOf(Math.floor(this.position()));
    while (this.segments.has(v)) v++;
    return Math.max(0, (this.visitStart(v) - this.position()) / this.manifest.fps);
  }

  // Start the next fetch when the buffer has room for it (called on every media tick).
  pump() {
    if (this.failed || this.fetching || performance.now() < this.retryAfter) return;
    const cur = this.visitOf(Math.floor(this.position()));
    let v = cur; // the first visit from the playhead on that is not fetched (a seek or a manual choice leaves gaps)
    while (this.segments.has(v)) v++;
    const g = this.manifest.gops[this.visitGop(v)];
    const buffer = Math.max(0, (this.visitStart(v) - this.position()) / this.manifest.fps);
    if (buffer + g.frames / this.manifest.fps > this.maxBuffer && v > cur) return; // full
    this._startFetch(v, null);
  }

  // Fetch visit v in rendition `wanted` (null: the ABR rule's choice, or the viewer's).
  _startFetch(v, wanted) {
    const i = this.visitGop(v);
    const names = this.stream.playable.map((r) => r.name); // lowest bitrate first
    const g = this.manifest.gops[i];
    const cur = this.visitOf(Math.floor(this.position()));
    const buffer = v === cur && !this.ready.has(cur) ? 0 : this.bufferSeconds();
    if (!wanted) {
      wanted = this.forced || names[this.rule.choose(names.map((n) => this.stream.gopBits(i, n)),
                                                     g.frames / this.manifest.fps, buffer, this.samples)];
    }
    const promise = this._fetchWithFallback(i, wanted, names).then((files) => {
      this.samples.push((8 * files.bytes) / files.seconds);
      this.log.push({ visit: v, gop: i, rendition: files.rendition, wanted, bytes: files.bytes, seconds: files.seconds,
                      kbps: (8 * files.bytes) / files.seconds / 1000, buffer, at: performance.now() / 1000,
                      verifyMs: files.verifyMs });
      this.segments.set(v, files);
      this._decodeAhead();
    }).catch((e) => {
      this.retryAfter = performance.now() + 1000;
      // A corrupt or altered file is not retried, nor replaced by another rendition: the stream
      // as served is not the one encoded, so playback stops and says which file differs.
      if (e instanceof IntegrityError && !this.failed) { this.failed = e; this.playing = false; }
      throw e;
    }).finally(() => { if (this.fetching && this.fetching.visit === v) this.fetching = null; });
    promise.catch((e) => showError(e));
    this.fetching = { visit: v, promise };
    return promise;
  }

  // A rendition's file missing on the server (a hole): the nearest other rendition, the next lower first.
  async _fetchWithFallback(i, wanted, names) {
    const k = names.indexOf(wanted);
    const order = [wanted, ...names.slice(0, Math.max(0, k)).reverse(), ...names.slice(k + 1)];
    let first = null;
    for (const name of order) {
      try {
        const files = await this.stream.fetchGop(i, name);
        if (name !== wanted) {
          const note = `GOP ${i}: rendition ${wanted} is missing (${first.message}); playing ${name} instead`;
          if (!this.notes.includes(note)) { this.notes.push(note); console.warn(note); }
        }
        return files;
      } catch (e) {
        if (!(e instanceof FetchError)) throw e;
        first = first || e;
      }
    }
    throw first;
  }

  // Resolves with visit v's files, in `rendition` when given (fetched again if buffered in another;
  // where that rendition's file is missing, in the one the fallback found).
  async segment(v, rendition = null) {
    for (;;) {
      if (this.failed) throw this.failed;
      const seg = this.segments.get(v);
      if (seg && (!rendition || seg.rendition === rendition)) return seg;
      if (this.fetching) { await this.fetching.promise.catch(() => {}); continue; }
      if (seg) this._forget(v);
      await this._startFetch(v, rendition);
      return this.segments.get(v);
    }
  }

  _forget(v) {
    this.segments.delete(v);
    this.decoded.delete(v);
    this.ready.delete(v);
  }

  // ---- decoding: the visit on screen and the next one
  decodeVisit(v) {
    if (!this.decoded.has(v)) {
      const files = this.segments.get(v);
      if (!files) return null;
      const info = files.info;
      const video = info.videos[files.rendition];
      const codec = this.stream.rendition(files.rendition).codec;
      const p = decodeGop(files.video, video.mosaic.width, video.mosaic.height).then(({ frames }) => {
        if (frames.length < info.frames) throw new Error(`GOP ${files.index}: decoded ${frames.length} of ${info.frames} frames`);
        const lookup = this.stream.gaussians ? files.mapping : blockLookup(files.mapping); // a Gaussian GOP's layout
        const gop = { key: `${files.index}:${files.rendition}`, rendition: files.rendition, lookup,
                      frames, mosaic: video.mosaic, levels: codec.levels, info };
        if (this.decoded.get(v) === p) this.ready.set(v, gop); // not if dropped while decoding
        return gop;
      });
      p.catch((e) => showError(e));
      this.decoded.set(v, p);
    }
    return this.decoded.get(v);
  }

  // Drop what is behind the playhead; decode the visit on screen and the next (KEEP_DECODED).
  _decodeAhead() {
    const cur = this.visitOf(Math.floor(this.position()));
    for (const v of [...this.segments.keys()]) if (v < cur) this.segments.delete(v);
    for (const v of [...this.decoded.keys()]) {
      if (v < cur || v >= cur + KEEP_DECODED) { this.decoded.delete(v); this.ready.delete(v); }
    }
    for (let v = cur; v < cur + KEEP_DECODED; v++) this.decodeVisit(v);
  }

  // Put content frame n into the atlas texture; false when its visit is not decoded yet.
  _upload(n) {
    const v = this.visitOf(n);
    const gop = this.ready.get(v);
    if (!gop) return false;
    if (this.renderer.gopKey !== gop.key) this.renderer.setGop(gop.key, gop.info, gop.mosaic, gop.levels, gop.lookup);
    const t = n % this.T;
    this.renderer.setFrame(gop.frames[t - gop.info.start], t - gop.info.start); // splats: the frame's index in its GOP
    this.frame = t;
    this.shown = n;
    this.rendition = gop.rendition;
    this.dirty = true;
    return true;
  }

  // Show stream frame t (of the current loop) as soon as it is decoded (resolves then); in
  // `rendition` when given, else in whatever the buffer holds or the rule picks.
  async showFrame(t, rendition = null) {
    t = Math.max(0, Math.min(this.T - 1, Math.floor(t)));
    const loop = Math.floor(Math.max(0, this.shown) / this.T);
    const n = loop * this.T + t;
    this.clock = (n + 0.5) / this.manifest.fps; // mid-frame: floor(clock * fps) is n despite rounding
    const v = this.visitOf(n);
    await this.segment(v, rendition);
    this._decodeAhead();
    await this.decodeVisit(v);
    this._upload(n);
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

  // The media side, on a timer: advance the clock, fetch and decode ahead, upload the frame the
  // clock asks for, keep the stall count.
  advance(now) {
    const dt = this.lastTick === null ? 0 : (now - this.lastTick) / 1000;
    this.lastTick = now;
    if (this.playing && !this.buffering) this.clock += dt;
    const n = Math.floor(this.position());
    this.pump();
    this._decodeAhead();
    if (n !== this.shown) this.buffering = !this._upload(n);
    else this.buffering = false;
    if (this.buffering && this.playing && this.started) {
      if (this.stallStart === null) this.stallStart = now;
    } else if (this.stallStart !== null) {
      this.stalls.push((now - this.stallStart) / 1000);
      this.stallStart = null;
    }
    if (this.playing && !this.buffering && this.shown >= 0) this.started = true;
  }

  // One animation frame: catch the media side up, redraw if needed, update the overlay.
  onAnimationFrame(now) {
    this.advance(now);
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

  // Rendition switches between consecutive fetches, and the longest stall so far (seconds).
  switches() {
    let n = 0;
    for (let i = 1; i < this.log.length; i++) if (this.log[i].rendition !== this.log[i - 1].rendition) n++;
    return n;
  }

  updateUi() {
    const m = this.manifest;
    const g = this.frame >= 0 ? this.stream.gopIndexOf(this.frame) : 0;
    const view = this.currentView();
    const name = this.rendition || (this.stream.playable[0] || {}).name;
    const r = this.stream.rendition(name);
    const est = this.rule.estimate(this.samples);
    const stalled = this.stalls.reduce((a, s) => a + s, 0);
    $("stats").textContent = [
      `${this.fps().toFixed(1)} fps (draws/s)  ${view.width}x${view.height}`,
      `rendition ${name} (${this.forced ? "manual" : "auto"})  ${(r.bitrate.average / 1000).toFixed(0)} kbit/s  ` +
        `${(this.stream.bytesPerFrame(name) / 1024).toFixed(1)} KB/frame`,
      `buffer ${this.bufferSeconds().toFixed(2)} s  throughput ${est === null ? "-" : (est / 1000).toFixed(0)} kbit/s  ` +
        `switches ${this.switches()}`,
      `frame ${Math.max(0, this.frame) + 1}/${m.frames}  GOP ${g + 1}/${m.gops.length}  ` +
        `stalls ${this.stalls.length} (${stalled.toFixed(2)} s)` + (this.buffering ? "  buffering..." : ""),
      `fetched ${(this.stream.bytesFetched / 1024).toFixed(0)} KB  decode: WebCodecs  ` +
        (this.manifest.files ? "SHA-256 verified" : "unverified (no hashes)"),
      ...(this.stream.skipped.length ? [`not playable here: ${this.stream.skipped.join(", ")}`] : []),
      ...this.notes.slice(-3),
    ].join("\n");
    $("play").textContent = this.playing ? "Pause" : "Play";
    if (document.activeElement !== $("seek")) $("seek").value = String(Math.max(0, this.frame));
  }

  // The viewer's rendition (null: automatic). Buffered visits after the next are fetched again in it.
  setRendition(name) {
    this.forced = name || null;
    const cur = this.visitOf(Math.floor(this.position()));
    for (const v of [...this.segments.keys()]) if (v > cur + 1) this._forget(v);
    if (this.frame >= 0) this.updateUi();
  }

  // Jump to stream frame t of the current loop; the buffer is flushed, as a seek does.
  seek(t) {
    const loop = Math.floor(Math.floor(this.position()) / this.T);
    const n = loop * this.T + Math.max(0, Math.min(this.T - 1, Math.floor(t)));
    this.clock = (n + 0.5) / this.manifest.fps;
    const v = this.visitOf(n);
    for (const k of [...this.segments.keys()]) if (k !== v) this._forget(k);
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
  const choice = $("rendition");
  for (const r of [...player.stream.playable].reverse()) {
    const o = document.createElement("option");
    o.value = r.name;
    o.textContent = `${r.name} (${(r.bitrate.average / 1000).toFixed(0)} kbit/s)`;
    choice.appendChild(o);
  }
  choice.value = player.forced || "auto";
  choice.addEventListener("change", (e) => player.setRendition(e.target.value === "auto" ? null : e.target.value));
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
  // The manifest's representation picks the renderer: ray marching for grids, splats for Gaussians.
  let renderer;
  if (stream.gaussians) {
    const g = stream.manifest.gaussians;
    renderer = new SplatRenderer($("view"), { background: g.background || [1, 1, 1], stream: g });
  } else {
    const shader = await (await fetch("raymarch.glsl")).text();
    renderer = new Renderer($("view"), stream.manifest, stream.mlp, shader);
  }
  const player = new Player($("view"), stream, renderer, { maxBuffer: Number(params.get("buffer") || MAX_BUFFER_S) });
  renderer.onSorted = () => { player.dirty = true; }; // splats: a depth sort for a newer view has landed
  if (params.get("rendition")) {
    if (!stream.playable.some((r) => r.name === params.get("rendition"))) {
      throw new Error(`no playable rendition ${params.get("rendition")}; the stream has ${stream.playable.map((r) => r.name).join(", ")}`);
    }
    player.setRendition(params.get("rendition"));
  }
  window.featvid.player = player;
  await player.showFrame(Number(params.get("t") || 0)); // GOP by GOP from here: advance() fetches ahead
  if (params.get("paused") === "1") player.playing = false;
  // A software rasterizer (SwiftShader, no GPU) manages only a few frames a second at full size.
  const scale = params.get("scale") || (/swiftshader|llvmpipe/i.test(renderer.description()) ? "0.25" : "1");
  player.scale = Number(scale);
  $("scale").value = scale;
  wireControls(player);
  setInterval(() => { if (!window.featvid.hold) player.advance(performance.now()); }, MEDIA_TICK_MS);
  const loop = (now) => {
    if (!window.featvid.hold) player.onAnimationFrame(performance.now());
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
  // width, height}, in `rendition` when given. Pauses playback and keeps the view until
  // `release()`. Resolves once drawn.
  async renderFrame({ c2w, K, width, height, t = 0, rendition = null }) {
    const player = await this.ready;
    player.playing = false;
    this.hold = true;
    player.fixedView = { c2w: Array.from(c2w), K: Array.from(K), width, height };
    await player.showFrame(t, rendition);
    if (player.renderer.prepare) await player.renderer.prepare(player.fixedView); // splats: sorted for this view
    player.draw();
    player.renderer.finish();
    player.updateUi();
    return { frame: player.frame, gop: player.stream.gopIndexOf(player.frame), rendition: player.rendition };
  },

  // The viewer's rendition choice (null: automatic), as the menu sets it.
  async setRendition(name) {
    const player = await this.ready;
    player.setRendition(name);
    $("rendition").value = name || "auto";
  },

  // What the adaptive streaming did: each fetch, the stalls, the renditions.
  async abrState() {
    const p = await this.ready;
    return { log: p.log, stalls: p.stalls, stalling: p.stallStart !== null, notes: p.notes, forced: p.forced,
             rendition: p.rendition, buffer: p.bufferSeconds(), playable: p.stream.playable.map((r) => r.name),
             gopSeconds: p.manifest.gops.map((g) => g.frames / p.manifest.fps) };
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
