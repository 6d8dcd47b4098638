#!/usr/bin/env python3
"""Cut the first 10,000 MNIST training digits and labels into the shipped subset.

Usage (from the crate root):
    python3 assets/make_mnist_subset.py ../shared/data/mnist assets

Reads train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz from the first
directory, checks the SHA-256 of their decompressed content against the published
values, and writes mnist-train-10k-{images-idx3,labels-idx1}-ubyte.gz into the second:
valid IDX files whose count field says 10000, gzip level 9 with a zero timestamp and
no file name in the gzip header, so the output is byte-for-byte reproducible.
"""
import gzip
import hashlib
import struct
import sys
from pathlib import Path

COUNT = 10_000
SOURCES = {
    # name: (IDX magic, header bytes, bytes per item, sha256 of the decompressed file)
    "train-images-idx3-ubyte": (
        0x00000803, 16, 28 * 28,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train-labels-idx1-ubyte": (
        0x00000801, 8, 1,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
}


def main() -> None:
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    for name, (magic, header_len, item_len, sha256) in SOURCES.items():
        data = gzip.decompress((src / f"{name}.gz").read_bytes())
        if hashlib.sha256(data).hexdigest() != sha256:
            sys.exit(f"{src / name}.gz: not the published MNIST file (SHA-256 differs)")
        (found_magic, count) = struct.unpack(">II", data[:8])
        assert found_magic == magic and count == 60_000, (name, found_magic, count)
        header = struct.pack(">II", magic, COUNT) + data[8:header_len]
        body = data[header_len:header_len + COUNT * item_len]
        out = dst / f"mnist-{name.replace('train-', 'train-10k-')}.gz"
        out.write_bytes(gzip.compress(header + body, compresslevel=9, mtime=0))
        print(f"{out}: {len(header + body)} bytes, {out.stat().st_size} compressed, "
              f"sha256 of content {hashlib.sha256(header + body).hexdigest()}")


if __name__ == "__main__":
    main()
