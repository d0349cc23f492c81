#!/usr/bin/env bash
# benchmarks/run.sh: the benchmark table in one command (issue #13). See usage() below, or --help.
# Every part is a program that already measures one thing (bench_train_step, train_googlenet,
# peer_pytorch.py, bench_loader, bench_ingest; fmnist_dataset.sh builds the real LMDB); this
# script decides what runs on this machine, bounds each part in time, and hands the output
# folder to bench_report (table, CSV, RESULTS.md section) and bench_chart (PNG).
set -uo pipefail

usage() {
  cat <<'EOF'
benchmarks/run.sh [options]: incept against DIGITS and PyTorch on this machine's GPUs, one table.

On the GPUs it finds (nvidia-smi), in one go and each part bounded in time:
  incept   bench_train_step on 1 GPU (bf16 and fp32, batch 128, synthetic data and fed by the
           loader from a real LMDB; bf16 at batch 64 too) and data parallel on all GPUs (128 per GPU, and the mission's
           global batch 128); train_googlenet jobs on the real LMDB (the whole trainer: loader,
           step, validation; all GPUs at 128 per GPU and at global 128, bf16 and fp32, and one GPU
           bf16), which also measure the validation rate
  pytorch  benchmarks/peer_pytorch.py on the same GPUs: the exact DIGITS GoogLeNet and torchvision's
           googlenet, eager / torch.compile / reduce-overhead, single GPU and DDP, bf16 autocast and
           fp32, in priority order within the time left (skipped, with the reason, without torch)
  loader   bench_loader: the training loader alone, img/s in total and per decode thread
  ingest   bench_ingest: imagenet_ingest over HTTP from nginx on 127.0.0.1 (python3 -m http.server
           where nginx is not installed; the table says which)
The real LMDB is Fashion-MNIST ($INCEPT_FASHION_MNIST_DIR or Debian's dataset-fashion-mnist) served
over HTTP and ingested with DIGITS' defaults (256x256 JPEG); without it, a synthetic ImageNet-shaped
JPEG tree (bench_ingest_tree) ingested the same way. Without a GPU (or with --cpu) it runs what it
can: the CPU reference step (GoogLeNet), the loader and the ingest.

Output (--out DIR): table.txt (printed at the end), results.csv, results.md (the section for
benchmarks/RESULTS.md), chart.json + chart.png (img/s per configuration), meta.txt, each part's
JSON, logs/. The table projects DIGITS' 60-epoch ImageNet job at every training rate, next to
DIGITS' ~29 h on 2x P100 and NVIDIA Caffe's 468 / 894 img/s on one / two P100s.

Options:
  --out DIR            output folder (default ./bench_out/<date-time>)
  --only LIST          parts, comma-separated: incept,pytorch,loader,ingest (default: all)
  --cpu                CPU mode even where there is a GPU
  --quick              a few minutes: fewer steps, a smaller LMDB, eager PyTorch only
  --tiny               seconds (CI): smallest sizes everywhere
  --iters N            timed steps of bench_train_step and peer_pytorch.py (default 30, >= 20 for
                       PyTorch) and iterations of each train_googlenet job (default 150)
  --budget S           seconds for the whole run (default 520 with GPUs: fits a 9-minute call;
                       PyTorch gets what the other parts leave, most important configurations first)
  --lmdb-per-class N   Fashion-MNIST images per class from each of its two splits for the LMDB
                       (default 500: 10,000 images, 7,500 train / 2,500 val; 7000: all 70,000)
  --peers SET          default | quick | full | none | a comma list of peer_pytorch.py names
                       (prefix ddp: for DDP), e.g. ddp:digits:ro:bf16:cl:b64,digits:*:fp32:nchw:b128.
                       full is the whole grid (36 configurations, ~45 min: split it over calls with
                       lists and merge the output folders with --report)
  --gpus LIST          GPUs to use, e.g. 0,1 (default: all that nvidia-smi lists)
  --work DIR           scratch (dataset, ingest tree, jobs), kept between runs (default
                       ${TMPDIR:-/tmp}/incept_bench)
  --bin DIR            the programs' folder (default: PATH, else build/bin beside this script)
  --results FILE       also write the section into FILE between <!-- run.sh:begin/end --> (e.g.
                       benchmarks/RESULTS.md) and the chart beside it (results_chart.png)
  --dry-run            print what would run (each command and its time limit), run nothing
  --report DIR...      no runs: the table, section and chart again from existing output folders
                       (the first gets the files; rows of later ones are added)
  -h, --help           this text
Typical: benchmarks/run.sh --out /tmp/bench --results benchmarks/RESULTS.md
EOF
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$script_dir")
out="" only="incept,pytorch,loader,ingest" cpu=0 quick=0 tiny=0 iters="" budget="" per_class="" peers=""
gpus_spec="" work="" bin="" results="" report_dirs=() dry=0
args_text="$*"
while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --cpu) cpu=1; shift ;;
    --quick) quick=1; shift ;;
    --tiny) tiny=1; quick=1; shift ;;
    --iters) iters=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --lmdb-per-class) per_class=$2; shift 2 ;;
    --peers) peers=$2; shift 2 ;;
    --gpus) gpus_spec=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --results) results=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --report) shift; while (($#)) && [[ $1 != --* ]]; do report_dirs+=("$1"); shift; done ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for p in ${only//,/ }; do
  [[ $p =~ ^(incept|pytorch|loader|ingest)$ ]] || { echo "run.sh: --only: '$p' is not incept, pytorch, loader or ingest" >&2; exit 2; }
done
[[ -z $iters || $iters =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --iters must be a positive number" >&2; exit 2; }
[[ -z $budget || $budget =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --budget must be a positive number of seconds" >&2; exit 2; }
[[ -z $per_class || $per_class =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --lmdb-per-class must be a positive number" >&2; exit 2; }

if [[ -n $bin ]]; then
  PATH=$(cd "$bin" && pwd):$PATH
elif ! command -v bench_train_step >/dev/null && [[ -x $repo/build/bin/bench_train_step ]]; then
  PATH=$repo/build/bin:$PATH
fi
export PATH
need=(bench_report bench_chart)
((${#report_dirs[@]})) || need+=(bench_train_step train_googlenet bench_loader bench_ingest bench_ingest_tree
  fashion_mnist_folder imagenet_ingest)
missing=()
for p in "${need[@]}"; do command -v "$p" >/dev/null || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "run.sh: not found on PATH (or --bin): ${missing[*]}; build them: ninja -C build ${missing[*]}" >&2
  exit 2
fi

# ---- the report (also the last step of a run) --------------------------------------------------
report() {  # output folders...
  local first=$1 extra=()
  [[ -n $results ]] && extra=(--results "$results" --chart-link results_chart.png)
  bench_report "$@" "${extra[@]}" || return 1
  bench_chart --json "$first/chart.json" --out "$first/chart.png" >/dev/null || return 1
  [[ -n $results ]] && cp "$first/chart.png" "$(dirname "$results")/results_chart.png"
  echo "output: $first (table.txt, results.csv, results.md, chart.png, logs/)"
}
if ((${#report_dirs[@]})); then
  report "${report_dirs[@]}"
  exit $?
fi

# ---- this machine -------------------------------------------------------------------------------
out=${out:-$PWD/bench_out/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out/logs" || exit 2
out=$(cd "$out" && pwd)
work=${work:-${TMPDIR:-/tmp}/incept_bench}
mkdir -p "$work" || exit 2
work=$(cd "$work" && pwd)
rm -f "$out"/{step_,peer_,job_}* "$out"/{loader,ingest}.json "$out/skipped.txt"
start=$(date +%s)
say() { printf '[%4ds] %s\n' $(($(date +%s) - start)) "$*"; }
note() { echo "$*" >>"$out/skipped.txt"; say "$*"; }

gpu_count=0 gpu_model="" driver="" gpu_mem="" cuda_driver="" gpu_why="--cpu"
if ((!cpu)); then
  if ! command -v nvidia-smi >/dev/null; then
    gpu_why="no nvidia-smi"
  elif ! q=$(timeout 30 nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader,nounits 2>&1); then
    gpu_why="nvidia-smi: $(head -1 <<<"$q")"
  else
    gpu_count=$(grep -c . <<<"$q")
    IFS=, read -r _ gpu_model driver gpu_mem <<<"$(head -1 <<<"$q")"
    gpu_model=${gpu_model# } driver=${driver# } gpu_mem=${gpu_mem# }
    cuda_driver=$(timeout 30 nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -1)
    if [[ -n ${CUDA_VISIBLE_DEVICES-} ]]; then
      visible=$(tr ',' '\n' <<<"$CUDA_VISIBLE_DEVICES" | grep -c .)
      ((visible < gpu_count)) && gpu_count=$visible
    fi
    ((gpu_count > 0)) || gpu_why="CUDA_VISIBLE_DEVICES hides every GPU"
  fi
fi
if ((gpu_count > 0)); then
  mode=gpu
  gpus=${gpus_spec:-$(seq -s, 0 $((gpu_count - 1)))}
  n=$(tr ',' '\n' <<<"$gpus" | grep -c .)
else
  mode=cpu gpus="" n=0
fi

# Sizes: GPU default / --quick / CPU / --tiny.
if ((tiny)); then
  step_iters=${iters:-3} job_iters=${iters:-20} per_class=${per_class:-10} loader_s=0.5 ingest=(4 6 1)
  budget=${budget:-300} cpu_batch=2
elif [[ $mode == cpu ]]; then
  step_iters=${iters:-5} job_iters=${iters:-20} per_class=${per_class:-50} loader_s=2 ingest=(20 20 2)
  budget=${budget:-900} cpu_batch=4
elif ((quick)); then
  step_iters=${iters:-20} job_iters=${iters:-60} per_class=${per_class:-150} loader_s=1 ingest=(50 20 1)
  budget=${budget:-300}
else
  step_iters=${iters:-30} job_iters=${iters:-150} per_class=${per_class:-500} loader_s=2 ingest=(100 40 3)
  budget=${budget:-520}
fi
peers=${peers:-$( ((quick)) && echo quick || echo default)}
deadline=$((start + budget))
left() { echo $((deadline - $(date +%s))); }

commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ $commit != unknown ]] && ! git -C "$repo" diff --quiet HEAD 2>/dev/null && commit+="-dirty"
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit=$commit"
  echo "mode=$mode"
  echo "host=$(hostname)"
  echo "cpu=${cpu_model:-unknown}"
  echo "cores=$(nproc)"
  echo "args=${args_text:-(defaults)}"
  echo "budget_s=$budget"
  if [[ $mode == gpu ]]; then
    echo "gpu_model=$gpu_model"
    echo "gpu_count=$n"
    echo "gpu_memory_mib=$gpu_mem"
    echo "driver=$driver"
    echo "cuda_driver=$cuda_driver"
  fi
} >"$out/meta.txt"
if [[ $mode == gpu ]]; then
  say "GPUs: $n x $gpu_model (driver $driver, CUDA $cuda_driver); using $gpus; budget ${budget}s; output $out"
else
  say "CPU mode ($gpu_why): $(nproc) x ${cpu_model:-unknown CPU}; output $out"
fi

wants() { [[ ,$only, == *,$1,* ]]; }
failed=0
# part NAME CAP_S CMD...: CMD under a time limit (the smaller of CAP_S and what the budget leaves),
# output in logs/NAME.log; a failure or a timeout is noted (and fails the run) and the run goes
# on. With soft=1 a non-zero status that is not a timeout only gets a line (peer_pytorch.py exits
# 1 when a configuration failed or did not fit: those are rows of its JSON).
part() {
  local name=$1 cap=$2
  shift 2
  local t
  t=$(left)
  ((t > cap)) && t=$cap
  if ((t < 5)); then
    note "$name: not run (the --budget of ${budget}s is spent)"
    return 1
  fi
  if ((dry)); then
    say "$name (<= ${t}s): $*"
    return 0
  fi
  local t0 rc
  t0=$(date +%s)
  timeout -k 10 "$t" "$@" >"$out/logs/$name.log" 2>&1
  rc=$?
  if ((rc == 0)); then
    say "$name: ok ($(($(date +%s) - t0)) s)"
    return 0
  fi
  if [[ ${soft:-0} == 1 && $rc != 124 && $rc != 137 ]]; then  # its errors are rows of the table
    say "$name: finished with status $rc ($(($(date +%s) - t0)) s; the table's notes say what did not run)"
    return "$rc"
  fi
  failed=1
  if ((rc == 124 || rc == 137)); then
    note "$name: timed out after ${t}s (logs/$name.log)"
  else
    note "$name: failed, exit status $rc (logs/$name.log): $(grep -v '^\s*$' "$out/logs/$name.log" | tail -1 | cut -c1-200)"
  fi
  return 1
}

# ---- the real LMDB --------------------------------------------------------------------------------
ds=""
if wants incept || wants loader; then
  fm_dir=${INCEPT_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
  if [[ -f $fm_dir/train-images-idx3-ubyte.gz ]]; then
    if part dataset 150 "$script_dir/fmnist_dataset.sh" "$work/fmnist" "$per_class" "$out/logs/dataset_ingest.log"; then
      ((dry)) || say "$(tail -1 "$out/logs/dataset.log")"
      ds=$work/fmnist/ds
      echo "data_label=Fashion-MNIST LMDB" >>"$out/meta.txt"
      kind="Fashion-MNIST ($per_class per class and split)"
    fi
  else
    say "no Fashion-MNIST in $fm_dir (set INCEPT_FASHION_MNIST_DIR or install dataset-fashion-mnist): synthetic JPEG tree instead"
    syn=$work/synthetic_${per_class}
    if [[ -f $syn/ds/train_db/data.mdb ]] ||
      { rm -rf "$syn" &&
        part dataset_tree 300 bench_ingest_tree --out "$syn/tree" --classes 10 --per-class $((2 * per_class)) &&
        part dataset 300 imagenet_ingest "$syn/tree/imagenet/train" "$syn/ds"; }; then
      ds=$syn/ds
      echo "data_label=synthetic-JPEG LMDB" >>"$out/meta.txt"
      kind="synthetic ImageNet-shaped JPEGs (bench_ingest_tree, 10 classes)"
    fi
  fi
  if [[ -n $ds ]]; then
    counts=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["classes"]; print(sum(x["train"] for x in c), sum(x["val"] for x in c))' "$ds/dataset.json" 2>/dev/null)
    echo "dataset=$kind as 256x256 colour JPEG records (DIGITS' defaults), ${counts% *} train / ${counts#* } val records" >>"$out/meta.txt"
  else
    note "the real LMDB could not be built: the LMDB rows and the loader are missing"
  fi
fi

# ---- incept ---------------------------------------------------------------------------------------
job() {  # name gpus global_batch precision
  local name=$1 g=$2 global=$3 prec=$4
  local dir=$work/jobs/$name k
  k=$(tr ',' '\n' <<<"$g" | grep -c .)
  rm -rf "$dir"
  mkdir -p "$work/jobs"
  local mem_pid=""
  if [[ $mode == gpu ]] && ((!dry)); then
    nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits >"$work/jobs/$name.mem0" 2>/dev/null
    nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 200 >"$work/jobs/$name.mem" 2>/dev/null &
    mem_pid=$!
  fi
  part "job_$name" 120 train_googlenet --dataset "$ds" --output "$dir" --gpus "$g" --batch-size "$global" \
    --precision "$prec" --seed 1 --max-iter "$job_iters" --val-interval 1 --snapshot-interval 1000 --display 10
  local rc=$?
  [[ -n $mem_pid ]] && kill "$mem_pid" 2>/dev/null && wait "$mem_pid" 2>/dev/null
  ((rc == 0 && !dry)) || return
  local peak
  peak=$(awk -F', *' -v gpus="$g" 'NR == FNR { base[$1] = $2; next }
    { d = $2 - base[$1]; if (d > peak[$1]) peak[$1] = d }
    END { m = 0; n = split(gpus, a, ","); for (i = 1; i <= n; i++) if (peak[a[i]] > m) m = peak[a[i]]; print m }' \
    "$work/jobs/$name.mem0" "$work/jobs/$name.mem" 2>/dev/null)
  rm -f "$dir"/*.caffemodel "$dir"/*.solverstate  # 41 MB each; the rates are in metrics.jsonl
  cp "$dir/metrics.jsonl" "$out/job_$name.metrics.jsonl"
  cp "$dir/train.log" "$out/logs/job_$name.train.log" 2>/dev/null
  printf 'gpus=%s\nglobal_batch=%s\nprecision=%s\nmax_iter=%s\n' "$k" "$global" "$prec" "$job_iters" >"$out/job_$name.txt"
  # fp32's GEMM arithmetic as the job resolved --fp32-math (its log names the net: "fp32 (3xTF32 GEMMs)")
  if grep -q '(3xTF32 GEMMs)' "$dir/train.log" 2>/dev/null; then
    echo "fp32_math=3xtf32" >>"$out/job_$name.txt"
  elif grep -q '(strict GEMMs)' "$dir/train.log" 2>/dev/null; then
    echo "fp32_math=strict" >>"$out/job_$name.txt"
  fi
  [[ -n $peak && $peak != 0 ]] && echo "peak_mib=$peak" >>"$out/job_$name.txt"
}

if wants incept; then
  if [[ $mode == cpu ]]; then
    part step_cpu 300 bench_train_step --cpu --batch "$cpu_batch" --warmup 1 --steps "$step_iters" \
      --json "$out/step_cpu.json"
  else
    lmdb=()
    [[ -n $ds ]] && lmdb=(--dataset "$ds")
    # fp32 twice: the default GEMMs (3xTF32 on compute capability 8.0+) and cuBLAS's FMA fp32.
    part step_1gpu 200 bench_train_step --device "${gpus%%,*}" --dtype bf16 fp32 --fp32-math auto strict \
      --batch 128 --steps "$step_iters" "${lmdb[@]}" --json "$out/step_1gpu_b128.json"
    # One GPU at 64, the per-GPU batch of the mission's two-GPU setting (issue #12's third bar).
    part step_1gpu_b64 90 bench_train_step --device "${gpus%%,*}" --dtype bf16 --batch 64 --steps "$step_iters" \
      --json "$out/step_1gpu_b64.json"
    if ((n > 1)); then
      part "step_${n}gpu_b128" 120 bench_train_step --gpus "$gpus" --dtype bf16 fp32 --batch 128 \
        --steps "$step_iters" --json "$out/step_${n}gpu_b128.json"
      if ((128 % n == 0)); then
        part "step_${n}gpu_b$((128 / n))" 120 bench_train_step --gpus "$gpus" --dtype bf16 fp32 \
          --batch $((128 / n)) --steps "$step_iters" --json "$out/step_${n}gpu_b$((128 / n)).json"
      fi
    fi
    if [[ -n $ds ]]; then
      if ((n > 1)); then
        for prec in bf16 fp32; do
          job "g${n}_b$((128 * n))_$prec" "$gpus" $((128 * n)) $prec
          ((128 % n == 0)) && job "g${n}_b128_$prec" "$gpus" 128 $prec
        done
        ((quick)) || job g1_b128_bf16 "${gpus%%,*}" 128 bf16
      else
        job g1_b128_bf16 "$gpus" 128 bf16
        job g1_b128_fp32 "$gpus" 128 fp32
      fi
    fi
  fi
fi

# ---- the loader and the ingest ----------------------------------------------------------------------
if wants loader && [[ -n $ds ]]; then
  cores=$(nproc)
  threads=1
  for ((t = 2; t < cores; t *= 2)); do threads+=",$t"; done
  ((cores > 2)) && [[ ,$threads, != *,$((cores - 1)),* ]] && threads+=",$((cores - 1))"
  ((cores == 2)) && threads+=",2"
  ((tiny)) && threads=1,2
  part loader 120 bench_loader --db "$ds/train_db" --batch 128 --threads "$threads" --seconds "$loader_s" \
    --json "$out/loader.json"
fi
if wants ingest; then
  tree=$work/ingest_tree_${ingest[0]}x${ingest[1]}
  part ingest 180 bench_ingest --tree "$tree" --out "$work/ingest_out" --classes "${ingest[0]}" \
    --per-class "${ingest[1]}" --runs "${ingest[2]}" --server auto --json "$out/ingest.json" &&
    [[ -f $out/ingest.json ]] && say "ingest: served by $(sed -n 's/.*"server": "\(.*\)".*/\1/p' "$out/ingest.json") on 127.0.0.1"
fi

# ---- PyTorch --------------------------------------------------------------------------------------
peer_list() {  # the configurations, most important first ("ddp:" = DistributedDataParallel)
  local m=$((128 / (n > 0 ? n : 1)))
  case $peers in
    default)
      echo "ddp:digits:ro:bf16:cl:b$m,digits:ro:bf16:cl:b128,digits:ro:bf16:cl:b64,digits:ro:fp32:nchw:b128,\
digits:eager:bf16:cl:b128,digits:eager:fp32:nchw:b128,ddp:digits:eager:bf16:cl:b$m,tv:eager:bf16:cl:b128,\
digits:compile:fp32:nchw:b128,ddp:digits:ro:bf16:cl:b128,tv:ro:bf16:cl:b128" ;;
    quick) echo "digits:eager:bf16:cl:b128,ddp:digits:eager:bf16:cl:b$m,digits:eager:fp32:nchw:b128,tv:eager:bf16:cl:b128" ;;
    full)
      local l="" model mode dt
      for model in digits tv; do
        for dt in bf16:cl fp32:nchw; do
          for mode in ro compile eager; do
            l+="ddp:$model:$mode:$dt:b$m,$model:$mode:$dt:b128,ddp:$model:$mode:$dt:b128,"
          done
        done
      done
      echo "${l%,}" ;;
    *) echo "$peers" ;;
  esac
}
if wants pytorch; then
  if [[ $mode == cpu ]]; then
    note "pytorch: not run (CPU mode: the peers are measured on GPUs)"
  elif [[ $peers == none ]]; then
    note "pytorch: not run (--peers none)"
  elif ! python3 -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)' 2>/dev/null; then
    note "pytorch: not run: $(command -v python3 >/dev/null && echo "python3 has no torch module" || echo "no python3") (install torch and torchvision to measure the peers)"
  else
    list=$(peer_list)
    if ! python3 -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torchvision") is None)' 2>/dev/null; then
      note "pytorch: no torchvision: the torchvision googlenet configurations are left out"
      list=$(tr ',' '\n' <<<"$list" | grep -v '^\(ddp:\)\?tv:' | paste -sd,)
    fi
    if ((n < 2)) && grep -q 'ddp:' <<<"$list"; then
      note "pytorch: one GPU: the DDP configurations are left out"
      list=$(tr ',' '\n' <<<"$list" | grep -v '^ddp:' | paste -sd,)
    fi
    # Contiguous runs of single-GPU / DDP names, one peer_pytorch.py call each, in order.
    group="" kind="" k=0
    flush() {
      [[ -z $group ]] && return
      k=$((k + 1))
      local batches extra=() t
      batches=$(grep -o ':b[0-9][0-9]*' <<<"$group" | sed 's/:b//' | sort -un | paste -sd,)
      [[ -z $batches || $group == *':b*'* || $group == *'*'* ]] && batches=$(printf '128\n%s\n' $((128 / n)) | sort -un | paste -sd,)
      [[ $kind == ddp ]] && extra=(--ddp --gpus "$n")
      t=$(($(left) - 20))
      if ((t < 30)); then
        note "pytorch: not run: $group (the --budget of ${budget}s is spent)"
      else
        soft=1 part "peer_$k" $((t + 30)) python3 "$script_dir/peer_pytorch.py" "${extra[@]}" --models digits,tv \
          --modes eager,compile,ro --dtypes bf16,fp32 --layouts cl,nchw --batch "$batches" --configs "$group" \
          --steps $((step_iters < 20 ? 20 : step_iters)) --budget "$t" --min-left 45,150 --config-timeout 300 \
          --logs "$out/logs/peer" --json "$out/peer_$k.json"
      fi
      group=""
    }
    IFS=, read -ra names <<<"$list"
    for name in "${names[@]}"; do
      if [[ $name == ddp:* ]]; then c=ddp pat="ddp*:${name#ddp:}"; else c=single pat=$name; fi
      [[ $c != "$kind" ]] && flush
      kind=$c
      group+=${group:+,}$pat
    done
    flush
  fi
fi

# ---- the table ---------------------------------------------------------------------------------------
((dry)) && exit 0
say "report"
report "$out" | tee "$out/logs/report.log" || failed=1
say "done in $(($(date +%s) - start)) s"
exit $failed
