// A minimal MP4 (ISO BMFF) demuxer for featvid's own H.264 atlas videos.
//
// WebCodecs' VideoDecoder wants the codec configuration (the avcC box) and the coded samples;
// it does not read containers. Our GOP files are single-track, progressive (non-fragmented) MP4
// written by FFmpeg/PyAV, so this reads only what such a file holds: moov/trak/mdia (mdhd
// timescale) and the sample table (stsd avc1 + avcC, stts, ctts, stss, stsc, stsz/stz2,
// stco/co64). Fragmented MP4 (moof) and multiple video tracks are refused with a clear error.
//
// Why not mp4box.js (the well-kept demuxer; checked with mp4box 2.4.1 from npm): on 28 GOP files
// of featvid streams (gray and yuv420p, main and high profile, 2-8 frames, ladders included) both
// give the same codec string, size, timescale and every sample's offset, size, dts, cts and key
// flag; mp4box.js costs 328 KB of modules to load against this file's 8 KB, 4.3 ms per GOP
// against 0.1 ms, and an npm install that a pip-installed featvid would not have (so this file
// would stay as its fallback anyway). Switching renditions needs nothing more from the container:
// every rendition of every GOP is its own progressive MP4 with its own avcC.

export class Mp4Error extends Error {}

const CONTAINERS = new Set(["moov", "trak", "mdia", "minf", "stbl", "edts", "dinf"]);

function fourcc(view, pos) {
  return String.fromCharCode(view.getUint8(pos), view.getUint8(pos + 1), view.getUint8(pos + 2), view.getUint8(pos + 3));
}

// The boxes inside [start, end): [{type, start (of payload), end}], descending into containers.
function boxes(view, start, end, out = []) {
  let pos = start;
  while (pos + 8 <= end) {
    let size = view.getUint32(pos);
    const type = fourcc(view, pos + 4);
    let header = 8;
    if (size === 1) {
      size = Number(view.getBigUint64(pos + 8));
      header = 16;
    } else if (size === 0) {
      size = end - pos; // to the end of the file
    }
    if (size < header || pos + size > end) throw new Mp4Error(`truncated or corrupt MP4 box '${type}' at byte ${pos}`);
    const box = { type, start: pos + header, end: pos + size, children: [] };
    out.push(box);
    if (CONTAINERS.has(type)) boxes(view, box.start, box.end, box.children);
    pos += size;
  }
  return out;
}

function child(box, type) {
  return box.children.find((b) => b.type === type);
}

function need(box, type, where) {
  const b = child(box, type);
  if (!b) throw new Mp4Error(`MP4 has no '${type}' box in '${where}'`);
  return b;
}

function hex2(n) {
  return n.toString(16).padStart(2, "0");
}

// Sample table entries that are plain lists of uint32 after a full-box header and a count.
function u32Table(view, box, fieldsPerEntry, headerExtra = 0) {
  const count = view.getUint32(box.start + 4 + headerExtra);
  const rows = [];
  let pos = box.start + 8 + headerExtra;
  for (let i = 0; i < count; i++) {
    const row = [];
    for (let f = 0; f < fieldsPerEntry; f++, pos += 4) row.push(view.getUint32(pos));
    rows.push(row);
  }
  return rows;
}

// Parse one H.264 MP4. Returns {codec, description, width, height, timescale, samples}, where
// samples (in decode order) are {offset, size, dts, cts, duration, key} with times in timescale
// units, and `cts` ranks give the presentation order.
export function demuxH264(buffer) {
  const view = new DataView(buffer);
  const top = boxes(view, 0, buffer.byteLength);
  if (top.some((b) => b.type === "moof")) throw new Mp4Error("fragmented MP4 is not supported by the player");
  const moov = top.find((b) => b.type === "moov");
  if (!moov) throw new Mp4Error("MP4 has no 'moov' box (truncated download?)");
  const videoTracks = moov.children.filter((t) => {
    if (t.type !== "trak") return false;
    const hdlr = child(child(t, "mdia") || { children: [] }, "hdlr");
    return hdlr && fourcc(view, hdlr.start + 8) === "vide";
  });
  if (videoTracks.length !== 1) throw new Mp4Error(`expected one video track, found ${videoTracks.length}`);
  const mdia = need(videoTracks[0], "mdia", "trak");
  const mdhd = need(mdia, "mdhd", "mdia");
  const timescale = view.getUint8(mdhd.start) === 1 ? view.getUint32(mdhd.start + 20) : view.getUint32(mdhd.start + 12);
  const stbl = need(need(mdia, "minf", "mdia"), "stbl", "minf");

  // stsd: one sample entry, 'avc1' or 'avc3', whose avcC payload is the decoder description.
  const stsd = need(stbl, "stsd", "stbl");
  const entry = boxes(view, stsd.start + 8, stsd.end)[0];
  if (!entry || (entry.type !== "avc1" && entry.type !== "avc3")) {
    throw new Mp4Error(`the video is '${entry ? entry.type : "?"}', not H.264 (avc1)`);
  }
  const width = view.getUint16(entry.start + 24);
  const height = view.getUint16(entry.start + 26);
  // VisualSampleEntry has a fixed 78-byte body before its child boxes.
  const avcC = boxes(view, entry.start + 78, entry.end).find((b) => b.type === "avcC");
  if (!avcC) throw new Mp4Error("H.264 sample entry has no 'avcC' box");
  const description = new Uint8Array(buffer.slice(avcC.start, avcC.end));
  const codec = `avc1.${hex2(description[1])}${hex2(description[2])}${hex2(description[3])}`;

  // Sample sizes.
  let sizes;
  const stsz = child(stbl, "stsz");
  if (stsz) {
    const uniform = view.getUint32(stsz.start + 4);
    const count = view.getUint32(stsz.start + 8);
    sizes = new Array(count);
    for (let i = 0; i < count; i++) sizes[i] = uniform || view.getUint32(stsz.start + 12 + 4 * i);
  } else {
    const stz2 = need(stbl, "stz2", "stbl");
    const bits = view.getUint8(stz2.start + 7);
    const count = view.getUint32(stz2.start + 8);
    sizes = new Array(count);
    for (let i = 0; i < count; i++) {
      if (bits === 16) sizes[i] = view.getUint16(stz2.start + 12 + 2 * i);
      else if (bits === 8) sizes[i] = view.getUint8(stz2.start + 12 + i);
      else sizes[i] = (view.getUint8(stz2.start + 12 + (i >> 1)) >> (i & 1 ? 0 : 4)) & 15;
    }
  }
  const n = sizes.length;

  // Chunk offsets, then samples to chunks (stsc runs: first_chunk is 1-based).
  let chunkOffsets;
  const stco = child(stbl, "stco");
  if (stco) chunkOffsets = u32Table(view, stco, 1).map((r) => r[0]);
  else {
    const co64 = need(stbl, "co64", "stbl");
    const count = view.getUint32(co64.start + 4);
    chunkOffsets = [];
    for (let i = 0; i < count; i++) chunkOffsets.push(Number(view.getBigUint64(co64.start + 8 + 8 * i)));
  }
  const stsc = u32Table(view, need(stbl, "stsc", "stbl"), 3);
  const offsets = new Array(n);
  let s = 0;
  for (let r = 0; r < stsc.length && s < n; r++) {
    const [firstChunk, perChunk] = stsc[r];
    const lastChunk = r + 1 < stsc.length ? stsc[r + 1][0] - 1 : chunkOffsets.length;
    for (let c = firstChunk; c <= lastChunk && s < n; c++) {
      let pos = chunkOffsets[c - 1];
      for (let k = 0; k < perChunk && s < n; k++, s++) {
        offsets[s] = pos;
        pos += sizes[s];
      }
    }
  }
  if (s !== n) throw new Mp4Error(`sample table covers ${s} of ${n} samples`);

  // Decode times (stts), composition offsets (ctts; version 1 is signed), keyframes (stss).
  const dts = new Array(n);
  const durations = new Array(n);
  let t = 0;
  s = 0;
  for (const [count, delta] of u32Table(view, need(stbl, "stts", "stbl"), 2)) {
    for (let k = 0; k < count && s < n; k++, s++) {
      dts[s] = t;
      durations[s] = delta;
      t += delta;
    }
  }
  for (; s < n; s++) dts[s] = t; // malformed stts: keep decode order at least
  const cts = dts.slice();
  const ctts = child(stbl, "ctts");
  if (ctts) {
    const signed = view.getUint8(ctts.start) === 1;
    const count = view.getUint32(ctts.start + 4);
    s = 0;
    for (let i = 0; i < count; i++) {
      const num = view.getUint32(ctts.start + 8 + 8 * i);
      const off = signed ? view.getInt32(ctts.start + 12 + 8 * i) : view.getUint32(ctts.start + 12 + 8 * i);
      for (let k = 0; k < num && s < n; k++, s++) cts[s] += off;
    }
  }
  const stss = child(stbl, "stss");
  const keys = new Set(stss ? u32Table(view, stss, 1).map((r) => r[0] - 1) : [...Array(n).keys()]);

  const samples = [];
  for (let i = 0; i < n; i++) {
    if (offsets[i] + sizes[i] > buffer.byteLength) throw new Mp4Error("MP4 sample data is truncated");
    samples.push({ offset: offsets[i], size: sizes[i], dts: dts[i], cts: cts[i], duration: durations[i] || 0, key: keys.has(i) });
  }
  if (!samples.length || !samples[0].key) throw new Mp4Error("the GOP video does not start with a keyframe");
  return { codec, description, width, height, timescale, samples };
}
