#!/usr/bin/python3
"""Times fastattn's Exact<float> next to ONNX Runtime and ggml on the same inputs, one thread.

Started by scripts/bench-peers.sh (which installs the peers and builds the workers); writes
peers.json (schema in scripts/peers/README.md). Steps:
  1. seeded inputs written once to FAPEERS1 files that every worker reads;
  2. each implementation checked against a float64 reference on small cases (full output) and on
     the timed shapes (a subset of query rows); a failing one is reported, not timed;
  3. a probe of whether ORT's kernels take their flash paths (ORT's own switches turned off in a
     second worker, interleaved with the default one);
  4. interleaved timing rounds over the implementations, this machine's FMA peak sampled between
     the cases by the fastattn worker (bench/common.hpp's fma_chains).
Each worker is a long-lived process answering one JSON line per command (README.md).
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx_models  # noqa: E402

SCHEMA_VERSION = 1

# Check tolerances on the maximum absolute error against float64, for iid N(0, 1) inputs, D = 64,
# scale 1/8 (outputs are convex combinations of V rows, |out| < 4.5 here).
#  - float32 end to end: a logit s q.k carries a rounding error of at most ~D u |q||k| s
#    ~ 64 * 6e-8 * 64 * 0.125 = 3e-5 (u = 2^-24), which moves an output by at most about that
#    times max|v|; measured errors are ~1e-6. 2e-4 leaves margin for approximate exp routines
#    and still catches a wrong mask, scale or layout (errors of order 0.1 or more).
#  - F16 K/V (ggml): rounding K and V to binary16 (u = 2^-11 = 4.9e-4) moves logits by ~3e-4 (rms)
#    and outputs by up to u max|v| ~ 2e-3; measured <= 1e-3 at N = 77 and 256 (and ~1e-6 against
#    a reference on the rounded K/V); 2e-2 is 10x the bound.
TOL_F32 = 2e-4
TOL_F16 = 2e-2

# The implementations, in the order of a timing round.
IMPLEMENTATIONS = [
    {
        "id": "fastattn.exact", "worker": "fastattn", "impl": "exact",
        "name": "fastattn Exact<float>",
        "library": "fastattn",
        "modes": ["noncausal", "causal"], "headline_modes": ["noncausal", "causal"],
        "tolerance_max_abs": TOL_F32,
        "api": "fastattn::multihead(fastattn::Exact<float>(), TensorView::bnhd(q|k|v), "
               "TensorView::bnhd(out), MultiheadOptions{threads = 1, causal})",
        "computes": {
            "noncausal": "blocked online softmax over [B, N, H, D] strided head views (no copies); "
                         "float32 storage and accumulation",
            "causal": "the same kernel; key blocks entirely above the diagonal are skipped",
        },
        "differences": "The reference implementation of this comparison.",
        "timing_scope": "one multihead() call (C++ process, steady clock)",
    },
    {
        "id": "ort.mha", "worker": "ort", "impl": "mha",
        "name": "ONNX Runtime com.microsoft.MultiHeadAttention",
        "library": "onnxruntime",
        "modes": ["noncausal", "causal"], "headline_modes": ["noncausal"],
        "tolerance_max_abs": TOL_F32,
        "api": "InferenceSession.run on a one-node model (onnxruntime-node, CPU execution provider, "
               "intraOpNumThreads = interOpNumThreads = 1, sequential execution)",
        "computes": {
            "noncausal": "copies Q, K, V from [B, N, H*D] to [B, H, N, D], then MLAS flash "
                         "attention (MlasFlashAttention: tiles sized from the L2 cache), float32",
            "causal": "unidirectional = 1 leaves the MLAS flash path: ORT's unfused attention "
                      "(full [B, H, N, N] probabilities, GEMM, softmax, GEMM); shown for "
                      "reference only, ORT's causal flash kernel is GroupQueryAttention",
        },
        "differences": "Includes the layout copies to [B, H, N, D]. Causal MultiHeadAttention is "
                       "not on the flash path (see ort_flash_path_probe), so ort.gqa is the "
                       "headline ORT entry for causal attention.",
        "timing_scope": "one session.run() from Node.js, fetching only the attention output "
                        "(includes the binding's call overhead and the copy of the output into a "
                        "JavaScript buffer)",
    },
    {
        "id": "ort.gqa", "worker": "ort", "impl": "gqa",
        "name": "ONNX Runtime com.microsoft.GroupQueryAttention",
        "library": "onnxruntime",
        "modes": ["causal"], "headline_modes": ["causal"],
        "tolerance_max_abs": TOL_F32,
        "api": "as ort.mha; inputs seqlens_k = N - 1, total_sequence_length = N, no past cache",
        "computes": {
            "causal": "prompt processing without a past cache, kv_num_heads = num_heads; writes "
                      "present_key/present_value ([B, H_kv, N, D] copies of K and V, which its "
                      "CPU flash path requires) besides the output",
        },
        "differences": "Causal only (the operator has no non-causal mode). Its time includes "
                       "writing the present K/V cache outputs and the layout copies.",
        "timing_scope": "as ort.mha",
    },
    {
        "id": "ort.attention23", "worker": "ort", "impl": "attention23",
        "name": "ONNX Runtime ONNX Attention (opset 23)",
        "library": "onnxruntime",
        "modes": ["noncausal", "causal"], "headline_modes": ["noncausal", "causal"],
        "tolerance_max_abs": TOL_F32,
        "api": "as ort.mha; standard ai.onnx Attention-23 with 3-D inputs, q_num_heads = "
               "kv_num_heads = H, is_causal = 0 or 1",
        "computes": {
            "noncausal": "ONNX Attention-23 semantics (softmax(Q K^T scale + mask) V, scale "
                         "1/sqrt(D)); ORT's CPU kernel computes it unfused: GEMM into a "
                         "[B, H, N, N] score buffer, softmax, GEMM",
            "causal": "is_causal = 1: upper-left aligned causal mask (equal to bottom-right "
                      "alignment here since Nq = Nk); same unfused kernel",
        },
        "differences": "The standard operator rather than a contrib op; ORT 1.30's CPU kernel "
                       "materializes the N x N scores per head (no flash path), so its memory "
                       "grows as N^2.",
        "timing_scope": "as ort.mha",
    },
    {
        "id": "ggml.flash_attn_ext.f32", "worker": "ggml", "impl": "f32",
        "name": "ggml flash_attn_ext, F32 K/V",
        "library": "ggml",
        "modes": ["noncausal", "causal"], "headline_modes": ["noncausal", "causal"],
        "tolerance_max_abs": TOL_F32,
        "api": "ggml_flash_attn_ext(q, k, v, mask, 1/sqrt(D), 0, 0) with GGML_PREC_F32 on "
               "ggml_permute views of the [B, N, H, D] buffers, computed by the CPU backend "
               "(ggml_backend_graph_compute, ggml_backend_set_n_threads = 1)",
        "computes": {
            "noncausal": "ggml's tiled CPU path (64 query x 64 key tiles, float32 GEMMs, "
                         "online softmax); the result [D, H, N, B] is the [B, N, H*D] layout",
            "causal": "an additive F16 mask [N, N] of 0 / -inf (as llama.cpp passes it); key "
                      "tiles masked for the whole query tile are skipped, others computed in full",
        },
        "differences": "Causal masking goes through an explicit N x N F16 mask (built once, "
                       "outside the timing) instead of index arithmetic.",
        "timing_scope": "one ggml_backend_graph_compute() of a graph holding the single "
                        "flash_attn_ext node (C process, monotonic clock)",
    },
    {
        "id": "ggml.flash_attn_ext.f16", "worker": "ggml", "impl": "f16",
        "name": "ggml flash_attn_ext, F16 K/V",
        "library": "ggml",
        "modes": ["noncausal", "causal"], "headline_modes": ["noncausal", "causal"],
        "tolerance_max_abs": TOL_F16,
        "api": "as ggml.flash_attn_ext.f32 with K and V stored as GGML_TYPE_F16",
        "computes": {
            "noncausal": "K and V rounded to binary16 once, outside the timing (as llama.cpp's "
                         "F16 KV cache holds them); the tiled path widens each K/V tile back to "
                         "float32, so Q, the products and the accumulators stay float32",
            "causal": "as ggml.flash_attn_ext.f32 causal, with F16 K/V",
        },
        "differences": "Rounds the cache: its error against the float64 reference is dominated "
                       "by the binary16 rounding of K and V (reported separately against a "
                       "reference on the rounded K/V). Reads half the K/V bytes.",
        "timing_scope": "as ggml.flash_attn_ext.f32 (the F32 -> F16 conversion is not timed)",
    },
]


# ------------------------------------------------------------------------------------------------
# Workers

class WorkerError(RuntimeError):
    pass


class Worker:
    """A long-lived worker process: one command line in, one JSON line out."""

    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.argv = argv
        self.log = open(log_path, "w")
        self.dead = None
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self.log, text=True, env=env, bufsize=1)
        except OSError as e:
            self.proc, self.dead = None, f"{name} worker could not start: {e}"

    def call(self, line):
        if self.dead:
            raise WorkerError(self.dead)
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
            reply = self.proc.stdout.readline()
        except (BrokenPipeError, OSError) as e:
            reply = ""
            self.dead = f"{self.name} worker: {e}"
        if not reply:
            code = self.proc.poll()
            self.dead = self.dead or (f"{self.name} worker exited (status {code}) on '{line}'; "
                                      f"see {self.log.name}")
            raise WorkerError(self.dead)
        data = json.loads(reply)
        if not data.get("ok"):
            raise WorkerError(f"{self.name} worker: {data.get('error')}")
        return data

    def close(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ------------------------------------------------------------------------------------------------
# Inputs and the float64 reference

def write_inputs(path, q, k, v, heads, kv_heads, head_dim):
    """FAPEERS1 file: magic, int64 B, N, H, HKV, D, then float32 q, k, v ([B, N, H*D] each)."""
    b, n = q.shape[0], q.shape[1]
    with open(path, "wb") as f:
        f.write(b"FAPEERS1")
        f.write(np.array([b, n, heads, kv_heads, head_dim], dtype="<i8").tobytes())
        for x in (q, k, v):
            f.write(np.ascontiguousarray(x, dtype="<f4").tobytes())


def make_inputs(seed, batch, n, heads, kv_heads, head_dim):
    # One generator per N so that each case is reproducible on its own.
    rng = np.random.default_rng([seed, n])
    q = rng.standard_normal((batch, n, heads * head_dim)).astype(np.float32)
    k = rng.standard_normal((batch, n, kv_heads * head_dim)).astype(np.float32)
    v = rng.standard_normal((batch, n, kv_heads * head_dim)).astype(np.float32)
    return q, k, v


def reference(q, k, v, heads, kv_heads, head_dim, causal, rows=None):
    """float64 softmax attention, out[b, i, h*D:(h+1)*D] for the query rows `rows` (all if None)."""
    batch, n = q.shape[0], q.shape[1]
    rows = np.arange(n) if rows is None else np.asarray(rows)
    out = np.empty((batch, len(rows), heads * head_dim))
    scale = 1.0 / np.sqrt(head_dim)
    group = heads // kv_heads
    visible = np.arange(n)[None, :] <= rows[:, None]  # [rows, keys]
    for b in range(batch):
        for h in range(heads):
            g = h // group
            qh = q[b, rows, h * head_dim:(h + 1) * head_dim].astype(np.float64)
            kh = k[b, :, g * head_dim:(g + 1) * head_dim].astype(np.float64)
            vh = v[b, :, g * head_dim:(g + 1) * head_dim].astype(np.float64)
            s = (qh @ kh.T) * scale
            if causal:
                s = np.where(visible, s, -np.inf)
            s -= s.max(axis=1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(axis=1, keepdims=True)
            out[b, :, h * head_dim:(h + 1) * head_dim] = p @ vh
    return out


def errors(out, ref):
    diff = np.abs(out.astype(np.float64) - ref)
    finite = bool(np.isfinite(out).all())
    return {
        "max_abs_error": float(diff.max()) if finite else None,
        "max_rel_error": float(diff.max() / np.abs(ref).max()) if finite else None,
        "rel_fro_error": float(np.linalg.norm(diff) / np.linalg.norm(ref)) if finite else None,
        "max_abs_reference": float(np.abs(ref).max()),
        "finite": finite,
    }


# ------------------------------------------------------------------------------------------------
# Machine and provenance

def cpu_info():
    model, flags, ident = "unknown", set(), {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model == "unknown":
                model = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
            elif key in ("vendor_id", "cpu family", "model", "stepping") and key not in ident:
                ident[key] = value.strip()
    # Cache sizes as glibc reports them (from CPUID; a VM may show the host's shared L3).
    caches = {}
    for level in ("LEVEL1_DCACHE_SIZE", "LEVEL2_CACHE_SIZE", "LEVEL3_CACHE_SIZE"):
        value = run_text(["getconf", level])
        if value and value.isdigit() and int(value) > 0:
            caches[level] = int(value)
    of_interest = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
                   "avx512_fp16", "avx512_vnni", "amx_tile"]
    return {
        "cpu_model": model,
        "cpu_vendor": ident.get("vendor_id"),
        "cpu_family": int(ident["cpu family"]) if "cpu family" in ident else None,
        "cpu_model_number": int(ident["model"]) if "model" in ident else None,
        "cpu_stepping": int(ident["stepping"]) if "stepping" in ident else None,
        "hypervisor": "hypervisor" in flags,
        "flags": {f: f in flags for f in of_interest},
        "logical_cpus": os.cpu_count(),
        "cache_bytes": caches,
        "kernel": platform.release(),
        "machine": platform.machine(),
    }


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def read_proc_stat():
    """The aggregate `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def cpu_split(start, end):
    """Fractions of the machine's CPU time during the run: busy (anyone, us included), idle,
    steal (taken by the hypervisor for other guests)."""
    d = [b - a for a, b in zip(start, end)]
    total = sum(d) or 1
    return {"busy": (d[0] + d[1] + d[2] + d[5] + d[6]) / total, "idle": (d[3] + d[4]) / total,
            "steal": d[7] / total}


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def run_text(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def dpkg_version(package):
    return run_text(["dpkg-query", "-W", "-f=${Version}", package])


# ------------------------------------------------------------------------------------------------

def median(xs):
    return statistics.median(xs) if xs else None


def spread(xs):
    return {"median": median(xs), "min": min(xs), "max": max(xs)}


def mode_name(causal):
    return "causal" if causal else "noncausal"


class PeerRun:
    """The state of one run: inputs, workers, implementations, peak samples, results."""

    def __init__(self, args):
        self.args = args
        self.batch, self.heads, self.kv_heads, self.head_dim = (args.batch, args.heads, args.heads,
                                                                args.head_dim)
        self.sizes = [int(x) for x in args.sizes.split(",")]
        self.check_sizes = [int(x) for x in args.check_sizes.split(",")]
        self.work = os.path.abspath(args.work)
        for sub in ("inputs", "models", "logs", "outputs"):
            os.makedirs(os.path.join(self.work, sub), exist_ok=True)
        self.model_dir = os.path.join(self.work, "models")
        self.node_env = dict(os.environ, NODE_PATH=os.path.abspath(args.node_modules))
        self.impls = {spec["id"]: dict(spec, status="ok", checks=[]) for spec in IMPLEMENTATIONS}
        self.peaks, self.results, self.infos, self.probe = [], [], {}, None

    @staticmethod
    def log(msg):
        print(f"peers: {msg}", flush=True)

    # -- setup ------------------------------------------------------------------------------------

    def write_inputs_and_models(self):
        self.models = onnx_models.write_models(self.model_dir, self.heads, self.head_dim,
                                               self.kv_heads)
        self.inputs = {}
        for n in sorted(set(self.check_sizes + self.sizes)):
            q, k, v = make_inputs(self.args.seed, self.batch, n, self.heads, self.kv_heads,
                                  self.head_dim)
            path = os.path.join(self.work, "inputs", f"n{n}.bin")
            write_inputs(path, q, k, v, self.heads, self.kv_heads, self.head_dim)
            self.inputs[n] = {"path": path, "q": q, "k": k, "v": v}

    def ort_worker(self, name, extra_env=None):
        return Worker(name, [self.args.node, self.args.ort_worker, self.model_dir],
                      os.path.join(self.work, "logs", f"{name}.log"),
                      env=dict(self.node_env, **(extra_env or {})))

    def start_workers(self):
        logs = os.path.join(self.work, "logs")
        self.workers = {
            "fastattn": Worker("fastattn", [self.args.fastattn_worker],
                               os.path.join(logs, "fastattn.log")),
            "ort": self.ort_worker("ort"),
            "ggml": Worker("ggml", [self.args.ggml_worker, self.args.ggml_lib_dir],
                           os.path.join(logs, "ggml.log")),
        }
        for name, w in self.workers.items():
            try:
                self.infos[name] = w.call("info")
            except WorkerError as e:
                self.mark_worker_broken(name, str(e))
        if "ggml" in self.infos and not self.infos["ggml"].get("abi_ok"):
            self.mark_worker_broken("ggml", "the prebuilt ggml libraries do not match the headers "
                                            "(see software.ggml.worker.abi_checks)")

    def mark_worker_broken(self, worker, error):
        self.log(f"{worker}: {error}")
        for spec in self.impls.values():
            if spec["worker"] == worker and spec["status"] == "ok":
                spec["status"], spec["error"] = "error", error

    def close_workers(self):
        for w in self.workers.values():
            w.close()

    def sample_peak(self):
        try:
            p = self.workers["fastattn"].call("peak")
            self.peaks.append({"wall": p["gflops"], "cpu_time": p["gflops_cpu_time"]})
        except WorkerError as e:
            self.log(f"FMA peak: {e}")

    # -- calls ------------------------------------------------------------------------------------

    def call(self, spec, command):
        worker = self.workers[spec["worker"]]
        try:
            return worker.call(command)
        except WorkerError as e:
            if worker.dead:
                self.mark_worker_broken(spec["worker"], str(e))
            raise

    def output(self, spec, n, causal):
        """One untimed run; its output [B, N, H*D]."""
        out_path = os.path.join(self.work, "outputs", f"{spec['id']}_n{n}_{int(causal)}.bin")
        self.call(spec, f"run {spec['impl']} {int(causal)} {self.inputs[n]['path']} {out_path}")
        out = np.fromfile(out_path, dtype="<f4")
        os.remove(out_path)
        return out.reshape(self.batch, n, self.heads * self.head_dim)

    def reference(self, n, causal, rows=None, round_kv=False):
        d = self.inputs[n]
        k, v = d["k"], d["v"]
        if round_kv:  # what an F16 cache holds (round to nearest even, like F16C)
            k, v = (x.astype(np.float16).astype(np.float32) for x in (k, v))
        return reference(d["q"], k, v, self.heads, self.kv_heads, self.head_dim, causal, rows)

    # -- phases -----------------------------------------------------------------------------------

    def check_small_cases(self):
        """Full outputs against float64 on check_sizes, both masks; failures are not timed."""
        for n in self.check_sizes:
            for causal in (False, True):
                ref, ref_rounded = self.reference(n, causal), None
                for spec in self.impls.values():
                    if mode_name(causal) not in spec["modes"] or spec["status"] != "ok":
                        continue
                    entry = {"N": n, "causal": causal}
                    try:
                        out = self.output(spec, n, causal)
                    except WorkerError as e:
                        spec["checks"].append(dict(entry, passed=False, error=str(e)))
                        continue
                    entry.update(errors(out, ref))
                    if spec["impl"] == "f16":
                        if ref_rounded is None:
                            ref_rounded = self.reference(n, causal, round_kv=True)
                        entry["max_abs_error_vs_rounded_kv_reference"] = \
                            errors(out, ref_rounded)["max_abs_error"]
                    entry["passed"] = bool(entry["finite"] and
                                           entry["max_abs_error"] <= spec["tolerance_max_abs"])
                    spec["checks"].append(entry)
        for spec in self.impls.values():
            if spec["status"] == "ok" and not all(c["passed"] for c in spec["checks"]):
                spec["status"] = "failed"
                spec["error"] = "failed the float64 check (see its check.cases)"
            self.log(f"check {spec['id']}: {spec['status']}" + "".join(
                f"; N={c['N']}{' causal' if c['causal'] else ''}: max abs error "
                f"{c.get('max_abs_error', c.get('error'))}" for c in spec["checks"])
                + (f" ({spec['error']})" if spec.get("error") else ""))

    def probe_ort_flash_paths(self):
        """Do ORT's kernels take their flash paths? The same models in a worker started with ORT's
        own switches for its CPU flash kernels off, interleaved with the default worker."""
        if self.impls["ort.mha"]["status"] == "error":
            return
        n = max(self.sizes)  # the paths differ most where the N x N buffers are large
        off = self.ort_worker("ort-noflash", {"ORT_DISABLE_FLASH_ATTENTION": "1",
                                              "ORT_GQA_DISABLE_FLASH_ATTENTION": "1"})
        self.probe = {
            "N": n, "rounds": 3, "warmup_runs": 2, "threshold": 1.15, "cases": [],
            "how": "median CPU time per run of the same model in a worker started with "
                   "ORT_DISABLE_FLASH_ATTENTION=1 ORT_GQA_DISABLE_FLASH_ATTENTION=1 versus the "
                   "default worker, interleaved after warm-up runs; flash_path_taken = "
                   "ratio_disabled_over_default > threshold (the default run is clearly faster "
                   "than the forced non-flash one)",
        }
        try:
            for impl, causal in (("mha", False), ("mha", True), ("gqa", True)):
                cmd = f"time {impl} {int(causal)} {self.inputs[n]['path']} 1"
                on, off_t = [], []
                for r in range(self.probe["warmup_runs"] + self.probe["rounds"]):
                    a = self.workers["ort"].call(cmd)["cpu_times_s"]
                    b = off.call(cmd)["cpu_times_s"]
                    if r >= self.probe["warmup_runs"]:  # (session creation, first touch)
                        on, off_t = on + a, off_t + b
                ratio = median(off_t) / median(on)
                self.probe["cases"].append({
                    "impl": f"ort.{impl}", "causal": causal,
                    "default_median_cpu_ms": 1e3 * median(on),
                    "flash_disabled_median_cpu_ms": 1e3 * median(off_t),
                    "ratio_disabled_over_default": ratio,
                    "flash_path_taken": bool(ratio > self.probe["threshold"]),
                })
                self.log(f"ORT flash-path probe: {self.probe['cases'][-1]}")
        except WorkerError as e:
            self.probe["error"] = str(e)
        off.close()

    def time_case(self, n, causal):
        """Checks each output on the timed shape (129 query rows), then interleaved rounds."""
        mode = mode_name(causal)
        rows = np.unique(np.linspace(0, n - 1, 129).round().astype(int))
        ref = self.reference(n, causal, rows)
        active, case = [], {}
        for spec in self.impls.values():
            if mode not in spec["modes"]:
                continue
            res = {"impl": spec["id"], "N": n, "causal": causal, "B": self.batch, "H": self.heads,
                   "H_kv": self.kv_heads, "D": self.head_dim,
                   "headline": mode in spec["headline_modes"]}
            self.results.append(res)
            case[spec["id"]] = res
            if spec["status"] != "ok":
                res.update(status=spec["status"], reason=spec.get("error"))
                continue
            try:
                out = self.output(spec, n, causal)
            except WorkerError as e:
                res.update(status="error", reason=str(e))
                continue
            chk = dict(errors(out[:, rows, :], ref), rows_checked=len(rows))
            chk["passed"] = bool(chk["finite"] and chk["max_abs_error"] <= spec["tolerance_max_abs"])
            res["timed_shape_check"] = chk
            if not chk["passed"]:
                res.update(status="failed", reason="failed the float64 check on this shape")
                continue
            res.update(status="ok", wall=[], cpu=[], threads=[], ticks={})
            active.append(spec)

        max_n = max(self.sizes)
        rounds = min(self.args.rounds * (max_n // n) ** 2, 5 * self.args.rounds)
        self.log(f"N={n} {mode}: {rounds} rounds of {', '.join(s['id'] for s in active)}")
        for r in range(rounds):
            # Rotate the starting point each round so no implementation always runs first.
            k = r % len(active) if active else 0
            for spec in active[k:] + active[:k]:
                res = case[spec["id"]]
                if res["status"] != "ok":
                    continue
                try:
                    t = self.call(spec, f"time {spec['impl']} {int(causal)} "
                                        f"{self.inputs[n]['path']} 1")
                except WorkerError as e:
                    res.update(status="error", reason=str(e))
                    continue
                res["wall"] += [1e3 * x for x in t["times_s"]]
                res["cpu"] += [1e3 * x for x in t["cpu_times_s"]]
                res["threads"].append(t["threads"])
                for tid, ticks in t.get("thread_cpu_ticks", {}).items():
                    tid = "main" if tid == t.get("main_thread") else tid
                    res["ticks"][tid] = res["ticks"].get(tid, 0) + ticks
        for res in case.values():
            if res.get("status") != "ok":
                for key in ("wall", "cpu", "threads", "ticks"):
                    res.pop(key, None)
                continue
            wall, cpu = res.pop("wall"), res.pop("cpu")
            threads, ticks = res.pop("threads"), res.pop("ticks")
            res.update(time_ms=spread(wall), cpu_time_ms=spread(cpu), repetitions=len(wall),
                       samples_ms=wall, cpu_samples_ms=cpu, cpu_over_wall=sum(cpu) / sum(wall),
                       process_threads={"min": min(threads), "max": max(threads)})
            if ticks and sum(ticks.values()):  # a multi-threaded process (Node): who worked?
                busiest = max(ticks, key=ticks.get)
                res["busiest_thread_cpu_share"] = ticks[busiest] / sum(ticks.values())
                res["busiest_thread_is_main"] = busiest == "main"

    def add_rates(self):
        self.peak = max((p["wall"] for p in self.peaks), default=None)
        self.peak_cpu = max((p["cpu_time"] for p in self.peaks), default=None)
        for res in self.results:
            if res.get("status") != "ok":
                continue
            flop = (2 if res["causal"] else 4) * res["B"] * res["H"] * res["N"] ** 2 * res["D"]
            res["model_flop"] = flop
            res["gflops"] = flop / (res["time_ms"]["median"] * 1e-3) * 1e-9
            res["gflops_at_min"] = flop / (res["time_ms"]["min"] * 1e-3) * 1e-9
            res["pct_of_peak"] = 100.0 * res["gflops"] / self.peak if self.peak else None
            res["gflops_cpu_time"] = flop / (res["cpu_time_ms"]["median"] * 1e-3) * 1e-9
            res["pct_of_peak_cpu_time"] = (100.0 * res["gflops_cpu_time"] / self.peak_cpu
                                           if self.peak_cpu else None)

    def run(self):
        started = datetime.datetime.now(datetime.timezone.utc)
        load_start, stat_start = loadavg(), read_proc_stat()
        self.write_inputs_and_models()
        self.start_workers()
        try:
            self.sample_peak()
            self.check_small_cases()
            self.probe_ort_flash_paths()
            for n in self.sizes:
                for causal in (False, True):
                    self.time_case(n, causal)
                    self.sample_peak()
        finally:
            self.close_workers()
        self.add_rates()
        machine = dict(cpu_info(), loadavg_start=load_start, loadavg_end=loadavg(),
                       cpu_time_split=cpu_split(stat_start, read_proc_stat()))
        return self.document(started, machine)

    # -- output -----------------------------------------------------------------------------------

    def timing_quality(self):
        ratios = [r["cpu_over_wall"] for r in self.results if r.get("status") == "ok"]
        m = median(ratios)
        return {
            "median_cpu_over_wall": m,
            "contended": bool(m is not None and m < 0.9),
            "note": "cpu_over_wall = CPU time / wall time of the timed calls. Each timed "
                    "computation runs on one thread, so a value well below 1 means the process "
                    "waited for a CPU (other load on the machine): the wall-clock figures are "
                    "then inflated and the CPU-time figures (cpu_time_ms, pct_of_peak_cpu_time, "
                    "against fma_peak.gflops_cpu_time) are the better comparison.",
        }

    def document(self, started, machine):
        args = self.args
        versions = {
            "fastattn": self.infos.get("fastattn", {}).get("fastattn_version"),
            "onnxruntime": (self.infos.get("ort", {}).get("versions") or {}).get("node"),
            "ggml": self.infos.get("ggml", {}).get("ggml_version"),
        }
        implementations = []
        for spec in self.impls.values():
            spec = dict(spec)
            cases = spec.pop("checks")
            spec["version"] = versions[spec["library"]]
            spec["check"] = {"passed": bool(cases) and all(c["passed"] for c in cases),
                             "tolerance_max_abs": spec.pop("tolerance_max_abs"), "cases": cases}
            spec.pop("worker"), spec.pop("impl")
            implementations.append(spec)
        return {
            "schema": "fastattn-peers",
            "schema_version": SCHEMA_VERSION,
            "created_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "generated_by": "scripts/bench-peers.sh -> scripts/peers/run_peers.py",
            "command": " ".join(shlex.quote(a) for a in sys.argv),
            "machine": machine,
            "fma_peak": {
                "gflops": self.peak,
                "gflops_cpu_time": self.peak_cpu,
                "samples": self.peaks,
                "dtype": "float32",
                "threads": 1,
                "how": "bench/common.hpp fma_chains<float> (16 independent FMA chains on Eigen's "
                       "widest float packet, 5M iterations), best of 10 runs per sample, timed "
                       "by wall clock (wall) and by the thread's CPU time (cpu_time); sampled "
                       "before the checks and after each timed case, in the fastattn worker "
                       "(compiled -O3 -march=native); gflops and gflops_cpu_time are the best "
                       "samples",
                "simd": self.infos.get("fastattn", {}).get("simd"),
            },
            "flop_model": {
                "noncausal": "4 * B * H * N^2 * D",
                "causal": "2 * B * H * N^2 * D",
                "description": "two matrix products (Q K^T and P V) of 2 N^2 D flops per head; "
                               "causal counts half the query/key pairs. Exp, softmax and masking "
                               "are not counted. gflops = model flops / median wall time, "
                               "pct_of_peak = 100 gflops / fma_peak.gflops; the *_cpu_time "
                               "fields use the median CPU time and fma_peak.gflops_cpu_time",
            },
            "timing_quality": self.timing_quality(),
            "setup": {
                "B": self.batch, "H": self.heads, "H_kv": self.kv_heads, "D": self.head_dim,
                "dtype": "float32",
                "layout": "q, k, v and out are row-major [B, N, H*D] (the bnhd layout); every "
                          "implementation reads the same bytes from the same FAPEERS1 file",
                "scale": 1.0 / np.sqrt(self.head_dim),
                "inputs": f"iid N(0, 1), numpy.random.default_rng([{args.seed}, N]) "
                          "standard_normal in float64 rounded to float32; q, then k, then v",
                "seed": args.seed,
                "sizes": self.sizes,
                "check_sizes": self.check_sizes,
                "threads": 1,
                "rounds_at_largest_N": args.rounds,
                "rounds_rule": "rounds(N) = min(rounds * (max N / N)^2, 5 * rounds)",
                "interleaving": "per (N, mask) case: one untimed run per implementation (its "
                                "output is checked), then rounds; each round times one call of "
                                "every active implementation in the order of `implementations`, "
                                "starting one later each round",
                "checks": "float64 reference (numpy) on the full output for check_sizes, both "
                          "masks; on the timed shapes, on 129 evenly spaced query rows",
                "environment": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE",
                                                               "OMP_NUM_THREADS")},
            },
            "software": {
                "fastattn": {"version": versions["fastattn"],
                             "git": run_text(["git", "-C", args.repo, "describe", "--always",
                                              "--dirty", "--tags"]),
                             "worker": self.infos.get("fastattn")},
                "onnxruntime": {"version": versions["onnxruntime"],
                                "worker": self.infos.get("ort"), "models": self.models,
                                "onnx_python": onnx_models.onnx.__version__,
                                "opset": onnx_models.OPSET, "ir_version": onnx_models.IR_VERSION},
                "ggml": {"version": versions["ggml"], "worker": self.infos.get("ggml")},
                "provenance": read_json(args.provenance, {}) if args.provenance else {},
                "python3_onnx_deb": dpkg_version("python3-onnx"),
                "numpy": np.__version__,
            },
            "implementations": implementations,
            "ort_flash_path_probe": self.probe,
            "results": self.results,
        }


def print_summary(doc):
    peak = doc["fma_peak"]
    if peak["gflops"]:
        print(f"\nFMA peak (float, 1 thread): {peak['gflops']:.1f} GFLOP/s by wall time, "
              f"{peak['gflops_cpu_time']:.1f} by CPU time; samples (wall/cpu) "
              + ", ".join(f"{p['wall']:.0f}/{p['cpu_time']:.0f}" for p in peak["samples"]))
    m = doc["machine"]
    split = m["cpu_time_split"]
    print(f"machine during the run: busy {100 * split['busy']:.0f}%, idle "
          f"{100 * split['idle']:.0f}%, steal {100 * split['steal']:.0f}%; load average "
          f"{m['loadavg_start']} -> {m['loadavg_end']}")
    print(f"{'implementation':26s} {'N':>5s} {'mask':9s} {'median ms':>9s} {'min ms':>8s} "
          f"{'%peak':>6s} {'cpu ms':>8s} {'%peak':>6s} {'cpu/wall':>8s}  status")
    for res in doc["results"]:
        head = f"{res['impl']:26s} {res['N']:5d} {mode_name(res['causal']):9s}"
        if res.get("status") == "ok":
            print(f"{head} {res['time_ms']['median']:9.2f} {res['time_ms']['min']:8.2f} "
                  f"{res['pct_of_peak'] or 0:5.1f}% {res['cpu_time_ms']['median']:8.2f} "
                  f"{res['pct_of_peak_cpu_time'] or 0:5.1f}% {res['cpu_over_wall']:8.2f}  "
                  f"ok{'' if res['headline'] else ' (not headline)'}")
        else:
            print(f"{head} {'':9s} {'':8s} {'':6s} {'':8s} {'':6s} {'':8s}  "
                  f"{res.get('status')}: {res.get('reason')}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", required=True, help="directory for inputs, models and logs")
    ap.add_argument("--repo", required=True)
    ap.add_argument("--fastattn-worker", required=True)
    ap.add_argument("--ggml-worker", required=True)
    ap.add_argument("--ggml-lib-dir", required=True)
    ap.add_argument("--node", default="node")
    ap.add_argument("--ort-worker", required=True)
    ap.add_argument("--node-modules", required=True, help="node_modules holding onnxruntime-node")
    ap.add_argument("--provenance", help="JSON written by bench-peers.sh (packages, bundle)")
    ap.add_argument("--rounds", type=int, default=9,
                    help="timing rounds at the largest N (smaller N get more, see README)")
    ap.add_argument("--sizes", default="1024,4096")
    ap.add_argument("--check-sizes", default="77,256")
    ap.add_argument("--seed", type=int, default=20250615)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=64)
    args = ap.parse_args()

    doc = PeerRun(args).run()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, args.out)
    print_summary(doc)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
