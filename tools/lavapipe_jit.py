#!/usr/bin/env python3
"""What llvmpipe made of our kernels: the machine code lavapipe's JIT compiled for the hottest
loops of a running command, and what those loops spend their instructions on.

lavapipe ships without debug output in release builds (GALLIVM_DEBUG=asm does nothing), and
`perf` sees its JIT code only as anonymous addresses. So this script starts the command, waits
until its kernels are compiled and running, copies the process's anonymous executable mappings
out with gdb, samples it with `perf record`, disassembles the copies with objdump, and reports
the loops (backward branches) that hold the most samples:

    cargo build --release
    WGPU_BACKEND=vulkan python3 tools/lavapipe_jit.py --delay 12 -- \\
        target/release/gan-gpu bench --model mlp --iters 400
    WGPU_BACKEND=vulkan python3 tools/lavapipe_jit.py --delay 10 -- \\
        target/release/gan-gpu bench --kernel matmul --shape 512,512,512 --seconds 20

For each loop it prints its size, its share of the samples, and counts per iteration: vector
multiplies and adds (llvmpipe lowers WGSL's fma() to a multiply and an add, so fused
multiply-adds never appear), blends (every variable a loop carries is written through the
execution mask), stack traffic (spilled registers: each invocation's value is one SIMD
register per lane group, so a 4x4 accumulator block takes 16 of the 16 AVX2 registers),
per-lane gathers (storage-buffer and texel loads), and cross-lane shuffles (subgroup
broadcasts). --keep DIR keeps the dumps and the annotated disassembly.

Needs Linux, gdb, perf and objdump (binutils); the command must run for longer than --delay +
--sample seconds.
"""
import argparse
import bisect
import collections
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# Mnemonics by what they do, for the per-loop counts.
CATEGORIES = [
    ("vector multiplies", re.compile(r"^vmul[ps][sd]$")),
    ("vector adds/subtracts", re.compile(r"^v(add|sub)[ps][sd]$")),
    ("fused multiply-adds", re.compile(r"^vf(n)?m(add|sub)")),
    ("mask blends", re.compile(r"^v(p)?blendv")),
    ("shuffles/broadcasts", re.compile(r"^v(perm|shuf|broadcast|pbroadcast|unpck|punpck|extract|insert)")),
]
INSTRUCTION = re.compile(r"^\s*([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*(\S+)\s*(.*)$")
BRANCH = re.compile(r"^j\w+$")
SAMPLE = re.compile(r"^\s*([\d.]+)%\s+.*?\[\.\]\s+0x([0-9a-f]+)\s*$")


def anonymous_code(pid):
    """(start, end) of the process's anonymous executable mappings: lavapipe's JIT code."""
    regions = []
    for line in pathlib.Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) == 5 and "x" in fields[1] and fields[3] == "00:00":
            start, end = (int(v, 16) for v in fields[0].split("-"))
            regions.append((start, end))
    return regions


def dump(pid, regions, out):
    """Copies each region to out/<start>.bin with gdb; returns the files."""
    files = [(start, out / f"{start:x}.bin") for start, _ in regions]
    args = ["gdb", "-p", str(pid), "-batch", "-nx"]
    for (start, end), (_, path) in zip(regions, files):
        args += ["-ex", f"dump binary memory {path} {start:#x} {end:#x}"]
    subprocess.run(args, capture_output=True, text=True)
    return [(start, path) for start, path in files if path.exists()]


def disassemble(files):
    """Every instruction of the dumps: {address: (mnemonic, operands)}."""
    code = {}
    for start, path in files:
        text = subprocess.run(
            ["objdump", "-D", "--insn-width=16", "-b", "binary", "-m", "i386:x86-64",
             f"--adjust-vma={start:#x}",
             str(path)],
            capture_output=True, text=True, check=True).stdout
        for line in text.splitlines():
            m = INSTRUCTION.match(line)
            if m:
                code[int(m.group(1), 16)] = (m.group(2), m.group(3))
    return code


def samples(perf_data):
    """Share of all samples (percent) per JIT address, normalised over every line of the report
    (perf's own percentages can add up to more than 100)."""
    report = subprocess.run(
        ["perf", "report", "-i", str(perf_data), "--stdio", "--sort", "sym"],
        capture_output=True, text=True).stdout
    hits = collections.Counter()
    total = 0.0
    for line in report.splitlines():
        share = re.match(r"^\s*([\d.]+)%\s", line)
        if share:
            total += float(share.group(1))
            m = SAMPLE.match(line)
            if m:
                hits[int(m.group(2), 16)] += float(m.group(1))
    return collections.Counter({a: 100 * h / total for a, h in hits.items()}) if total else hits


def loops(code):
    """(start, end) of every backward branch's body, end = the branch's address."""
    found = []
    for address, (mnemonic, operands) in code.items():
        if BRANCH.match(mnemonic):
            target = operands.split()[0] if operands else ""
            if re.fullmatch(r"(0x)?[0-9a-f]+", target):
                t = int(target, 16)
                if t < address and t in code:
                    found.append((t, address))
    return found


def describe(code, addresses, start, end, share):
    """The loop's counts per iteration, as lines of text; `addresses` are code's, sorted, and
    `share` the loop's percentage of the samples."""
    body = addresses[bisect.bisect_left(addresses, start):bisect.bisect_right(addresses, end)]
    counts = collections.Counter()
    for mnemonic, operands in map(code.get, body):
        for name, pattern in CATEGORIES:
            if pattern.match(mnemonic):
                counts[name] += 1
                break
        if "(%rsp)" in operands:
            counts["stack (spill) operands"] += 1
        if mnemonic in ("vinserti128", "vinsertf128", "vpinsrd", "vmovd", "vmovdqa",
                        "vmovdqu", "vmovss") and re.search(r"\(%r\w+,%r\w+", operands):
            counts["per-lane loads (gathers)"] += 1
    lines = [f"loop {start:#x}-{end:#x}: {end - start} bytes, {len(body)} instructions, "
             f"{share:.1f}% of the samples"]
    for name in [c for c, _ in CATEGORIES] + ["stack (spill) operands", "per-lane loads (gathers)"]:
        lines.append(f"    {name:28s} {counts[name]:6d}")
    math = counts["vector multiplies"] + counts["fused multiply-adds"]
    if math:
        lines.append(f"    instructions per vector multiply: {len(body) / math:.1f}")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--delay", type=float, default=10.0,
                    help="seconds to wait before copying the JIT code (the kernels must be compiled and running by then)")
    ap.add_argument("--sample", type=float, default=3.0, help="seconds to sample with perf")
    ap.add_argument("--top", type=int, default=3, help="loops to report")
    ap.add_argument("--keep", type=pathlib.Path, help="directory to keep the dumps and disassembly in")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to profile")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give the command to profile after --")
    for tool in ("gdb", "perf", "objdump"):
        if shutil.which(tool) is None:
            sys.exit(f"error: {tool} is not installed (apt-get install gdb linux-perf binutils)")

    out = args.keep or pathlib.Path(tempfile.mkdtemp(prefix="lavapipe-jit-"))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "command.log", "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(args.delay)
        if proc.poll() is not None:
            sys.exit(f"error: the command ended within --delay ({args.delay} s); its output is in "
                     f"{out / 'command.log'}. Give it more work or a shorter --delay.")
        regions = anonymous_code(proc.pid)
        if not regions:
            sys.exit("error: the process has no JIT code yet; is it running on lavapipe? "
                     "Try a longer --delay.")
        files = dump(proc.pid, regions, out)
        if not files:
            sys.exit("error: gdb could not copy the JIT code (is ptrace allowed here?)")
        perf_data = out / "perf.data"
        subprocess.run(["perf", "record", "-q", "-o", str(perf_data), "-p", str(proc.pid), "--",
                        "sleep", str(args.sample)], capture_output=True)
        if proc.poll() is not None:
            print("warning: the command ended while perf sampled it; the sample may be short",
                  file=sys.stderr)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait()

    code = disassemble(files)
    hits = samples(perf_data)
    jit_share = sum(h for a, h in hits.items() if any(s <= a < e for s, e in regions))
    print(f"{len(code)} JIT instructions in {len(files)} regions; "
          f"{jit_share:.1f}% of the samples in JIT code")
    # Innermost hot loops: a loop is skipped when one inside it holds 80% of its samples.
    share = {l: sum(h for a, h in hits.items() if l[0] <= a <= l[1]) for l in loops(code)}
    kept = []
    for start, end in sorted(share, key=lambda l: l[1] - l[0]):
        if share[start, end] > 0 and not any(
                start <= s and e <= end and share[s, e] >= 0.8 * share[start, end]
                for s, e in kept):
            kept.append((start, end))
    addresses = sorted(code)
    for start, end in sorted(kept, key=lambda l: -share[l])[:args.top]:
        print("\n".join(describe(code, addresses, start, end, share[start, end])))
    if args.keep:
        with open(out / "annotated.s", "w") as f:
            for a in addresses:
                mnemonic, operands = code[a]
                share = hits.get(a, 0.0)
                f.write(f"{share:6.2f} {a:x} {mnemonic} {operands}\n" if share else
                        f"       {a:x} {mnemonic} {operands}\n")
        print(f"dumps, perf.data and annotated.s in {out}")
    else:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
