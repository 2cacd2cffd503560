// Peer worker: ggml's flash_attn_ext (the prebuilt CPU libraries of @node-llama-cpp/linux-x64),
// one thread, F32 or F16 K/V, on the shared input files written by run_peers.py.
//
// Compiled by scripts/bench-peers.sh against the ggml headers of the llama.cpp source bundled in
// node-llama-cpp (same release as the libraries) and linked to the prebuilt libggml-base.so and
// libggml.*.so; the CPU variant (libggml-cpu-<arch>.so) is chosen at run time by ggml's backend
// registry (highest score for this CPU) and reported by `info`.
//
// Protocol (README.md in this directory): one command per line on stdin, one JSON line on stdout.
//   info | run IMPL CAUSAL IN OUT | time IMPL CAUSAL IN REPS | quit     with IMPL = f32 | f16

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dirent.h>

#include "ggml.h"
#include "ggml-backend.h"

#ifndef PEERS_GGML_HEADER_VERSION
#error "define PEERS_GGML_HEADER_VERSION (the version in the headers' ggml/CMakeLists.txt)"
#endif

// ---------------------------------------------------------------------------------------------
// Shared input file: "FAPEERS1", int64 B, N, H, HKV, D, then float32 q [B,N,H*D], k, v [B,N,HKV*D].

typedef struct {
  char path[4096];
  int64_t b, n, h, hkv, d;
  float *q, *k, *v;  // one allocation, q first
} Inputs;

static int read_inputs(const char* path, Inputs* in, char* err, size_t errlen) {
  FILE* f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "cannot open %s", path);
    return 0;
  }
  char magic[8];
  int64_t hdr[5];
  if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "FAPEERS1", 8) != 0 ||
      fread(hdr, sizeof(int64_t), 5, f) != 5) {
    fclose(f);
    snprintf(err, errlen, "%s: not a FAPEERS1 input file", path);
    return 0;
  }
  in->b = hdr[0], in->n = hdr[1], in->h = hdr[2], in->hkv = hdr[3], in->d = hdr[4];
  const size_t nq = (size_t)(in->b * in->n * in->h * in->d);
  const size_t nkv = (size_t)(in->b * in->n * in->hkv * in->d);
  in->q = (float*)malloc((nq + 2 * nkv) * sizeof(float));
  if (!in->q || fread(in->q, sizeof(float), nq + 2 * nkv, f) != nq + 2 * nkv) {
    fclose(f);
    free(in->q);
    in->q = NULL;
    snprintf(err, errlen, "%s: truncated", path);
    return 0;
  }
  fclose(f);
  in->k = in->q + nq;
  in->v = in->k + nkv;
  snprintf(in->path, sizeof(in->path), "%s", path);
  return 1;
}

// ---------------------------------------------------------------------------------------------
// One graph per (K/V type, causal) on the current inputs. Tensors point at our buffers (no_alloc
// context): q/k/v are [B, N, H, D] buffers seen through ggml_permute as [D, N, H, B]; the result
// [D, H, N, B] is again the [B, N, H*D] layout, so no copies are made around the kernel.

typedef struct {
  int used;
  int f16;
  int causal;
  struct ggml_context* ctx;
  struct ggml_cgraph* graph;
  struct ggml_tensor* out;
  ggml_fp16_t* k16;  // F16 copies of K and V (made once: a KV cache holds them this way)
  ggml_fp16_t* v16;
  ggml_fp16_t* mask;  // [N, N] causal mask (0 or -inf), F16 as flash_attn_ext requires
  float* out_buf;     // [B, N, H*D]
} Setup;

static Inputs g_in;
static Setup g_setups[4];
static ggml_backend_t g_backend;

static void free_setup(Setup* s) {
  if (!s->used) return;
  ggml_free(s->ctx);
  free(s->k16);
  free(s->v16);
  free(s->mask);
  free(s->out_buf);
  memset(s, 0, sizeof(*s));
}

static int ensure_inputs(const char* path, char* err, size_t errlen) {
  if (g_in.q && strcmp(g_in.path, path) == 0) return 1;
  for (int i = 0; i < 4; ++i) free_setup(&g_setups[i]);
  free(g_in.q);
  memset(&g_in, 0, sizeof(g_in));
  return read_inputs(path, &g_in, err, errlen);
}

static Setup* get_setup(int f16, int causal, char* err, size_t errlen) {
  Setup* s = &g_setups[f16 * 2 + causal];
  if (s->used) return s;
  const int64_t B = g_in.b, N = g_in.n, H = g_in.h, HKV = g_in.hkv, D = g_in.d;
  struct ggml_init_params params = {ggml_tensor_overhead() * 16 + ggml_graph_overhead(), NULL, true};
  s->ctx = ggml_init(params);
  if (!s->ctx) {
    snprintf(err, errlen, "ggml_init failed");
    return NULL;
  }
  s->used = 1, s->f16 = f16, s->causal = causal;
  const size_t nkv = (size_t)(B * N * HKV * D);
  void* kdata = g_in.k;
  void* vdata = g_in.v;
  if (f16) {
    s->k16 = (ggml_fp16_t*)malloc(nkv * sizeof(ggml_fp16_t));
    s->v16 = (ggml_fp16_t*)malloc(nkv * sizeof(ggml_fp16_t));
    ggml_fp32_to_fp16_row(g_in.k, s->k16, (int64_t)nkv);
    ggml_fp32_to_fp16_row(g_in.v, s->v16, (int64_t)nkv);
    kdata = s->k16, vdata = s->v16;
  }
  const enum ggml_type kv_type = f16 ? GGML_TYPE_F16 : GGML_TYPE_F32;
  struct ggml_tensor* q4 = ggml_new_tensor_4d(s->ctx, GGML_TYPE_F32, D, H, N, B);
  struct ggml_tensor* k4 = ggml_new_tensor_4d(s->ctx, kv_type, D, HKV, N, B);
  struct ggml_tensor* v4 = ggml_new_tensor_4d(s->ctx, kv_type, D, HKV, N, B);
  q4->data = g_in.q, k4->data = kdata, v4->data = vdata;  // before the views take their address
  struct ggml_tensor* q = ggml_permute(s->ctx, q4, 0, 2, 1, 3);  // [D, N, H, B]
  struct ggml_tensor* k = ggml_permute(s->ctx, k4, 0, 2, 1, 3);
  struct ggml_tensor* v = ggml_permute(s->ctx, v4, 0, 2, 1, 3);
  struct ggml_tensor* mask = NULL;
  if (causal) {
    s->mask = (ggml_fp16_t*)malloc((size_t)(N * N) * sizeof(ggml_fp16_t));
    const ggml_fp16_t zero = ggml_fp32_to_fp16(0.0f), minus_inf = ggml_fp32_to_fp16(-INFINITY);
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < N; ++j) s->mask[i * N + j] = j <= i ? zero : minus_inf;
    mask = ggml_new_tensor_4d(s->ctx, GGML_TYPE_F16, N, N, 1, 1);  // [n_kv, n_q]
    mask->data = s->mask;
  }
  const float scale = 1.0f / sqrtf((float)D);
  s->out = ggml_flash_attn_ext(s->ctx, q, k, v, mask, scale, 0.0f, 0.0f);
  ggml_flash_attn_ext_set_prec(s->out, GGML_PREC_F32);
  s->out_buf = (float*)malloc((size_t)(B * N * H * D) * sizeof(float));
  s->out->data = s->out_buf;
  s->graph = ggml_new_graph(s->ctx);
  ggml_build_forward_expand(s->graph, s->out);

  // The library fills the tensor structs; reading them back through our headers checks the layout.
  const int64_t want_ne[4] = {D, H, N, B};
  for (int i = 0; i < 4; ++i)
    if (s->out->ne[i] != want_ne[i]) {
      snprintf(err, errlen, "ABI mismatch: result ne[%d] = %lld, expected %lld", i,
               (long long)s->out->ne[i], (long long)want_ne[i]);
      free_setup(s);
      return NULL;
    }
  if (s->out->op != GGML_OP_FLASH_ATTN_EXT || s->out->src[0] != q || s->out->src[1] != k ||
      s->out->src[2] != v || s->out->src[3] != mask || q->view_src != q4 ||
      q->nb[1] != (size_t)(H * D) * sizeof(float) || q->nb[2] != (size_t)D * sizeof(float) ||
      ggml_nbytes(s->out) != (size_t)(B * N * H * D) * sizeof(float) ||
      ggml_flash_attn_ext_get_prec(s->out) != GGML_PREC_F32 || q->data != g_in.q) {
    snprintf(err, errlen, "ABI mismatch: the tensor fields set by the library do not read back");
    free_setup(s);
    return NULL;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------

static double now_s(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int count_threads(void) {
  DIR* d = opendir("/proc/self/task");
  if (!d) return -1;
  int n = 0;
  struct dirent* e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

static void json_string(const char* s) {
  putchar('"');
  for (; *s; ++s) {
    if (*s == '"' || *s == '\\')
      printf("\\%c", *s);
    else if ((unsigned char)*s < 0x20)
      printf("\\u%04x", *s);
    else
      putchar(*s);
  }
  putchar('"');
}

static void reply_error(const char* msg) {
  printf("{\"ok\":false,\"error\":");
  json_string(msg);
  printf("}\n");
  fflush(stdout);
}

// The CPU variant the registry loaded, from our own memory map.
static void loaded_cpu_library(char* buf, size_t len) {
  snprintf(buf, len, "unknown");
  FILE* f = fopen("/proc/self/maps", "r");
  if (!f) return;
  char line[8192];
  while (fgets(line, sizeof(line), f)) {
    char* p = strstr(line, "libggml-cpu-");
    if (p) {
      char* slash = strrchr(line, '/');
      snprintf(buf, len, "%s", slash ? slash + 1 : p);
      buf[strcspn(buf, "\n")] = 0;
      break;
    }
  }
  fclose(f);
}

// Checks that the library's op and type tables agree with the enums of the headers we compiled
// against; returns the number of mismatches and prints them as a JSON array.
static int print_abi_checks(void) {
  struct {
    int op;
    const char* name;
  } ops[] = {{GGML_OP_NONE, "NONE"},
             {GGML_OP_MUL_MAT, "MUL_MAT"},
             {GGML_OP_PERMUTE, "PERMUTE"},
             {GGML_OP_SOFT_MAX, "SOFT_MAX"},
             {GGML_OP_FLASH_ATTN_EXT, "FLASH_ATTN_EXT"},
             {GGML_OP_COUNT - 1, "GLU"}};
  int bad = 0;
  printf("[");
  for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); ++i) {
    const char* got = ggml_op_name((enum ggml_op)ops[i].op);
    const int ok = got && strcmp(got, ops[i].name) == 0;
    bad += !ok;
    printf("%s{\"what\":\"ggml_op_name(%d)\",\"expected\":\"%s\",\"got\":", i ? "," : "", ops[i].op,
           ops[i].name);
    json_string(got ? got : "(null)");
    printf(",\"ok\":%s}", ok ? "true" : "false");
  }
  const int f16_ok = ggml_type_size(GGML_TYPE_F16) == 2 && strcmp(ggml_type_name(GGML_TYPE_F16), "f16") == 0 &&
                     ggml_type_size(GGML_TYPE_F32) == 4 && strcmp(ggml_type_name(GGML_TYPE_F32), "f32") == 0;
  bad += !f16_ok;
  printf(",{\"what\":\"ggml_type_size/name(F16, F32)\",\"ok\":%s}", f16_ok ? "true" : "false");
  const int version_ok = strcmp(ggml_version(), PEERS_GGML_HEADER_VERSION) == 0;
  bad += !version_ok;
  printf(",{\"what\":\"ggml_version()\",\"expected\":\"%s\",\"got\":", PEERS_GGML_HEADER_VERSION);
  json_string(ggml_version());
  printf(",\"ok\":%s}", version_ok ? "true" : "false");
  const int overhead_ok = ggml_tensor_overhead() >= sizeof(struct ggml_tensor) &&
                          ggml_tensor_overhead() <= sizeof(struct ggml_tensor) + 256;
  bad += !overhead_ok;
  printf(",{\"what\":\"ggml_tensor_overhead() vs sizeof(struct ggml_tensor) = %zu\",\"got\":%zu,\"ok\":%s}",
         sizeof(struct ggml_tensor), ggml_tensor_overhead(), overhead_ok ? "true" : "false");
  printf("]");
  return bad;
}

static void cmd_info(void) {
  ggml_backend_dev_t dev = ggml_backend_get_device(g_backend);
  char lib[512];
  loaded_cpu_library(lib, sizeof(lib));
  printf("{\"ok\":true,\"ggml_version\":");
  json_string(ggml_version());
  printf(",\"ggml_commit\":");
  json_string(ggml_commit());
  printf(",\"header_version\":\"%s\",\"backend\":", PEERS_GGML_HEADER_VERSION);
  json_string(ggml_backend_name(g_backend));
  printf(",\"device_description\":");
  json_string(ggml_backend_dev_description(dev));
  printf(",\"cpu_variant_library\":");
  json_string(lib);
  printf(",\"abi_checks\":");
  const int bad = print_abi_checks();
  printf(",\"abi_ok\":%s,\"threads\":%d}\n", bad ? "false" : "true", count_threads());
  fflush(stdout);
}

static int parse_impl(const char* s, int* f16) {
  if (strcmp(s, "f32") == 0) return *f16 = 0, 1;
  if (strcmp(s, "f16") == 0) return *f16 = 1, 1;
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR_WITH_LIBGGML_CPU_VARIANTS\n", argv[0]);
    return 2;
  }
  ggml_backend_load_all_from_path(argv[1]);
  g_backend = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, NULL);
  if (!g_backend) {
    fprintf(stderr, "ggml_worker: no CPU backend could be loaded from %s\n", argv[1]);
    return 1;
  }
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(ggml_backend_get_device(g_backend));
  void* sym = ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads");
  ggml_backend_set_n_threads_t set_threads = NULL;
  memcpy(&set_threads, &sym, sizeof(set_threads));  // (ISO C has no object -> function pointer cast)
  if (!set_threads) {
    fprintf(stderr, "ggml_worker: the CPU backend has no ggml_backend_set_n_threads\n");
    return 1;
  }
  set_threads(g_backend, 1);

  char line[16384], cmd[32], impl[32], path[4096], out[4096], err[8192];
  while (fgets(line, sizeof(line), stdin)) {
    int causal = 0, reps = 0, f16 = 0;
    if (sscanf(line, "%31s", cmd) != 1) continue;
    if (strcmp(cmd, "quit") == 0) break;
    if (strcmp(cmd, "info") == 0) {
      cmd_info();
      continue;
    }
    const int is_run = strcmp(cmd, "run") == 0, is_time = strcmp(cmd, "time") == 0;
    if ((is_run && sscanf(line, "%*s %31s %d %4095s %4095s", impl, &causal, path, out) != 4) ||
        (is_time && sscanf(line, "%*s %31s %d %4095s %d", impl, &causal, path, &reps) != 4) ||
        (!is_run && !is_time) || !parse_impl(impl, &f16) || (causal != 0 && causal != 1)) {
      reply_error("bad command");
      continue;
    }
    if (!ensure_inputs(path, err, sizeof(err))) {
      reply_error(err);
      continue;
    }
    Setup* s = get_setup(f16, causal, err, sizeof(err));
    if (!s) {
      reply_error(err);
      continue;
    }
    if (is_run) {
      const double t0 = now_s(CLOCK_MONOTONIC);
      const enum ggml_status st = ggml_backend_graph_compute(g_backend, s->graph);
      const double t = now_s(CLOCK_MONOTONIC) - t0;
      if (st != GGML_STATUS_SUCCESS) {
        reply_error("ggml_backend_graph_compute failed");
        continue;
      }
      FILE* f = fopen(out, "wb");
      const size_t n = (size_t)(g_in.b * g_in.n * g_in.h * g_in.d);
      if (!f || fwrite(s->out_buf, sizeof(float), n, f) != n) {
        if (f) fclose(f);
        reply_error("cannot write the output file");
        continue;
      }
      fclose(f);
      printf("{\"ok\":true,\"seconds\":%.9g}\n", t);
      fflush(stdout);
      continue;
    }
    // Wall time per run, and the process CPU time per run (what the run cost when the machine is
    // shared: time spent descheduled is not in it).
    double* times = (double*)malloc(sizeof(double) * 2 * (size_t)(reps > 0 ? reps : 1));
    double* cpu_times = times + (reps > 0 ? reps : 1);
    int failed = 0;
    for (int r = 0; r < reps && !failed; ++r) {
      const double c0 = now_s(CLOCK_PROCESS_CPUTIME_ID), t0 = now_s(CLOCK_MONOTONIC);
      failed = ggml_backend_graph_compute(g_backend, s->graph) != GGML_STATUS_SUCCESS;
      times[r] = now_s(CLOCK_MONOTONIC) - t0;
      cpu_times[r] = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    }
    if (failed) {
      free(times);
      reply_error("ggml_backend_graph_compute failed");
      continue;
    }
    printf("{\"ok\":true,\"times_s\":[");
    for (int r = 0; r < reps; ++r) printf("%s%.9g", r ? "," : "", times[r]);
    printf("],\"cpu_times_s\":[");
    for (int r = 0; r < reps; ++r) printf("%s%.9g", r ? "," : "", cpu_times[r]);
    printf("],\"threads\":%d}\n", count_threads());
    fflush(stdout);
    free(times);
  }
  for (int i = 0; i < 4; ++i) free_setup(&g_setups[i]);
  free(g_in.q);
  ggml_backend_free(g_backend);
  return 0;
}
