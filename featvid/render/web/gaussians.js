// Reading Gaussian streams (docs/gaussians.md) in the browser: a GOP's layout file (count, atlas,
// the positions' high bytes), the `morton2d` curve that places Gaussian k at an atlas pixel, and
// one decoded luma mosaic -> the frame's raw
// 3DGS parameters (what featvid.codecs.gaussians.decode_gaussians returns in Python). The planes
// arrive through the grid player's path (fetch, SHA-256 check, WebCodecs decode of the luma
// mosaic); only what the codes mean differs.

export class GaussianStreamError extends Error {}

const MAX_GAUSSIANS = 1 << 24; // as featvid/gaussians/layout.py: an edited count cannot allocate without bound

// The first `count` pixels of the `morton2d` curve over an h x w atlas: flat indices y * w + x in
// the order of their 2D Morton code (x in bit 0, y in bit 1). Int32Array [count].
export function curvePixels(h, w, count) {
  const bits = Math.max(1, Math.ceil(Math.log2(Math.max(h, w))));
  const out = new Int32Array(count);
  let k = 0;
  for (let code = 0; k < count && code < 4 ** bits; code++) { // codes in order; those off the atlas skipped
    let x = 0;
    let y = 0;
    for (let b = 0; b < bits; b++) {
      x |= ((code >>> (2 * b)) & 1) << b;
      y |= ((code >>> (2 * b + 1)) & 1) << b;
    }
    if (x < w && y < h) out[k++] = y * w + x;
  }
  return out;
}

const LAYOUT_MAGIC = "FVGL1\n";
const MAX_HEADER = 4096;

// A GOP's layout file (gop_xxxxx/layout.fvgl, bytes already verified; featvid/gaussians/layout.py
// StreamLayout): gzip of magic "FVGL1\n", uint32 LE header length, header JSON {count, atlas,
// curve, frames}, then the positions' high bytes [F, 3, N] uint8, delta coded (frame 0 along the
// curve, later frames against the frame before, mod 256). `gop` is the manifest's GOP, whose atlas
// and frame count the layout must agree with; nothing larger than such a GOP's layout is inflated.
// -> {count, atlas: [h, w], frames, high: Uint8Array [F * 3 * N] (deltas undone), pixels: Int32Array [N]}.
export async function parseLayout(buffer, source, gop) {
  const [h, w] = gop.atlas;
  const limit = LAYOUT_MAGIC.length + 4 + MAX_HEADER + gop.frames * 3 * h * w;
  const raw = await gunzip(buffer, source, limit);
  const magic = new TextDecoder().decode(raw.subarray(0, LAYOUT_MAGIC.length));
  if (magic !== LAYOUT_MAGIC || raw.length < LAYOUT_MAGIC.length + 4) {
    throw new GaussianStreamError(`${source}: not a featvid Gaussian stream layout (FVGL1)`);
  }
  const at = LAYOUT_MAGIC.length;
  const nText = new DataView(raw.buffer, raw.byteOffset + at, 4).getUint32(0, true);
  if (nText > MAX_HEADER || at + 4 + nText > raw.length) throw new GaussianStreamError(`${source}: layout header is malformed`);
  let d;
  try {
    d = JSON.parse(new TextDecoder().decode(raw.subarray(at + 4, at + 4 + nText)));
  } catch (e) {
    throw new GaussianStreamError(`${source}: layout header is not JSON (${e.message})`);
  }
  if (!d || d.curve !== "morton2d") throw new GaussianStreamError(`${source}: curve ${JSON.stringify(d && d.curve)} is not morton2d`);
  const atlas = d.atlas || [];
  if (!Number.isSafeInteger(d.count) || d.count < 1 || d.count > MAX_GAUSSIANS || d.count > h * w ||
      atlas[0] !== h || atlas[1] !== w || d.frames !== gop.frames) {
    throw new GaussianStreamError(`${source}: count ${d.count}, atlas ${JSON.stringify(atlas)} and ${d.frames} frames ` +
                                  `do not fit the manifest's atlas ${JSON.stringify(gop.atlas)} and ${gop.frames} frames`);
  }
  const n = d.count;
  const body = raw.subarray(at + 4 + nText);
  if (body.length !== d.frames * 3 * n) {
    throw new GaussianStreamError(`${source}: ${body.length} bytes of high bytes, expected ${d.frames * 3 * n}`);
  }
  const high = new Uint8Array(body); // undo the deltas in place (Uint8Array arithmetic wraps mod 256)
  for (let a = 0; a < 3; a++) for (let i = 1; i < n; i++) high[a * n + i] += high[a * n + i - 1];
  for (let i = 3 * n; i < high.length; i++) high[i] += high[i - 3 * n];
  return { count: n, atlas: [h, w], frames: d.frames, high, pixels: curvePixels(h, w, n) };
}

// gzip bytes -> Uint8Array, refusing more than `limit` bytes of output (a zip bomb stops there).
async function gunzip(buffer, source, limit) {
  const chunks = [];
  let total = 0;
  try {
    const reader = new Blob([buffer]).stream().pipeThrough(new DecompressionStream("gzip")).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > limit) {
        reader.cancel();
        throw new GaussianStreamError(`${source}: inflates to more than the ${limit} bytes its GOP can need`);
      }
      chunks.push(value);
    }
  } catch (e) {
    if (e instanceof GaussianStreamError) throw e;
    throw new GaussianStreamError(`${source}: not a gzip file (${e.message})`);
  }
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) { out.set(c, o); o += c.length; }
  return out;
}

// Where each plane's codes go: plane name -> [field, index] of the raw arrays, for SH degree `degree`.
function planeTargets(names, degree) {
  const k = (degree + 1) ** 2;
  const targets = names.map((name) => {
    let m;
    if ((m = /^([xyz])_lo$/.exec(name))) return ["position", "xyz".indexOf(m[1])]; // folded low byte
    if ((m = /^f_dc_([0-2])$/.exec(name))) return ["sh", Number(m[1])]; // coefficient 0, channel c
    if ((m = /^f_rest_(\d+)$/.exec(name))) { // PLY order: channel-major
      const j = Number(m[1]);
      if (j >= 3 * (k - 1)) return null;
      return ["sh", 3 * (1 + (j % (k - 1))) + Math.floor(j / (k - 1))];
    }
    if (name === "opacity") return ["opacity", 0];
    if ((m = /^scale_([0-2])$/.exec(name))) return ["log_scales", Number(m[1])];
    if ((m = /^rot_([0-3])$/.exec(name))) return ["quats", Number(m[1])];
    return null;
  });
  const bad = names.filter((_, i) => !targets[i]);
  const want = 3 + 3 * k + 1 + 3 + 4;
  if (bad.length || names.length !== want) {
    throw new GaussianStreamError(`manifest: gaussians.planes (${names.length}) are not the ${want} planes of SH degree ` +
                                  `${degree}${bad.length ? `; unknown: ${bad.join(", ")}` : ""}`);
  }
  return targets;
}

// Check a Gaussian manifest's `gaussians` block (called from parseManifest).
export function checkGaussianManifest(m) {
  const g = m.gaussians;
  if (!g || typeof g !== "object") throw new GaussianStreamError("manifest: a Gaussian stream without a gaussians block");
  if (![0, 1, 2, 3].includes(g.sh_degree)) throw new GaussianStreamError(`manifest: SH degree ${g.sh_degree} is not 0..3`);
  if (g.position !== "split-folded") {
    throw new GaussianStreamError(`manifest: position coding ${JSON.stringify(g.position)} is not split-folded`);
  }
  if (!Array.isArray(g.planes) || g.planes.length !== m.channels) {
    throw new GaussianStreamError(`manifest: gaussians.planes must name the ${m.channels} channels`);
  }
  planeTargets(g.planes, g.sh_degree);
  if (g.background !== undefined && !(Array.isArray(g.background) && g.background.length === 3)) {
    throw new GaussianStreamError("manifest: gaussians.background must be 3 numbers");
  }
}

// One GOP's decoding plan: for every plane, where its codes start in the mosaic and how they
// dequantize; for every Gaussian, its pixel offset inside a plane's cell.
// gop: the manifest's GOP; mosaic: {cols, width, height, cell_height, cell_width} (the cells'
// pitch, filled in by parseManifest); levels: [a, b]; layout: parseLayout's; info: the manifest's
// `gaussians` block.
export function gopPlan(gop, mosaic, levels, layout, info) {
  const wa = gop.atlas[1];
  const [ph, pw] = [mosaic.cell_height, mosaic.cell_width];
  const offsets = new Int32Array(layout.count);
  for (let i = 0; i < layout.count; i++) {
    const p = layout.pixels[i];
    offsets[i] = Math.floor(p / wa) * mosaic.width + (p % wa);
  }
  const bases = gop.ranges.map((_, p) => Math.floor(p / mosaic.cols) * ph * mosaic.width + (p % mosaic.cols) * pw);
  return { count: layout.count, degree: info.sh_degree, targets: planeTargets(info.planes, info.sh_degree),
           ranges: gop.ranges, levels, bases, offsets, high: layout.high };
}

// Frame f of the GOP, its decoded luma mosaic (Uint8Array, top row first) -> raw Gaussians {means
// [N*3], sh [N*K*3], opacity [N], log_scales [N*3], quats [N*4]} (Float32Array each), as
// featvid.codecs.gaussians.decode_gaussians_gop: positions are 16 bits, the high byte from the
// layout file, the folded low byte a video plane decoded to [0, 255] (fraction kept); every other
// plane is dequantized by the grid rule over its GOP range; quaternions are renormalised later.
export function decodeFrame(plan, luma, f) {
  const n = plan.count;
  const k = (plan.degree + 1) ** 2;
  const [a, b] = plan.levels;
  const raw = { means: new Float32Array(3 * n), sh: new Float32Array(3 * k * n), opacity: new Float32Array(n),
                log_scales: new Float32Array(3 * n), quats: new Float32Array(4 * n) };
  const width = { sh: 3 * k, opacity: 1, log_scales: 3, quats: 4 };
  const clampCode = (q) => Math.min(b - a, Math.max(0, q - a));
  plan.targets.forEach(([field, index], p) => {
    const base = plan.bases[p];
    const [lo, hi] = plan.ranges[p];
    if (field === "position") { // index: the axis
      const high = plan.high.subarray((3 * f + index) * n, (3 * f + index + 1) * n);
      const scale = (hi - lo) / 65535;
      for (let i = 0; i < n; i++) {
        const folded = (clampCode(luma[base + plan.offsets[i]]) * 255) / (b - a);
        const h = high[i];
        raw.means[3 * i + index] = lo + (h * 256 + (h % 2 === 1 ? 255 - folded : folded)) * scale;
      }
      return;
    }
    const out = raw[field];
    const stride = width[field];
    const step = (hi - lo) / (b - a);
    for (let i = 0; i < n; i++) out[stride * i + index] = lo + clampCode(luma[base + plan.offsets[i]]) * step;
  });
  return raw;
}
