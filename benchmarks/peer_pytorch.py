#!/usr/bin/env python3
"""PyTorch peer for incept's GoogLeNet training step: the numbers incept must beat.

One invocation measures every configuration of this grid (or the subset --configs selects):
  model    digits  the exact DIGITS/BVLC GoogLeNet: LRN(5, 1e-4, 0.75, k=1), biases, Caffe CEIL
                   pooling (ceil_mode=True), two auxiliary heads (ave-pool 5/3, 1x1 conv 128,
                   fc 1024, dropout 0.7, classifier), dropout 0.4 before the final classifier,
                   loss = main + 0.3 * (aux1 + aux2); 13,378,280 parameters at 1000 classes.
           tv      torchvision googlenet(aux_logits=True) (BN-Inception port: no LRN, no
                   biases, 3x3 in its "5x5" branch), for context.
  mode     eager   plain PyTorch
           compile torch.compile(mode="default")
           ro      torch.compile(mode="reduce-overhead"): CUDA graphs
  dtype    bf16    autocast to bfloat16;  fp32  strict fp32 (TF32 off);  tf32 (on request)
  layout   cl      channels_last;  nchw  contiguous NCHW
  batch    --batch, a list (default 128,64)
Names read <model>:<mode>:<dtype>:<layout>:b<batch>, e.g. digits:ro:bf16:cl:b128; --configs
takes comma-separated shell patterns over them (digits:*:bf16:*:b128) and --list prints them;
configurations run in the order of the first pattern each matches (so a list of patterns is a
priority order: with --budget, what matters most runs first).
--ddp measures DistributedDataParallel instead: one process per GPU (torch.multiprocessing
spawn, NCCL over 127.0.0.1, NVLink multicast off), --batch per GPU (the global batch is that
times the GPUs), DDP's default buckets, modes eager and ro by default; names start ddp<N>:.

Every configuration runs in its own process (its own process group: an error, an OOM, a crash
or a hang gives an error row and the others still run), bounded by --config-timeout and the
whole run by --budget (--min-left: a configuration does not start unless that much of the budget
is left for it, so a compile is not started only to be killed). In it: synthetic data on the GPU, SGD momentum 0.9 and weight decay
2e-4 (fused unless --sgd foreach), cudnn.benchmark on; the compiled module is the network plus
its loss, compiled once (static shapes). The first step (compile, for eager cuDNN's autotuning)
and the rest of the warm-up are timed apart from the measured steps. Then --steps steps run
back to back with a CUDA event after each; the median gap is the step time (img/s from it),
peak memory is torch.cuda.max_memory_allocated over the whole configuration (a fresh process,
so reset per configuration), beside max_memory_reserved and device_in_use_mib (free device
memory before the run minus after its steps: everything it holds beyond the CUDA context, as
bench_train_step's "in use"). Compile caches start empty per configuration unless --cache-dir.
A final table names PyTorch's best per model, batch and dtype. --json writes everything (after
each configuration, so a cut-short run keeps what it measured).

A compiled configuration of the DIGITS net takes ~1.5-2 min (compile) and an eager one well under
one, so the whole grid (48) is about an hour. Typical calls:
  peer_pytorch.py --models digits --batch 128 --configs '*:bf16:cl:*,*:fp32:nchw:*' --json p.json
  peer_pytorch.py --configs 'digits:ro:bf16:*:b64' --budget 500
  peer_pytorch.py --ddp --models digits --batch 64 --dtypes bf16 --layouts cl --json ddp.json
"""
import argparse
import fnmatch
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

# Only the processes that measure import torch: workers, the probe, DDP ranks (which import
# this file as __mp_main__) and anyone importing it as a module. The driver stays light.
torch = nn = F = None
if __name__ != "__main__" or any(a in ("--worker", "--probe") for a in sys.argv[1:]):
    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except ImportError:
        pass

_Module = nn.Module if nn is not None else object
_Sequential = nn.Sequential if nn is not None else object

MODELS = ("digits", "tv")
MODES = ("eager", "compile", "ro")
DTYPES = ("bf16", "fp32", "tf32")
LAYOUTS = ("cl", "nchw")
DIGITS_PARAMS_1000 = 13_378_280


# ---- the networks -------------------------------------------------------------------------


class ConvRelu(_Sequential):
    def __init__(self, cin, cout, k, stride=1, pad=0):
        super().__init__(nn.Conv2d(cin, cout, k, stride, pad, bias=True), nn.ReLU(inplace=True))


class Inception(_Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, pp):
        super().__init__()
        self.b1 = ConvRelu(cin, c1, 1)
        self.b3 = nn.Sequential(ConvRelu(cin, c3r, 1), ConvRelu(c3r, c3, 3, pad=1))
        self.b5 = nn.Sequential(ConvRelu(cin, c5r, 1), ConvRelu(c5r, c5, 5, pad=2))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), ConvRelu(cin, pp, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class AuxHead(_Module):
    def __init__(self, cin, classes):
        super().__init__()
        self.pool = nn.AvgPool2d(5, 3, ceil_mode=True)
        self.conv = ConvRelu(cin, 128, 1)
        self.fc = nn.Linear(128 * 4 * 4, 1024)
        self.drop = nn.Dropout(0.7)
        self.classifier = nn.Linear(1024, classes)

    def forward(self, x):
        x = self.conv(self.pool(x))
        x = self.drop(F.relu(self.fc(torch.flatten(x, 1)), inplace=True))
        return self.classifier(x)


class DigitsGoogLeNet(_Module):
    """DIGITS standard-networks/caffe/googlenet.prototxt (train stage)."""

    def __init__(self, classes=1000):
        super().__init__()
        lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)
        self.stem = nn.Sequential(
            ConvRelu(3, 64, 7, 2, 3), pool(), lrn(),
            ConvRelu(64, 64, 1), ConvRelu(64, 192, 3, pad=1), lrn(), pool())
        self.i3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.i3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.pool3 = pool()
        self.i4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.i4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.i4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.i4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.i4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.pool4 = pool()
        self.i5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.i5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.pool5 = nn.AvgPool2d(7, 1)
        self.drop = nn.Dropout(0.4)
        self.classifier = nn.Linear(1024, classes)
        self.aux1 = AuxHead(512, classes)
        self.aux2 = AuxHead(528, classes)

    def forward(self, x):
        x = self.pool3(self.i3b(self.i3a(self.stem(x))))
        a = self.i4a(x)
        aux1 = self.aux1(a) if self.training else None
        x = self.i4d(self.i4c(self.i4b(a)))
        aux2 = self.aux2(x) if self.training else None
        x = self.pool4(self.i4e(x))
        x = self.pool5(self.i5b(self.i5a(x)))
        x = self.classifier(self.drop(torch.flatten(x, 1)))
        return x, aux1, aux2


class TrainLoss(_Module):
    """The network and its loss as one module: what torch.compile sees (and DDP wraps)."""

    def __init__(self, net, model_name):
        super().__init__()
        self.net = net
        self.model_name = model_name

    def forward(self, x, labels):
        out = self.net(x)
        if self.model_name == "digits":
            main, aux1, aux2 = out
        else:  # torchvision GoogLeNetOutputs(logits, aux_logits2, aux_logits1)
            main, aux2, aux1 = out.logits, out.aux_logits2, out.aux_logits1
        return (F.cross_entropy(main, labels)
                + 0.3 * (F.cross_entropy(aux1, labels) + F.cross_entropy(aux2, labels)))


def build_net(model_name, classes):
    if model_name == "digits":
        return DigitsGoogLeNet(classes)
    import torchvision
    return torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False,
                                        num_classes=classes)


# ---- one configuration, in a worker process -----------------------------------------------


def set_fp32_math(tf32):
    """TF32 on or off for cuBLAS and cuDNN; returns what is now set, as text. The legacy flags
    only: PyTorch >= 2.9 also has fp32_precision, but mixing the two raises inside inductor (it
    still reads allow_tf32), and the legacy flags are what earlier runs of this peer used."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "will be deprecated" notices
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        return f"allow_tf32 matmul {torch.backends.cuda.matmul.allow_tf32}, cudnn {torch.backends.cudnn.allow_tf32}"


def make_sgd(params, kind):
    """SGD momentum 0.9, weight decay 2e-4: fused (one kernel) where this PyTorch has it."""
    if kind == "fused":
        try:
            return torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=2e-4, fused=True), "fused"
        except (TypeError, RuntimeError, ValueError):
            pass
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=2e-4, foreach=True), "foreach"


def device_free_bytes(dev):
    """Free device memory (cudaMemGetInfo), or None where it cannot be read. The difference
    between before a run and after its steps is everything the run holds on the GPU beyond the
    CUDA context: the caching allocator's reserve (its peak: it never gives memory back here),
    cuDNN's and cuBLAS's own allocations, the CUDA graphs, the compiled kernels' code. That is
    what bench_train_step's "in use" measures for incept; max_memory_allocated counts only
    tensors."""
    try:
        return torch.cuda.mem_get_info(dev)[0]
    except Exception:  # noqa: BLE001 (a measurement must never break the run)
        return None


def measure(cfg, rank=0, world=1):
    """Builds, compiles, warms up and times one configuration on this process's GPU."""
    dev = torch.device("cuda", rank if world > 1 else cfg["device"])
    torch.cuda.set_device(dev)
    free_before = device_free_bytes(dev)  # after the context exists, before anything of the run
    torch.backends.cudnn.benchmark = True
    math_mode = set_fp32_math(cfg["dtype"] == "tf32")
    torch.manual_seed(cfg["seed"])
    net = build_net(cfg["model"], cfg["classes"]).to(dev).train()
    params = sum(p.numel() for p in net.parameters())
    if cfg["model"] == "digits" and cfg["classes"] == 1000 and params != DIGITS_PARAMS_1000:
        raise RuntimeError(f"DIGITS GoogLeNet has {params} parameters, expected {DIGITS_PARAMS_1000:,}")
    channels_last = cfg["layout"] == "cl"
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    module = TrainLoss(net, cfg["model"])
    if world > 1:
        module = torch.nn.parallel.DistributedDataParallel(module, device_ids=[dev.index])
    opt, sgd = make_sgd(list(net.parameters()), cfg["sgd"])
    mode = cfg["mode"]
    if mode == "eager":
        fn = module
    else:
        fn = torch.compile(module, mode="reduce-overhead" if mode == "ro" else "default", dynamic=False)
    mark_step = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)

    gen = torch.Generator(device=dev).manual_seed(1000 + rank)
    x = torch.randn(cfg["batch"], 3, 224, 224, device=dev, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, cfg["classes"], (cfg["batch"],), device=dev, generator=gen)
    autocast = cfg["dtype"] == "bf16"

    def step():
        if mode == "ro" and mark_step is not None:
            mark_step()  # a new iteration: CUDA-graph outputs of the last one may be reused
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = fn(x, y)
        loss.backward()
        opt.step()
        return loss

    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    loss = step()
    first_loss = float(loss)  # synchronizes
    first_step_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(cfg["warmup"] - 1):
        step()
    torch.cuda.synchronize(dev)
    warmup_s = time.perf_counter() - t0

    # Steps back to back (the host may run ahead, as in real training); an event after each.
    events = [torch.cuda.Event(enable_timing=True) for _ in range(cfg["steps"] + 1)]
    events[0].record()
    for i in range(cfg["steps"]):
        loss = step()
        events[i + 1].record()
    events[-1].synchronize()
    last_loss = float(loss)
    times = [events[i].elapsed_time(events[i + 1]) for i in range(cfg["steps"])]
    total_ms = events[0].elapsed_time(events[-1])
    ms = statistics.median(times)
    peak_alloc = torch.cuda.max_memory_allocated(dev) / 2**20
    peak_reserved = torch.cuda.max_memory_reserved(dev) / 2**20
    free_after = device_free_bytes(dev)
    in_use = (free_before - free_after) / 2**20 if free_before is not None and free_after is not None else -1.0

    if world > 1:  # the slowest rank sets the pace; memory is the largest per GPU
        import torch.distributed as dist
        t = torch.tensor([ms, total_ms, peak_alloc, peak_reserved, first_step_s, warmup_s, in_use],
                         dtype=torch.float64, device=dev)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        ms, total_ms, peak_alloc, peak_reserved, first_step_s, warmup_s, in_use = t.tolist()

    images = cfg["batch"] * world
    return {
        "ms_per_step": round(ms, 3), "img_per_s": round(images * 1000.0 / ms, 1),
        "img_per_s_total": round(images * cfg["steps"] * 1000.0 / total_ms, 1),
        "ms_min": round(min(times), 3), "ms_max": round(max(times), 3),
        "first_step_s": round(first_step_s, 1), "warmup_s": round(warmup_s, 1),
        "peak_alloc_mib": round(peak_alloc, 1), "peak_reserved_mib": round(peak_reserved, 1),
        "device_in_use_mib": round(in_use, 1) if in_use >= 0 else None,
        "loss_first": round(first_loss, 4), "loss_last": round(last_loss, 4),
        "finite": math.isfinite(first_loss) and math.isfinite(last_loss),
        "params": params, "sgd": sgd, "graphs": dynamo_graphs() if mode != "eager" else None,
        "fp32_math": math_mode, "gpus": world, "global_batch": images,
        "gpu": torch.cuda.get_device_name(dev), "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
    }


def error_text(e):
    """One line: the exception, or for a failed DDP rank its header and its last line."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    if len(lines) > 1 and "Traceback" in str(e):  # torch.multiprocessing's ProcessRaisedException
        return (lines[0].strip("- ") + " " + lines[-1])[:400]
    return f"{type(e).__name__}: {lines[0]}"[:400]


def dynamo_graphs():
    """Graphs torch.compile produced so far (graph breaks and DDP's bucket splits add some)."""
    try:
        from torch._dynamo.utils import counters
        return int(counters["stats"]["unique_graphs"])
    except Exception:  # noqa: BLE001 -- a diagnostic only
        return None


def ddp_rank(rank, world, cfg, port, result_path):
    import torch.distributed as dist
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    os.environ["NCCL_NVLS_ENABLE"] = "0"
    torch.cuda.set_device(rank)
    try:
        dist.init_process_group("nccl", rank=rank, world_size=world, device_id=torch.device("cuda", rank))
    except TypeError:  # a PyTorch without device_id
        dist.init_process_group("nccl", rank=rank, world_size=world)
    try:
        result = measure(cfg, rank, world)
        if rank == 0:
            v = torch.cuda.nccl.version()  # a tuple in recent PyTorch, an int in old ones
            result["nccl"] = ".".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)
            with open(result_path, "w") as f:
                json.dump(result, f)
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(cfg, result_path):
    """Runs one configuration; writes its result (or its error) as JSON to result_path."""
    try:
        if torch is None:
            raise RuntimeError("torch is not importable in this Python")
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA GPU visible to torch")
        if cfg["ddp"]:
            world = cfg["gpus"]
            if torch.cuda.device_count() < world:
                raise RuntimeError(f"needs {world} GPUs, torch sees {torch.cuda.device_count()}")
            os.environ["NCCL_NVLS_ENABLE"] = "0"  # inherited by the spawned ranks too
            torch.multiprocessing.spawn(ddp_rank, args=(world, cfg, free_port(), result_path),
                                        nprocs=world, join=True)
            if not os.path.exists(result_path):
                raise RuntimeError("rank 0 wrote no result")
        else:
            result = measure(cfg)
            with open(result_path, "w") as f:
                json.dump(result, f)
        return 0
    except BaseException as e:  # noqa: BLE001 -- every failure becomes an error row
        import traceback
        traceback.print_exc()
        with open(result_path, "w") as f:
            json.dump({"error": error_text(e)}, f)
        return 1


def probe():
    """The driver's one look at torch: versions and GPUs, as JSON on stdout."""
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": torch.cuda.device_count()}
    if info["gpus"]:
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cudnn"] = torch.backends.cudnn.version()
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except ImportError:
        info["torchvision"] = None
    print("PROBE " + json.dumps(info), flush=True)


# ---- the driver ---------------------------------------------------------------------------


def config_name(c):
    prefix = f"ddp{c['gpus']}:" if c["ddp"] else ""
    return f"{prefix}{c['model']}:{c['mode']}:{c['dtype']}:{c['layout']}:b{c['batch']}"


def split_list(text, allowed, what):
    items = [s.strip() for s in text.split(",") if s.strip()]
    for s in items:
        if s not in allowed:
            sys.exit(f"--{what}: '{s}' is not one of {', '.join(allowed)}")
    return items


def expand(args, gpus):
    batches = []
    for s in args.batch.split(","):
        try:
            b = int(s)
        except ValueError:
            sys.exit(f"--batch: '{s}' is not a number (e.g. --batch 128,64)")
        if b < 1:
            sys.exit(f"--batch: {b} must be positive")
        batches.append(b)
    modes_default = "eager,ro" if args.ddp else "eager,compile,ro"
    models = split_list(args.models, MODELS, "models")
    modes = split_list(args.modes or modes_default, MODES, "modes")
    dtypes = split_list(args.dtypes, DTYPES, "dtypes")
    layouts = split_list(args.layouts, LAYOUTS, "layouts")
    patterns = [p.strip() for p in (args.configs or "*").split(",") if p.strip()]
    configs = []
    for model in models:
        for batch in batches:
            for dtype in dtypes:
                for layout in layouts:
                    for mode in modes:
                        c = {"model": model, "mode": mode, "dtype": dtype, "layout": layout, "batch": batch,
                             "classes": args.classes, "warmup": args.warmup, "steps": args.steps,
                             "sgd": args.sgd, "seed": 0, "device": args.device, "ddp": args.ddp,
                             "gpus": gpus}
                        c["name"] = config_name(c)
                        first = next((i for i, p in enumerate(patterns)
                                      if fnmatch.fnmatchcase(c["name"], p)), None)
                        if first is not None:
                            configs.append((first, c))
    configs.sort(key=lambda fc: fc[0])  # stable: grid order within one pattern
    return [c for _, c in configs]


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and any ranks it spawned
    except (ProcessLookupError, PermissionError):
        pass


def tail(path, lines=12):
    try:
        with open(path, errors="replace") as f:
            return f.readlines()[-lines:]
    except OSError:
        return []


def die_with_parent():
    """In the worker, before exec: SIGKILL when the driver dies, even by SIGKILL."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_config(c, args, timeout_s, scratch):
    """Runs one configuration in its own process group; returns its result row."""
    tag = c["name"].replace(":", "_")
    result_path = os.path.join(scratch, tag + ".json")
    log_path = os.path.join(args.logs or scratch, tag + ".log")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if c["ddp"]:
        env["NCCL_NVLS_ENABLE"] = "0"
    cache = args.cache_dir or os.path.join(scratch, tag + ".cache")
    env["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache, "inductor")
    env["TRITON_CACHE_DIR"] = os.path.join(cache, "triton")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(c), "--result", result_path]
    row = dict(c)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                preexec_fn=die_with_parent)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            rc = None
        except BaseException:
            kill_group(proc)
            raise
        finally:
            kill_group(proc)  # nothing of this configuration outlives it
            proc.wait()
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    result = None
    if os.path.exists(result_path):
        try:
            with open(result_path) as f:
                result = json.load(f)
        except (OSError, ValueError):
            result = None
    if rc is None:
        row["error"] = f"timed out after {timeout_s:.0f} s"
    elif result is None:
        row["error"] = f"worker exited with status {rc} and no result"
    else:
        row.update(result)
        if rc != 0 and "error" not in row:
            row["error"] = f"worker exited with status {rc}"
    if "error" not in row and not row.get("finite", True):
        row["error"] = f"loss is not finite ({row.get('loss_first')} -> {row.get('loss_last')})"
    if "error" in row:
        row["log_tail"] = [s.rstrip("\n") for s in tail(log_path)]
    if not args.cache_dir:
        shutil.rmtree(cache, ignore_errors=True)
    return row


def print_row(r, out=sys.stdout):
    if "error" in r:
        print(f"{r['name']:34s} ERROR {r['error']}", file=out, flush=True)
        for line in r.get("log_tail", [])[-6:]:
            print(f"{'':34s}   | {line}", file=out, flush=True)
        return
    print(f"{r['name']:34s} {r['img_per_s']:9.1f} img/s {r['ms_per_step']:8.2f} ms/step "
          f"(min {r['ms_min']:.2f} max {r['ms_max']:.2f})  first step {r['first_step_s']:6.1f} s  "
          f"warm-up {r['warmup_s']:5.1f} s  peak {r['peak_alloc_mib']:8.1f} MiB{in_use_text(r)}  "
          f"loss {r['loss_first']:.3f}->{r['loss_last']:.3f}", file=out, flush=True)


def in_use_text(r):
    """", 2010 MiB in use" where the run measured what it holds on the device (device_in_use_mib)."""
    v = r.get("device_in_use_mib")
    return f", {v:.0f} MiB in use" if v is not None else ""


def best_rows(rows):
    """PyTorch's best per (GPUs, model, batch, dtype) among the configurations that ran."""
    best = {}
    for r in rows:
        if "error" in r or "img_per_s" not in r:
            continue
        key = (r["gpus"] if r["ddp"] else 1, r["model"], r["batch"], r["dtype"])
        if key not in best or r["img_per_s"] > best[key]["img_per_s"]:
            best[key] = r
    return [best[k] for k in sorted(best, key=lambda k: (k[0], MODELS.index(k[1]), -k[2], DTYPES.index(k[3])))]


def print_summary(rows, skipped):
    print("\n== all configurations (step time: median of the timed steps; first step: compile, or "
          "cuDNN autotuning in eager)")
    print(f"{'config':34s} {'img/s':>9s} {'ms/step':>8s} {'first step s':>12s} {'warm-up s':>9s} "
          f"{'peak MiB':>9s}  status")
    for r in rows:
        if "error" in r:
            print(f"{r['name']:34s} {'-':>9s} {'-':>8s} {'-':>12s} {'-':>9s} {'-':>9s}  ERROR: {r['error']}")
        else:
            print(f"{r['name']:34s} {r['img_per_s']:9.1f} {r['ms_per_step']:8.2f} {r['first_step_s']:12.1f} "
                  f"{r['warmup_s']:9.1f} {r['peak_alloc_mib']:9.1f}  ok")
    for c in skipped:
        print(f"{c['name']:34s} {'-':>9s} {'-':>8s} {'-':>12s} {'-':>9s} {'-':>9s}  not run: out of --budget")
    print("\n== PyTorch's best per dtype (compare incept with these, in the same call)")
    for r in best_rows(rows):
        gpus = f"{r['gpus']} GPUs x " if r["ddp"] else ""
        print(f"{r['model']:6s} {gpus}batch {r['batch']:<4d} {r['dtype']:5s} {r['img_per_s']:9.1f} img/s  "
              f"{r['ms_per_step']:7.2f} ms/step  by {r['name']} (first step {r['first_step_s']:.1f} s, "
              f"peak {r['peak_alloc_mib']:.0f} MiB{in_use_text(r)})")


def git_commit():
    try:
        out = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short",
                              "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_json(path, meta, rows, skipped):
    data = {"meta": meta, "results": rows, "not_run": [c["name"] for c in skipped],
            "best": [{"gpus": r["gpus"] if r["ddp"] else 1, "model": r["model"], "batch": r["batch"],
                      "dtype": r["dtype"], "config": r["name"], "img_per_s": r["img_per_s"],
                      "ms_per_step": r["ms_per_step"]} for r in best_rows(rows)]}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def run_probe(scratch):
    log = os.path.join(scratch, "probe.log")
    try:
        with open(log, "w") as f:
            rc = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe"], stdout=f,
                                stderr=subprocess.STDOUT, timeout=300).returncode
    except subprocess.TimeoutExpired:
        rc = "timed out"
    for line in tail(log, 200):
        if line.startswith("PROBE "):
            return json.loads(line[6:])
    sys.exit(f"peer_pytorch.py: cannot import torch (status {rc}):\n" + "".join(tail(log)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="digits,tv", help="digits, tv (torchvision googlenet)")
    ap.add_argument("--modes", help="eager, compile, ro (default: all three; with --ddp eager,ro)")
    ap.add_argument("--dtypes", default="bf16,fp32", help="bf16, fp32 (TF32 off), tf32")
    ap.add_argument("--layouts", default="cl,nchw", help="cl (channels_last), nchw")
    ap.add_argument("--batch", default="128,64", help="batch sizes (per GPU with --ddp), e.g. 128,64")
    ap.add_argument("--configs", help="comma-separated patterns over the names, e.g. 'digits:ro:*:cl:b128'")
    ap.add_argument("--list", action="store_true", help="print the selected configurations and exit")
    ap.add_argument("--ddp", action="store_true", help="DistributedDataParallel, one process per GPU")
    ap.add_argument("--gpus", type=int, default=0, help="GPUs for --ddp (default: all visible)")
    ap.add_argument("--device", type=int, default=0, help="the GPU of single-GPU configurations")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=10, help="warm-up steps, the first included (>= 3)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps (>= 20)")
    ap.add_argument("--sgd", choices=("fused", "foreach"), default="fused")
    ap.add_argument("--config-timeout", type=float, default=600, help="seconds one configuration may take")
    ap.add_argument("--budget", type=float, default=0, help="seconds for the whole run (0: no limit); "
                    "configurations that would start after it are listed as not run")
    ap.add_argument("--min-left", default="0,0", help="EAGER,COMPILED: seconds of --budget that must be "
                    "left to start an eager / a compiled configuration (e.g. 45,150)")
    ap.add_argument("--cache-dir", help="keep torch.compile caches here (default: empty per configuration)")
    ap.add_argument("--logs", help="keep each configuration's log in this directory")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.probe:
        probe()
        return 0
    if args.worker:
        return worker(json.loads(args.worker), args.result)

    if args.steps < 20:
        sys.exit("--steps must be at least 20 (the median of >= 20 timed steps is reported)")
    if args.warmup < 3:
        sys.exit("--warmup must be at least 3 (compile, then CUDA-graph recording, then steady state)")
    if args.gpus < 0:
        sys.exit("--gpus must be >= 1 (or 0 for all visible GPUs)")
    try:
        min_left = [float(v) for v in args.min_left.split(",")]
        if len(min_left) != 2:
            raise ValueError
    except ValueError:
        sys.exit(f"--min-left: '{args.min_left}' is not EAGER,COMPILED seconds (e.g. 45,150)")
    if args.logs:
        os.makedirs(args.logs, exist_ok=True)
    gpus = args.gpus
    if args.list:
        for c in expand(args, gpus or "N"):
            print(c["name"])
        return 0

    # A SIGTERM (e.g. a command time limit) unwinds like Ctrl-C: the running configuration's
    # process group is killed and the partial JSON stays.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scratch = tempfile.mkdtemp(prefix="peer_pytorch_")
    try:
        info = run_probe(scratch)
        if info["gpus"] == 0:
            sys.exit("peer_pytorch.py needs a CUDA GPU (torch sees none)")
        if args.ddp:
            gpus = gpus or info["gpus"]
            if gpus > info["gpus"]:
                sys.exit(f"--gpus {gpus}: torch sees {info['gpus']} GPUs")
        configs = expand(args, gpus)
        if not configs:
            sys.exit("no configuration matches --configs (see --list)")
        meta = dict(info, commit=git_commit(), python=sys.version.split()[0], steps=args.steps,
                    warmup=args.warmup, sgd=args.sgd, argv=sys.argv[1:],
                    nccl_nvls_enable=("0" if args.ddp else os.environ.get("NCCL_NVLS_ENABLE")))
        print(f"GPU: {info.get('gpu')} x {info['gpus']}  torch {info['torch']} (CUDA {info['cuda']}, cuDNN "
              f"{info.get('cudnn')})  torchvision {info['torchvision']}  commit {meta['commit']}  "
              f"{len(configs)} configurations, {args.warmup} warm-up + {args.steps} timed steps each"
              + ("  NCCL_NVLS_ENABLE=0" if args.ddp else ""), flush=True)
        rows, skipped = [], []
        start = time.perf_counter()
        try:
            for c in configs:
                left = args.budget - (time.perf_counter() - start) if args.budget > 0 else None
                if left is not None and left < max(1.0, min_left[0 if c["mode"] == "eager" else 1]):
                    skipped.append(c)
                    print(f"{c['name']:34s} not run: {max(left, 0):.0f} s of --budget {args.budget:.0f} s left",
                          flush=True)
                    continue
                timeout_s = args.config_timeout if left is None else min(args.config_timeout, left)
                row = run_config(c, args, timeout_s, scratch)
                rows.append(row)
                print_row(row)
                if args.json:
                    write_json(args.json, meta, rows, skipped)
        except (KeyboardInterrupt, SystemExit):
            print("interrupted: the table below has what finished", flush=True)
            print_summary(rows, skipped)
            raise
        print_summary(rows, skipped)
        if args.json:
            write_json(args.json, meta, rows, skipped)
        failed = sum("error" in r for r in rows)
        return 1 if failed or skipped else 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
