#!/usr/bin/env python3
"""gan-gpu against its peers, measured in one run on one machine: the ratio gan-gpu / PyTorch of
ms per training iteration for each preset (same layers, same batch, same threads), and with
--matmul gan-gpu's matmul kernel against numpy's BLAS on the presets' matmul shapes.

Machines here are noisy and shared, so the two sides alternate (A B A B ...) and each side's
median over --rounds is compared; only the ratio means anything, never an absolute time.

    cargo build --release
    python3 benches/compare.py --data ../shared/data/mnist --models mlp,dcgan-avgpool --iters 50
    python3 benches/compare.py --data ../shared/data/mnist --matmul
    python3 benches/compare.py --device cuda --matmul --shapes "4096,4096,4096"

With --device cuda the peer is PyTorch's eager CUDA mode (and its matmul, for --matmul) on the
GPU that gan-gpu runs on. Needs PyTorch for the training comparison and numpy (or PyTorch, with
--device cuda) for --matmul; says so when they are missing.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
PRESETS = "mlp,mlp-relu,dcgan-avgpool,dcgan,dcgan-upsample"


def json_lines(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"error: {' '.join(map(str, cmd))} failed:\n{out.stderr.strip()}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def gan_gpu_ms(args, model):
    cmd = [args.gan_gpu, "bench", "--model", model, "--iters", str(args.iters), "--json",
           "--data-dir", args.data]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    (line,) = json_lines(cmd)
    return line["ms_per_iter"], line["batch"], line["device"]


def pytorch_ms(args, model, env):
    cmd = [sys.executable, ROOT / "benches" / "pytorch_gan.py", "--data", args.data, "--models", model,
           "--iters", str(args.iters), "--threads", str(args.threads), "--device", args.device]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    if args.fp32:
        cmd += ["--fp32"]
    (line,) = json_lines(cmd, env)
    return line["ms_per_iter"], line["batch"]


def compare_training(args, env):
    try:
        import torch  # noqa: F401  (only to say clearly when it is missing)
    except ImportError:
        sys.exit("error: PyTorch is not installed here: pip install torch, or pass --matmul only")
    print(f"{'preset':<16} {'batch':>5} {'gan-gpu ms':>11} {'PyTorch ms':>11} {'ratio':>7}   (median of "
          f"{args.rounds} alternating rounds, {args.iters} iterations each"
          f"{'; PyTorch without TF32' if args.fp32 else ''})")
    rows = []
    for model in args.models.split(","):
        ours, theirs = [], []
        for _ in range(args.rounds):
            ms, batch, device = gan_gpu_ms(args, model)
            ours.append(ms)
            ms, peer_batch = pytorch_ms(args, model, env)
            theirs.append(ms)
            assert batch == peer_batch, f"{model}: batch {batch} here, {peer_batch} in PyTorch"
        a, b = statistics.median(ours), statistics.median(theirs)
        row = {"model": model, "batch": batch, "gan_gpu_ms": a, "pytorch_ms": b, "ratio": a / b,
               "device": device, "threads": args.threads}
        rows.append(row)
        print(f"{model:<16} {batch:>5} {a:>11.2f} {b:>11.2f} {a / b:>7.2f}", flush=True)
    return rows


def numpy_gflops(np, m, n, k, ta, tb):
    """numpy's matmul on the same operands' layout, its best time of several."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    a, b = (a.T if ta else a), (b.T if tb else b)
    calls = max(1, int(2e8 / (2 * m * n * k)))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            a @ b
        best = min(best, (time.perf_counter() - start) / calls)
    return 2 * m * n * k / best / 1e9


def torch_gflops(torch, device, m, n, k, ta, tb):
    """PyTorch's matmul on the GPU, the same layouts, timed between synchronisations."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn((k, m) if ta else (m, k), device=device, generator=gen)
    b = torch.randn((n, k) if tb else (k, n), device=device, generator=gen)
    a, b = (a.T if ta else a), (b.T if tb else b)
    calls = max(10, int(2e11 / (2 * m * n * k)))
    best = float("inf")
    for _ in range(5):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            a @ b
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / calls)
    return 2 * m * n * k / best / 1e9


def compare_matmul(args):
    if args.device == "cpu":
        try:
            import numpy as peer
        except ImportError:
            sys.exit("error: numpy is not installed here: pip install numpy")
        peer_name, peer_gflops = "numpy", lambda *shape: numpy_gflops(peer, *shape)
    else:
        try:
            import torch as peer
        except ImportError:
            sys.exit("error: PyTorch is not installed here: pip install torch")
        # fp32 throughout, as gan-gpu: no TF32 tensor cores on the peer's side either.
        peer.backends.cuda.matmul.allow_tf32 = False
        peer_name, peer_gflops = "torch", lambda *shape: torch_gflops(peer, args.device, *shape)
    cmd = [args.gan_gpu, "bench", "--kernel", "matmul", "--json"]
    if args.shapes:
        rows = [r for shape in args.shapes.split(";") for r in json_lines(cmd + ["--shape", shape])]
    else:
        rows = [r for r in json_lines(cmd) if r["kernel"] == "matmul"]
    width = max([len("shape (m,n,k)")] + [len(r["shape"]) for r in rows])
    print(f"{'shape (m,n,k)':<{width}} {'gan-gpu GFLOP/s':>16} {peer_name + ' GFLOP/s':>14} {'share':>7}")
    out = []
    for r in rows:
        fields = r["shape"].split(",")
        m, n, k = map(int, fields[:3])
        theirs = peer_gflops(m, n, k, "ta" in fields, "tb" in fields)
        out.append({"shape": r["shape"], "gan_gpu_gflops": r["gflops"], "peer": peer_name, "peer_gflops": theirs,
                    "share": r["gflops"] / theirs})
        print(f"{r['shape']:<{width}} {r['gflops']:>16.1f} {theirs:>14.1f} {r['gflops'] / theirs:>7.0%}", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("GAN_GPU_DATA", str(ROOT.parent / "shared/data/mnist")),
                    help="MNIST directory (default $GAN_GPU_DATA)")
    ap.add_argument("--gan-gpu", default=str(ROOT / "target/release/gan-gpu"), help="the binary to measure")
    ap.add_argument("--models", default=PRESETS)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch's and BLAS's threads")
    ap.add_argument("--matmul", action="store_true", help="matmul against numpy (or torch on --device cuda) instead of training")
    ap.add_argument("--shapes", help="with --matmul: these shapes (as bench --shape, separated by ';') instead of the presets'")
    ap.add_argument("--device", default="cpu", help="the peer's device: cpu, or cuda for PyTorch's eager CUDA mode")
    ap.add_argument("--fp32", action="store_true", help="the peer without TF32 in cuDNN convolutions (pytorch_gan.py --fp32)")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    if not pathlib.Path(args.gan_gpu).exists():
        sys.exit(f"error: no gan-gpu binary at {args.gan_gpu}: run cargo build --release or pass --gan-gpu")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    rows = compare_matmul(args) if args.matmul else compare_training(args, dict(os.environ))
    if args.json:
        pathlib.Path(args.json).write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
