#!/usr/bin/env bash
# The main job end to end on the embedded default dataset: Fashion-MNIST (Debian's
# dataset-fashion-mnist) written out as an image folder, served over HTTP on 127.0.0.1,
# crawled into a DIGITS/Caffe LMDB dataset by imagenet_ingest. Later stages (train,
# export, classify) run here as those tools land. Installs and builds first.
# Usage: tools/demo.sh [WORK_DIR]   (default: ./demo)   IMAGES_PER_CLASS=N to change size
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash tools/setup.sh
work=$(realpath -m "${1:-demo}")
per_class=${IMAGES_PER_CLASS:-300}
bin=build/bin
rm -rf "$work"
mkdir -p "$work"

echo "demo: writing $per_class Fashion-MNIST images per class as an image folder"
"$bin/fashion_mnist_folder" --per-class "$per_class" "$work/images"

# Serve the folder with Python's http.server on a free port of 127.0.0.1.
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$work/images" >"$work/http.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$work/http.log" | head -1)
  [[ -n $port ]] && break
  sleep 0.1
done
[[ -n $port ]] || { echo "demo: the HTTP server did not start" >&2; cat "$work/http.log" >&2; exit 1; }
url="http://127.0.0.1:$port/"
echo "demo: serving at $url"

"$bin/imagenet_ingest" "$url" "$work/dataset"
echo "demo: dataset written to $work/dataset:"
ls -l "$work/dataset"
