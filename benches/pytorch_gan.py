#!/usr/bin/env python3
"""gan-gpu's presets in PyTorch, step for step: the peer that gan-gpu's training speed is
compared with on the same machine, in the same run.

The networks are built from the same model files (assets/models/*.toml), so both sides run
the same layers: Keras/TensorFlow padding rules, transposed-conv output sizes, batch-norm
momentum and eps, Adam/RMSprop with Keras's eps and clipvalue. Each iteration does what
gan-gpu's does: noise, a random batch of real images, one discriminator update on real +
fake, one generator update through the discriminator. Prints one JSON line per preset.

    python3 benches/pytorch_gan.py --data ../shared/data/mnist --iters 3000 --threads 2 --models mlp

--device cuda runs the same steps in PyTorch's eager CUDA mode (the GPU peer), timed between
two synchronisations, with PyTorch's defaults: cuDNN convolutions may round their inputs to
TF32 on tensor cores. --fp32 turns that off (as for matmuls by default), so that both sides
compute in fp32 as gan-gpu does.
"""
import argparse
import gzip
import json
import math
import pathlib
import time
import tomllib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS = pathlib.Path(__file__).resolve().parent.parent / "assets" / "models"


def same_pad(n, k, s):
    """TensorFlow 'same': total max((ceil(n/s)-1)*s + k - n, 0), the smaller half before."""
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class Conv(nn.Module):
    """Keras Conv2D: NCHW here, explicit asymmetric padding."""

    def __init__(self, spec, shape):
        super().__init__()
        h, w, c = shape
        kh, kw = pair(spec["kernel"])
        sh, sw = pair(spec.get("stride", 1))
        pad = spec.get("padding", "valid")
        if pad == "same":
            (t, b), (l, r) = same_pad(h, kh, sh), same_pad(w, kw, sw)
        elif pad == "valid":
            t = b = l = r = 0
        else:
            t, b, l, r = pad
        self.pad = (l, r, t, b)
        self.conv = nn.Conv2d(c, spec["filters"], (kh, kw), (sh, sw))
        self.out = ((h + t + b - kh) // sh + 1, (w + l + r - kw) // sw + 1, spec["filters"])

    def forward(self, x):
        return self.conv(F.pad(x, self.pad))


class ConvTranspose(nn.Module):
    """Keras Conv2DTranspose / tf.nn.conv2d_transpose: the full result cropped (or zero-padded)
    to the output size that TensorFlow's rules (or the file) give."""

    def __init__(self, spec, shape):
        super().__init__()
        h, w, c = shape
        kh, kw = pair(spec["kernel"])
        sh, sw = pair(spec.get("stride", 1))
        pad = spec.get("padding", "valid")
        oph, opw = pair(spec.get("output_padding", 0))
        if "output_size" in spec:
            oh, ow = pair(spec["output_size"])
        elif pad == "same":
            oh, ow = h * sh + oph, w * sw + opw
        else:
            oh, ow = (h - 1) * sh + kh + oph, (w - 1) * sw + kw + opw
        # The crop before is the 'same' padding of the conv this is the adjoint of.
        self.crop = (same_pad(oh, kh, sh)[0], same_pad(ow, kw, sw)[0]) if pad == "same" else (0, 0)
        self.size = (oh, ow)
        self.conv = nn.ConvTranspose2d(c, spec["filters"], (kh, kw), (sh, sw))
        self.out = (oh, ow, spec["filters"])

    def forward(self, x):
        y = self.conv(x)
        (ch, cw), (oh, ow) = self.crop, self.size
        y = y[:, :, ch:ch + oh, cw:cw + ow]
        missing = (0, ow - y.shape[3], 0, oh - y.shape[2])
        if missing[1] or missing[3]:
            # Rows past the full result get only the bias, as TensorFlow gives them.
            bias = self.conv.bias.view(1, -1, 1, 1)
            y = F.pad(y - bias, missing) + bias
        return y


class Reshape(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        if len(self.shape) == 3:
            h, w, c = self.shape
            return x.reshape(x.shape[0], c, h, w)
        return x.reshape(x.shape[0], -1)


def build(net, input_shape):
    """nn.Sequential for a [generator] or [discriminator] table; shapes tracked as [h, w, c]."""
    layers, shape = [], list(input_shape)
    for spec in net["layers"]:
        kind = spec["type"]
        if kind == "dense":
            layers.append(nn.Linear(shape[0], spec["units"]))
            shape = [spec["units"]]
        elif kind == "conv2d":
            layer = Conv(spec, shape)
            layers.append(layer)
            shape = list(layer.out)
        elif kind == "conv_transpose2d":
            layer = ConvTranspose(spec, shape)
            layers.append(layer)
            shape = list(layer.out)
        elif kind == "batch_norm":
            bn = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            layers.append(bn(shape[-1], eps=spec.get("eps", 1e-3), momentum=1 - spec.get("momentum", 0.99)))
        elif kind == "dropout":
            layers.append(nn.Dropout(spec["rate"]))
        elif kind == "avg_pool2x2":
            layers.append(nn.AvgPool2d(2))
            shape = [shape[0] // 2, shape[1] // 2, shape[2]]
        elif kind == "upsample2x":
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            shape = [shape[0] * 2, shape[1] * 2, shape[2]]
        elif kind in ("reshape", "flatten"):
            shape = list(spec["shape"]) if kind == "reshape" else [int(np.prod(shape))]
            layers.append(Reshape(shape))
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "leaky_relu":
            layers.append(nn.LeakyReLU(spec.get("alpha", 0.3)))
        elif kind == "tanh":
            layers.append(nn.Tanh())
        elif kind == "sigmoid":
            layers.append(nn.Sigmoid())
        else:
            raise ValueError(f"unknown layer {kind}")
    return nn.Sequential(*layers)


def keras_init(model):
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def optimizer(spec, params):
    if spec["kind"] == "adam":
        opt = torch.optim.Adam(params, lr=spec["lr"], betas=(spec.get("beta1", 0.9), spec.get("beta2", 0.999)),
                               eps=spec.get("eps", 1e-7))
    else:
        opt = torch.optim.RMSprop(params, lr=spec["lr"], alpha=spec.get("rho", 0.9), eps=spec.get("eps", 1e-7))
    return opt, spec.get("clip")


def load_images(data_dir):
    with gzip.open(f"{data_dir}/train-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16)
    return torch.from_numpy(raw.reshape(-1, 1, 28, 28).copy())


def write_idx(path, pixels):
    """IDX3 ubyte, the format gan-gpu generate writes, so one judge scores both."""
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]))
        for d in pixels.shape:
            f.write(int(d).to_bytes(4, "big"))
        f.write(pixels.tobytes())


def run(name, images, iters, samples=None, batch_size=None, device="cpu"):
    model = tomllib.loads((MODELS / f"{name}.toml").read_text())
    r = model["recipe"]
    g = build(model["generator"], model["generator"]["input"])
    d_layers = model["discriminator"]["layers"]
    if d_layers[-1]["type"] == "sigmoid":  # folded into the loss, as gan-gpu does
        model["discriminator"]["layers"] = d_layers[:-1]
    d = build(model["discriminator"], model["image"])
    keras_init(g)
    keras_init(d)
    g.to(device)
    d.to(device)
    g_opt, g_clip = optimizer(r["g_optimizer"], g.parameters())
    d_opt, d_clip = optimizer(r["d_optimizer"], d.parameters())
    batch, g_batch = r["batch"], r.get("g_batch", r["batch"])
    if batch_size:  # as gan-gpu's --batch-size: a separate generator batch keeps its ratio
        g_batch = -(-g_batch * batch_size // batch)
        batch = batch_size
    nz = int(np.prod(model["generator"]["input"]))
    low, high = r["pixel_range"]
    noise = r["noise"]

    def z(n):
        if noise["kind"] == "uniform":
            return torch.rand(n, nz, device=device) * (noise["high"] - noise["low"]) + noise["low"]
        return torch.randn(n, nz, device=device) * noise["std"] + noise["mean"]

    real_t = torch.full((batch, 1), r.get("real_label", 1.0), device=device)
    fake_t = torch.zeros(batch, 1, device=device)
    ones = torch.ones(g_batch, 1, device=device)
    n = images.shape[0]

    def step():
        idx = torch.randint(0, n, (batch,), device=images.device)
        real = images[idx].float() * ((high - low) / 255) + low
        g.train(r.get("fakes_for_d", "training") == "training")
        with torch.no_grad():
            fake = g(z(batch)).reshape(batch, 1, 28, 28)
        g.train(True)
        logits = d(torch.cat([real, fake]))
        if r["d_loss"] == "mean_over_both":
            d_loss = F.binary_cross_entropy_with_logits(logits, torch.cat([real_t, fake_t]))
        else:
            d_loss = (F.binary_cross_entropy_with_logits(logits[:batch], real_t)
                      + F.binary_cross_entropy_with_logits(logits[batch:], fake_t))
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        if d_clip:
            torch.nn.utils.clip_grad_value_(d.parameters(), d_clip)
        d_opt.step()
        g_loss = F.binary_cross_entropy_with_logits(d(g(z(g_batch)).reshape(g_batch, 1, 28, 28)), ones)
        g_opt.zero_grad(set_to_none=True)
        d.zero_grad(set_to_none=True)
        g_loss.backward()
        if g_clip:
            torch.nn.utils.clip_grad_value_(g.parameters(), g_clip)
        g_opt.step()
        return d_loss, g_loss

    for _ in range(min(5, iters)):  # warm-up: allocator, thread pool
        step()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        d_loss, g_loss = step()
    sync()
    seconds = time.perf_counter() - start
    if samples:
        g.eval()
        with torch.no_grad():
            out = g(z(1000)).reshape(-1, 28, 28)
        pixels = ((out - low) / (high - low) * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        write_idx(samples.replace("{model}", name), pixels)
    return {"model": name, "peer": "pytorch", "device": device, "batch": batch, "iters": iters, "seconds": round(seconds, 3),
            "ms_per_iter": round(1000 * seconds / iters, 3), "images_per_s": round(iters * batch / seconds, 1),
            "threads": torch.get_num_threads(), "d_loss": d_loss.item(), "g_loss": g_loss.item()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="directory with train-images-idx3-ubyte.gz")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="mlp,mlp-relu,dcgan-avgpool,dcgan,dcgan-upsample")
    ap.add_argument("--batch-size", type=int, help="instead of the recipe's batch, as gan-gpu's --batch-size")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda for PyTorch's eager CUDA mode")
    ap.add_argument("--fp32", action="store_true", help="no TF32 in cuDNN convolutions either")
    ap.add_argument("--samples", help="write 1000 generated images to this IDX file ({model} is replaced)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.fp32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    images = load_images(args.data).to(args.device)
    for name in args.models.split(","):
        print(json.dumps(run(name, images, args.iters, args.samples, args.batch_size, args.device)), flush=True)


if __name__ == "__main__":
    main()
