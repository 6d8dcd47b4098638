#!/usr/bin/env python3
"""An independent judge of generated digits until gan-gpu has its own classifier (issue 5):
trains a small PyTorch CNN on MNIST (about 99% test accuracy; cached next to the data in
/tmp), then classifies an IDX3 file of generated images and prints one JSON line with the
class histogram, the mean top-class confidence and how many classes hold >= 5% of images.

    python3 tools/judge_digits.py --data ../shared/data/mnist samples.idx
"""
import argparse
import gzip
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def net():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def as_input(images):
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def classifier(data):
    cache = "/tmp/gan-gpu-judge-cnn.pt"
    model = net()
    if os.path.exists(cache):
        model.load_state_dict(torch.load(cache))
        return model.eval()
    x = as_input(read_idx(f"{data}/train-images-idx3-ubyte.gz"))
    y = torch.from_numpy(read_idx(f"{data}/train-labels-idx1-ubyte.gz").astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    torch.manual_seed(0)
    for epoch in range(2):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            b = perm[i:i + 128]
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    tx = as_input(read_idx(f"{data}/t10k-images-idx3-ubyte.gz"))
    ty = torch.from_numpy(read_idx(f"{data}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    with torch.no_grad():
        acc = (model(tx).argmax(1) == ty).float().mean().item()
    print(json.dumps({"judge_test_accuracy": round(acc, 4)}))
    torch.save(model.state_dict(), cache)
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("images", help="IDX3 ubyte file of 28x28 images")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = classifier(args.data)
    images = read_idx(args.images)
    with torch.no_grad():
        probs = F.softmax(model(as_input(images)), 1)
    top, cls = probs.max(1)
    hist = np.bincount(cls.numpy(), minlength=10)
    print(json.dumps({
        "images": len(images), "class_hist": hist.tolist(),
        "modes_covered": int((hist >= 0.05 * len(images)).sum()),
        "mean_confidence": round(top.mean().item(), 4),
        "confident_share": round((top > 0.9).float().mean().item(), 4),
    }))


if __name__ == "__main__":
    main()
