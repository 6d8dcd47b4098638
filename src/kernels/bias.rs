//! Host side of `shaders/bias.wgsl`: the bias gradient of a dense or conv layer (the bias add
//! itself is fused into the matmul or conv).

use bytemuck::{Pod, Zeroable};

use super::{flag, mirrors, slicing};
use crate::gpu::{Dispatch, Gpu, Op, Tensor};
use crate::shaders;

const WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32,
    slice_rows: u32,
}

/// db[c] = sum over rows of dy[r*cols + c] (+ db[c] when `accumulate`): column sums of a
/// row-major [rows, cols] matrix. One dispatch, or for more than a slice of rows the slices'
/// partial sums, then theirs, until one slice is left: a last pass over all of 25k rows' slices
/// in one workgroup took an H200 0.4 ms (dcgan's D conv biases).
pub fn bias_grad(
    gpu: &Gpu,
    dy: &Tensor,
    db: &Tensor,
    rows: usize,
    cols: usize,
    accumulate: bool,
) -> Vec<Op> {
    assert!(rows * cols <= dy.len && cols <= db.len, "bias_grad: tensors too small");
    let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
    let mut ops = Vec::new();
    let (mut sums, mut rows) = (dy.clone(), rows);
    loop {
        // Rows per invocation: the slicing's, or more where the grid would pass its limit.
        let slice_rows = slicing(gpu).column_rows.max(rows.div_ceil(max));
        let slices = rows.div_ceil(slice_rows);
        if slices == 1 {
            ops.push(column_sums(gpu, &sums, db, rows, cols, rows, accumulate).into());
            return ops;
        }
        let partials = gpu.zeros(slices * cols);
        ops.push(column_sums(gpu, &sums, &partials, rows, cols, slice_rows, false).into());
        (sums, rows) = (partials, slices);
    }
}

/// One bias_grad dispatch: the column sums of each `slice_rows` rows of dy into the rows of db.
fn column_sums(
    gpu: &Gpu,
    dy: &Tensor,
    db: &Tensor,
    rows: usize,
    cols: usize,
    slice_rows: usize,
    accumulate: bool,
) -> Dispatch {
    let params = gpu.uniform(&Params {
        rows: u32::try_from(rows).unwrap(),
        cols: cols as u32,
        accumulate: accumulate.into(),
        slice_rows: slice_rows as u32,
    });
    let groups = [cols.div_ceil(WG as usize), rows.div_ceil(slice_rows), 1];
    let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
    assert!(groups[0] <= max, "bias_grad: {cols} columns");
    let ([dy4], textures) = mirrors(gpu, [dy]);
    let pipeline = gpu.pipeline(&shaders::BIAS, "bias_grad", &[("TEXTURES", flag(textures))]);
    gpu.dispatch(
        "bias_grad",
        &pipeline,
        &[dy.binding(), db.binding(), params.as_entire_binding(), dy4.binding()],
        groups.map(|g| g as u32),
    )
    .reading(&[&dy4])
}
