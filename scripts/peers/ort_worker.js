// Peer worker: ONNX Runtime (npm onnxruntime-node, CPU execution provider) running the one-node
// models written by onnx_models.py, one intra-op thread, on the shared input files.
//
// Usage: node ort_worker.js MODEL_DIR   (onnxruntime-node is resolved through NODE_PATH)
// Protocol (README.md in this directory): one command per line on stdin, one JSON line on stdout.
//   info | run IMPL CAUSAL IN OUT | time IMPL CAUSAL IN REPS | quit
//   IMPL = mha | gqa | attention23; models are MODEL_DIR/<impl>_<causal|noncausal>.onnx
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const ort = require('onnxruntime-node');

const modelDir = process.argv[2];
if (!modelDir) {
  process.stderr.write('usage: node ort_worker.js MODEL_DIR\n');
  process.exit(2);
}

function countThreads() {
  try {
    return fs.readdirSync('/proc/self/task').length;
  } catch (e) {
    return -1;
  }
}

const threadsAtStart = countThreads();

// CPU time (clock ticks) of each thread of this process, from /proc/self/task/*/stat.
function threadTicks() {
  const ticks = {};
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'latin1');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks[tid] = Number(rest[11]) + Number(rest[12]);  // utime + stime
    } catch (e) {
      // the thread ended meanwhile
    }
  }
  return ticks;
}

// "FAPEERS1", int64 B, N, H, HKV, D, then float32 q [B,N,H*D], k and v [B,N,HKV*D].
function readInputs(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 48 || buf.toString('latin1', 0, 8) !== 'FAPEERS1') {
    throw new Error(`${file}: not a FAPEERS1 input file`);
  }
  const [b, n, h, hkv, d] = [0, 1, 2, 3, 4].map((i) => Number(buf.readBigInt64LE(8 + 8 * i)));
  const nq = b * n * h * d;
  const nkv = b * n * hkv * d;
  if (buf.length !== 48 + 4 * (nq + 2 * nkv)) throw new Error(`${file}: truncated`);
  // Copy into an aligned ArrayBuffer (a Buffer's offset need not be a multiple of 4).
  const all = new Float32Array(nq + 2 * nkv);
  new Uint8Array(all.buffer).set(buf.subarray(48));
  return {
    file, b, n, h, hkv, d,
    q: all.subarray(0, nq),
    k: all.subarray(nq, nq + nkv),
    v: all.subarray(nq + nkv),
  };
}

// One session per model file, created on first use.
const sessions = new Map();
const sessionOptions = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
};

async function session(impl, causal) {
  const file = path.join(modelDir, `${impl}_${causal ? 'causal' : 'noncausal'}.onnx`);
  if (!sessions.has(file)) {
    if (!fs.existsSync(file)) throw new Error(`no model ${file} (${impl} does not do this mask)`);
    sessions.set(file, await ort.InferenceSession.create(file, sessionOptions));
  }
  return sessions.get(file);
}

let inputs = null;
const feedCache = new Map();

function feeds(impl, sess) {
  const key = impl;
  if (feedCache.has(key)) return feedCache.get(key);
  const { b, n, h, hkv, d } = inputs;
  const q = new ort.Tensor('float32', inputs.q, [b, n, h * d]);
  const k = new ort.Tensor('float32', inputs.k, [b, n, hkv * d]);
  const v = new ort.Tensor('float32', inputs.v, [b, n, hkv * d]);
  let f;
  if (impl === 'gqa') {
    // Prompt processing without a past cache: every sequence has n tokens, so seqlens_k = n - 1
    // (the index of the last key) and total_sequence_length = n.
    f = {
      query: q, key: k, value: v,
      seqlens_k: new ort.Tensor('int32', Int32Array.from({ length: b }, () => n - 1), [b]),
      total_sequence_length: new ort.Tensor('int32', Int32Array.of(n), []),
    };
  } else if (impl === 'mha') {
    f = { query: q, key: k, value: v };
  } else {
    f = { Q: q, K: k, V: v };
  }
  // Only the attention output is fetched; GroupQueryAttention still writes its present K/V.
  const fetches = [sess.outputNames[0]];
  feedCache.set(key, { f, fetches });
  return feedCache.get(key);
}

function load(file) {
  if (inputs && inputs.file === file) return;
  inputs = readInputs(file);
  feedCache.clear();
}

async function runOnce(impl, causal) {
  const sess = await session(impl, causal);
  const { f, fetches } = feeds(impl, sess);
  const t0 = process.hrtime.bigint();
  const result = await sess.run(f, fetches);
  const t = Number(process.hrtime.bigint() - t0) * 1e-9;
  return { y: result[fetches[0]], t };
}

async function handle(line) {
  const parts = line.trim().split(/\s+/);
  const cmd = parts[0];
  if (cmd === 'info') {
    const pkg = require('onnxruntime-node/package.json');
    return {
      ok: true,
      onnxruntime_node_version: pkg.version,
      versions: ort.env.versions,
      session_options: sessionOptions,
      node_version: process.version,
      threads_at_start: threadsAtStart,
      threads: countThreads(),
    };
  }
  const [impl, causalText, file] = parts.slice(1, 4);
  const causal = causalText === '1';
  if (!['mha', 'gqa', 'attention23'].includes(impl) || !['0', '1'].includes(causalText) || !file) {
    return { ok: false, error: `bad command: ${line}` };
  }
  load(file);
  if (cmd === 'run') {
    const { y, t } = await runOnce(impl, causal);
    const data = y.data;
    fs.writeFileSync(parts[4], Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    return { ok: true, seconds: t, threads: countThreads() };
  }
  if (cmd === 'time') {
    const reps = Number(parts[4]);
    // Wall time per run, and the process CPU time per run (all threads of the Node process: it
    // stays close to the wall time only if one thread computes and the machine is not shared).
    // Per-thread CPU ticks over the call show which threads did the work.
    const times = [];
    const cpuTimes = [];
    const ticks0 = threadTicks();
    for (let r = 0; r < reps; ++r) {
      const cpu0 = process.cpuUsage();
      times.push((await runOnce(impl, causal)).t);
      const cpu = process.cpuUsage(cpu0);
      cpuTimes.push((cpu.user + cpu.system) * 1e-6);
    }
    const ticks = threadTicks();
    const threadCpuTicks = {};
    for (const tid of Object.keys(ticks)) threadCpuTicks[tid] = ticks[tid] - (ticks0[tid] || 0);
    return {
      ok: true, times_s: times, cpu_times_s: cpuTimes, threads: countThreads(),
      thread_cpu_ticks: threadCpuTicks, main_thread: String(process.pid),
    };
  }
  return { ok: false, error: `bad command: ${line}` };
}

// Commands are handled strictly one after another.
const rl = readline.createInterface({ input: process.stdin, terminal: false });
let chain = Promise.resolve();
rl.on('line', (line) => {
  if (!line.trim()) return;
  if (line.trim() === 'quit') {
    rl.close();
    return;
  }
  chain = chain.then(async () => {
    let reply;
    try {
      reply = await handle(line);
    } catch (e) {
      reply = { ok: false, error: String(e && e.message ? e.message : e) };
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
  });
});
rl.on('close', () => {
  chain.then(() => process.exit(0));
});
