// Column sums of a row-major matrix: the gradient of a bias that was added to every row
// (the bias add itself is fused into the matmul). With `accumulate` the sums are added to
// db's values (a gradient summed over chunks of a batch).
//
// A conv layer's bias sums batch * pixels rows (200k in dcgan), and one invocation per column
// walking all of them used one core of the device. So the rows are cut into slices of
// Params.slice_rows, summed in parallel into a [slices, cols] matrix of partial sums, whose
// column sums (this kernel again, over that matrix, as many times as it takes) are the
// gradient.

struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32,
    // Rows per slice; slice s writes its sums to row s of db (with one slice, db itself).
    slice_rows: u32,
}

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read_write> db: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

const WG: u32 = 64u;

// dy is read through the texture that mirrors it (src/gpu.rs's QuadTexture) when TEXTURES is
// set: llvmpipe fetches a texel in a fraction of a storage load's time, even keeping one of
// its four floats.
override TEXTURES: bool = false;
@group(0) @binding(3) var dy4: texture_storage_2d<rgba32float, read>;

// Element i of dy, from its texture or its buffer.
fn dy_at(i: u32) -> f32 {
    if TEXTURES {
        return textureLoad(dy4, element_texel(i))[i % 4u];
    }
    return dy[i];
}

// One invocation per column and slice walks down the slice's rows: neighbouring invocations
// read neighbouring words, and every element is loaded exactly once.
@compute @workgroup_size(WG)
fn bias_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let first = gid.y * p.slice_rows;
    if c >= p.cols || first >= p.rows {
        return;
    }
    let out = gid.y * p.cols + c;
    var sum = select(0.0, db[out], p.accumulate != 0u);
    for (var r = first; r < min(first + p.slice_rows, p.rows); r++) {
        sum += dy_at(r * p.cols + c);
    }
    db[out] = sum;
}
