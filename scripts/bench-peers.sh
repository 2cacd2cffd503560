#!/usr/bin/env bash
# Times fastattn's Exact<float> next to other CPU attention implementations on the same inputs,
# one thread: ONNX Runtime 1.30 (MultiHeadAttention, GroupQueryAttention, ONNX Attention-23) and
# ggml's flash_attn_ext (llama.cpp's prebuilt CPU libraries, F32 and F16 K/V). Each is checked
# against a float64 reference before it is timed; timings are interleaved; the FMA peak is
# measured in the same run. Writes peers.json (schema: scripts/peers/README.md).
#
# Opt-in and not part of the main command, because it installs things:
#   apt (only the missing ones): python3-onnx python3-numpy gcc g++ libeigen3-dev libbenchmark-dev
#        git, and nodejs npm when there is no node/npm
#   npm, into the cache directory only (nothing global):
#        onnxruntime-node@1.30.0, installed with ONNXRUNTIME_NODE_INSTALL=skip (its postinstall
#          would otherwise try to download the CUDA provider from NuGet; the CPU library ships
#          in the npm tarball);
#        the tarballs of node-llama-cpp@3.21.1 (for the llama.cpp source it bundles: the ggml
#          headers) and @node-llama-cpp/linux-x64@3.21.1 (the prebuilt ggml CPU libraries),
#          fetched with `npm pack` and unpacked; none of their scripts run.
# It then compiles two small workers (scripts/peers/*.c, *.cpp) into the cache directory.
#
# Usage: scripts/bench-peers.sh [--out FILE] [--cache DIR] [--rounds R] [--sizes N,N]
#                               [--no-install]
#   --out     peers.json to write (default build/release/report/peers.json)
#   --cache   downloads, builds and scratch files (default build/peers; git-ignored)
#   --rounds  timing rounds at the largest N (default 9; smaller N get more)
#   --sizes   timed sequence lengths (default 1024,4096)
#   --no-install  do not run apt-get or npm; fail if something is missing
# Safe to run again: downloads and builds are reused.
set -euo pipefail

ORT_VERSION=1.30.0
NLC_VERSION=3.21.1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$root/build/release/report/peers.json
cache=$root/build/peers
rounds=9
sizes=1024,4096
install=1
while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --no-install) install=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-peers: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
say() { echo "bench-peers: $*"; }
die() { echo "bench-peers: error: $*" >&2; exit 1; }

[[ $(uname -s) == Linux && $(uname -m) == x86_64 ]] ||
  die "needs Linux on x86-64 (the prebuilt ggml libraries are @node-llama-cpp/linux-x64)"
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
# Debian's interpreter: python3-onnx and python3-numpy are installed for it (a python3 earlier on
# PATH, e.g. a pyenv shim, would not see them).
py=/usr/bin/python3

# ---- apt --------------------------------------------------------------------------------------
packages=(python3 python3-onnx python3-numpy gcc g++ libeigen3-dev libbenchmark-dev git)
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  ((install)) || die "missing Debian packages: ${missing[*]} (run without --no-install)"
  sudo=()
  ((EUID == 0)) || sudo=(sudo)
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
"$py" -c 'import onnx, numpy' || die "$py cannot import onnx and numpy (python3-onnx)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
((node_major >= 18)) || die "node $(node --version) is too old (need >= 18)"

# ---- npm: onnxruntime-node ---------------------------------------------------------------------
ort_dir=$cache/npm/node_modules/onnxruntime-node
ort_lib=$ort_dir/bin/napi-v6/linux/x64/libonnxruntime.so.1
installed=$(node -p "try { require('$ort_dir/package.json').version } catch (e) { '' }")
if [[ $installed != "$ORT_VERSION" || ! -f $ort_lib ]]; then
  ((install)) || die "onnxruntime-node@$ORT_VERSION is not in $cache/npm (run without --no-install)"
  say "npm install onnxruntime-node@$ORT_VERSION into $cache/npm (ONNXRUNTIME_NODE_INSTALL=skip)"
  mkdir -p "$cache/npm"
  ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix "$cache/npm" --no-audit --no-fund \
    --loglevel=error "onnxruntime-node@$ORT_VERSION"
fi
[[ -f $ort_lib ]] || die "the npm package has no CPU library at $ort_lib"

# ---- npm: node-llama-cpp tarballs (not installed: only their files are used) --------------------
pkgs=$cache/pkgs
mkdir -p "$pkgs"
fetch_tarball() {  # $1 = package spec, $2 = tarball name npm pack gives it
  if [[ ! -s $pkgs/$2 ]]; then
    ((install)) || die "$1 is not in $pkgs (run without --no-install)"
    say "npm pack $1 into $pkgs"
    (cd "$pkgs" && npm pack --json --loglevel=error "$1" >"$2.pack.json.tmp")
    mv "$pkgs/$2.pack.json.tmp" "$pkgs/$2.pack.json"
  fi
  [[ -s $pkgs/$2 ]] || die "npm pack $1 did not produce $pkgs/$2"
}
fetch_tarball "@node-llama-cpp/linux-x64@$NLC_VERSION" "node-llama-cpp-linux-x64-$NLC_VERSION.tgz"
fetch_tarball "node-llama-cpp@$NLC_VERSION" "node-llama-cpp-$NLC_VERSION.tgz"

bins_pkg=$cache/node-llama-cpp-linux-x64-$NLC_VERSION
if [[ ! -f $bins_pkg/.unpacked ]]; then
  rm -rf "$bins_pkg" && mkdir -p "$bins_pkg"
  tar -xzf "$pkgs/node-llama-cpp-linux-x64-$NLC_VERSION.tgz" -C "$bins_pkg"
  touch "$bins_pkg/.unpacked"
fi
ggml_libs=$bins_pkg/package/bins/linux-x64
nlc_pkg=$cache/node-llama-cpp-$NLC_VERSION
if [[ ! -f $nlc_pkg/.unpacked ]]; then
  rm -rf "$nlc_pkg" && mkdir -p "$nlc_pkg"
  tar -xzf "$pkgs/node-llama-cpp-$NLC_VERSION.tgz" -C "$nlc_pkg" package/package.json \
    package/llama/gitRelease.bundle package/llama/llama.cpp.info.json \
    package/llama/binariesGithubRelease.json
  touch "$nlc_pkg/.unpacked"
fi

# ---- ggml headers from the bundled llama.cpp source, at the bundle's commit ---------------------
bundle=$nlc_pkg/package/llama/gitRelease.bundle
git_dir=$cache/llama.cpp.git
bundle_head=$(git bundle list-heads "$bundle" | awk '$2 == "HEAD" {print $1}')
[[ -n $bundle_head ]] || die "$bundle has no HEAD"
if [[ $(git --git-dir="$git_dir" rev-parse HEAD 2>/dev/null) != "$bundle_head" ]]; then
  say "git clone --bare $bundle"
  rm -rf "$git_dir"
  git clone --bare --quiet "$bundle" "$git_dir"
fi
ggml_src=$cache/ggml-src/$bundle_head
if [[ ! -f $ggml_src/.extracted ]]; then
  rm -rf "$ggml_src" && mkdir -p "$ggml_src"
  git --git-dir="$git_dir" archive "$bundle_head" ggml/include ggml/CMakeLists.txt |
    tar -x -C "$ggml_src"
  touch "$ggml_src/.extracted"
fi
# Headers and libraries must come from the same llama.cpp release (the worker also checks the
# library's version and enum tables against the headers at run time).
releases=$(node -e '
  const [meta, info, bins] = process.argv.slice(1).map((f) => require(f));
  console.log([meta.buildOptions.llamaCpp.release, info.tag, bins.release].join(" "));
' "$ggml_libs/_nlcBuildMetadata.json" "$nlc_pkg/package/llama/llama.cpp.info.json" \
  "$nlc_pkg/package/llama/binariesGithubRelease.json")
read -r lib_release src_release bins_release <<<"$releases"
[[ $lib_release == "$src_release" && $src_release == "$bins_release" ]] ||
  die "llama.cpp releases differ: libraries $lib_release, bundled source $src_release, $bins_release"
ggml_version=$(sed -n 's/^set(GGML_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))/\2/p' \
  "$ggml_src/ggml/CMakeLists.txt" | paste -sd.)
[[ $ggml_version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "no ggml version in the bundled CMakeLists.txt"

# ---- workers ------------------------------------------------------------------------------------
bin=$cache/bin
mkdir -p "$bin"
ggml_lib_files=("$ggml_libs"/libggml.v*.so)
[[ -f ${ggml_lib_files[0]} && -f $ggml_libs/libggml-base.so ]] || die "no libggml in $ggml_libs"
say "compiling ggml_worker against the ggml $ggml_version headers of llama.cpp $src_release"
gcc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Wpedantic -DPEERS_GGML_HEADER_VERSION="\"$ggml_version\"" \
  -I"$ggml_src/ggml/include" "$root/scripts/peers/ggml_worker.c" "${ggml_lib_files[0]}" \
  "$ggml_libs/libggml-base.so" -Wl,-rpath,"$ggml_libs" -lm -o "$bin/ggml_worker"

fastattn_flags="-std=c++17 -O3 -DNDEBUG -march=native"
stamp=$bin/fastattn_worker.flags
if [[ ! -x $bin/fastattn_worker || $(cat "$stamp" 2>/dev/null) != "$fastattn_flags" ||
      -n $(find "$root/include" "$root/bench/common.hpp" "$root/scripts/peers/fastattn_worker.cpp" \
              -newer "$bin/fastattn_worker" -print -quit) ]]; then
  say "compiling fastattn_worker ($fastattn_flags)"
  # shellcheck disable=SC2086  # the flags are words
  # (the warning set of the repository's own targets, cmake/fastattn_dev.cmake)
  g++ $fastattn_flags -Wall -Wextra -Wpedantic -Wshadow -Wno-maybe-uninitialized -Wno-uninitialized \
    -I"$root/include" -I"$root/bench" -isystem /usr/include/eigen3 \
    -DPEERS_BUILD_FLAGS="\"$fastattn_flags\"" "$root/scripts/peers/fastattn_worker.cpp" \
    -o "$bin/fastattn_worker" -lbenchmark -lpthread
  echo "$fastattn_flags" >"$stamp"
fi

# ---- provenance ---------------------------------------------------------------------------------
prov=$cache/provenance.json
PKGS=$pkgs ORT_DIR=$ort_dir ORT_LIB=$ort_lib NPM_DIR=$cache/npm GGML_LIBS=$ggml_libs \
NLC_VERSION=$NLC_VERSION BUNDLE_HEAD=$bundle_head GIT_DIR_BUNDLE=$git_dir \
SRC_RELEASE=$src_release GGML_VERSION=$ggml_version "$py" - "$prov" <<'EOF'
import glob, hashlib, json, os, subprocess, sys

def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

def run(*argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None

env = os.environ
lock = json.load(open(os.path.join(env["NPM_DIR"], "package-lock.json")))
ort_lock = lock["packages"]["node_modules/onnxruntime-node"]
packs = {}
for meta in sorted(glob.glob(os.path.join(env["PKGS"], "*.pack.json"))):
    info = json.load(open(meta))[0]
    tgz = meta[: -len(".pack.json")]
    packs[info["id"]] = {"tarball": os.path.basename(tgz), "sha256": sha256(tgz),
                         "integrity": info.get("integrity"), "shasum": info.get("shasum")}
libs = {os.path.basename(p): sha256(p) for p in sorted(glob.glob(os.path.join(env["GGML_LIBS"], "libggml*.so")))}
prov = {
    "onnxruntime-node": {
        "version": ort_lock["version"], "resolved": ort_lock.get("resolved"),
        "integrity": ort_lock.get("integrity"),
        "install": "npm install with ONNXRUNTIME_NODE_INSTALL=skip: the package's postinstall "
                   "(script/install.js) exits at once; without it, on linux/x64 it would fetch "
                   "the CUDA 12 provider libraries from NuGet. The CPU library "
                   "bin/napi-v6/linux/x64/libonnxruntime.so.1 ships in the npm tarball.",
        "libonnxruntime_sha256": sha256(env["ORT_LIB"]),
    },
    "node-llama-cpp": {
        "version": env["NLC_VERSION"], "npm_pack": packs,
        "llama_cpp_release": env["SRC_RELEASE"],
        "bundle_head_commit": env["BUNDLE_HEAD"],
        "bundle_head_subject": run("git", f"--git-dir={env['GIT_DIR_BUNDLE']}", "log", "-1",
                                   "--format=%s%n%b", env["BUNDLE_HEAD"]),
        "ggml_header_version": env["GGML_VERSION"],
        "ggml_headers": "ggml/include of the bundle's HEAD (git archive)",
        "ggml_libraries_sha256": libs,
        "note": "the bundle is one squashed commit, so its hash differs from the upstream commit "
                "the libraries report (ggml_commit()); the match is by release tag (libraries' "
                "_nlcBuildMetadata.json = the bundle's llama.cpp.info.json), by ggml_version() = "
                "the headers' version, and by the worker's enum/struct checks",
    },
    "toolchain": {"gcc": run("gcc", "--version").splitlines()[0], "node": run("node", "--version"),
                  "npm": run("npm", "--version")},
    "debian_packages": {p: run("dpkg-query", "-W", "-f=${Version}", p)
                        for p in ("python3-onnx", "python3-numpy", "libeigen3-dev",
                                  "libbenchmark-dev", "nodejs", "g++")},
}
json.dump(prov, open(sys.argv[1], "w"), indent=1)
EOF

# ---- run ----------------------------------------------------------------------------------------
say "running (interleaved rounds; a few minutes)"
"$py" "$root/scripts/peers/run_peers.py" --out "$out" --work "$cache/run" --repo "$root" \
  --fastattn-worker "$bin/fastattn_worker" --ggml-worker "$bin/ggml_worker" \
  --ggml-lib-dir "$ggml_libs" --ort-worker "$root/scripts/peers/ort_worker.js" \
  --node-modules "$cache/npm/node_modules" --provenance "$prov" --rounds "$rounds" \
  --sizes "$sizes"
