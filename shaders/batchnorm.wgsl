// Batch normalization of a [rows, cols] matrix, one mean and variance per column (NHWC
// activations: rows = N*H*W pixels, cols = channels), with Keras's semantics: the batch
// statistics use the biased variance, y = gamma * (x - mean) / sqrt(var + eps) + beta, and
// the moving statistics follow moving = momentum * moving + (1 - momentum) * batch.
//
// Column statistics take two passes. bn_partials (or bn_backward_partials) gives each thread
// one column of one chunk of rows, which it sums serially, neighbouring threads on neighbouring
// columns; bn_stats (or bn_backward_sums) then adds the chunks, one thread per column. Chunking
// the rows gives work to many threads when there are few columns (64 channels of 200k pixels).
// There is no workgroup tree: llvmpipe compiles a shader with barriers into coroutines, whose
// switches cost more than the tree saved. The per-element passes, bn_normalize and
// bn_backward_dx, give each thread one column and a strided share of its rows, so the
// per-column values are loaded once per thread, not once per element.
//
// The per-column vectors (batch statistics, gamma and beta, running statistics, dgamma and
// dbeta, the shift) live side by side in one `columns` buffer, vector SLOT at
// [SLOT * cols + c]; the host copies them in from and out to their own tensors around the
// dispatches. That keeps every entry point within 4 storage buffers, downlevel WebGPU's limit.
//
// A batch too large for one storage binding comes in chunks of rows, each its own buffer: the
// partials and per-element passes run once per chunk (the partials of chunk k from row-chunk
// first_chunk on), the totals once over every chunk's partials, with n = total_rows.
//
// The partials and per-element passes read x and dy through the textures that mirror them
// (src/gpu.rs's QuadTexture) when TEXTURES is set: llvmpipe fetches a texel in a small fraction
// of a storage load's time, even keeping one of its four floats.
//
// Bindings, which each entry point takes as 0, 1, 2, ... (gpu::Gpu::dispatch), so globals
// that share a binding number belong to different entry points:
//   bn_partials           p x partials columns x4
//   bn_stats              p totals partials        (totals: the columns buffer)
//   bn_normalize          p x y columns x4
//   bn_backward_partials  p x partials columns dy x4b dy4
//   bn_backward_sums      p totals partials
//   bn_backward_dx        p x dx columns dy x4b dy4

// Slots of `columns`, in the order src/kernels/batchnorm.rs's Slot lists them.
const MEAN: u32 = 0u;
const VARIANCE: u32 = 1u;
const GAMMA: u32 = 2u;
const BETA: u32 = 3u;
const RUNNING_MEAN: u32 = 4u;
const RUNNING_VAR: u32 = 5u;
const DGAMMA: u32 = 6u;
const DBETA: u32 = 7u;
// Row 0 of the batch, which the sums of squares are taken around.
const SHIFT: u32 = 8u;

struct Params {
    // Rows of this call's chunk of the batch.
    rows: u32,
    cols: u32,
    // Thread (c, k) of a partials pass sums column c over rows [k * chunk_rows,
    // (k + 1) * chunk_rows) into row-chunk first_chunk + k of `partials`.
    chunk_rows: u32,
    first_chunk: u32,
    // Row-chunks of this call's partials pass, or of every call's for the totals passes.
    chunks: u32,
    // Rows of the whole batch, whose statistics these are.
    total_rows: u32,
    // Thread (b, c) of a per-element pass takes rows b, b + blocks, b + 2 blocks, ...
    blocks: u32,
    eps: f32,
    momentum: f32,
    // n / (n - 1) for an unbiased moving variance, else 1.
    var_correction: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// Per chunk k: the sums of column c at [2k * cols + c] and [(2k + 1) * cols + c].
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;

const WG: u32 = 256u;

// The flat thread index of a one-dimensional grid folded over x and y (gpu::Gpu::grid).
fn thread_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WG;
}

@group(0) @binding(3) var<storage, read_write> columns: array<f32>;

override TEXTURES: bool = false;
@group(0) @binding(4) var x4: texture_storage_2d<rgba32float, read>;

// Element i of x, in the forward entry points. (One function per texture: naga's GLSL output
// rejects storage images as function arguments.)
fn x_at(i: u32) -> f32 {
    if TEXTURES {
        return textureLoad(x4, element_texel(i))[i % 4u];
    }
    return x[i];
}

fn column(slot: u32, c: u32) -> f32 {
    return columns[slot * p.cols + c];
}

// Writes one row-chunk's two sums of column c.
fn store_partials(k: u32, c: u32, s: vec2<f32>) {
    partials[2u * (p.first_chunk + k) * p.cols + c] = s.x;
    partials[(2u * (p.first_chunk + k) + 1u) * p.cols + c] = s.y;
}

// What thread t of a partials pass sums: column `column` of row-chunk k, rows [first, end);
// live = 0 for threads past the last chunk.
struct ColumnChunk {
    column: u32,
    k: u32,
    first: u32,
    end: u32,
    live: u32,
}

fn chunk_of(t: u32) -> ColumnChunk {
    let k = t / p.cols;
    let first = k * p.chunk_rows;
    return ColumnChunk(t % p.cols, k, first, min(first + p.chunk_rows, p.rows),
                       u32(t < p.chunks * p.cols));
}

// Per chunk and column, the sums of d and d^2 with d = x - shift, the batch's row 0.
// Shifting by a sample of the column keeps sum(d^2) - sum(d)^2 / n from cancelling when
// |mean| >> std.
@compute @workgroup_size(WG)
fn bn_partials(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let chunk = chunk_of(thread_index(gid, groups));
    if chunk.live == 0u {
        return;
    }
    let c = chunk.column;
    let shift = column(SHIFT, c);
    var s = vec2(0.0);
    for (var r = chunk.first; r < chunk.end; r++) {
        let d = x_at(r * p.cols + c) - shift;
        s += vec2(d, d * d);
    }
    store_partials(chunk.k, c, s);
}

// The columns buffer, in the entry points that total the partials.
@group(0) @binding(1) var<storage, read_write> totals: array<f32>;

// Column c's two sums over every row-chunk of the batch.
fn total_partials(c: u32) -> vec2<f32> {
    var s = vec2(0.0);
    for (var k = 0u; k < p.chunks; k++) {
        s += vec2(partials[2u * k * p.cols + c], partials[(2u * k + 1u) * p.cols + c]);
    }
    return s;
}

// One thread per column adds up the chunks' shifted sums into the batch mean and biased
// variance, and moves the running statistics towards them.
@compute @workgroup_size(WG)
fn bn_stats(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let c = thread_index(gid, groups);
    if c >= p.cols {
        return;
    }
    let s = total_partials(c);
    let n = f32(p.total_rows);
    let d = s.x / n;
    let batch_mean = totals[SHIFT * p.cols + c] + d;
    // Rounding can take a constant column's variance a hair below zero.
    let batch_var = max(s.y / n - d * d, 0.0);
    totals[MEAN * p.cols + c] = batch_mean;
    totals[VARIANCE * p.cols + c] = batch_var;
    let m = p.momentum;
    let running_mean = RUNNING_MEAN * p.cols + c;
    let running_var = RUNNING_VAR * p.cols + c;
    totals[running_mean] = m * totals[running_mean] + (1.0 - m) * batch_mean;
    totals[running_var] = m * totals[running_var] + (1.0 - m) * batch_var * p.var_correction;
}

@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// y = (x - mean) * gamma / sqrt(var + eps) + beta, with the batch statistics in training
// and (copied into the MEAN and VARIANCE slots) the running ones in inference.
@compute @workgroup_size(WG)
fn bn_normalize(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let t = thread_index(gid, groups);
    if t >= p.blocks * p.cols {
        return;
    }
    let c = t % p.cols;
    let m = column(MEAN, c);
    let scale = column(GAMMA, c) / sqrt(column(VARIANCE, c) + p.eps);
    let shift = column(BETA, c);
    for (var r = t / p.cols; r < p.rows; r += p.blocks) {
        let i = r * p.cols + c;
        y[i] = (x_at(i) - m) * scale + shift;
    }
}

@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var x4b: texture_storage_2d<rgba32float, read>;
@group(0) @binding(6) var dy4: texture_storage_2d<rgba32float, read>;

// Element i of x and of dy, in the backward entry points.
fn xb_at(i: u32) -> f32 {
    if TEXTURES {
        return textureLoad(x4b, element_texel(i))[i % 4u];
    }
    return x[i];
}

fn dy_at(i: u32) -> f32 {
    if TEXTURES {
        return textureLoad(dy4, element_texel(i))[i % 4u];
    }
    return dy[i];
}

// Per chunk and column, the sums of dy and dy * xhat, xhat = (x - mean) / sqrt(var + eps):
// the chunk's shares of dbeta and dgamma.
@compute @workgroup_size(WG)
fn bn_backward_partials(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let chunk = chunk_of(thread_index(gid, groups));
    if chunk.live == 0u {
        return;
    }
    let c = chunk.column;
    let m = column(MEAN, c);
    let inv_std = 1.0 / sqrt(column(VARIANCE, c) + p.eps);
    var s = vec2(0.0);
    for (var r = chunk.first; r < chunk.end; r++) {
        let i = r * p.cols + c;
        let g = dy_at(i);
        s += vec2(g, g * (xb_at(i) - m) * inv_std);
    }
    store_partials(chunk.k, c, s);
}

// One thread per column adds up the chunks' shares of dbeta and dgamma.
@compute @workgroup_size(WG)
fn bn_backward_sums(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let c = thread_index(gid, groups);
    if c >= p.cols {
        return;
    }
    let s = total_partials(c);
    totals[DBETA * p.cols + c] = s.x;
    totals[DGAMMA * p.cols + c] = s.y;
}

@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

// dx = gamma / sqrt(var + eps) * (dy - dbeta / n - xhat * dgamma / n): the gradient through
// the batch statistics as well as through the normalization.
@compute @workgroup_size(WG)
fn bn_backward_dx(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let t = thread_index(gid, groups);
    if t >= p.blocks * p.cols {
        return;
    }
    let c = t % p.cols;
    let n = f32(p.total_rows);
    let m = column(MEAN, c);
    let inv_std = 1.0 / sqrt(column(VARIANCE, c) + p.eps);
    let k = column(GAMMA, c) * inv_std;
    let mean_dy = column(DBETA, c) / n;
    let mean_dy_xhat = column(DGAMMA, c) / n;
    for (var r = t / p.cols; r < p.rows; r += p.blocks) {
        let i = r * p.cols + c;
        let xhat = (xb_at(i) - m) * inv_std;
        dx[i] = k * (dy_at(i) - mean_dy - xhat * mean_dy_xhat);
    }
}
