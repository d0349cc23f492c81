#!/usr/bin/env python3
"""PyTorch peer for incept's GoogLeNet training step (the numbers incept must beat).

Two models:
  * torchvision  googlenet(aux_logits=True, init_weights=False)  (BN-Inception port: no LRN,
    no biases, 3x3 in its "5x5" branch) -- the usual PyTorch reference point.
  * digits       the exact DIGITS/BVLC GoogLeNet: LRN(5, 1e-4, 0.75, k=1), biases, Caffe CEIL
    pooling (ceil_mode=True), two auxiliary heads (ave-pool 5/3, 1x1 conv 128, fc 1024,
    dropout 0.7, classifier), dropout 0.4 before the final classifier,
    loss = main + 0.3 * (aux1 + aux2); 13,378,280 parameters at 1000 classes.
Modes: fp32 (TF32 off), bf16 (autocast, channels_last), bf16-nchw (autocast, NCHW).
Synthetic data on the GPU, SGD momentum 0.9, weight decay 2e-4, batch 128 by default.
Each step is timed with CUDA events after warm-up; the median of >= 20 steps is reported
with img/s, ms/step, peak memory and the GPU name. --json writes every result to a file.
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvRelu(nn.Sequential):
    def __init__(self, cin, cout, k, stride=1, pad=0):
        super().__init__(nn.Conv2d(cin, cout, k, stride, pad, bias=True), nn.ReLU(inplace=True))


class Inception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, pp):
        super().__init__()
        self.b1 = ConvRelu(cin, c1, 1)
        self.b3 = nn.Sequential(ConvRelu(cin, c3r, 1), ConvRelu(c3r, c3, 3, pad=1))
        self.b5 = nn.Sequential(ConvRelu(cin, c5r, 1), ConvRelu(c5r, c5, 5, pad=2))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), ConvRelu(cin, pp, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class AuxHead(nn.Module):
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


class DigitsGoogLeNet(nn.Module):
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


def build(model_name, classes):
    if model_name == "digits":
        return DigitsGoogLeNet(classes)
    import torchvision
    return torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False,
                                        num_classes=classes)


def loss_of(model_name, out, labels):
    if model_name == "digits":
        main, aux1, aux2 = out
    else:  # torchvision GoogLeNetOutputs(logits, aux_logits2, aux_logits1)
        main, aux2, aux1 = out.logits, out.aux_logits2, out.aux_logits1
    return (F.cross_entropy(main, labels)
            + 0.3 * (F.cross_entropy(aux1, labels) + F.cross_entropy(aux2, labels)))


def run(model_name, mode, batch, classes, warmup, steps, compile_model):
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = build(model_name, classes).to(dev).train()
    params = sum(p.numel() for p in model.parameters())
    channels_last = mode == "bf16"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-4)
    x = torch.randn(batch, 3, 224, 224, device=dev)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=dev)
    autocast = mode.startswith("bf16")
    fwd = torch.compile(model) if compile_model else model

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = loss_of(model_name, fwd(x), y)
        loss.backward()
        opt.step()
        return loss

    t0 = time.time()
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    warm_s = time.time() - t0
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        loss = step()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    ms = statistics.median(times)
    return {
        "model": model_name, "mode": mode, "batch": batch, "classes": classes, "params": params,
        "compile": compile_model, "ms_per_step": round(ms, 3), "img_per_s": round(batch * 1000.0 / ms, 1),
        "ms_min": round(min(times), 3), "ms_max": round(max(times), 3), "steps": steps,
        "warmup_s": round(warm_s, 1), "peak_mem_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        "loss": round(float(loss), 4), "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="digits,torchvision")
    ap.add_argument("--modes", default="fp32,bf16,bf16-nchw")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model too")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args()
    if args.steps < 20:
        sys.exit("--steps must be at least 20 (the median of >= 20 timed steps is reported)")
    if not torch.cuda.is_available():
        sys.exit("peer_pytorch.py needs a CUDA GPU")
    if args.classes == 1000:
        n = sum(p.numel() for p in DigitsGoogLeNet(1000).parameters())
        assert n == 13_378_280, f"DIGITS GoogLeNet has {n} parameters, expected 13,378,280"
    print(f"GPU: {torch.cuda.get_device_name(0)}  torch {torch.__version__}  cuDNN {torch.backends.cudnn.version()}")
    results = []
    for m in args.models.split(","):
        for mode in args.modes.split(","):
            r = run(m, mode, args.batch, args.classes, args.warmup, args.steps, args.compile)
            results.append(r)
            print(f"{m:12s} {mode:10s} b={r['batch']:4d} {r['img_per_s']:9.1f} img/s {r['ms_per_step']:8.2f} ms/step "
                  f"(min {r['ms_min']:.2f} max {r['ms_max']:.2f}) peak {r['peak_mem_mib']:8.1f} MiB "
                  f"params {r['params']:,} loss {r['loss']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
