#!/usr/bin/env bash
# Installs the Debian packages mambaserve builds against, pinned to the versions it is tested
# with (Debian 12 "bookworm"). Installs only what is missing, so a second run is quick.
# The CUDA toolkit, cuBLAS and NCCL are not Debian packages here; when nvcc is absent the build
# uses the CPU backend only.
set -euo pipefail

PACKAGES=(
  cmake=3.25.1-1
  ninja-build=1.11.1-2~deb12u1
  pkg-config=1.8.1-1
  g++
  libabsl-dev=20220623.1-1+deb12u2
  libprotobuf-dev=3.21.12-3+deb12u1
  protobuf-compiler=3.21.12-3+deb12u1
  libgrpc++-dev=1.51.1-3+b1
  protobuf-compiler-grpc=1.51.1-3+b1
  libopenmpi-dev=4.1.4-3+b1
  openmpi-bin=4.1.4-3+b1
  libopenblas-dev=0.3.21+ds-4
  libgtest-dev=1.12.1-0.2
  libgmock-dev=1.12.1-0.2
  nlohmann-json3-dev=3.11.2-2
)

missing=()
for spec in "${PACKAGES[@]}"; do
  name="${spec%%=*}"
  want="${spec#*=}"
  [[ "$want" == "$spec" ]] && want=""
  have="$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)"
  if [[ "$have" != "install ok installed"* ]] || { [[ -n "$want" ]] && [[ "$have" != *" $want" ]]; }; then
    missing+=("$spec")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install_deps: all packages present"
  exit 0
fi

SUDO=""
if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
echo "install_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
