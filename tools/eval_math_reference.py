#!/usr/bin/env python3
"""Reference values for the unit tests of src/eval.rs: the Frechet distance (with
scipy.linalg.sqrtm, as pytorch-fid computes it) and the inception score (with numpy) of the
same pseudo-random data the tests build, from the same 64-bit LCG.

    /tmp/venv/bin/python tools/eval_math_reference.py
"""
import numpy as np
import scipy.linalg


class Lcg:
    """Knuth's MMIX LCG; each value is the top 53 bits of the state, in [0, 1)."""

    def __init__(self, seed):
        self.state = seed

    def next(self):
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) % 2**64
        return (self.state >> 11) / 2.0**53


def correlated(lcg, count, dim, shift):
    """count rows of dim features: uniform noise through a random mixing matrix, plus shift."""
    mix = np.array([[lcg.next() * 2 - 1 for _ in range(dim)] for _ in range(dim)])
    noise = np.array([[lcg.next() for _ in range(dim)] for _ in range(count)])
    # The tests hold features as f32, as the classifier gives them.
    return (noise @ mix + shift).astype(np.float32).astype(np.float64)


def fid(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def softmax_rows(lcg, count, classes, sharpness):
    logits = np.array([[lcg.next() * sharpness for _ in range(classes)] for _ in range(count)])
    e = np.exp(logits - logits.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float32).astype(np.float64)


def inception_score(p):
    py = p.mean(0)
    return np.exp((p * (np.log(p) - np.log(py))).sum(1).mean())


lcg = Lcg(42)
a = correlated(lcg, 50, 6, 0.0)
b = correlated(lcg, 70, 6, 0.3)
print(f"fid(a, b) = {fid(a, b):.15e}")
print(f"fid(b, a) = {fid(b, a):.15e}")
p = softmax_rows(Lcg(7), 40, 10, 6.0)
print(f"inception_score = {inception_score(p):.15e}")
