#!/usr/bin/env bash
# Installs incept's Debian packages (idempotent, non-interactive), checks that the NVIDIA
# libraries (CUDA toolkit with nvcc, cuDNN 9, NCCL 2) are present, then configures and
# builds into build/.  Usage: tools/setup.sh [--no-build] [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config python3 clang-format
  liblmdb-dev lmdb-utils                  # LMDB datasets (+ mdb_stat/mdb_dump for tests)
  libprotobuf-dev protobuf-compiler       # caffe.proto: Datum, BlobProto, NetParameter
  libopencv-dev                           # tests: independent image decode + dnn Caffe loader
  libturbojpeg0-dev libpng-dev zlib1g-dev # image decode/encode
  libcurl4-openssl-dev                    # HTTP crawl
  libgtest-dev                            # tests
  libcli11-dev nlohmann-json3-dev libfmt-dev libarchive-dev
  libopenblas-dev                         # CPU reference convolutions / inner products
  dataset-fashion-mnist                   # the embedded default dataset
  nginx-light                             # a real autoindex server for ingest tests
  libcairo2-dev fonts-dejavu-core         # the training report's PNG graphs (and their font)
  libopenmpi-dev openmpi-bin              # optional: the mpi rendezvous (mpirun/srun jobs) and its test
)

build=1
if [[ ${1:-} == --no-build ]]; then build=0; shift; fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: Debian packages already installed"
fi

# NVIDIA parts come from NVIDIA, not Debian: say clearly what is missing and where to get it.
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PATH="$CUDA_HOME/bin:$PATH"
fail=0
if ! command -v nvcc >/dev/null; then
  echo "setup: nvcc not found (looked in $CUDA_HOME/bin and PATH). Install the CUDA toolkit 12 or 13 from NVIDIA (https://developer.nvidia.com/cuda-downloads) or set CUDA_HOME." >&2
  fail=1
fi
find_nv() {  # name header lib
  local h l
  h=$(find "$CUDA_HOME/include" /usr/include -maxdepth 2 -name "$2" 2>/dev/null | head -1)
  l=$(find "$CUDA_HOME/lib64" "$CUDA_HOME/lib" /usr/lib/x86_64-linux-gnu -maxdepth 1 -name "$3*" 2>/dev/null | head -1)
  if [[ -z $h || -z $l ]]; then
    echo "setup: $1 not found ($2 / $3). $4" >&2
    fail=1
  else
    echo "setup: $1: $l"
  fi
}
find_nv cuDNN cudnn.h libcudnn.so "Install cuDNN 9 from NVIDIA (package cudnn9-cuda-12/13 from NVIDIA's CUDA repository)."
find_nv NCCL nccl.h libnccl.so "Install NCCL 2 from NVIDIA (packages libnccl2 libnccl-dev from NVIDIA's CUDA repository)."
((fail)) && exit 1
echo "setup: $(nvcc --version | grep release)"

if ((build)); then
  cmake -S . -B build -G Ninja "$@" >/dev/null
  cmake --build build -j"$(nproc)"
  echo "setup: built into build/ (programs in build/bin)"
fi
