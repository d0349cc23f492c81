#!/usr/bin/env bash
# Data-parallel training on a machine with two GPUs, on the real Fashion-MNIST LMDB that
# benchmarks/fmnist_gpu.sh ingests into WORK (run that first): train_googlenet's throughput
# with the loader in the loop on one and two GPUs, a correctness comparison of one GPU against
# two at the same global batch, two processes over NCCL's network transport against one process
# with two GPUs, and PyTorch DDP on the same GPUs.
# Usage: benchmarks/scaling_gpu.sh OUT_DIR   (env: WORK=/tmp/fmnist, ITERS=300, PEER=1)
set -uo pipefail
out=$1
work=${WORK:-/tmp/fmnist}
iters=${ITERS:-300}
log=$out/scaling.log
mkdir -p "$out"
ds=$work/ds
[[ -f $ds/train_db/data.mdb ]] || { echo "no dataset in $ds: run benchmarks/fmnist_gpu.sh first" >&2; exit 1; }
say() { echo "$*" | tee -a "$log"; }
median_rate() {  # the median img/s of a job's progress lines, the first two (warm-up) left out
  grep -o '[0-9]* img/s' "$1" | awk 'NR > 2 {print $1}' | sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}'
}
train() {  # name gpus batch precision [extra args...]
  local name=$1 gpus=$2 batch=$3 precision=$4
  shift 4
  rm -rf "$work/s_$name"
  train_googlenet --dataset "$ds" --output "$work/s_$name" --gpus "$gpus" --batch-size "$batch" \
    --precision "$precision" --seed 3 --max-iter "$iters" --val-interval 1000 --snapshot-interval 1000 \
    --display 10 "$@" >"$work/s_$name.log" 2>&1
  local rc=$?
  say "$(printf '%-22s gpus %-4s batch %-4s %s rc=%d  %6s img/s (median of progress lines)' "$name" "$gpus" \
    "$batch" "$precision" $rc "$(median_rate "$work/s_$name.log")")"
  grep -E "all-reduce|^final validation:" "$work/s_$name.log" | sed 's/^[0-9-]* [0-9:.]* I //' | tee -a "$log"
}

say "== throughput, real LMDB data in the loop (bf16, $iters iterations)"
train g1_b64 0 64 bf16
train g2_b128 0,1 128 bf16
train g1_b128 0 128 bf16
train g2_b256 0,1 256 bf16

say "== correctness: one GPU against two at global batch 128 (fp32, --deterministic)"
train c_g1 0 128 fp32 --deterministic
train c_g2 0,1 128 fp32 --deterministic
python3 - "$work/s_c_g1/metrics.csv" "$work/s_c_g2/metrics.csv" <<'EOF' | tee -a "$log"
import csv, sys
a, b = ([r for r in csv.DictReader(open(f))] for f in sys.argv[1:3])
worst = 0.0
for ra, rb in zip(a, b):
    for k in ra:
        if k in ("phase", "epoch", "iteration", "lr", "images_per_s", "wall_s") or not ra[k]:
            continue
        x, y = float(ra[k]), float(rb[k])
        worst = max(worst, abs(x - y) / max(abs(x), 1e-12))
last = [r for r in a if r["phase"] == "val"][-1], [r for r in b if r["phase"] == "val"][-1]
print(f"1 vs 2 GPUs: {len(a)} metric rows, largest relative difference {worst:.3g}; final val loss {last[0]['loss']} vs "
      f"{last[1]['loss']}, top-1 {last[0]['accuracy']} vs {last[1]['accuracy']}")
EOF

say "== two processes, one GPU each, NCCL forced onto its network transport (stands in for two nodes)"
rm -rf "$work/s_p2"
for r in 0 1; do
  NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 train_googlenet --dataset "$ds" --output "$work/s_p2" --gpus 0,1 \
    --local-rank $r --rank $r --world-size 2 --rendezvous tcp:127.0.0.1:29555 --batch-size 128 \
    --precision fp32 --deterministic --seed 3 --max-iter "$iters" --val-interval 1000 --snapshot-interval 1000 \
    --display 10 >"$work/s_p2_$r.log" 2>&1 &
done
wait
say "$(printf '%-22s 2 processes x 1 GPU, fp32  %6s img/s' p2_tcp "$(median_rate "$work/s_p2_0.log")")"
if cmp -s "$work/s_p2/snapshot_iter_$iters.caffemodel" "$work/s_c_g2/snapshot_iter_$iters.caffemodel"; then
  say "2 processes (network transport) == 1 process with 2 GPUs: final weights bitwise equal"
else
  say "2 processes (network transport) differ from 1 process with 2 GPUs"
  tail -3 "$work/s_p2_0.log" "$work/s_p2_1.log" | tee -a "$log"
fi

if [[ ${PEER:-1} == 1 ]]; then
  say "== PyTorch DDP, DIGITS GoogLeNet, same GPUs (synthetic data)"
  python3 "$(dirname "$0")/peer_pytorch.py" --ddp --models digits --batch 64,128 --dtypes bf16 --layouts cl \
    --modes eager,ro --budget "${PEER_BUDGET:-330}" --json "$out/peer_ddp.json" 2>&1 | tail -15 | tee -a "$log"
fi
tar -czf "$out/scaling_jobs.tgz" -C "$work" $(cd "$work" && ls s_*.log s_*/metrics.csv 2>/dev/null)
