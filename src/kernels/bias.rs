//! Host side of `shaders/bias.wgsl`: the bias gradient of a dense layer (the bias add itself
//! is fused into the matmul).

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shaders;

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32,
}

/// db[c] = sum over rows of dy[r*cols + c] (+ db[c] when `accumulate`): column sums of a
/// row-major [rows, cols] matrix.
pub fn bias_grad(
    gpu: &Gpu,
    dy: &Tensor,
    db: &Tensor,
    rows: usize,
    cols: usize,
    accumulate: bool,
) -> Dispatch {
    assert!(rows * cols <= dy.len && cols <= db.len, "bias_grad: tensors too small");
    let params = gpu.uniform(&Params {
        rows: u32::try_from(rows).unwrap(),
        cols: cols as u32,
        accumulate: accumulate.into(),
    });
    let pipeline = gpu.pipeline(&shaders::BIAS, "bias_grad", &[]);
    gpu.dispatch(
        "bias_grad",
        &pipeline,
        &[dy.binding(), db.binding(), params.as_entire_binding()],
        gpu.grid(cols, WG),
    )
}
