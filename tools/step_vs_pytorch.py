#!/usr/bin/env python3
"""Replays one gan-gpu training step of an MLP preset in PyTorch and compares the weights.

Takes two checkpoints of the same run, at steps N and N+1 (for example `train --iters 1` then
`train --resume --iters 2`), loads step N's weights and Adam moments into PyTorch, draws step
N+1's noise and batch indices with gan-gpu's own counter-based RNG (Threefry-2x32-20,
re-implemented here), runs the recipe's discriminator and generator updates, and prints the
largest difference from gan-gpu's step N+1 per tensor. An independent check that the whole
iteration (wiring, losses, gradients, Adam) is the one PyTorch computes.

    python3 tools/step_vs_pytorch.py --data ../shared/data/mnist runs/x/checkpoints/step-000001.safetensors \
        runs/x/checkpoints/step-000002.safetensors
"""
import argparse
import gzip
import json
import struct

import numpy as np
import torch
import torch.nn.functional as F

ROTATIONS = [13, 15, 26, 6, 17, 29, 16, 24]
PARITY = 0x1BD11BDA
STREAM_D_NOISE, STREAM_BATCH, STREAM_G_NOISE = 0, 1, 2


def threefry(seed, stream, step, k):
    """Threefry-2x32-20 of counter (step, k) under key (seed, stream); k is an array."""
    u = np.uint32
    ks = [u(seed), u(stream), u(PARITY ^ seed ^ stream)]
    x0 = (np.full_like(k, step, dtype=np.uint32) + ks[0]).astype(np.uint32)
    x1 = (k.astype(np.uint32) + ks[1]).astype(np.uint32)
    with np.errstate(over="ignore"):
        for r in range(20):
            x0 = x0 + x1
            rot = ROTATIONS[r % 8]
            x1 = ((x1 << u(rot)) | (x1 >> u(32 - rot))) ^ x0
            if r % 4 == 3:
                s = r // 4 + 1
                x0 = x0 + ks[s % 3]
                x1 = x1 + ks[(s + 1) % 3] + u(s)
    return x0, x1


def words(seed, stream, step, n):
    k = np.arange((n + 1) // 2, dtype=np.uint32)
    a, b = threefry(seed, stream, step, k)
    return np.stack([a, b], 1).reshape(-1)[:n]


def uniform(seed, stream, step, n, low, high):
    unit = (words(seed, stream, step, n) >> np.uint32(8)).astype(np.float32) / np.float32(1 << 24)
    return np.float32(low) + np.float32(high - low) * unit


def randint(seed, stream, step, n, bound):
    return ((words(seed, stream, step, n).astype(np.uint64) * np.uint64(bound)) >> np.uint64(32)).astype(np.int64)


def read_checkpoint(path):
    with open(path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        data = f.read()
    meta = header.pop("__metadata__")
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        tensors[name] = torch.from_numpy(np.frombuffer(data[start:end], np.float32).reshape(info["shape"]).copy())
    return meta, tensors


def forward(net, params, prefix, x):
    for i, layer in enumerate(net["layers"]):
        kind = layer["type"]
        if kind == "dense":
            x = x @ params[f"{prefix}.{i}.dense.w"] + params[f"{prefix}.{i}.dense.b"]
        elif kind == "leaky_relu":
            x = F.leaky_relu(x, layer.get("alpha", 0.3))
        elif kind == "relu":
            x = F.relu(x)
        elif kind == "tanh":
            x = torch.tanh(x)
        elif kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        elif kind == "sigmoid" and i == len(net["layers"]) - 1 and prefix == "discriminator":
            pass  # folded into the loss
        else:
            raise ValueError(f"{kind}: this tool replays the MLP presets only")
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("before")
    ap.add_argument("after")
    args = ap.parse_args()
    meta, before = read_checkpoint(args.before)
    meta2, after = read_checkpoint(args.after)
    spec = json.loads(meta["spec"])
    seed, step = int(meta["seed"]), int(meta["step"]) + 1
    assert int(meta2["step"]) == step, "the second checkpoint must be one step later"
    r = spec["recipe"]
    batch, g_batch = r["batch"], r.get("g_batch") or r["batch"]
    nz = int(np.prod(spec["generator"]["input"]))
    low, high = r["pixel_range"]
    with gzip.open(f"{args.data}/train-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)

    params = {k: v.clone().requires_grad_(True) for k, v in before.items() if not k.endswith(("adam_m", "adam_v"))}
    groups = {}
    for role in ("generator", "discriminator"):
        ps = [p for k, p in params.items() if k.startswith(role)]
        opt_spec = r["g_optimizer" if role == "generator" else "d_optimizer"]
        assert opt_spec["kind"] == "adam" and not opt_spec.get("clip"), "this tool replays Adam without clip"
        opt = torch.optim.Adam(ps, lr=opt_spec["lr"], betas=(opt_spec.get("beta1", 0.9), opt_spec.get("beta2", 0.999)),
                               eps=opt_spec.get("eps", 1e-7))
        for k, p in params.items():
            if k.startswith(role):
                opt.state[p] = {"step": torch.tensor(float(step - 1)), "exp_avg": before[k + ".adam_m"].clone(),
                                "exp_avg_sq": before[k + ".adam_v"].clone()}
        groups[role] = opt
    noise = r["noise"]
    assert noise["kind"] == "uniform"
    z_d = torch.from_numpy(uniform(seed, STREAM_D_NOISE, step, batch * nz, noise["low"], noise["high"]).reshape(batch, nz))
    idx = randint(seed, STREAM_BATCH, step, batch, images.shape[0])
    real = torch.from_numpy(images[idx].astype(np.float32)) * np.float32((high - low) / 255) + np.float32(low)
    z_g = torch.from_numpy(uniform(seed, STREAM_G_NOISE, step, g_batch * nz, noise["low"], noise["high"]).reshape(g_batch, nz))

    g_net, d_net = spec["generator"], spec["discriminator"]
    with torch.no_grad():
        fake = forward(g_net, params, "generator", z_d)
    logits = forward(d_net, params, "discriminator", torch.cat([real, fake]))
    targets = torch.cat([torch.full((batch, 1), r.get("real_label", 1.0)), torch.zeros(batch, 1)])
    if r["d_loss"] == "mean_over_both":
        d_loss = F.binary_cross_entropy_with_logits(logits, targets)
    else:
        d_loss = (F.binary_cross_entropy_with_logits(logits[:batch], targets[:batch])
                  + F.binary_cross_entropy_with_logits(logits[batch:], targets[batch:]))
    groups["discriminator"].zero_grad()
    d_loss.backward()
    groups["discriminator"].step()
    g_loss = F.binary_cross_entropy_with_logits(forward(d_net, params, "discriminator", forward(g_net, params, "generator", z_g)),
                                                torch.ones(g_batch, 1))
    groups["generator"].zero_grad()
    g_loss.backward()
    groups["generator"].step()

    worst = 0.0
    for k, p in params.items():
        diff = (p.detach() - after[k]).abs().max().item()
        moved = (after[k] - before[k]).abs().max().item()
        worst = max(worst, diff / max(moved, 1e-12))
        print(f"{k:32s} max |pytorch - gan-gpu| {diff:.3e}   (the step moved it by up to {moved:.3e})")
    print(json.dumps({"step": step, "d_loss": d_loss.item(), "g_loss": g_loss.item(), "worst_relative_to_update": worst}))


if __name__ == "__main__":
    main()
