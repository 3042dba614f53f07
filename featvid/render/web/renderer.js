// WebGL2 side of the player: textures (atlas codes, block lookup, MLP weights) and one
// full-screen draw of the ray-marching shader (raymarch.glsl).

export class RenderError extends Error {}

// RGBA bytes of what is drawn in the bound framebuffer, top row first (WebGL reads bottom-up);
// both renderers (ray marching, splats) read their canvas through this.
export function readCanvasPixels(gl, canvas) {
  const { width, height } = canvas;
  const px = new Uint8Array(width * height * 4);
  gl.readPixels(0, 0, width, height, gl.RGBA, gl.UNSIGNED_BYTE, px);
  const out = new Uint8Array(px.length);
  const row = width * 4;
  for (let y = 0; y < height; y++) out.set(px.subarray((height - 1 - y) * row, (height - y) * row), y * row);
  return out;
}

const MLP_TEX_WIDTH = 1024; // must match raymarch.glsl
const MAX_CONTRACTED_SAMPLES = 4096; // must match featvid/field/volume.py

const VERTEX_SHADER = `#version 300 es
// One triangle that covers the viewport; no vertex buffers needed.
void main() {
  vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
  gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}`;

function compile(gl, type, source) {
  const s = gl.createShader(type);
  gl.shaderSource(s, source);
  gl.compileShader(s);
  if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) {
    const log = gl.getShaderInfoLog(s);
    gl.deleteShader(s);
    throw new RenderError(`shader does not compile: ${log}`);
  }
  return s;
}

export class Renderer {
  // canvas: HTMLCanvasElement; manifest: the stream's; mlp: {config, weights}; fragmentSource: raymarch.glsl
  constructor(canvas, manifest, mlp, fragmentSource) {
    // preserveDrawingBuffer: the test hook reads the canvas back after drawing.
    const gl = canvas.getContext("webgl2", { antialias: false, depth: false, alpha: false, preserveDrawingBuffer: true });
    if (!gl) throw new RenderError("this browser has no WebGL2");
    this.gl = gl;
    this.canvas = canvas;
    this.manifest = manifest;
    const c = mlp.config;
    const defines = `#version 300 es
#define NUM_FEATURES ${c.in_features}
#define HIDDEN ${c.hidden}
#define LAYERS ${c.layers}
#define VIEW_FREQS ${c.view_freqs}
`;
    const program = gl.createProgram();
    gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VERTEX_SHADER));
    gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, defines + fragmentSource));
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new RenderError(`shader does not link: ${gl.getProgramInfoLog(program)}`);
    this.program = program;
    gl.useProgram(program);
    this.vao = gl.createVertexArray();
    this.loc = {};
    for (let i = 0; i < gl.getProgramParameter(program, gl.ACTIVE_UNIFORMS); i++) {
      const name = gl.getActiveUniform(program, i).name.replace(/\[0\]$/, "");
      this.loc[name] = gl.getUniformLocation(program, name);
    }
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);

    this.atlasTex = this._texture(0, gl.TEXTURE_2D);
    this.blockTex = this._texture(1, gl.TEXTURE_3D);
    this.mlpTex = this._texture(2, gl.TEXTURE_2D);
    gl.uniform1i(this.loc.uAtlas, 0);
    gl.uniform1i(this.loc.uBlocks, 1);
    gl.uniform1i(this.loc.uMlp, 2);

    // MLP weights: a float texture, flat, MLP_TEX_WIDTH per row (read with texelFetch, no filtering).
    const rows = Math.ceil(mlp.weights.length / MLP_TEX_WIDTH);
    const padded = new Float32Array(rows * MLP_TEX_WIDTH);
    padded.set(mlp.weights);
    gl.activeTexture(gl.TEXTURE2);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.R32F, MLP_TEX_WIDTH, rows, 0, gl.RED, gl.FLOAT, padded);

    // Scene constants.
    const m = manifest;
    const [lo, hi] = m.aabb;
    const shape = m.grid_shape;
    const voxel = Math.max(...[0, 1, 2].map((i) => (hi[i] - lo[i]) / (shape[i] - 1)));
    const step = m.render.step_ratio * voxel;
    const diagonal = Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]);
    gl.uniform3fv(this.loc.uAabbMin, lo);
    gl.uniform3fv(this.loc.uAabbMax, hi);
    gl.uniform3iv(this.loc.uGridShape, shape);
    gl.uniform1f(this.loc.uStep, step);
    gl.uniform1f(this.loc.uStepRatio, m.render.step_ratio);
    gl.uniform1f(this.loc.uNear, m.render.near || 0);
    gl.uniform1f(this.loc.uDensityShift, m.render.density_shift);
    gl.uniform3fv(this.loc.uBackground, m.render.background);
    // A contracted grid (volume.py): inner box c +- h (the box's middle half), samples stop at r_far,
    // the inf-norm radius where the contraction is half a voxel short of the faces (volume.far_radius).
    const contracted = m.render.space === "contracted";
    const centre = [0, 1, 2].map((i) => (lo[i] + hi[i]) / 2);
    const half = [0, 1, 2].map((i) => (hi[i] - lo[i]) / 4);
    const halfVoxel = 0.5 * Math.max(...[0, 1, 2].map((i) => (hi[i] - lo[i]) / (shape[i] - 1) / half[i]));
    gl.uniform1i(this.loc.uContracted, contracted ? 1 : 0);
    gl.uniform3fv(this.loc.uCentre, centre);
    gl.uniform3fv(this.loc.uHalf, half);
    gl.uniform1f(this.loc.uRFar, 1 / halfVoxel);
    // contracted: the reference's cap on samples a ray (volume.MAX_CONTRACTED_SAMPLES)
    gl.uniform1i(this.loc.uMaxSteps, contracted ? MAX_CONTRACTED_SAMPLES : Math.ceil(diagonal / step) + 1);
    this.gopKey = null; // which GOP (and rendition) the textures hold
    this.atlasSize = [0, 0];
  }

  _texture(unit, target) {
    const gl = this.gl;
    const t = gl.createTexture();
    gl.activeTexture(gl.TEXTURE0 + unit);
    gl.bindTexture(target, t);
    // Integer and float textures are read with texelFetch only: no filtering, no mipmaps.
    gl.texParameteri(target, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(target, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    gl.texParameteri(target, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(target, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    return t;
  }

  // Switch to a GOP in one rendition (`key` names the pair): its block lookup, quantization ranges
  // (info: the manifest's GOP), the rendition's code range `levels` and mosaic geometry (cols and
  // the cells' pitch).
  setGop(key, info, mosaic, levels, lookup) {
    const gl = this.gl;
    gl.useProgram(this.program);
    gl.activeTexture(gl.TEXTURE1);
    const [nbx, nby, nbz] = lookup.size;
    gl.texImage3D(gl.TEXTURE_3D, 0, gl.RG16I, nbx, nby, nbz, 0, gl.RG_INTEGER, gl.SHORT, lookup.table);
    const [a, b] = levels;
    gl.uniform2fv(this.loc.uLevels, levels);
    gl.uniform1fv(this.loc.uLo, info.ranges.map((r) => r[0]));
    gl.uniform1fv(this.loc.uScale, info.ranges.map((r) => (r[1] - r[0]) / (b - a)));
    gl.uniform1i(this.loc.uMosaicCols, mosaic.cols);
    gl.uniform2i(this.loc.uCellPitch, mosaic.cell_width, mosaic.cell_height);  // stream.js fills them in
    const { width, height } = mosaic;
    if (this.atlasSize[0] !== width || this.atlasSize[1] !== height) {
      gl.activeTexture(gl.TEXTURE0);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.R8UI, width, height, 0, gl.RED_INTEGER, gl.UNSIGNED_BYTE, null);
      this.atlasSize = [width, height];
    }
    this.gopKey = key;
  }

  // Upload one decoded luma plane (Uint8Array, mosaic width x height, top row first).
  setFrame(luma) {
    const gl = this.gl;
    gl.activeTexture(gl.TEXTURE0);
    gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, this.atlasSize[0], this.atlasSize[1], gl.RED_INTEGER, gl.UNSIGNED_BYTE, luma);
  }

  // Draw with camera {c2w: 16 numbers row-major (OpenCV), K: 9 numbers row-major, width, height}.
  draw(camera) {
    const gl = this.gl;
    const { c2w, K, width, height } = camera;
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    gl.viewport(0, 0, width, height);
    gl.useProgram(this.program);
    // uniformMatrix3fv takes column-major: column j = (c2w[0][j], c2w[1][j], c2w[2][j]).
    gl.uniformMatrix3fv(this.loc.uRotation, false, [c2w[0], c2w[4], c2w[8], c2w[1], c2w[5], c2w[9], c2w[2], c2w[6], c2w[10]]);
    gl.uniform3f(this.loc.uOrigin, c2w[3], c2w[7], c2w[11]);
    gl.uniform4f(this.loc.uIntrinsics, K[0], K[4], K[2], K[5]);
    gl.uniform1f(this.loc.uHeight, height);
    gl.bindVertexArray(this.vao);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
  }

  // The GPU's name, as far as the browser tells it.
  description() {
    const gl = this.gl;
    const info = gl.getExtension("WEBGL_debug_renderer_info");
    return String(info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER));
  }

  // RGBA bytes of the canvas, top row first.
  readPixels() {
    return readCanvasPixels(this.gl, this.canvas);
  }

  // Wait until the GPU has finished the last draw (for honest timings).
  finish() {
    const px = new Uint8Array(4);
    this.gl.readPixels(0, 0, 1, 1, this.gl.RGBA, this.gl.UNSIGNED_BYTE, px);
  }
}
