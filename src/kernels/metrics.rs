//! Host side of `shaders/metrics.wgsl`: mean loss and accuracy of a range of logits.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shaders;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    start: u32,
    count: u32,
    slot: u32,
    positive: u32,
}

/// out[slot] = mean(losses[start..start+count]); out[slot+1] = share of logits on the right
/// side of 0 (above for real images, `positive`, below for fakes).
#[allow(clippy::too_many_arguments)]
pub fn batch_metrics(
    gpu: &Gpu,
    logits: &Tensor,
    losses: &Tensor,
    out: &Tensor,
    slot: usize,
    start: usize,
    count: usize,
    positive: bool,
) -> Dispatch {
    assert!(start + count <= logits.len && slot + 2 <= out.len && count > 0);
    let params = gpu.uniform(&Params {
        start: start as u32,
        count: count as u32,
        slot: slot as u32,
        positive: positive as u32,
    });
    let pipeline = gpu.pipeline(&shaders::METRICS, "batch_metrics", &[]);
    gpu.dispatch(
        "batch_metrics",
        &pipeline,
        &[logits.binding(), losses.binding(), out.binding(), params.as_entire_binding()],
        [1, 1, 1],
    )
}
