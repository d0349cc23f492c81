#!/usr/bin/env bash
# The real LMDB the GPU benchmarks train from: Debian's Fashion-MNIST (or the idx files in
# $INCEPT_FASHION_MNIST_DIR) written as a class folder by fashion_mnist_folder, served by
# Python's http.server on 127.0.0.1 and ingested by imagenet_ingest with DIGITS' defaults
# (256x256 colour JPEG records, 25 % validation) into WORK/ds. Kept between runs; rebuilt when
# PER_CLASS changes. Prints one summary line; the ingest's log goes to INGEST_LOG.
# Usage: benchmarks/fmnist_dataset.sh WORK [PER_CLASS (100000: all 70,000 images)] [INGEST_LOG]
# The programs come from PATH. Exit status 0 when WORK/ds is ready.
set -uo pipefail
work=$1
per_class=${2:-100000}
ingest_log=${3:-$work/ingest.log}
mkdir -p "$work"
stamp=$work/ds.per_class
if [[ -f $work/ds/train_db/data.mdb && -f $stamp && $(cat "$stamp") == "$per_class" ]]; then
  echo "fashion-mnist: $work/ds already built ($per_class per class and split)"
  exit 0
fi
rm -rf "$work/images" "$work/ds"
server=""
trap '[[ -n $server ]] && kill $server 2>/dev/null' EXIT
t0=$(date +%s.%N)
fashion_mnist_folder "$work/images" --split all --per-class "$per_class" >"$work/folder.log" 2>&1 ||
  { echo "fashion-mnist: fashion_mnist_folder failed: $(tail -1 "$work/folder.log")"; exit 1; }
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$work/images" >"$work/http.log" 2>&1 &
server=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$work/http.log" | head -1)
  [[ -n $port ]] && break
  sleep 0.1
done
[[ -n $port ]] || { echo "fashion-mnist: python3 -m http.server did not start: $(tail -1 "$work/http.log")"; exit 1; }
t1=$(date +%s.%N)
imagenet_ingest "http://127.0.0.1:$port/" "$work/ds" >"$ingest_log" 2>&1
rc=$?
t2=$(date +%s.%N)
kill $server
server=""
echo "fashion-mnist: folder $(awk "BEGIN{print $t1 - $t0}") s, ingest over HTTP rc=$rc" \
  "$(awk "BEGIN{print $t2 - $t1}") s: $(tail -1 "$ingest_log")"
((rc == 0)) || exit 1
echo "$per_class" >"$stamp"
