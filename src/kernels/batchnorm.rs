//! Host side of `shaders/batchnorm.wgsl`: batch normalization of each column of a [rows, cols]
//! matrix (each channel of NHWC activations, each unit of a dense layer) in training and
//! inference mode, and its gradient, with Keras's semantics (biased batch variance; moving
//! statistics `momentum * moving + (1 - momentum) * batch`).
//!
//! Training and its gradient take three dispatches each: per-chunk column sums, their totals,
//! and the per-element pass; a batch split across buffers (the `_chunks` variants) takes the
//! first and last once per chunk of the batch. The per-column vectors are copied into one buffer around them
//! (see `Columns`), so that every kernel stays within downlevel WebGPU's 4 storage buffers.

use bytemuck::{Pod, Zeroable};

use super::flag;
use crate::gpu::{Gpu, Op, QuadTexture, Tensor};
use crate::shaders;

const WG: u32 = 256;
/// Rows each thread of a per-element pass takes, so that it loads its column's statistics
/// once per this many elements (on lavapipe every load costs as much as the arithmetic).
const ROWS_PER_THREAD: usize = 16;
/// Threads (columns x row-chunks) a partials pass aims for: hundreds of SIMD vectors on a CPU
/// adapter, where each thread sums its chunk of a column serially.
const PARTIAL_THREADS: usize = 8192;
/// The fewest rows a partials thread sums, so that the totals pass has few chunks to add.
const MIN_CHUNK_ROWS: usize = 16;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    chunk_rows: u32,
    first_chunk: u32,
    chunks: u32,
    total_rows: u32,
    blocks: u32,
    eps: f32,
    momentum: f32,
    var_correction: f32,
}

/// How one call splits its work: per chunk of the batch, the parameters of its partials and
/// per-element passes; the parameters of the passes that total the partials.
struct Split {
    chunks: Vec<Params>,
    totals: Params,
}

/// The split of a batch norm over `rows` (the rows of each chunk of the batch) by `cols`.
fn split(rows: &[usize], cols: usize, eps: f32, momentum: f32, var_correction: f32) -> Split {
    let total_rows: usize = rows.iter().sum();
    assert!(rows.iter().all(|&r| r >= 1) && cols >= 1, "batch norm of {rows:?}x{cols}");
    for &r in rows {
        assert!(r * cols <= u32::MAX as usize, "batch norm: {r}x{cols} elements");
    }
    let params = |rows: usize, chunk_rows: usize, first_chunk: usize, chunks: usize| Params {
        rows: rows as u32,
        cols: cols as u32,
        chunk_rows: chunk_rows as u32,
        first_chunk: first_chunk as u32,
        chunks: chunks as u32,
        total_rows: total_rows as u32,
        blocks: rows.div_ceil(ROWS_PER_THREAD) as u32,
        eps,
        momentum,
        var_correction,
    };
    let mut chunks = Vec::new();
    let mut first_chunk = 0;
    for &r in rows {
        let row_chunks = PARTIAL_THREADS.div_ceil(cols).min(r.div_ceil(MIN_CHUNK_ROWS));
        let chunk_rows = r.div_ceil(row_chunks);
        let row_chunks = r.div_ceil(chunk_rows);
        chunks.push(params(r, chunk_rows, first_chunk, row_chunks));
        first_chunk += row_chunks;
    }
    Split { chunks, totals: params(total_rows, 0, 0, first_chunk) }
}

impl Split {
    /// Two sums per column for every row-chunk of every chunk of the batch.
    fn scratch(&self, gpu: &Gpu) -> Tensor {
        gpu.zeros(2 * (self.totals.chunks * self.totals.cols) as usize)
    }

    /// One thread per column.
    fn column_grid(&self, gpu: &Gpu) -> [u32; 3] {
        gpu.grid(self.totals.cols as usize, WG)
    }
}

/// One thread per column and row-chunk of a chunk's partials pass.
fn partials_grid(gpu: &Gpu, chunk: &Params) -> [u32; 3] {
    gpu.grid((chunk.chunks * chunk.cols) as usize, WG)
}

/// One thread per column and block of rows of a chunk.
fn element_grid(gpu: &Gpu, chunk: &Params) -> [u32; 3] {
    gpu.grid((chunk.blocks * chunk.cols) as usize, WG)
}

/// The texture mirrors of each chunk of each operand, for the TEXTURES variant of the kernels
/// that read them, and whether that variant runs: when every chunk fits a texture (else
/// 1-texel stand-ins, and the kernels read the buffers).
fn chunk_mirrors<const N: usize>(
    gpu: &Gpu,
    operands: [&[Tensor]; N],
) -> ([Vec<QuadTexture>; N], bool) {
    let fits = operands.iter().all(|chunks| chunks.iter().all(|t| gpu.quad_texture_fits(t)));
    (operands.map(|chunks| chunks.iter().map(|t| gpu.quad_texture(t, fits)).collect()), fits)
}

fn check_lengths(name: &str, rows: usize, cols: usize, matrices: &[&Tensor], columns: &[&Tensor]) {
    for t in matrices {
        assert!(rows * cols <= t.len, "{name}: a {}-element tensor for {rows}x{cols}", t.len);
    }
    for t in columns {
        assert!(cols <= t.len, "{name}: a {}-element tensor for {cols} columns", t.len);
    }
}

/// Checks a batch in chunks: one tensor of each operand and a row count per chunk.
fn check_chunks(name: &str, rows: &[usize], cols: usize, operands: &[&[Tensor]]) {
    assert!(!rows.is_empty(), "{name}: a batch of no chunks");
    for chunks in operands {
        assert_eq!(chunks.len(), rows.len(), "{name}: tensors for {} chunks", rows.len());
        for (t, &r) in chunks.iter().zip(rows) {
            check_lengths(name, r, cols, &[t], &[]);
        }
    }
}

/// The per-column vectors side by side in one buffer, in batchnorm.wgsl's slot order, so that
/// no kernel binds more than 4 storage buffers (downlevel WebGPU's limit).
#[derive(Clone, Copy)]
enum Slot {
    Mean,
    Variance,
    Gamma,
    Beta,
    RunningMean,
    RunningVar,
    Dgamma,
    Dbeta,
    Shift,
}

const SLOTS: usize = Slot::Shift as usize + 1;

/// One call's `columns` buffer and the copies between its slots and the callers' tensors.
struct Columns {
    buffer: Tensor,
    cols: usize,
}

impl Columns {
    fn new(gpu: &Gpu, cols: usize) -> Columns {
        Columns { buffer: gpu.zeros(SLOTS * cols), cols }
    }

    /// Copies the first `cols` elements of `from` into `slot`.
    fn load(&self, slot: Slot, from: &Tensor) -> Op {
        Op::Copy {
            src: from.clone(),
            src_offset: 0,
            dst: self.buffer.clone(),
            dst_offset: slot as usize * self.cols,
            len: self.cols,
        }
    }

    fn store(&self, slot: Slot, to: &Tensor) -> Op {
        Op::Copy {
            src: self.buffer.clone(),
            src_offset: slot as usize * self.cols,
            dst: to.clone(),
            dst_offset: 0,
            len: self.cols,
        }
    }
}

/// Training mode: y = gamma * (x - mean) / sqrt(var + eps) + beta with the batch mean and
/// biased variance of each column, which are saved in `mean_out` and `var_out` for the
/// backward pass; then running = momentum * running + (1 - momentum) * batch, the variance
/// first scaled by rows / (rows - 1) when `unbiased_running_var` (PyTorch's choice; Keras
/// uses the biased one). Three dispatches (column sums per chunk of rows, statistics, y)
/// between the copies in and out of the columns buffer.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train(
    gpu: &Gpu,
    x: &Tensor,
    y: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean_out: &Tensor,
    var_out: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    rows: usize,
    cols: usize,
    eps: f32,
    momentum: f32,
    unbiased_running_var: bool,
) -> Vec<Op> {
    batch_norm_train_chunks(
        gpu,
        std::slice::from_ref(x),
        std::slice::from_ref(y),
        gamma,
        beta,
        mean_out,
        var_out,
        running_mean,
        running_var,
        &[rows],
        cols,
        eps,
        momentum,
        unbiased_running_var,
    )
}

/// [`batch_norm_train`] of a batch split into chunks of rows, each in its own tensors (x[k]
/// and y[k] hold rows[k] rows): the statistics are those of the whole batch.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_chunks(
    gpu: &Gpu,
    x: &[Tensor],
    y: &[Tensor],
    gamma: &Tensor,
    beta: &Tensor,
    mean_out: &Tensor,
    var_out: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    rows: &[usize],
    cols: usize,
    eps: f32,
    momentum: f32,
    unbiased_running_var: bool,
) -> Vec<Op> {
    check_chunks("batch_norm_train", rows, cols, &[x, y]);
    let vectors = [gamma, beta, mean_out, var_out, running_mean, running_var];
    check_lengths("batch_norm_train", 1, cols, &[], &vectors);
    let n: usize = rows.iter().sum();
    assert!(!unbiased_running_var || n > 1, "an unbiased variance of one row");
    let correction = if unbiased_running_var { n as f32 / (n - 1) as f32 } else { 1.0 };
    let s = split(rows, cols, eps, momentum, correction);
    let partials = s.scratch(gpu);
    let columns = Columns::new(gpu, cols);
    let c = columns.buffer.binding();
    let ([x4], textures) = chunk_mirrors(gpu, [x]);
    let constants = [("TEXTURES", flag(textures))];
    let partials_pipeline = gpu.pipeline(&shaders::BATCHNORM, "bn_partials", &constants);
    let normalize = gpu.pipeline(&shaders::BATCHNORM, "bn_normalize", &constants);
    let stats = gpu.pipeline(&shaders::BATCHNORM, "bn_stats", &[]);
    let mut ops = vec![
        columns.load(Slot::Gamma, gamma),
        columns.load(Slot::Beta, beta),
        columns.load(Slot::RunningMean, running_mean),
        columns.load(Slot::RunningVar, running_var),
        columns.load(Slot::Shift, &x[0]),
    ];
    let chunk_params: Vec<wgpu::Buffer> = s.chunks.iter().map(|p| gpu.uniform(p)).collect();
    for (k, p) in chunk_params.iter().enumerate() {
        let bindings =
            [p.as_entire_binding(), x[k].binding(), partials.binding(), c.clone(), x4[k].binding()];
        let grid = partials_grid(gpu, &s.chunks[k]);
        let dispatch = gpu.dispatch("bn_partials", &partials_pipeline, &bindings, grid);
        ops.push(dispatch.reading(&[&x4[k]]).into());
    }
    let totals = gpu.uniform(&s.totals);
    let bindings = [totals.as_entire_binding(), c.clone(), partials.binding()];
    ops.push(gpu.dispatch("bn_stats", &stats, &bindings, s.column_grid(gpu)).into());
    for (k, p) in chunk_params.iter().enumerate() {
        let bindings =
            [p.as_entire_binding(), x[k].binding(), y[k].binding(), c.clone(), x4[k].binding()];
        let grid = element_grid(gpu, &s.chunks[k]);
        let dispatch = gpu.dispatch("bn_normalize", &normalize, &bindings, grid);
        ops.push(dispatch.reading(&[&x4[k]]).into());
    }
    ops.extend([
        columns.store(Slot::Mean, mean_out),
        columns.store(Slot::Variance, var_out),
        columns.store(Slot::RunningMean, running_mean),
        columns.store(Slot::RunningVar, running_var),
    ]);
    ops
}

/// The gradient of [`batch_norm_train`]'s y, given the batch statistics it saved:
/// dbeta = sum dy, dgamma = sum dy * xhat with xhat = (x - mean) / sqrt(var + eps), and
/// dx = gamma / sqrt(var + eps) * (dy - dbeta / rows - xhat * dgamma / rows), which includes
/// the paths through the mean and variance. Three dispatches (column sums per chunk of rows,
/// dgamma and dbeta, dx) between the copies in and out of the columns buffer.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    gpu: &Gpu,
    x: &Tensor,
    dy: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    dx: &Tensor,
    dgamma: &Tensor,
    dbeta: &Tensor,
    rows: usize,
    cols: usize,
    eps: f32,
) -> Vec<Op> {
    batch_norm_backward_chunks(
        gpu,
        std::slice::from_ref(x),
        std::slice::from_ref(dy),
        gamma,
        mean,
        var,
        std::slice::from_ref(dx),
        dgamma,
        dbeta,
        &[rows],
        cols,
        eps,
    )
}

/// [`batch_norm_backward`] of a batch split into chunks of rows, each in its own tensors, as
/// [`batch_norm_train_chunks`] normalised it.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward_chunks(
    gpu: &Gpu,
    x: &[Tensor],
    dy: &[Tensor],
    gamma: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    dx: &[Tensor],
    dgamma: &Tensor,
    dbeta: &Tensor,
    rows: &[usize],
    cols: usize,
    eps: f32,
) -> Vec<Op> {
    check_chunks("batch_norm_backward", rows, cols, &[x, dy, dx]);
    check_lengths("batch_norm_backward", 1, cols, &[], &[gamma, mean, var, dgamma, dbeta]);
    let s = split(rows, cols, eps, 0.0, 1.0);
    let partials = s.scratch(gpu);
    let columns = Columns::new(gpu, cols);
    let c = columns.buffer.binding();
    let ([x4, dy4], textures) = chunk_mirrors(gpu, [x, dy]);
    let constants = [("TEXTURES", flag(textures))];
    let partials_pipeline = gpu.pipeline(&shaders::BATCHNORM, "bn_backward_partials", &constants);
    let sums = gpu.pipeline(&shaders::BATCHNORM, "bn_backward_sums", &[]);
    let dx_pipeline = gpu.pipeline(&shaders::BATCHNORM, "bn_backward_dx", &constants);
    let mut ops = vec![
        columns.load(Slot::Mean, mean),
        columns.load(Slot::Variance, var),
        columns.load(Slot::Gamma, gamma),
    ];
    let chunk_params: Vec<wgpu::Buffer> = s.chunks.iter().map(|p| gpu.uniform(p)).collect();
    for (k, p) in chunk_params.iter().enumerate() {
        let bindings = [
            p.as_entire_binding(),
            x[k].binding(),
            partials.binding(),
            c.clone(),
            dy[k].binding(),
            x4[k].binding(),
            dy4[k].binding(),
        ];
        let grid = partials_grid(gpu, &s.chunks[k]);
        let dispatch = gpu.dispatch("bn_backward_partials", &partials_pipeline, &bindings, grid);
        ops.push(dispatch.reading(&[&x4[k], &dy4[k]]).into());
    }
    let totals = gpu.uniform(&s.totals);
    let bindings = [totals.as_entire_binding(), c.clone(), partials.binding()];
    ops.push(gpu.dispatch("bn_backward_sums", &sums, &bindings, s.column_grid(gpu)).into());
    for (k, p) in chunk_params.iter().enumerate() {
        let bindings = [
            p.as_entire_binding(),
            x[k].binding(),
            dx[k].binding(),
            c.clone(),
            dy[k].binding(),
            x4[k].binding(),
            dy4[k].binding(),
        ];
        let grid = element_grid(gpu, &s.chunks[k]);
        let dispatch = gpu.dispatch("bn_backward_dx", &dx_pipeline, &bindings, grid);
        ops.push(dispatch.reading(&[&x4[k], &dy4[k]]).into());
    }
    ops.extend([columns.store(Slot::Dgamma, dgamma), columns.store(Slot::Dbeta, dbeta)]);
    ops
}

/// Inference mode: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_infer(
    gpu: &Gpu,
    x: &Tensor,
    y: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    rows: usize,
    cols: usize,
    eps: f32,
) -> Vec<Op> {
    check_lengths(
        "batch_norm_infer",
        rows,
        cols,
        &[x, y],
        &[gamma, beta, running_mean, running_var],
    );
    let s = split(&[rows], cols, eps, 0.0, 1.0);
    let chunk = &s.chunks[0];
    let params = gpu.uniform(chunk);
    let columns = Columns::new(gpu, cols);
    let ([x4], textures) = chunk_mirrors(gpu, [std::slice::from_ref(x)]);
    let pipeline =
        gpu.pipeline(&shaders::BATCHNORM, "bn_normalize", &[("TEXTURES", flag(textures))]);
    let bindings = [
        params.as_entire_binding(),
        x.binding(),
        y.binding(),
        columns.buffer.binding(),
        x4[0].binding(),
    ];
    vec![
        columns.load(Slot::Mean, running_mean),
        columns.load(Slot::Variance, running_var),
        columns.load(Slot::Gamma, gamma),
        columns.load(Slot::Beta, beta),
        gpu.dispatch("bn_normalize", &pipeline, &bindings, element_grid(gpu, chunk))
            .reading(&[&x4[0]])
            .into(),
    ]
}
