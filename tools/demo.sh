#!/usr/bin/env bash
# The main job end to end on the embedded default dataset: Fashion-MNIST (Debian's
# dataset-fashion-mnist) written out as an image folder, served over HTTP on 127.0.0.1,
# crawled into a DIGITS/Caffe LMDB dataset by imagenet_ingest (DIGITS' defaults), DIGITS'
# GoogLeNet trained on it by train_googlenet (a real run on GPU 0; a short run on the CPU
# reference where there is no GPU), exported as DIGITS' "Download Model" archive by
# export_caffe, and two images classified from the archive. Installs and builds first.
# Usage: tools/demo.sh [WORK_DIR]   (default: ./demo)
#   IMAGES_PER_CLASS=N  dataset size (default 300 with a GPU, 30 on the CPU)
#   EPOCHS=N            training epochs with a GPU (default 10)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash tools/setup.sh
work=$(realpath -m "${1:-demo}")
if nvidia-smi -L >/dev/null 2>&1; then gpu=1; else gpu=0; fi
per_class=${IMAGES_PER_CLASS:-$((gpu ? 300 : 30))}
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

if ((gpu)); then
  echo "demo: training DIGITS' GoogLeNet on GPU 0 (${EPOCHS:-10} epochs, batch 128)"
  "$bin/train_googlenet" --dataset "$work/dataset" --output "$work/job" --gpus 0 --epochs "${EPOCHS:-10}" \
    --batch-size 128 --seed 1
else
  echo "demo: no GPU here: a short run of DIGITS' GoogLeNet on the CPU reference (4 iterations of 8 images)"
  "$bin/train_googlenet" --dataset "$work/dataset" --output "$work/job" --gpus none --max-iter 4 \
    --batch-size 8 --val-batch-size 25 --seed 1
fi

"$bin/export_caffe" --job "$work/job" --out "$work/model.tar.gz"
samples="$(find "$work/images/Sneaker" -name '*.png' | head -1) $(find "$work/images/Trouser" -name '*.png' | head -1)"
# shellcheck disable=SC2086
"$bin/classify" --model "$work/model.tar.gz" --gpus "$( ((gpu)) && echo 0 || echo none)" $samples

echo
echo "demo: done."
echo "  report:   $work/job/report.html  (and report.png)"
echo "  snapshot: $(ls -t "$work"/job/snapshot_iter_*.caffemodel | head -1)"
echo "  model:    $work/model.tar.gz  (DIGITS' archive: deploy.prototxt, caffemodel, labels, mean)"
