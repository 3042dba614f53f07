// Reading a featvid stream over HTTP: manifest.json, mlp.safetensors and per-GOP mappings and
// videos (docs/stream-format.md). Version 1 (one rendition) and version 2 (a ladder of renditions)
// are read into one shape: `manifest.renditions` [{name, codec, bitrate: {average, peak}}] and, per
// GOP, `videos` {name: {file, mosaic, bytes}}. The player asks for one GOP in one rendition at a
// time (`fetchGop`) and measures how long it took.
//
// Integrity: the manifest's `files` table records {bytes, sha256} of every file it names (the MLP,
// each GOP's mapping and videos; docs/stream-format.md). Each of those files is checked as it
// arrives, before it is parsed or decoded (`verifyFile`): its size, then its SHA-256 with the
// browser's own crypto.subtle.digest; a mismatch is an IntegrityError naming the file and nothing
// of it is used. A stream from before the table existed plays unverified, with a console warning.
// The manifest itself is the root of trust: serve it over https (or from loopback).

import { checkGaussianManifest, parseLayout } from "./gaussians.js";

export class StreamError extends Error {}
export class IntegrityError extends StreamError {} // a fetched file is not the one the manifest records

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

export class FetchError extends StreamError {
  constructor(message, status) {
    super(message);
    this.status = status; // HTTP status, or 0 when the request itself failed
  }
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

// The manifest's `files` table, checked: name -> {bytes, sha256} for every file in `names`; null
// for a stream without one (an older featvid wrote none, or an empty one; as the Python reader).
function parseFiles(files, names) {
  if (files === undefined || files === null) return null;
  if (typeof files !== "object" || Array.isArray(files)) {
    throw new StreamError("manifest: files must be an object of file name -> {bytes, sha256}");
  }
  if (!Object.keys(files).length) return null;
  for (const name of names) {
    const rec = files[name];
    if (!rec || !Number.isSafeInteger(rec.bytes) || rec.bytes < 0 || typeof rec.sha256 !== "string" ||
        !SHA256_HEX.test(rec.sha256)) {
      throw new StreamError(`manifest: files lists no valid {bytes, sha256} for ${JSON.stringify(name)}`);
    }
  }
  return files;
}

// Lower-case hex SHA-256 of an ArrayBuffer.
async function sha256Hex(buffer) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", buffer));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Check `buffer` (a file fetched from `url`) against its manifest record `rec` ({bytes, sha256}):
// IntegrityError naming the URL when it differs; resolves with the milliseconds the hash took.
//
// crypto.subtle exists only in a secure context: https, or http://127.0.0.1 / localhost (where
// `featvid serve` binds). Opened over plain http from any other host it is undefined, and then a
// stream that records hashes is refused, never played unverified (such a page could not decode it
// anyway: WebCodecs is secure-context only too). Serve the player over https to play it remotely.
export async function verifyFile(rec, buffer, url) {
  if (buffer.byteLength !== rec.bytes) {
    throw new IntegrityError(`${url}: ${buffer.byteLength} bytes, the manifest records ${rec.bytes} ` +
                             "(truncated or altered file); not played");
  }
  if (!(globalThis.crypto && crypto.subtle)) {
    throw new IntegrityError(`${url}: cannot be verified against the manifest's SHA-256: this page is not a ` +
                             "secure context, so the browser offers no crypto.subtle; open the player via https, " +
                             "http://127.0.0.1 or http://localhost");
  }
  const t0 = performance.now();
  const hex = await sha256Hex(buffer);
  if (hex !== rec.sha256) {
    throw new IntegrityError(`${url}: SHA-256 differs from the manifest's (corrupt or altered file); not played`);
  }
  return performance.now() - t0;
}

async function fetchBytes(url) {
  let r;
  try {
    r = await fetch(url);
  } catch (e) {
    throw new FetchError(`cannot fetch ${url}: ${e.message}`, 0);
  }
  if (!r.ok) throw new FetchError(`cannot fetch ${url}: HTTP ${r.status}`, r.status);
  return r.arrayBuffer();
}

// Why a rendition is not playable here, or null when it is. The player decodes H.264 with
// WebCodecs and reads the luma plane, so it needs the `web` preset's shape of stream.
export function unsupportedReason(codec) {
  const c = codec || {};
  const isH264 = /264|avc/i.test(String(c.codec || ""));
  if (c.packing !== "luma-mosaic" || c.pix_fmt !== "yuv420p" || c.bit_depth !== 8 || !isH264) {
    return `This stream was encoded with preset "${c.preset}" (${c.codec}, ${c.pix_fmt}, ${c.bit_depth}-bit, ` +
      `${c.packing}). The web player plays H.264 yuv420p 8-bit luma-mosaic streams: ` +
      "re-encode the bake with `featvid encode --preset web` (or `--ladder abr`).";
  }
  return null;
}

const READS = [1, 2]; // manifest versions this player reads

export function parseManifest(text) {
  let m;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new StreamError(`manifest.json is not JSON: ${e.message}`);
  }
  if (m.format !== "featvid-stream") throw new StreamError("manifest.json is not a featvid stream manifest");
  if (!READS.includes(m.version)) {
    throw new StreamError(`stream format version ${m.version} is not supported (this player reads versions ${READS.join(" and ")})`);
  }
  if (!Array.isArray(m.gops) || !m.gops.length) throw new StreamError("manifest lists no GOPs");
  // Grids (no "representation") or Gaussians (docs/gaussians.md: no MLP, a layout file per GOP).
  const gaussians = m.representation === "gaussians";
  if (m.representation !== undefined && m.representation !== "grids" && !gaussians) {
    throw new StreamError(`manifest: representation ${JSON.stringify(m.representation)} is not one this player draws (grids, gaussians)`);
  }
  if (gaussians) checkGaussianManifest(m);
  else checkName(m.mlp.file, "MLP file");
  // Which space a grid lives in (featvid/field/volume.py); absent: "box", every stream before it.
  const space = (m.render && m.render.space) || "box";
  if (!gaussians && space !== "box" && space !== "contracted") {
    throw new StreamError(`manifest: render space ${JSON.stringify(space)} is not one this player draws (box, contracted)`);
  }
  if (m.version === 1) { // one rendition, named after its preset; its bitrate from the GOP sizes
    const bits = m.gops.reduce((s, g) => s + 8 * ((g.bytes && g.bytes.video) || 0), 0);
    const peak = Math.max(...m.gops.map((g) => (8 * ((g.bytes && g.bytes.video) || 0) * m.fps) / g.frames));
    const name = m.codec.preset || "main";
    m.renditions = [{ name, codec: m.codec, bitrate: { average: (bits * m.fps) / m.frames, peak } }];
    for (const g of m.gops) {
      g.videos = { [name]: { file: g.video, mosaic: g.mosaic, bytes: (g.bytes && g.bytes.video) || 0 } };
    }
  } else if (!Array.isArray(m.renditions) || !m.renditions.length) {
    throw new StreamError("manifest lists no renditions");
  }
  for (const g of m.gops) {
    checkName(g.mapping, "mapping");
    if (g.ranges.length !== m.channels) throw new StreamError(`GOP at frame ${g.start} has ${g.ranges.length} ranges for ${m.channels} channels`);
    for (const r of m.renditions) {
      const v = g.videos && g.videos[r.name];
      if (!v) throw new StreamError(`GOP at frame ${g.start} has no video of rendition ${r.name}`);
      checkName(v.file, "video");
      // cells start a pitch apart: the atlas rounded up to whole macroblocks; a stream made before
      // it states none and has its cells an atlas apart (docs/stream-format.md, "Packing")
      const mo = v.mosaic;
      mo.cell_height = mo.cell_height === undefined ? g.atlas[0] : mo.cell_height;
      mo.cell_width = mo.cell_width === undefined ? g.atlas[1] : mo.cell_width;
      if (mo.cell_height < g.atlas[0] || mo.cell_width < g.atlas[1] || mo.rows * mo.cell_height > mo.height ||
          mo.cols * mo.cell_width > mo.width) {
        throw new StreamError(`GOP at frame ${g.start}: mosaic ${JSON.stringify(mo)} does not hold cells of ${g.atlas}`);
      }
    }
    g.mappingBytes = (g.bytes && g.bytes.mapping) || 0;
  }
  const names = [...(gaussians ? [] : [m.mlp.file]), ...m.gops.flatMap((g) => [g.mapping, ...Object.values(g.videos).map((v) => v.file)])];
  m.files = parseFiles(m.files, names);
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

// A stream at `base` (a URL ending in "/"). `open()` reads the manifest and MLP and keeps the
// renditions this browser can play (`playable`, lowest average bitrate first); `fetchGop(i, name)`
// fetches GOP i in one rendition and says how long it took.
export class RemoteStream {
  constructor(base) {
    this.base = base.endsWith("/") ? base : base + "/";
    this.bytesFetched = 0;
    this.verified = {}; // name -> bytes of each file whose bytes matched the manifest's record
  }

  // Verify the fetched bytes of stream file `name` (see verifyFile); resolves with the hashing
  // time in ms (0 for a stream without hashes: nothing to check against).
  async check(name, buffer) {
    const files = this.manifest.files;
    if (!files) return 0;
    const ms = await verifyFile(files[name], buffer, this.base + name);
    this.verified[name] = buffer.byteLength;
    return ms;
  }

  async open() {
    const text = new TextDecoder().decode(await fetchBytes(this.base + "manifest.json"));
    this.manifest = parseManifest(text);
    const m = this.manifest;
    this.playable = m.renditions.filter((r) => !unsupportedReason(r.codec))
      .sort((a, b) => a.bitrate.average - b.bitrate.average);
    if (!this.playable.length) throw new StreamError(unsupportedReason(m.renditions[0].codec));
    this.skipped = m.renditions.filter((r) => unsupportedReason(r.codec)).map((r) => r.name);
    if (!m.files) {
      console.warn(`${this.base}manifest.json records no file hashes (a stream from an older featvid): its files ` +
                   "play unverified; re-encode it to make it verifiable");
    }
    this.gaussians = m.representation === "gaussians";
    if (this.gaussians) return m; // no MLP: splats carry their own colour
    const mlp = await fetchBytes(this.base + m.mlp.file);
    await this.check(m.mlp.file, mlp);
    this.mlp = parseMlp(mlp, m.mlp);
    return m;
  }

  rendition(name) {
    return this.manifest.renditions.find((r) => r.name === name);
  }

  // Bytes per frame a viewer of one rendition fetches (its videos + mappings + MLP).
  bytesPerFrame(name) {
    const m = this.manifest;
    const total = m.gops.reduce((s, g) => s + g.videos[name].bytes + g.mappingBytes, 0);
    return total / m.frames;
  }

  // Bits of GOP i's files in rendition `name` (video + mapping), from the manifest.
  gopBits(i, name) {
    const g = this.manifest.gops[i];
    return 8 * (g.videos[name].bytes + g.mappingBytes);
  }

  // Fetch GOP i in rendition `name`, both files verified before either is parsed: {index,
  // rendition, info, mapping, video, bytes, seconds, verifyMs}, where seconds run from the request
  // to the last byte of the later of the two files (the hashing not included) and verifyMs is the
  // time spent hashing them.
  async fetchGop(i, name) {
    const g = this.manifest.gops[i];
    const t0 = performance.now();
    const [mapBytes, video] = await Promise.all([fetchBytes(this.base + g.mapping),
                                                 fetchBytes(this.base + g.videos[name].file)]);
    const seconds = Math.max(1e-4, (performance.now() - t0) / 1000);
    const t1 = performance.now();
    await Promise.all([this.check(g.mapping, mapBytes), this.check(g.videos[name].file, video)]);
    const verifyMs = this.manifest.files ? performance.now() - t1 : 0;
    const mapping = this.gaussians ? await parseLayout(mapBytes, g.mapping, g) : await parseMapping(mapBytes, g.mapping);
    const bytes = mapBytes.byteLength + video.byteLength;
    this.bytesFetched += bytes;
    return { index: i, rendition: name, info: g, mapping, video, bytes, seconds, verifyMs };
  }

  // Which GOP holds stream frame t.
  gopIndexOf(t) {
    const gops = this.manifest.gops;
    for (let i = gops.length - 1; i >= 0; i--) if (t >= gops[i].start) return i;
    return 0;
  }
}
