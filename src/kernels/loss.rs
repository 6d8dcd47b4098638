//! Host side of `shaders/loss.wgsl`: sigmoid cross-entropy with logits and its gradient.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shaders;

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    grad_scale: f32,
}

/// losses[i] = max(z,0) - z*t + log(1+exp(-|z|)); dz[i] = (sigmoid(z) - t) * grad_scale
/// (grad_scale = 1/n gives the gradient of the mean). Targets may be anywhere in [0, 1].
pub fn bce_with_logits(
    gpu: &Gpu,
    z: &Tensor,
    t: &Tensor,
    dz: &Tensor,
    losses: &Tensor,
    n: usize,
    grad_scale: f32,
) -> Dispatch {
    assert!(
        n <= z.len && n <= t.len && n <= dz.len && n <= losses.len,
        "bce_with_logits: tensors too small"
    );
    let params = gpu.uniform(&Params { n: u32::try_from(n).unwrap(), grad_scale });
    let pipeline = gpu.pipeline(&shaders::LOSS, "bce_with_logits", &[]);
    gpu.dispatch(
        "bce_with_logits",
        &pipeline,
        &[z.binding(), t.binding(), dz.binding(), losses.binding(), params.as_entire_binding()],
        gpu.grid(n, WG),
    )
}
