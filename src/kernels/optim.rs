//! Host side of `shaders/optim.wgsl`: the Adam and RMSprop updates, and the exponential moving
//! average of weights.

use bytemuck::{Pod, Zeroable};

use super::{AdamParams, flag, mirrors, texture_views};
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
    let (textures, read_textures) = mirrors(gpu, [params, grads, m, v]);
    let constants = [("CLIP", flag(hp.clip.is_some())), ("TEXTURES", flag(read_textures))];
    let pipeline = gpu.pipeline(&shaders::OPTIM, "adam", &constants);
    let [params4, grads4, m4, v4] = texture_views(&textures);
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
            params4,
            grads4,
            m4,
            v4,
        ],
        gpu.grid(len.div_ceil(4), WG),
    )
    .reading(&textures.each_ref())
}

/// RMSprop's hyper-parameters (Keras names; Keras's defaults are lr 1e-3, rho 0.9, eps 1e-7).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RmsPropParams {
    pub lr: f32,
    pub rho: f32,
    pub eps: f32,
    /// Clip each gradient element to [-clip, clip] before the update (Keras `clipvalue`).
    pub clip: Option<f32>,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RmsHyper {
    len: u32,
    lr: f32,
    rho: f32,
    eps: f32,
    clip: f32,
}

/// One RMSprop step over `len` parameters as Keras takes it: v = rho * v + (1 - rho) * g^2,
/// params -= lr * g / (sqrt(v) + eps), gradients first clipped to [-clip, clip] when
/// `hp.clip` is set. `v` starts at zero.
pub fn rmsprop(
    gpu: &Gpu,
    params: &Tensor,
    grads: &Tensor,
    v: &Tensor,
    len: usize,
    hp: RmsPropParams,
) -> Dispatch {
    assert!(len <= params.len && len <= grads.len && len <= v.len, "rmsprop: tensors too small");
    let hyper = gpu.uniform(&RmsHyper {
        len: u32::try_from(len).unwrap(),
        lr: hp.lr,
        rho: hp.rho,
        eps: hp.eps,
        clip: hp.clip.unwrap_or(0.0),
    });
    let (textures, read_textures) = mirrors(gpu, [params, grads, v]);
    let constants = [("CLIP", flag(hp.clip.is_some())), ("TEXTURES", flag(read_textures))];
    let pipeline = gpu.pipeline(&shaders::OPTIM, "rmsprop", &constants);
    let [params4, grads4, v4] = texture_views(&textures);
    gpu.dispatch(
        "rmsprop",
        &pipeline,
        &[
            params.binding(),
            grads.binding(),
            v.binding(),
            hyper.as_entire_binding(),
            params4,
            grads4,
            v4,
        ],
        gpu.grid(len.div_ceil(4), WG),
    )
    .reading(&textures.each_ref())
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct EmaHyper {
    len: u32,
    decay: f32,
}

/// average = decay * average + (1 - decay) * params over `len` elements, computed as
/// average + (1 - decay) * (params - average).
pub fn ema_update(
    gpu: &Gpu,
    average: &Tensor,
    params: &Tensor,
    len: usize,
    decay: f32,
) -> Dispatch {
    assert!(len <= average.len && len <= params.len, "ema_update: tensors too small");
    let hyper = gpu.uniform(&EmaHyper { len: u32::try_from(len).unwrap(), decay });
    let pipeline = gpu.pipeline(&shaders::OPTIM, "ema_update", &[]);
    gpu.dispatch(
        "ema_update",
        &pipeline,
        &[average.binding(), params.binding(), hyper.as_entire_binding()],
        gpu.grid(len.div_ceil(4), WG),
    )
}
