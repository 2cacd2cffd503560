#!/usr/bin/env bash
# Installs the Debian 12 packages that fastattn's build, tests and benchmark report need, skipping
# the ones already installed (safe to run again). Needs root, or sudo.
set -euo pipefail

packages=(cmake g++ make libeigen3-dev libgtest-dev libbenchmark-dev nlohmann-json3-dev python3
          python3-matplotlib pkgconf)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all of ${packages[*]} already installed"
  exit 0
fi

sudo=()
if ((EUID != 0)); then sudo=(sudo); fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
