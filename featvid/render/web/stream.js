// Reading a featvid stream over HTTP: manifest.json, mlp.safetensors and per-GOP mappings and
// videos (docs/stream-format.md). GOPs are fetched one after another in the background, so
// playback starts as soon as the first one is in.

export class StreamError extends Error {}

const BLOCK = 4; // vertices per block side (featvid/field/mapping.py)
const MAPPING_MAGIC = "FVMAP1\n";

// A manifest file name must be a plain relative name inside the stream folder.
function checkName(name, what) {
  if (typeof name !== "string" || !name || name.startsWith("/") || name.includes("\\") ||
      name.split("/").some((p) => p === ".." || p === "." || p === "")) {
    throw new StreamError(`manifest: ${what} ${JSON.stringify(name)} is not a plain name inside the stream`);
  }
  return name;
}

async function fetchBytes(url) {
  let r;
  try {
    r = await fetch(url);
  } catch (e) {
    throw new StreamError(`cannot fetch ${url}: ${e.message}`);
  }
  if (!r.ok) throw new StreamError(`cannot fetch ${url}: HTTP ${r.status}`);
  return r.arrayBuffer();
}

// Why a stream is not playable here, or null when it is. The player decodes H.264 with
// WebCodecs and reads the luma plane, so it needs the `web` preset's shape of stream.
export function unsupportedReason(m) {
  const c = m.codec || {};
  const isH264 = /264|avc/i.test(String(c.codec || ""));
  if (c.packing !== "luma-mosaic" || c.pix_fmt !== "yuv420p" || c.bit_depth !== 8 || !isH264) {
    return `This stream was encoded with preset "${c.preset}" (${c.codec}, ${c.pix_fmt}, ${c.bit_depth}-bit, ` +
      `${c.packing}). The web player plays H.264 yuv420p 8-bit luma-mosaic streams: ` +
      "re-encode the bake with `featvid encode --preset web`.";
  }
  return null;
}

export function parseManifest(text) {
  let m;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new StreamError(`manifest.json is not JSON: ${e.message}`);
  }
  if (m.format !== "featvid-stream") throw new StreamError("manifest.json is not a featvid stream manifest");
  if (m.version !== 1) throw new StreamError(`stream format version ${m.version} is not supported (this player reads version 1)`);
  if (!Array.isArray(m.gops) || !m.gops.length) throw new StreamError("manifest lists no GOPs");
  checkName(m.mlp.file, "MLP file");
  for (const g of m.gops) {
    checkName(g.mapping, "mapping");
    checkName(g.video, "video");
    if (g.ranges.length !== m.channels) throw new StreamError(`GOP at frame ${g.start} has ${g.ranges.length} ranges for ${m.channels} channels`);
  }
  return m;
}

// 3D Morton decode (x in bit 0, y in bit 1, z in bit 2) and 2D (x even bits, y odd bits).
function demorton(code, stride, axis, bits) {
  let out = 0;
  for (let b = 0; b < bits; b++) out |= ((code / 2 ** (stride * b + axis)) & 1) << b; // codes reach 2^30
  return out;
}

// mapping.fvmap -> {gridShape, blocks: Int32Array [M * 3] (atlas order), tilesX, tilesY}.
export async function parseMapping(buffer, source) {
  let raw;
  try {
    const stream = new Blob([buffer]).stream().pipeThrough(new DecompressionStream("gzip"));
    raw = new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    throw new StreamError(`${source}: not a gzip file (${e.message})`);
  }
  const magic = new TextDecoder().decode(raw.subarray(0, MAPPING_MAGIC.length));
  if (magic !== MAPPING_MAGIC) throw new StreamError(`${source}: not a featvid mapping`);
  const end = raw.indexOf(10, MAPPING_MAGIC.length);
  const header = JSON.parse(new TextDecoder().decode(raw.subarray(MAPPING_MAGIC.length, end)));
  const body = raw.slice(end + 1);
  const m = header.num_blocks;
  if (header.block !== BLOCK || body.byteLength !== 4 * m) throw new StreamError(`${source}: header does not match its data`);
  const deltas = new DataView(body.buffer);
  const blocks = new Int32Array(3 * m);
  let code = 0;
  for (let n = 0; n < m; n++) {
    code += deltas.getUint32(4 * n, true);
    for (let a = 0; a < 3; a++) blocks[3 * n + a] = demorton(code, 3, a, 10);
  }
  return { gridShape: header.grid_shape, blocks, tilesX: header.tiles_x, tilesY: header.tiles_y };
}

// The block lookup volume: for every block (bx, by, bz) its tile (tx, ty), or (-1, -1) where the
// GOP keeps no block. Int16Array [nbz][nby][nbx][2], x fastest (the layout of a 3D texture).
export function blockLookup(mapping) {
  const nb = mapping.gridShape.map((n) => Math.ceil(n / BLOCK));
  const table = new Int16Array(nb[0] * nb[1] * nb[2] * 2).fill(-1);
  const m = mapping.blocks.length / 3;
  for (let n = 0; n < m; n++) {
    const [bx, by, bz] = [mapping.blocks[3 * n], mapping.blocks[3 * n + 1], mapping.blocks[3 * n + 2]];
    const i = ((bz * nb[1] + by) * nb[0] + bx) * 2;
    table[i] = demorton(n, 2, 0, 16);
    table[i + 1] = demorton(n, 2, 1, 16);
  }
  return { size: nb, table };
}

// IEEE half-precision bit patterns -> Float32Array (streams store the MLP in float16).
export function halfToFloat(bits) {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) out[i] = sign * frac * 2 ** -24; // zero and subnormals
    else if (exp === 31) out[i] = frac ? NaN : sign * Infinity;
    else out[i] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return out;
}

// mlp.safetensors -> {config, weights: Float32Array} with, per layer (hidden.0, hidden.1, ...,
// out), the weight matrix [out, in] row-major followed by the bias: the order the shader reads.
export function parseMlp(buffer, expected) {
  const view = new DataView(buffer);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen <= 0 || 8 + headerLen > buffer.byteLength) throw new StreamError("mlp.safetensors is truncated");
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, headerLen)));
  const meta = header.__metadata__ || {};
  if (meta.format !== "featvid-mlp") throw new StreamError("mlp.safetensors is not a featvid MLP");
  const config = JSON.parse(meta.config);
  for (const k of ["in_features", "hidden", "layers", "view_freqs"]) {
    if (expected && expected[k] !== undefined && expected[k] !== config[k]) {
      throw new StreamError(`mlp.safetensors has ${k}=${config[k]} but the manifest says ${expected[k]}`);
    }
  }
  const tensor = (name) => {
    const t = header[name];
    if (!t || (t.dtype !== "F32" && t.dtype !== "F16")) {
      throw new StreamError(`mlp.safetensors: tensor ${name} is missing or not float32/float16`);
    }
    const [a, b] = t.data_offsets;
    // copy: the data may not be aligned inside the file
    const bytes = buffer.slice(8 + headerLen + a, 8 + headerLen + b);
    return t.dtype === "F32" ? new Float32Array(bytes) : halfToFloat(new Uint16Array(bytes));
  };
  const parts = [];
  for (let l = 0; l < config.layers; l++) parts.push(tensor(`hidden.${l}.weight`), tensor(`hidden.${l}.bias`));
  parts.push(tensor("out.weight"), tensor("out.bias"));
  const weights = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    weights.set(p, o);
    o += p.length;
  }
  const inDim = config.in_features + 3 + 6 * config.view_freqs;
  const want = config.hidden * (inDim + 1) + (config.layers - 1) * config.hidden * (config.hidden + 1) + 3 * (config.hidden + 1);
  if (weights.length !== want) throw new StreamError(`mlp.safetensors holds ${weights.length} weights, its config needs ${want}`);
  return { config, weights };
}

// A stream at `base` (a URL ending in "/"). `open()` reads the manifest and MLP; `fetchAll()`
// then pulls GOPs in order; `gop(i)` resolves when GOP i's files are in.
export class RemoteStream {
  constructor(base) {
    this.base = base.endsWith("/") ? base : base + "/";
    this.gopFiles = [];
    this.bytesFetched = 0;
  }

  async open() {
    const text = new TextDecoder().decode(await fetchBytes(this.base + "manifest.json"));
    this.manifest = parseManifest(text);
    const reason = unsupportedReason(this.manifest);
    if (reason) throw new StreamError(reason);
    this.mlp = parseMlp(await fetchBytes(this.base + this.manifest.mlp.file), this.manifest.mlp);
    this.gopFiles = this.manifest.gops.map(() => {
      let resolve, reject;
      const promise = new Promise((a, b) => { resolve = a; reject = b; });
      promise.catch(() => {}); // reported through gop(i) when it is asked for
      return { promise, resolve, reject, started: false };
    });
    return this.manifest;
  }

  // Total bytes of the stream per frame (videos + mappings + MLP), the figure benchmarks report.
  bytesPerFrame() {
    const m = this.manifest;
    let total = m.bytes && m.bytes.total_without_manifest;
    if (!total) total = m.gops.reduce((s, g) => s + (g.bytes.video || 0) + (g.bytes.mapping || 0), 0);
    return total / m.frames;
  }

  // Which GOP holds stream frame t.
  gopIndexOf(t) {
    const gops = this.manifest.gops;
    for (let i = gops.length - 1; i >= 0; i--) if (t >= gops[i].start) return i;
    return 0;
  }

  async _fetchGop(i) {
    const slot = this.gopFiles[i];
    if (slot.started) return slot.promise;
    slot.started = true;
    try {
      const g = this.manifest.gops[i];
      const [mapBytes, video] = await Promise.all([fetchBytes(this.base + g.mapping), fetchBytes(this.base + g.video)]);
      const mapping = await parseMapping(mapBytes, g.mapping);
      this.bytesFetched += mapBytes.byteLength + video.byteLength;
      slot.resolve({ index: i, info: g, mapping, video });
    } catch (e) {
      slot.reject(e);
    }
    return slot.promise;
  }

  // Fetch every GOP, in order, one at a time (the first one is needed first).
  async fetchAll() {
    for (let i = 0; i < this.gopFiles.length; i++) await this._fetchGop(i).catch(() => {});
  }

  gop(i) {
    this._fetchGop(i); // jumps the queue when a seek needs a GOP that has not come yet
    return this.gopFiles[i].promise;
  }
}
