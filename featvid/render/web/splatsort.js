// Depth sort of Gaussians for back-to-front splatting: shared by the sort worker (splatworker.js)
// and the main thread's fallback where module workers are unavailable.
//
// Depth is the camera-space z of each mean. Keys are its float32 bits made order-preserving as
// unsigned integers; two stable counting-sort passes over 16-bit digits (LSD radix) order them
// exactly as a float sort would, in O(N + 2 * 65536), with no quantization of depth (a single
// 16-bit pass over a depth range can swap nearby Gaussians, which shows as speckles where they
// overlap).

const DIGIT = 1 << 16;
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

// Indices of Gaussians with z > near, farthest first (back to front); of equal depths the higher
// index first (the reference composites nearest first, ties by index: this is its exact reverse).
// positions: Float32Array [N * 3]; row: [r20, r21, r22, t2], the camera-z row of world-to-camera.
export function sortBackToFront(positions, row, near) {
  const n = positions.length / 3;
  const keys = new Uint32Array(n);
  const idx = new Uint32Array(n);
  let m = 0;
  for (let i = n - 1; i >= 0; i--) { // stable passes keep this (descending index) order among ties
    const z = row[0] * positions[3 * i] + row[1] * positions[3 * i + 1] + row[2] * positions[3 * i + 2] + row[3];
    if (!(z > near)) continue; // behind the near plane (and NaN): never drawn
    f32[0] = z; // z > 0: its bits already order as unsigned integers
    keys[m] = ~u32[0] >>> 0; // descending depth = ascending key
    idx[m] = i;
    m++;
  }
  const tmpKeys = new Uint32Array(m);
  const tmpIdx = new Uint32Array(m);
  const count = new Uint32Array(DIGIT);
  countingPass(keys, idx, tmpKeys, tmpIdx, m, 0, count); // low 16 bits first (LSD)
  countingPass(tmpKeys, tmpIdx, keys, idx, m, 16, count);
  return idx.slice(0, m);
}

// One stable counting-sort pass on the 16-bit digit at `shift`, from (keys, idx) into (outKeys, outIdx).
function countingPass(keys, idx, outKeys, outIdx, m, shift, count) {
  count.fill(0);
  for (let i = 0; i < m; i++) count[(keys[i] >>> shift) & 0xffff]++;
  let sum = 0;
  for (let d = 0; d < DIGIT; d++) { const c = count[d]; count[d] = sum; sum += c; }
  for (let i = 0; i < m; i++) {
    const d = (keys[i] >>> shift) & 0xffff;
    const at = count[d]++;
    outKeys[at] = keys[i];
    outIdx[at] = idx[i];
  }
}
