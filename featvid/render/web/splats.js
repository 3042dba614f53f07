// WebGL2 splat renderer for Gaussian streams (`"representation": "gaussians"`, docs/gaussians.md):
// one frame's 3D Gaussians drawn as instanced screen-space quads, sorted back to front by a
// worker (splatworker.js) and blended with premultiplied alpha. The math is the Python reference
// rasterizer's (featvid/gaussians/raster.py, EWA splatting as in 3DGS):
//
//   Σ = R S S^T R^T (R from the normalised quaternion, S = diag(exp(log_scales)))
//   camera point t = W m + w, culled at tz <= 0.01; J = [[fx/tz, 0, -fx tx'/tz^2], [0, fy/tz, -fy ty'/tz^2]]
//   with (tx', ty') the view direction clamped to 1.3x the field of view
//   Σ' = J W Σ W^T J^T + 0.3 I; mean' = (fx tx/tz + cx, fy ty/tz + cy) in pixels (centres at +0.5)
//   α = min(0.99, sigmoid(opacity) * exp(-0.5 d^T Σ'^-1 d)), skipped below 1/255
//   colour = max(SH(normalize(m - eye)) . sh + 0.5, 0) up to degree 3
//   C = Σ_i c_i α_i Π_{j<i} (1 - α_j) + background * Π_j (1 - α_j), nearest first (ties by index)
//
// Back to front with blend (ONE, ONE_MINUS_SRC_ALPHA) over the background computes the same sum.
// The one step it cannot take is the reference's early stop once transmittance falls below 1e-4,
// which changes a pixel by less than 1e-4.
// It is accumulated in a float framebuffer where the browser can render to one (an 8-bit one
// would round after every one of the overlapping splats), then copied to the canvas.
//
// Per-Gaussian attributes live in one RGBA32F texture, TEXELS texels per Gaussian: (mean, opacity),
// the 3D covariance (6 numbers in 2 texels), then the SH coefficients, coefficient k channel c at
// float 3k + c. The vertex shader reads them by the instance's index in the sorted order.

import { decodeFrame, gopPlan } from "./gaussians.js";
import { sortBackToFront } from "./splatsort.js";
import { readCanvasPixels } from "./renderer.js";

export class SplatError extends Error {}

const TEX_WIDTH = 4096; // texels per row of the attribute texture
const TEXELS = 16; // texels per Gaussian: 1 mean/opacity + 2 covariance + 12 SH (degree 3: 48 floats)
const SH_C0 = 0.28209479177387814;
const NEAR = 0.01; // world units (raster.py NEAR)
const EPS2D = 0.3; // low-pass dilation, pixels² (raster.py EPS2D)

const VERTEX_SHADER = `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;
uniform sampler2D uData;
uniform mat3 uRot;   // world -> camera rotation
uniform vec3 uTrans; // world -> camera translation
uniform vec3 uEye;   // camera centre, world
uniform vec4 uK;     // fx, fy, cx, cy (pixels)
uniform vec2 uSize;  // image width, height (pixels)
uniform float uNear;
uniform float uLowPass;
uniform vec4 uLimits; // Jacobian clamp of (x/z, y/z): -lim_x-, -lim_y-, lim_x+, lim_y+
in uint aIndex; // per instance: which Gaussian (sorted back to front)
flat out vec3 vColor;
flat out float vOpacity;
flat out vec3 vConic; // inverse 2D covariance (a, b, c) of [[a, b], [b, c]]
flat out vec2 vMean;  // projected mean, pixels (x right, y down)

vec4 fetch(int i) {
  int t = int(aIndex) * ${TEXELS} + i;
  return texelFetch(uData, ivec2(t % ${TEX_WIDTH}, t / ${TEX_WIDTH}), 0);
}

const float C1 = 0.4886025119029199;
const float C2[5] = float[5](1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396);
const float C3[7] = float[7](-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
                             -0.4570457994644658, 1.445305721320277, -0.5900435899266435);

vec3 shColor(vec3 dir) {
  float f[48];
  for (int i = 0; i < 12; i++) {
    vec4 v = fetch(3 + i);
    f[4 * i] = v.x; f[4 * i + 1] = v.y; f[4 * i + 2] = v.z; f[4 * i + 3] = v.w;
  }
  #define SH(k) vec3(f[3 * (k)], f[3 * (k) + 1], f[3 * (k) + 2])
  vec3 c = ${SH_C0} * SH(0);
#if SH_DEGREE > 0
  float x = dir.x, y = dir.y, z = dir.z;
  c += -C1 * y * SH(1) + C1 * z * SH(2) - C1 * x * SH(3);
#endif
#if SH_DEGREE > 1
  float xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
  c += C2[0] * xy * SH(4) + C2[1] * yz * SH(5) + C2[2] * (2.0 * zz - xx - yy) * SH(6) + C2[3] * xz * SH(7) +
       C2[4] * (xx - yy) * SH(8);
#endif
#if SH_DEGREE > 2
  c += C3[0] * y * (3.0 * xx - yy) * SH(9) + C3[1] * xy * z * SH(10) + C3[2] * y * (4.0 * zz - xx - yy) * SH(11) +
       C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy) * SH(12) + C3[4] * x * (4.0 * zz - xx - yy) * SH(13) +
       C3[5] * z * (xx - yy) * SH(14) + C3[6] * x * (xx - 3.0 * yy) * SH(15);
#endif
  return max(c + 0.5, 0.0);
}

void main() {
  const vec4 CULLED = vec4(0.0, 0.0, 2.0, 1.0); // outside the clip volume: no fragments
  vec4 m = fetch(0);
  vec3 t = uRot * m.xyz + uTrans;
  if (t.z <= uNear || 255.0 * m.w <= 1.0) { gl_Position = CULLED; return; }
  vec4 c0 = fetch(1), c1 = fetch(2);
  mat3 sigma = mat3(c0.x, c0.y, c0.z, c0.y, c0.w, c1.x, c0.z, c1.x, c1.y);
  float tx = t.z * clamp(t.x / t.z, uLimits.x, uLimits.z), ty = t.z * clamp(t.y / t.z, uLimits.y, uLimits.w);
  // J as a mat3 (columns) with a zero third row: only the top-left 2x2 of the product is used.
  mat3 J = mat3(uK.x / t.z, 0.0, 0.0, 0.0, uK.y / t.z, 0.0, -uK.x * tx / (t.z * t.z), -uK.y * ty / (t.z * t.z), 0.0);
  mat3 T = J * uRot;
  mat3 cov = T * sigma * transpose(T);
  float a = cov[0][0] + uLowPass, b = cov[0][1], c = cov[1][1] + uLowPass;
  float det = a * c - b * b;
  if (det <= 0.0) { gl_Position = CULLED; return; }
  vConic = vec3(c, -b, a) / det;
  vMean = vec2(uK.x * t.x / t.z + uK.z, uK.y * t.y / t.z + uK.w);
  if (any(isinf(vMean)) || any(isnan(vMean))) { gl_Position = CULLED; return; }
  vOpacity = m.w;
  vColor = shColor(normalize(m.xyz - uEye));
  // The quad: the ellipse where opacity * exp(-0.5 r^2) >= 1/255, along Σ' eigenvectors.
  float mid = 0.5 * (a + c), rad = sqrt(max(0.25 * (a - c) * (a - c) + b * b, 0.0));
  float l1 = mid + rad, l2 = max(mid - rad, 0.0);
  vec2 v1 = abs(b) > 1e-12 * (a + c) ? normalize(vec2(b, l1 - a)) : (a >= c ? vec2(1.0, 0.0) : vec2(0.0, 1.0));
  vec2 v2 = vec2(-v1.y, v1.x);
  float k = sqrt(2.0 * log(255.0 * m.w));
  vec2 corner = vec2(float(gl_VertexID & 1), float(gl_VertexID >> 1)) * 2.0 - 1.0;
  vec2 p = vMean + corner.x * (k * sqrt(l1) + 1.0) * v1 + corner.y * (k * sqrt(l2) + 1.0) * v2; // +1 px: margin
  gl_Position = vec4(2.0 * p.x / uSize.x - 1.0, 1.0 - 2.0 * p.y / uSize.y, 0.0, 1.0);
}`;

const FRAGMENT_SHADER = `#version 300 es
precision highp float;
uniform vec2 uSize;
flat in vec3 vColor;
flat in float vOpacity;
flat in vec3 vConic;
flat in vec2 vMean;
out vec4 outColor;
void main() {
  vec2 d = vec2(gl_FragCoord.x, uSize.y - gl_FragCoord.y) - vMean; // pixel centre, y down
  float power = -0.5 * (vConic.x * d.x * d.x + vConic.z * d.y * d.y) - vConic.y * d.x * d.y;
  if (power > 0.0) discard;
  float alpha = min(0.99, vOpacity * exp(power));
  if (alpha < 1.0 / 255.0) discard;
  outColor = vec4(vColor * alpha, alpha); // premultiplied
}`;

// Copy of the float accumulation buffer to the canvas (one full-screen triangle).
const COPY_VERTEX = `#version 300 es
void main() {
  vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
  gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}`;
const COPY_FRAGMENT = `#version 300 es
precision highp float;
uniform highp sampler2D uImage;
out vec4 outColor;
void main() { outColor = vec4(clamp(texelFetch(uImage, ivec2(gl_FragCoord.xy), 0).rgb, 0.0, 1.0), 1.0); }`;

function program(gl, vs, fs) {
  const compile = (type, src) => {
    const s = gl.createShader(type);
    gl.shaderSource(s, src);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new SplatError(`splat shader does not compile: ${gl.getShaderInfoLog(s)}`);
    return s;
  };
  const p = gl.createProgram();
  gl.attachShader(p, compile(gl.VERTEX_SHADER, vs));
  gl.attachShader(p, compile(gl.FRAGMENT_SHADER, fs));
  gl.linkProgram(p);
  if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new SplatError(`splat shader does not link: ${gl.getProgramInfoLog(p)}`);
  const loc = {};
  for (let i = 0; i < gl.getProgramParameter(p, gl.ACTIVE_UNIFORMS); i++) {
    const name = gl.getActiveUniform(p, i).name;
    loc[name] = gl.getUniformLocation(p, name);
  }
  return { p, loc };
}

// Raw 3DGS parameters (as PLY files and featvid's Gaussians hold them) -> what the shader reads:
// {count, shDegree, means [N*3], opacity [N] (activated), cov [N*6] (xx, xy, xz, yy, yz, zz), sh [N*K*3]}.
// raw: {means [N*3], sh [N*K*3] (coefficient-major, channel fastest), opacity [N] (logit),
// log_scales [N*3], quats [N*4] (w, x, y, z)}, flat arrays. Computed in double precision.
export function activateGaussians(raw) {
  const n = raw.opacity.length;
  const k = raw.sh.length / (3 * n);
  const shDegree = Math.round(Math.sqrt(k)) - 1;
  if (!Number.isInteger(k) || (shDegree + 1) ** 2 !== k || shDegree > 3) {
    throw new SplatError(`Gaussians: ${raw.sh.length} SH numbers for ${n} Gaussians is not degree 0..3`);
  }
  const opacity = new Float32Array(n);
  const cov = new Float32Array(6 * n);
  for (let i = 0; i < n; i++) {
    opacity[i] = 1 / (1 + Math.exp(-raw.opacity[i]));
    let [w, x, y, z] = [raw.quats[4 * i], raw.quats[4 * i + 1], raw.quats[4 * i + 2], raw.quats[4 * i + 3]];
    const l = Math.hypot(w, x, y, z) || 1;
    w /= l; x /= l; y /= l; z /= l;
    const R = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
               2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
               2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)];
    const s = [0, 1, 2].map((a) => Math.exp(2 * raw.log_scales[3 * i + a])); // variances
    const sig = (r, c) => R[3 * r] * R[3 * c] * s[0] + R[3 * r + 1] * R[3 * c + 1] * s[1] + R[3 * r + 2] * R[3 * c + 2] * s[2];
    cov.set([sig(0, 0), sig(0, 1), sig(0, 2), sig(1, 1), sig(1, 2), sig(2, 2)], 6 * i);
  }
  return { count: n, shDegree, means: Float32Array.from(raw.means), opacity, cov, sh: Float32Array.from(raw.sh) };
}

export class SplatRenderer {
  // canvas: HTMLCanvasElement; options: {background [3] (RGB 0..1), near (world units), worker:
  // false sorts on the main thread, stream: the manifest's gaussians block (for setGop/setFrame)}.
  // The rest is raster.py's: low-pass 0.3, Jacobian clamp at 1.3x the field of view.
  constructor(canvas, { background = [0, 0, 0], near = NEAR, worker = true, stream = null } = {}) {
    const gl = canvas.getContext("webgl2", { antialias: false, depth: false, alpha: false, preserveDrawingBuffer: true });
    if (!gl) throw new SplatError("this browser has no WebGL2");
    this.gl = gl;
    this.canvas = canvas;
    this.background = background;
    this.near = near;
    this.stream = stream;
    this.programs = new Map(); // SH degree -> compiled splat program
    this.copy = program(gl, COPY_VERTEX, COPY_FRAGMENT);
    this.vao = gl.createVertexArray(); // the splats' instanced index attribute
    this.copyVao = gl.createVertexArray(); // none: the copy pass draws from gl_VertexID alone
    this.indexBuffer = gl.createBuffer();
    this.dataTex = gl.createTexture();
    this._params(this.dataTex);
    this.gaussians = null;
    this.version = 0; // bumped by every setGaussians: a sort belongs to one version
    this.order = null; // {version, key, indices: Uint32Array}: the order the index buffer holds
    this.waiting = new Map(); // view key -> [resolve] of prepare() calls
    this.onSorted = null; // called when a sort for a newer view arrives (the player redraws)
    this.gopKey = null;
    // A float accumulation buffer when the browser renders (and blends) into one.
    this.floatFormat = gl.getExtension("EXT_color_buffer_float")
      ? (gl.getExtension("EXT_float_blend") ? gl.RGBA32F : gl.RGBA16F) : null;
    this.fbo = null;
    this.fboSize = [0, 0];
    this.worker = null;
    if (worker && typeof Worker !== "undefined") {
      try {
        this.worker = new Worker(new URL("./splatworker.js", import.meta.url), { type: "module" });
        this.worker.onmessage = (e) => this._sorted(e.data);
        this.worker.onerror = () => { this.worker = null; }; // sort on this thread from now on
      } catch (e) {
        this.worker = null;
      }
    }
  }

  _params(tex) {
    const gl = this.gl;
    gl.bindTexture(gl.TEXTURE_2D, tex);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  }

  _program(degree) {
    if (!this.programs.has(degree)) {
      const vs = VERTEX_SHADER.replace("precision highp float;", `#define SH_DEGREE ${degree}\nprecision highp float;`);
      this.programs.set(degree, program(this.gl, vs, FRAGMENT_SHADER));
    }
    return this.programs.get(degree);
  }

  // One frame's Gaussians, activated (see activateGaussians). Uploads the attribute texture and
  // hands the means to the sort worker.
  setGaussians(g) {
    const gl = this.gl;
    const n = g.count;
    const k = (g.shDegree + 1) ** 2;
    const rows = Math.max(1, Math.ceil((n * TEXELS) / TEX_WIDTH));
    const data = new Float32Array(rows * TEX_WIDTH * 4);
    for (let i = 0; i < n; i++) {
      const o = i * TEXELS * 4;
      data[o] = g.means[3 * i]; data[o + 1] = g.means[3 * i + 1]; data[o + 2] = g.means[3 * i + 2];
      data[o + 3] = g.opacity[i];
      data.set(g.cov.subarray(6 * i, 6 * i + 6), o + 4);
      data.set(g.sh.subarray(3 * k * i, 3 * k * (i + 1)), o + 12);
    }
    gl.bindTexture(gl.TEXTURE_2D, this.dataTex);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA32F, TEX_WIDTH, rows, 0, gl.RGBA, gl.FLOAT, data);
    const sameIds = this.gaussians && this.gaussians.count === n; // an older order still draws every index
    this.gaussians = g;
    this.version++;
    if (!sameIds) this.order = null;
    if (this.worker) this.worker.postMessage({ positions: Float32Array.from(g.means), version: this.version });
  }

  // The player's side (as Renderer's): switch to a GOP in one rendition (`key` names the pair):
  // info: the manifest's GOP, mosaic geometry, the rendition's code range `levels`, the GOP's
  // layout (gaussians.js parseLayout).
  setGop(key, info, mosaic, levels, layout) {
    if (!this.stream) throw new SplatError("this splat renderer was made without a stream's gaussians block");
    this.plan = gopPlan(info, mosaic, levels, layout, this.stream);
    this.gopKey = key;
  }

  // Frame f of the current GOP from its decoded luma mosaic: dequantized, activated, uploaded.
  setFrame(luma, f) {
    this.setGaussians(activateGaussians(decodeFrame(this.plan, luma, f)));
  }

  // camera {c2w, K, width, height} -> world->camera rotation (row-major 9), translation, eye.
  static viewOf(camera) {
    const c = camera.c2w;
    const R = [c[0], c[4], c[8], c[1], c[5], c[9], c[2], c[6], c[10]]; // transpose of c2w's rotation
    const eye = [c[3], c[7], c[11]];
    const t = [0, 1, 2].map((r) => -(R[3 * r] * eye[0] + R[3 * r + 1] * eye[1] + R[3 * r + 2] * eye[2]));
    return { R, t, eye };
  }

  _request(camera) {
    const { R, t } = SplatRenderer.viewOf(camera);
    const row = [R[6], R[7], R[8], t[2]];
    const key = `${this.version}:${row.join(",")}`;
    if (this.order && this.order.key === key) return key;
    if (this.pendingKey === key) return key;
    this.pendingKey = key;
    if (this.worker) {
      this.worker.postMessage({ row, near: this.near, version: this.version, key });
    } else {
      this._sorted({ order: sortBackToFront(this.gaussians.means, row, this.near), version: this.version, key });
    }
    return key;
  }

  _sorted({ order, version, key }) {
    if (version !== this.version) return; // for a frame since replaced
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.indexBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, order, gl.DYNAMIC_DRAW);
    this.order = { version, key, count: order.length };
    if (this.pendingKey === key) this.pendingKey = null;
    for (const resolve of this.waiting.get(key) || []) resolve();
    this.waiting.delete(key);
    if (this.onSorted) this.onSorted();
  }

  // Resolves once the Gaussians are sorted for `camera` (draw then shows the exact order).
  prepare(camera) {
    if (!this.gaussians) return Promise.resolve();
    const key = this._request(camera);
    if (this.order && this.order.key === key) return Promise.resolve();
    return new Promise((resolve) => {
      if (!this.waiting.has(key)) this.waiting.set(key, []);
      this.waiting.get(key).push(resolve);
    });
  }

  _target(width, height) {
    const gl = this.gl;
    if (!this.floatFormat) return null;
    if (!this.fbo || this.fboSize[0] !== width || this.fboSize[1] !== height) {
      if (!this.fbo) {
        this.fbo = gl.createFramebuffer();
        this.fboTex = gl.createTexture();
        this._params(this.fboTex);
      }
      gl.bindTexture(gl.TEXTURE_2D, this.fboTex);
      const type = this.floatFormat === gl.RGBA32F ? gl.FLOAT : gl.HALF_FLOAT;
      gl.texImage2D(gl.TEXTURE_2D, 0, this.floatFormat, width, height, 0, gl.RGBA, type, null);
      gl.bindFramebuffer(gl.FRAMEBUFFER, this.fbo);
      gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, this.fboTex, 0);
      if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) !== gl.FRAMEBUFFER_COMPLETE) {
        gl.bindFramebuffer(gl.FRAMEBUFFER, null);
        this.floatFormat = null; // draw straight to the canvas
        return null;
      }
      this.fboSize = [width, height];
    }
    return this.fbo;
  }

  // Draw with camera {c2w: 16 numbers row-major (OpenCV), K: 9 numbers row-major, width, height},
  // in the latest order sorted (a new sort for this view is requested; onSorted says when it lands).
  draw(camera) {
    const gl = this.gl;
    const { K, width, height } = camera;
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    const fbo = this._target(width, height);
    gl.bindFramebuffer(gl.FRAMEBUFFER, fbo);
    gl.viewport(0, 0, width, height);
    const [r, g, b] = this.background;
    gl.clearColor(r, g, b, 0);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (this.gaussians) {
      this._request(camera);
      if (this.order) {
        const { R, t, eye } = SplatRenderer.viewOf(camera);
        const { p, loc } = this._program(this.gaussians.shDegree);
        gl.useProgram(p);
        gl.activeTexture(gl.TEXTURE0);
        gl.bindTexture(gl.TEXTURE_2D, this.dataTex);
        gl.uniform1i(loc.uData, 0);
        gl.uniformMatrix3fv(loc.uRot, true, R);
        gl.uniform3fv(loc.uTrans, t);
        gl.uniform3fv(loc.uEye, eye);
        gl.uniform4f(loc.uK, K[0], K[4], K[2], K[5]);
        gl.uniform2f(loc.uSize, width, height);
        gl.uniform1f(loc.uNear, this.near);
        gl.uniform1f(loc.uLowPass, EPS2D);
        // raster.py step 3: lim_x+ = (width - cx)/fx + 0.3 width/(2 fx), lim_x- = cx/fx + 0.3 width/(2 fx)
        const [tanX, tanY] = [(0.3 * 0.5 * width) / K[0], (0.3 * 0.5 * height) / K[4]];
        gl.uniform4f(loc.uLimits, -(K[2] / K[0] + tanX), -(K[5] / K[4] + tanY),
                     (width - K[2]) / K[0] + tanX, (height - K[5]) / K[4] + tanY);
        gl.bindVertexArray(this.vao);
        gl.bindBuffer(gl.ARRAY_BUFFER, this.indexBuffer);
        const at = gl.getAttribLocation(p, "aIndex");
        gl.enableVertexAttribArray(at);
        gl.vertexAttribIPointer(at, 1, gl.UNSIGNED_INT, 0, 0);
        gl.vertexAttribDivisor(at, 1);
        gl.enable(gl.BLEND);
        gl.blendFuncSeparate(gl.ONE, gl.ONE_MINUS_SRC_ALPHA, gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
        gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, this.order.count);
        gl.disable(gl.BLEND);
        gl.bindVertexArray(null);
      }
    }
    if (fbo) { // the float image to the canvas
      gl.bindFramebuffer(gl.FRAMEBUFFER, null);
      gl.useProgram(this.copy.p);
      gl.activeTexture(gl.TEXTURE0);
      gl.bindTexture(gl.TEXTURE_2D, this.fboTex);
      gl.uniform1i(this.copy.loc.uImage, 0);
      gl.bindVertexArray(this.copyVao);
      gl.drawArrays(gl.TRIANGLES, 0, 3);
      gl.bindVertexArray(null);
    }
  }

  description() {
    const gl = this.gl;
    const info = gl.getExtension("WEBGL_debug_renderer_info");
    const name = String(info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER));
    const acc = this.floatFormat === gl.RGBA32F ? "float32" : this.floatFormat ? "float16" : "8-bit";
    return `${name}; splats, ${acc} accumulation, sort ${this.worker ? "in a worker" : "on the main thread"}`;
  }

  // RGBA bytes of the canvas, top row first.
  readPixels() {
    this.gl.bindFramebuffer(this.gl.FRAMEBUFFER, null);  // the canvas, not the accumulation buffer
    return readCanvasPixels(this.gl, this.canvas);
  }

  finish() {
    const gl = this.gl;
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));
  }
}
