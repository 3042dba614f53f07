// Adaptive bitrate: which rendition of the next GOP to fetch. The same rule as the Python
// player's (featvid/render/abr.py, whose docstring says why each part is there):
// - estimate: harmonic mean of the last WINDOW fetch throughputs (bit/s);
// - sustainable: the highest rendition whose GOP bits fit in SAFETY x estimate x GOP seconds;
// - buffer guard: and whose fetch at the last throughput ends before the buffer runs dry;
// - nothing measured yet: the lowest rendition.

export const SAFETY = 0.9;
export const WINDOW = 3;
export const MAX_BUFFER_S = 2.0; // seconds of content fetched ahead at most

export class AbrRule {
  constructor({ safety = SAFETY, window = WINDOW } = {}) {
    this.safety = safety;
    this.window = window;
  }

  // Harmonic mean of the last `window` samples (bit/s), or null without any.
  estimate(samples) {
    const last = samples.slice(-this.window).filter((s) => s > 0);
    if (!last.length) return null;
    return last.length / last.reduce((a, s) => a + 1 / s, 0);
  }

  // Index into `bits` (the next GOP's bits per rendition, lowest bitrate first) to fetch.
  choose(bits, durationS, bufferS, samples) {
    const est = this.estimate(samples);
    if (est === null) return 0;
    const last = samples[samples.length - 1];
    let pick = 0;
    bits.forEach((b, i) => {
      const sustainable = b <= this.safety * est * durationS;
      const inTime = b <= this.safety * last * bufferS;
      if (sustainable && inTime) pick = i;
    });
    return pick;
  }
}
