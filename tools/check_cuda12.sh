#!/usr/bin/env bash
# Builds incept with a CUDA 12 toolkit for the GPUs CUDA 13 can no longer target (sm_60: the
# P100 of DIGITS' two-GPU setting; sm_70: the V100), so that "buildable for a P100 with CUDA 12"
# is checked, not assumed. CUDA 13 (this project's toolkit) cannot compile for them at all.
#
# The toolkit is Debian's own CUDA 12 (package nvidia-cuda-toolkit 12.4 from Debian 13 "trixie",
# section non-free). It is fetched with apt-get download into a cache folder and unpacked there:
# nothing is installed and the system's apt sources are not touched. cuDNN 9 and NCCL 2 come from
# the CUDA 13 install (CUDA_HOME, default /usr/local/cuda): their headers do not depend on the
# CUDA version, and the build links against them only to check that every symbol resolves. On a
# real P100 server, install NVIDIA's CUDA 12 builds of cuDNN 9 (one whose support matrix lists
# compute capability 6.0, as 9.0's and 9.5's do) and NCCL instead.
#
# Usage: tools/check_cuda12.sh [--arch "60;70"] [--cache DIR] [--build DIR] [--target T]...
#   --arch     CMAKE_CUDA_ARCHITECTURES (default "60;70")
#   --cache    where the packages and the unpacked toolkit live (default ~/.cache/incept/cuda12)
#   --build    the build folder (default build-cuda12)
#   --target   a ninja target to build (repeatable; default: everything, tests included)
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD

arch="60;70"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/incept/cuda12"
build=build-cuda12
targets=()
while (($#)); do
  case "$1" in
    --arch) arch=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --target) targets+=("$2"); shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "check_cuda12: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [[ $(uname -m) != x86_64 ]]; then
  echo "check_cuda12: fetches Debian's amd64 packages; this machine is $(uname -m)" >&2
  exit 2
fi
cuda13=${CUDA_HOME:-/usr/local/cuda}
toolkit=$cache/toolkit

# ---- Debian's CUDA 12 toolkit, unpacked into $toolkit ---------------------------------------
# The packages nvcc needs to compile and link incept: the compiler (nvcc, cicc, ptxas, ...), the
# headers and the runtime/cuBLAS libraries, libdevice, and CCCL (thrust/cub/libcu++) of the same
# release. Their versions are whatever trixie carries (12.4.1 since its release).
packages=(nvidia-cuda-toolkit nvidia-cuda-dev libcudart12 libnvvm4 libcublas12 libcublaslt12
          libcub-dev libthrust-dev libcu++-dev)

fetch_toolkit() {
  local apt=$cache/apt debs=$cache/debs
  rm -rf "$apt" "$debs" "$toolkit.part"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/parts" "$debs"
  : > "$apt/status"
  cat > "$apt/sources.list" <<'EOF'
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main contrib non-free
EOF
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/parts"
              -o "Dir::State=$apt" -o "Dir::State::Lists=$apt/lists" -o "Dir::State::status=$apt/status"
              -o "Dir::Cache=$apt/cache" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=$(id -un)"
              -o "APT::Architecture=amd64" -o "APT::Architectures::=amd64")
  echo "check_cuda12: fetching Debian trixie's package lists (private apt state in $apt)"
  apt-get "${opts[@]}" -qq update
  echo "check_cuda12: downloading ${packages[*]}"
  (cd "$debs" && apt-get "${opts[@]}" -q download "${packages[@]}")
  local root=$cache/root
  rm -rf "$root"
  mkdir -p "$root"
  echo "check_cuda12: unpacking into $cache"
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$root"; done
  # NVIDIA's layout, which CMake's FindCUDAToolkit and nvcc expect: bin/, nvvm/, include/, lib64/.
  local t=$toolkit.part
  mkdir -p "$t/bin" "$t/nvvm/bin" "$t/lib64"
  cp "$root/usr/lib/nvidia-cuda-toolkit/bin/nvcc" "$t/bin/"
  cp -r "$root/usr/lib/nvidia-cuda-toolkit/bin/crt" "$t/bin/"
  for tool in ptxas fatbinary nvlink cudafe++ bin2c cuobjdump nvdisasm nvprune; do
    cp "$root/usr/bin/$tool" "$t/bin/"
  done
  cp "$root/usr/lib/nvidia-cuda-toolkit/bin/cicc" "$t/nvvm/bin/"
  cp -r "$root/usr/lib/nvidia-cuda-toolkit/libdevice" "$t/nvvm/"
  cp -r "$root/usr/include" "$t/include"
  cp -a "$root/usr/lib/x86_64-linux-gnu/." "$t/lib64/"
  # ~2 GB of static libraries that a shared build never reads (nvcc links cudart_static itself)
  find "$t/lib64" -name '*_static*.a' ! -name 'libcudart_static.a' -delete
  cat > "$t/bin/nvcc.profile" <<'EOF'
TOP                = $(_HERE_)/..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
LD_LIBRARY_PATH   += $(TOP)/lib64:
PATH              += $(TOP)/nvvm/bin:$(_HERE_):
INCLUDES          += "-I$(TOP)/include" $(_SPACE_)
LIBRARIES          =+ $(_SPACE_) "-L$(TOP)/lib64/stubs" "-L$(TOP)/lib64"
EOF
  rm -rf "$root" "$debs" "$apt"
  mv "$t" "$toolkit"
}

if [[ ! -x $toolkit/bin/nvcc ]]; then
  fetch_toolkit
fi
version=$("$toolkit/bin/nvcc" --version | grep -o 'release [0-9.]*' || true)
echo "check_cuda12: nvcc $version in $toolkit"

# ---- cuDNN and NCCL: headers and libraries only, so that CUDA 13's own headers stay out -------
dnn=$cache/dnn
rm -rf "$dnn"
mkdir -p "$dnn/include" "$dnn/lib"
shopt -s nullglob
for f in "$cuda13"/include/cudnn*.h "$cuda13"/include/nccl*; do ln -s "$f" "$dnn/include/"; done
for f in "$cuda13"/lib64/libcudnn* "$cuda13"/lib64/libnccl*; do ln -s "$f" "$dnn/lib/"; done
shopt -u nullglob
if [[ ! -e $dnn/include/cudnn.h || ! -e $dnn/include/nccl.h ]]; then
  echo "check_cuda12: cuDNN or NCCL not found under $cuda13 (set CUDA_HOME)" >&2
  exit 1
fi

# ---- configure and build ----------------------------------------------------------------------
echo "check_cuda12: building for sm $arch into $build"
mkdir -p "$build"  # the configure log goes inside it, not beside it in the source tree
CUDACXX=$toolkit/bin/nvcc CUDNN_PATH=$dnn cmake -S "$src" -B "$build" -G Ninja \
  -DCUDAToolkit_ROOT="$toolkit" -DCMAKE_CUDA_ARCHITECTURES="$arch" > "$build/configure.log" 2>&1 ||
  { cat "$build/configure.log" >&2; exit 1; }
grep -E "Found CUDAToolkit|incept: (cudnn|nccl)" "$build/configure.log" | sed 's/^/check_cuda12: /'
start=$SECONDS
ninja -C "$build" "${targets[@]}"
echo "check_cuda12: built with CUDA ${version#release } for sm $arch in $((SECONDS - start)) s"
