//! Host side of `shaders/optim.wgsl`: the Adam update.

use bytemuck::{Pod, Zeroable};

use super::AdamParams;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shaders;

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Hyper {
    len: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    clip: f32,
}

/// One Adam step over `len` parameters in PyTorch's form (eps added to sqrt(v_hat)),
/// gradients first clipped to [-clip, clip] when `hp.clip` is set. `step` is the trainer's
/// [`StepUniform`](super::StepUniform) buffer; its `step` field (1-based) is Adam's t, read
/// when the dispatch runs, so one recorded dispatch serves every step.
#[allow(clippy::too_many_arguments)]
pub fn adam(
    gpu: &Gpu,
    params: &Tensor,
    grads: &Tensor,
    m: &Tensor,
    v: &Tensor,
    len: usize,
    hp: AdamParams,
    step: &wgpu::Buffer,
) -> Dispatch {
    assert!(
        len <= params.len && len <= grads.len && len <= m.len && len <= v.len,
        "adam: tensors too small"
    );
    let hyper = gpu.uniform(&Hyper {
        len: u32::try_from(len).unwrap(),
        lr: hp.lr,
        beta1: hp.beta1,
        beta2: hp.beta2,
        eps: hp.eps,
        clip: hp.clip.unwrap_or(0.0),
    });
    let clip = if hp.clip.is_some() { 1.0 } else { 0.0 };
    let pipeline = gpu.pipeline(&shaders::OPTIM, "adam", &[("CLIP", clip)]);
    gpu.dispatch(
        "adam",
        &pipeline,
        &[
            params.binding(),
            grads.binding(),
            m.binding(),
            v.binding(),
            hyper.as_entire_binding(),
            step.as_entire_binding(),
        ],
        gpu.grid(len, WG),
    )
}
