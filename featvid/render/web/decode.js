// Decode one GOP's atlas video to its exact luma planes with WebCodecs.
//
// Why WebCodecs and not a <video> element (measured in headless Chromium 150 on SwiftShader, on
// a web-preset GOP, against PyAV's decode of the same file):
// - VideoDecoder + VideoFrame.copyTo(): every Y code identical (max difference 0), every frame.
// - <video> + texImage2D, Y recovered from G as 16 + G * 219 / 255: 99.5 % of codes exact, but
//   the rest off by up to 18 codes (the browser's YUV->RGB path rounds and resamples chroma), and
//   a density code off by 18 turns empty space opaque. <video> also gives no exact frame stepping.
// copyTo() needs a secure context (http://127.0.0.1, which `featvid serve` uses, or https) and
// the MP4 demuxed (mp4.js). The decoder uses the hardware when the browser has one.

import { demuxH264 } from "./mp4.js";

export class DecodeError extends Error {}

export function webCodecsAvailable() {
  return typeof VideoDecoder !== "undefined" && typeof EncodedVideoChunk !== "undefined";
}

// Copy the luma plane of a VideoFrame (I420, I420A, NV12 all start with a full-size Y plane).
async function lumaOf(frame, width, height) {
  if (!frame.format) throw new UnreadableFrames("the decoder returned frames that cannot be read back (no pixel format)");
  if (!/^(I420|I420A|I422|I444|NV12)$/.test(frame.format)) {
    throw new DecodeError(`the decoder returned ${frame.format} frames; 8-bit YUV was expected`);
  }
  const rect = { x: 0, y: 0, width, height };
  const size = frame.allocationSize({ rect });
  const buf = new Uint8Array(size);
  const layout = await frame.copyTo(buf, { rect });
  const { offset, stride } = layout[0];
  if (stride === width) return buf.slice(offset, offset + width * height);
  const y = new Uint8Array(width * height);
  for (let r = 0; r < height; r++) y.set(buf.subarray(offset + r * stride, offset + r * stride + width), r * width);
  return y;
}

class UnreadableFrames extends DecodeError {}

// Decode an MP4 (ArrayBuffer) into {width, height, frames: [Uint8Array luma], codec} in
// presentation order. `width` x `height` is the part of each frame to keep (the mosaic).
export async function decodeGop(buffer, width, height) {
  if (!webCodecsAvailable()) {
    throw new DecodeError("this browser has no WebCodecs VideoDecoder (it needs a secure context: open the player via http://127.0.0.1 or https)");
  }
  const mp4 = demuxH264(buffer);
  if (mp4.width < width || mp4.height < height) {
    throw new DecodeError(`video is ${mp4.width}x${mp4.height}, smaller than its mosaic ${width}x${height}`);
  }
  try {
    return await decodeSamples(buffer, mp4, width, height, "no-preference");
  } catch (e) {
    // Some hardware decoders hand out GPU-only frames that copyTo() cannot read: decode in software.
    if (!(e instanceof UnreadableFrames)) throw e;
    return decodeSamples(buffer, mp4, width, height, "prefer-software");
  }
}

async function decodeSamples(buffer, mp4, width, height, hardwareAcceleration) {
  const config = { codec: mp4.codec, description: mp4.description, codedWidth: mp4.width, codedHeight: mp4.height,
                   optimizeForLatency: true, hardwareAcceleration };
  const support = await VideoDecoder.isConfigSupported(config);
  if (!support.supported) throw new DecodeError(`this browser cannot decode H.264 ${mp4.codec} at ${mp4.width}x${mp4.height}`);

  // Presentation index of each sample: its rank by composition time (B-frames reorder).
  const byCts = mp4.samples.map((s, i) => [s.cts, i]).sort((a, b) => a[0] - b[0]);
  const usPerTick = 1e6 / mp4.timescale;
  const frames = new Array(mp4.samples.length);
  const pending = [];
  let failure = null;
  const decoder = new VideoDecoder({
    output(frame) {
      // Timestamps are microseconds of cts; match back to the sample rank.
      const rank = byCts.findIndex(([cts]) => Math.abs(cts * usPerTick - frame.timestamp) < 0.5 * usPerTick);
      pending.push(lumaOf(frame, width, height).then((y) => { if (rank >= 0) frames[rank] = y; })
        .catch((e) => { failure = failure || e; })
        .finally(() => frame.close()));
    },
    error(e) { failure = failure || e; },
  });
  decoder.configure(config);
  const bytes = new Uint8Array(buffer);
  for (const s of mp4.samples) {
    decoder.decode(new EncodedVideoChunk({
      type: s.key ? "key" : "delta",
      timestamp: Math.round(s.cts * usPerTick),
      duration: Math.round(s.duration * usPerTick),
      data: bytes.subarray(s.offset, s.offset + s.size),
    }));
  }
  try {
    await decoder.flush();
  } catch (e) {
    failure = failure || e;
  }
  await Promise.all(pending);
  if (decoder.state !== "closed") decoder.close();
  if (failure instanceof DecodeError) throw failure;
  if (failure) throw new DecodeError(`H.264 decode failed: ${failure.message || failure}`);
  const missing = frames.findIndex((f) => !f);
  if (missing >= 0 || frames.length === 0) throw new DecodeError(`the decoder returned no picture for frame ${missing}`);
  return { width, height, frames, codec: mp4.codec };
}
