#!/usr/bin/env python3
"""The MLP presets of gan-gpu in PyTorch, step for step: the peer that gan-gpu's training
speed is compared with on the same machine, in the same run.

Each iteration does what gan-gpu's does: uniform noise, a random batch of real images,
one discriminator update on real + fake, one generator update through the discriminator,
Adam with Keras's eps, the same batch and layer sizes. Prints one JSON line per preset.

    python3 benches/pytorch_gan.py --data ../shared/data/mnist --iters 3000 --threads 2
"""
import argparse
import gzip
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    # hidden activation, D loss form, real label, lr, beta1
    "mlp": (lambda: nn.LeakyReLU(0.2), "mean_over_both", 0.9, 2e-4, 0.5),
    "mlp-relu": (nn.ReLU, "sum_of_means", 1.0, 1e-4, 0.9),
}


def load_images(data_dir):
    with gzip.open(f"{data_dir}/train-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16)
    return torch.from_numpy(raw.reshape(-1, 784).copy())


def write_idx(path, pixels):
    """IDX3 ubyte, the format gan-gpu generate writes, so one judge scores both."""
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]))
        for d in pixels.shape:
            f.write(int(d).to_bytes(4, "big"))
        f.write(pixels.tobytes())


def run(name, images, iters, batch, samples=None):
    act, d_loss_form, real_label, lr, beta1 = PRESETS[name]
    g = nn.Sequential(nn.Linear(100, 128), act(), nn.Linear(128, 784), nn.Tanh())
    d = nn.Sequential(nn.Linear(784, 128), act(), nn.Linear(128, 1))
    g_opt = torch.optim.Adam(g.parameters(), lr=lr, betas=(beta1, 0.999), eps=1e-7)
    d_opt = torch.optim.Adam(d.parameters(), lr=lr, betas=(beta1, 0.999), eps=1e-7)
    real_t = torch.full((batch, 1), real_label)
    fake_t = torch.zeros(batch, 1)
    ones = torch.ones(batch, 1)
    n = images.shape[0]

    def step():
        z = torch.rand(batch, 100) * 2 - 1
        idx = torch.randint(0, n, (batch,))
        real = images[idx].float() * (2 / 255) - 1
        with torch.no_grad():
            fake = g(z)
        logits = d(torch.cat([real, fake]))
        lr_, lf = logits[:batch], logits[batch:]
        if d_loss_form == "mean_over_both":
            d_loss = F.binary_cross_entropy_with_logits(logits, torch.cat([real_t, fake_t]))
        else:
            d_loss = F.binary_cross_entropy_with_logits(lr_, real_t) + F.binary_cross_entropy_with_logits(lf, fake_t)
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        z = torch.rand(batch, 100) * 2 - 1
        g_loss = F.binary_cross_entropy_with_logits(d(g(z)), ones)
        g_opt.zero_grad(set_to_none=True)
        d.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        return d_loss, g_loss

    for _ in range(20):  # warm-up: allocator, thread pool
        step()
    start = time.perf_counter()
    for _ in range(iters):
        d_loss, g_loss = step()
    seconds = time.perf_counter() - start
    if samples:
        with torch.no_grad():
            out = g(torch.rand(1000, 100) * 2 - 1)
        write_idx(samples.replace("{model}", name), ((out + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).reshape(-1, 28, 28).numpy())
    return {"model": name, "peer": "pytorch", "batch": batch, "iters": iters, "seconds": round(seconds, 3),
            "ms_per_iter": round(1000 * seconds / iters, 4), "images_per_s": round(iters * batch / seconds, 1),
            "threads": torch.get_num_threads(), "d_loss": d_loss.item(), "g_loss": g_loss.item()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="directory with train-images-idx3-ubyte.gz")
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="mlp,mlp-relu")
    ap.add_argument("--samples", help="write 1000 generated images to this IDX file ({model} is replaced)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = load_images(args.data)
    for name in args.models.split(","):
        print(json.dumps(run(name, images, args.iters, args.batch, args.samples)), flush=True)


if __name__ == "__main__":
    main()
