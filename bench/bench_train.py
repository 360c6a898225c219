#!/usr/bin/python3
"""bench_train.py - the training step of bench/bench_train.c in PyTorch: CPU
eager and lazy tensors (torch._lazy, LTC's TorchScript backend).

Same models, batch sizes, optimizer and measurement as bench_train.c:
  mlp: Linear(784,256) ReLU Linear(256,10), batch 128, SGD lr 0.1
  cnn: Conv2d(1,C1,3) ReLU Conv2d(C1,C2,3) ReLU MaxPool2d(2) Dropout(0.25)
       Flatten Linear(C2*144,128) ReLU Dropout(0.5) Linear(128,10),
       batch 64, SGD lr 0.01 (C1,C2 = 16,32 as in examples/fashion-mnist)
A step: zero_grad(set_to_none=True) (the default zero_grad leaks memory per
step under LTC 1.13), forward, cross-entropy, backward, SGD step, and for
lazy torch._lazy.mark_step(). Synthetic data, fixed for all steps. After
warm-up, BENCH_REPS runs of BENCH_STEPS steps each are timed (lazy: up to
torch._lazy.wait_device_ops()); the figure is the median step time.

Output, one line per figure ("name value unit"):
  train_step_<model>_eager_ms  X ms
  train_step_<model>_lazy_ms   X ms
Comment lines (#) report the thread count and which BLAS torch uses: Debian's
torch is built against the generic libblas.so.3, which is the slow
reference BLAS unless libopenblas0-pthread is installed.

usage: /usr/bin/python3 bench/bench_train.py [mlp|cnn|all] [--impl eager|lazy|all]
       [--channels C1,C2] [--threads N]
Exits 0 with a message when torch is not installed. Runs with Debian's
/usr/bin/python3 (torch is not in the python3 first on PATH).
"""
import argparse
import os
import re
import statistics
import sys
import time


def blas_report(torch):
    """Which BLAS the process uses: BLAS_INFO from the build and the libraries mapped."""
    # make sure the BLAS is loaded: a matrix product through addmm
    a = torch.randn(64, 64)
    (a @ a).sum().item()
    info = ""
    try:
        m = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
        info = m.group(1) if m else ""
    except Exception:  # noqa: BLE001 - informational only
        pass
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                base = os.path.basename(path)
                if "blas" in base or "mkl" in base or "blis" in base or "atlas" in base:
                    libs.add(path)
    except OSError:
        pass
    if any("openblas" in p for p in libs):
        kind = "OpenBLAS"
    elif any("mkl" in p for p in libs):
        kind = "MKL"
    elif any("blis" in p for p in libs):
        kind = "BLIS"
    elif any("atlas" in p for p in libs):
        kind = "ATLAS"
    elif any("libblas" in p for p in libs):
        kind = "reference BLAS (slow)"
    else:
        kind = "none found in /proc/self/maps"
    print(f"# torch {torch.__version__}: BLAS_INFO={info or '?'}; BLAS in use: {kind}")
    for p in sorted(libs):
        print(f"#   mapped: {p}")
    if kind.startswith("reference") or kind.startswith("none"):
        print("# warning: torch's matrix products run on the reference BLAS; install "
              "libopenblas0-pthread for representative figures")
    return kind


def make_model(nn, name, channels):
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    c1, c2 = channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 3), nn.ReLU(), nn.Conv2d(c1, c2, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.25), nn.Flatten(), nn.Linear(c2 * 144, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, 10))


CONFIG = {  # batch, lr, warm-up steps, steps per timed run
    "mlp": (128, 0.1, 20, 50),
    "cnn": (64, 0.01, 5, 10),
}


def bench(torch, name, impl, channels, reps):
    import torch.nn as nn
    import torch.nn.functional as F

    batch, lr, warm, steps = CONFIG[name]
    steps = int(os.environ.get("BENCH_STEPS", steps))
    torch.manual_seed(0)
    device = "lazy" if impl == "lazy" else "cpu"
    if impl == "lazy":
        import torch._lazy
        mark_step, wait = torch._lazy.mark_step, torch._lazy.wait_device_ops
    else:
        mark_step = wait = lambda: None
    model = make_model(nn, name, channels).to(device)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    shape = (batch, 784) if name == "mlp" else (batch, 1, 28, 28)
    x = torch.randn(*shape).to(device)
    y = torch.randint(0, 10, (batch,)).to(device)
    mark_step()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        mark_step()
        return loss

    for _ in range(warm):
        loss = step()
    wait()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step()
        wait()
        times.append((time.perf_counter() - t0) / steps)
    value = float(loss.item())
    if value != value:
        print(f"# warning: {name} {impl}: the loss is NaN")
    med = statistics.median(times)
    print(f"train_step_{name}_{impl}_ms {med * 1e3:.3g} ms")
    print(f"# {name} {impl}: batch {batch}, median of {reps} runs of {steps} steps after {warm} warm-up steps; "
          f"min {min(times) * 1e3:.3g} ms, max {max(times) * 1e3:.3g} ms; loss {value:.4f}")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", default="all", choices=["mlp", "cnn", "all"])
    ap.add_argument("--impl", default="all", choices=["eager", "lazy", "all"])
    ap.add_argument("--channels", default=os.environ.get("BENCH_CNN_CHANNELS", "16,32"))
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "0") or 0))
    args = ap.parse_args()
    try:
        import torch
    except ImportError as e:
        print(f"# torch not found for {sys.executable} ({e}): apt-get install python3-torch "
              "libopenblas0-pthread (bench only); PyTorch figures skipped")
        return 0
    channels = tuple(int(c) for c in args.channels.split(","))
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    print(f"# torch threads: {torch.get_num_threads()} (intra-op); cores available: {len(os.sched_getaffinity(0))}")
    blas_report(torch)
    reps = max(1, int(os.environ.get("BENCH_REPS", "7")))
    impls = ["eager", "lazy"] if args.impl == "all" else [args.impl]
    if "lazy" in impls:
        try:
            import torch._lazy
            import torch._lazy.ts_backend
            torch._lazy.ts_backend.init()
        except Exception as e:  # noqa: BLE001
            print(f"# torch._lazy unavailable ({e}); lazy figures skipped")
            impls.remove("lazy")
    models = ["mlp", "cnn"] if args.model == "all" else [args.model]
    for name in models:
        for impl in impls:
            bench(torch, name, impl, channels, reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
