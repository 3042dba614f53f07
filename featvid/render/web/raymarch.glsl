// Fragment shader: one ray per pixel through one frame of a featvid stream.
//
// The same math as featvid/field/volume.py (the reference renderer), step for step:
// ray/box clip, samples t_k = t_near + k * step, the occupied-cell test, trilinear interpolation
// of the 8 corner vertices (align_corners: vertex i sits at aabb_min + i * extent / (n - 1)),
// tau = softplus(sigma + shift) * step_ratio, alpha = 1 - exp(-tau), transmittance, and deferred
// shading rgb = acc * MLP(F, d) + (1 - acc) * background.
// A contracted grid (uContracted, the manifest's render.space "contracted") clips the ray to the
// box c +- h * r_far, steps t_{k+1} = t_k + step * max(1, |x(t_k)|_inf)^2 (x in units of h around
// c) and looks cells and vertices up at the contracted point (volume.contract).
//
// The player prepends `#version 300 es` and the #defines NUM_FEATURES, HIDDEN, LAYERS, VIEW_FREQS.

precision highp float;
precision highp int;
precision highp usampler2D;
precision highp isampler3D;

#define NUM_PLANES (NUM_FEATURES + 1)
#define IN_DIM (NUM_FEATURES + 3 + 6 * VIEW_FREQS)
#define MLP_TEX_WIDTH 1024
// Stop marching once the light left is below this: the rest can change a pixel by < 1e-5.
#define MIN_TRANSMITTANCE 1e-5

uniform usampler2D uAtlas;   // the frame's luma mosaic: 8-bit codes, row 0 = top of the frame
uniform isampler3D uBlocks;  // block (bx, by, bz) -> atlas tile (tx, ty), or -1 where no block
uniform sampler2D uMlp;      // MLP weights, flat, MLP_TEX_WIDTH per row

uniform vec3 uAabbMin;
uniform vec3 uAabbMax;
uniform ivec3 uGridShape;    // vertices per axis
uniform float uStep;         // world units between samples
uniform float uStepRatio;
uniform float uNear;
uniform float uDensityShift;
uniform vec3 uBackground;
uniform int uMaxSteps;
uniform bool uContracted;    // the grid's box holds all of space (volume.py, "contracted")
uniform vec3 uCentre;        // contracted: the inner box's centre c
uniform vec3 uHalf;          // contracted: the inner box's half size h
uniform float uRFar;         // contracted: samples stop at inf-norm radius r_far (units of h)

uniform mat3 uRotation;      // camera-to-world rotation, OpenCV axes (x right, y down, z forward)
uniform vec3 uOrigin;
uniform vec4 uIntrinsics;    // fx, fy, cx, cy in pixels
uniform float uHeight;       // image height in pixels

uniform int uMosaicCols;
uniform ivec2 uCellPitch;    // from one plane's cell to the next: (width, height), pixels
uniform vec2 uLevels;        // code range [a, b]
uniform float uLo[NUM_PLANES];     // per channel: value of code a
uniform float uScale[NUM_PLANES];  // per channel: (hi - lo) / (b - a)

out vec4 outColor;

float weightAt(int i) {
  return texelFetch(uMlp, ivec2(i % MLP_TEX_WIDTH, i / MLP_TEX_WIDTH), 0).r;
}

float softplus(float x) {
  return max(x, 0.0) + log(1.0 + exp(-abs(x)));
}

vec3 mlp(float feature[NUM_FEATURES], vec3 d) {
  float x[IN_DIM];
  for (int i = 0; i < NUM_FEATURES; i++) x[i] = feature[i];
  x[NUM_FEATURES] = d.x; x[NUM_FEATURES + 1] = d.y; x[NUM_FEATURES + 2] = d.z;
  for (int l = 0; l < VIEW_FREQS; l++) {  // d, then sin(2^l d), cos(2^l d) per frequency
    vec3 s = sin(d * exp2(float(l)));
    vec3 c = cos(d * exp2(float(l)));
    int o = NUM_FEATURES + 3 + 6 * l;
    x[o] = s.x; x[o + 1] = s.y; x[o + 2] = s.z; x[o + 3] = c.x; x[o + 4] = c.y; x[o + 5] = c.z;
  }
  float h[HIDDEN];
  float next[HIDDEN];
  // layer 0: weight [HIDDEN, IN_DIM] then bias [HIDDEN]
  for (int o = 0; o < HIDDEN; o++) {
    float s = weightAt(HIDDEN * IN_DIM + o);
    for (int i = 0; i < IN_DIM; i++) s += weightAt(o * IN_DIM + i) * x[i];
    h[o] = max(s, 0.0);
  }
  int base = HIDDEN * (IN_DIM + 1);
  for (int l = 1; l < LAYERS; l++) {
    for (int o = 0; o < HIDDEN; o++) {
      float s = weightAt(base + HIDDEN * HIDDEN + o);
      for (int i = 0; i < HIDDEN; i++) s += weightAt(base + o * HIDDEN + i) * h[i];
      next[o] = max(s, 0.0);
    }
    for (int o = 0; o < HIDDEN; o++) h[o] = next[o];
    base += HIDDEN * (HIDDEN + 1);
  }
  vec3 rgb;
  for (int k = 0; k < 3; k++) {
    float s = weightAt(base + 3 * HIDDEN + k);
    for (int i = 0; i < HIDDEN; i++) s += weightAt(base + k * HIDDEN + i) * h[i];
    rgb[k] = 1.0 / (1.0 + exp(-s));
  }
  return rgb;
}

// inf-norm radius of x, at least 1 (volume.contract's r)
float radiusOf(vec3 x) {
  return max(1.0, max(max(abs(x.x), abs(x.y)), abs(x.z)));
}

// Atlas tile of the block holding vertex v, or (-1, -1).
ivec2 tileOf(ivec3 v) {
  return texelFetch(uBlocks, v >> 2, 0).xy;
}

void main() {
  // Pixel centre (u right, v down from the top-left corner), as featvid.data.cameras.pixel_rays.
  vec2 uv = vec2(gl_FragCoord.x, uHeight - gl_FragCoord.y);
  vec3 dCam = vec3((uv.x - uIntrinsics.z) / uIntrinsics.x, (uv.y - uIntrinsics.w) / uIntrinsics.y, 1.0);
  vec3 d = normalize(uRotation * dCam);
  vec3 o = uOrigin;

  // Ray / box clip (volume.ray_aabb); contracted: the box of points within r_far.
  vec3 clipMin = uContracted ? uCentre - uHalf * uRFar : uAabbMin;
  vec3 clipMax = uContracted ? uCentre + uHalf * uRFar : uAabbMax;
  vec3 safe = mix(d, vec3(1e-9), lessThan(abs(d), vec3(1e-9)));
  vec3 t0 = (clipMin - o) / safe;
  vec3 t1 = (clipMax - o) / safe;
  vec3 tmin = min(t0, t1);
  vec3 tmax = max(t0, t1);
  float tNear = max(max(max(tmin.x, tmin.y), tmin.z), uNear);
  float tFar = min(min(tmax.x, tmax.y), tmax.z);

  vec3 extent = uAabbMax - uAabbMin;
  vec3 toGrid = vec3(uGridShape - 1) / extent;
  float a = uLevels.x;
  float b = uLevels.y;
  float feature[NUM_FEATURES];
  for (int c = 0; c < NUM_FEATURES; c++) feature[c] = 0.0;
  float acc = 0.0;
  float transmittance = 1.0;

  vec3 ox = (o - uCentre) / uHalf;  // contracted: the ray in units of h, x(t) = ox + t dx
  vec3 dx = d / uHalf;
  float tNext = tNear;
  for (int k = 0; k < uMaxSteps; k++) {
    float t = uContracted ? tNext : tNear + float(k) * uStep;
    if (t >= tFar || transmittance < MIN_TRANSMITTANCE) break;
    vec3 p = o + t * d;
    if (uContracted) {
      float r = radiusOf(ox + t * dx);
      tNext = t + uStep * r * r;
      vec3 x = (p - uCentre) / uHalf;
      float rp = radiusOf(x);
      p = uCentre + uHalf * (x * ((2.0 - 1.0 / rp) / rp));
    }
    vec3 g = (p - uAabbMin) * toGrid;  // continuous vertex coordinates
    ivec3 cell = clamp(ivec3(floor(g)), ivec3(0), uGridShape - 2);
    vec3 f = g - vec3(cell);
    // Trilinear over the corners that lie in kept blocks; corners elsewhere hold 0 (not stored).
    // Sum w * (code - a) per channel and the corners' weight, then dequantize once:
    // sum_i w_i (lo + (q_i - a) * scale) = lo * sum_i w_i + scale * sum_i w_i (q_i - a).
    float codeSum[NUM_PLANES];
    for (int p = 0; p < NUM_PLANES; p++) codeSum[p] = 0.0;
    float weightSum = 0.0;
    bool occupied = false;
    for (int corner = 0; corner < 8; corner++) {
      ivec3 off = ivec3(corner & 1, (corner >> 1) & 1, corner >> 2);
      ivec3 v = cell + off;
      ivec2 tile = tileOf(v);
      if (tile.x < 0) continue;
      occupied = true;
      vec3 wv = mix(1.0 - f, f, vec3(off));
      float w = wv.x * wv.y * wv.z;
      ivec3 l = v & 3;  // vertex inside its block -> tile pixel (mapping.py)
      ivec2 px = tile * 8 + ivec2(l.x + 4 * (l.z & 1), l.y + 4 * (l.z >> 1));  // (col, row)
      weightSum += w;
      for (int p = 0; p < NUM_PLANES; p++) {
        ivec2 cellOrigin = ivec2(p % uMosaicCols, p / uMosaicCols) * uCellPitch;
        float q = float(texelFetch(uAtlas, cellOrigin + px, 0).r);
        codeSum[p] += w * (clamp(q, a, b) - a);
      }
    }
    if (!occupied) continue;  // empty cell: skipped, as in volume.sample_points
    float sigma = uLo[0] * weightSum + uScale[0] * codeSum[0];
    float tau = softplus(sigma + uDensityShift) * uStepRatio;
    float w = transmittance * (1.0 - exp(-tau));
    for (int c = 0; c < NUM_FEATURES; c++) {
      feature[c] += w * (uLo[c + 1] * weightSum + uScale[c + 1] * codeSum[c + 1]);
    }
    acc += w;
    transmittance *= exp(-tau);
  }

  vec3 rgb = uBackground;
  if (acc > 0.0) rgb = acc * mlp(feature, d) + (1.0 - acc) * uBackground;
  outColor = vec4(clamp(rgb, 0.0, 1.0), 1.0);
}
