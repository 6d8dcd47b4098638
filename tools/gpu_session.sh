#!/usr/bin/env bash
# Speed and correctness of gan-gpu on a lent NVIDIA machine (the workplace's `device` tool),
# in one short run, against PyTorch's eager CUDA mode on the same GPU.
#
#   bash tools/gpu_session.sh pack    # here: release binary, GPU test binaries, MNIST, fixtures
#                                     # into the git-ignored .dev/ (about 40 MB)
#   device run, carry [".dev", ".gl"]: bash tools/gpu_session.sh run [STAGE...]
#
# STAGES: devices models compare matmul conv kernels tests (all, in this order, by default),
# or peer (PyTorch alone) instead of compare;
# TESTS picks the test binaries, ROUNDS compare.py's rounds.
#
# .gl/ holds the Vulkan loader's .deb files (see the device tool's README). Results land in
# $OUT: devices.txt (adapter, tuned variants), matmul.txt, models.txt, compare.txt,
# kernels.jsonl, tests.txt, log.txt (the time each stage started). Stages run in order of
# value, each under its own timeout, so a run cut short still returns the first ones.
set -uo pipefail
cd "$(dirname "$0")/.."
TESTS=${TESTS:-"matmul kernels conv layer_kernels training tune"}

pack() {
    set -e
    grep -qx '/.dev/' .git/info/exclude 2>/dev/null || echo /.dev/ >> .git/info/exclude
    cargo build --release
    cargo test --release --no-run
    rm -rf .dev/bin && mkdir -p .dev/bin .dev/mnist
    cp target/release/gan-gpu .dev/bin/
    for t in $TESTS; do
        cp "$(ls -t target/release/deps/$t-* | grep -v '\.d$' | head -1)" ".dev/bin/test-$t"
    done
    strip .dev/bin/*
    tar -czf .dev/bins.tar.gz -C .dev/bin . && rm -rf .dev/bin
    cp "${GAN_GPU_DATA:-../shared/data/mnist}"/*.gz .dev/mnist/
    cp "${GAN_GPU_FIXTURES:-../shared/fixtures/ops.safetensors}" .dev/ops.safetensors
    pwd > .dev/built_at
    du -sh .dev
}

run() {
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    if ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1; then
        export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
        export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    fi
    mkdir -p .dev/bin && tar -xzf .dev/bins.tar.gz -C .dev/bin
    # The test binaries read assets/ at the path they were built in.
    local built_at
    built_at=$(cat .dev/built_at)
    [ -e "$built_at" ] || { mkdir -p "$(dirname "$built_at")" && ln -s "$PWD" "$built_at"; }
    # ... and run the binary from its build path (tests/tune.rs).
    mkdir -p target/release && ln -sf "$PWD/.dev/bin/gan-gpu" target/release/gan-gpu
    export GAN_GPU_FIXTURES=$PWD/.dev/ops.safetensors GAN_GPU_DATA=$PWD/.dev/mnist
    export XDG_RUNTIME_DIR=/tmp/xdg WGPU_BACKEND=vulkan GAN_GPU_CACHE_DIR=/tmp/gcache PYTHONUNBUFFERED=1
    mkdir -p -m700 "$XDG_RUNTIME_DIR"
    B=.dev/bin/gan-gpu log=$OUT/log.txt
    t0=$(date +%s)
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv >> "$log" 2>&1
    for s in "${@:-devices models compare matmul conv kernels tests}"; do
        for one in $s; do
            echo "== $(($(date +%s) - t0))s $one" | tee -a "$log"
            "stage_$one"
        done
    done
    echo "== $(($(date +%s) - t0))s done" | tee -a "$log"
}

stage_devices() {
    timeout 40 $B devices > "$OUT/devices.txt" 2>&1
    timeout 90 $B devices --tune >> "$OUT/devices.txt" 2>&1
}

stage_models() {
    timeout 150 $B bench --iters 200 > "$OUT/models.txt" 2>&1
}

stage_compare() {
    timeout 200 python3 benches/compare.py --device cuda --gan-gpu $B --data .dev/mnist \
        --iters 200 --rounds "${ROUNDS:-2}" > "$OUT/compare.txt" 2>&1
}

# PyTorch alone, in one process (one CUDA start-up), to set beside `models`' figures when
# there is no time for compare's alternating rounds: its defaults, then without TF32.
stage_peer() {
    local models=mlp,mlp-relu,dcgan-avgpool,dcgan,dcgan-upsample
    timeout 60 python3 benches/pytorch_gan.py --device cuda --data .dev/mnist --iters 200 \
        --models $models > "$OUT/peer.txt" 2>&1
    timeout 40 python3 benches/pytorch_gan.py --device cuda --data .dev/mnist --iters 200 \
        --models dcgan-avgpool,dcgan,dcgan-upsample --fp32 | sed 's/^{/{"fp32": true, /' \
        >> "$OUT/peer.txt" 2>&1
}

stage_matmul() {
    for s in 1024,1024,1024 4096,4096,4096 4096,4096,4096,ta 4096,4096,4096,tb; do
        for k in tiled portable; do
            timeout 30 $B bench --kernel matmul --kernels $k --shape $s --seconds 0.3 2>&1 \
                | tail -1 | sed "s/^/$k /"
        done
    done > "$OUT/matmul.txt"
    timeout 60 python3 benches/compare.py --device cuda --matmul --gan-gpu $B \
        --shapes "4096,4096,4096;4096,4096,4096,ta" >> "$OUT/matmul.txt" 2>&1
}

stage_conv() {
    # dcgan's convs at its batch, then dcgan-upsample's (at half its batch, for the CPU twin's
    # sake): its G's 14x14 256 -> 128 and 28x28 64 -> 32, and its D's 4x4 256 -> 512.
    for s in "conv 128,14,14,64,128,5,2,same,bias,leaky_relu" "conv-transpose 128,7,7,256,128,5,1,same" \
        "conv-transpose 128,7,7,128,64,5,2,same" "conv 64,14,14,256,128,5,1,same,bias" \
        "conv 64,28,28,64,32,5,1,same,bias" "conv 128,4,4,256,512,5,1,same,bias,leaky_relu"; do
        for k in tiled portable; do
            set -- $s
            timeout 30 $B bench --kernel "$1" --kernels $k --shape "$2" --seconds 0.3 2>&1 \
                | tail -3 | sed "s/^/$k /"
        done
    done > "$OUT/conv.txt"
}

stage_kernels() {
    timeout 60 $B bench --kernel all --json > "$OUT/kernels.jsonl" 2>> "$log"
}

stage_tests() {
    for t in $TESTS; do
        echo "## $t" >> "$OUT/tests.txt"
        # conv reruns every case on 4 variant sets off CPU adapters: 45 s was too few.
        GAN_GPU_TEST_BACKENDS=vulkan timeout 120 ".dev/bin/test-$t" --test-threads 16 \
            >> "$OUT/tests.txt" 2>&1
        echo "rc=$?" >> "$OUT/tests.txt"
    done
    grep -E "^test result|rc=|panicked" "$OUT/tests.txt" >> "$log"
}

case "${1:-}" in
    pack) pack ;;
    run) shift; run "$@" ;;
    *) echo "usage: $0 pack|run" >&2; exit 2 ;;
esac
