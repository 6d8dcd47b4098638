//! Host side of every WGSL kernel family: each function builds a [`Dispatch`](crate::gpu::Dispatch)
//! once (pipeline, bind group, parameters), which a test runs once and the trainer replays every
//! step. Each has a twin in [`crate::cpu`] with the same name and argument order.

use crate::gpu::{Gpu, QuadTexture, Tensor};

pub mod activation;
pub mod batchnorm;
pub mod bias;
pub mod conv;
pub mod gather;
pub mod loss;
pub mod matmul;
pub mod metrics;
pub mod optim;
pub mod pool;
pub mod rng;

/// The value of a WGSL `bool` override constant (pipeline constants are passed as f64).
fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

/// store.wgsl's constants for a kernel whose stores run along rows of `row_len` elements of
/// its output: VEC_C (whole vec4 stores where the rows are whole quads) and ACCUMULATE (add
/// to the output's values).
fn store_constants(row_len: usize, accumulate: bool) -> [(&'static str, f64); 2] {
    [("VEC_C", flag(row_len.is_multiple_of(4))), ("ACCUMULATE", flag(accumulate))]
}

/// The textures mirroring `tensors` for a kernel's TEXTURES variant, which reads its operands
/// through them (llvmpipe fetches a texel in a small fraction of a storage load's time), and
/// whether that variant runs: when every tensor fits a texture (else 1-texel stand-ins, and
/// the kernel reads the buffers).
fn mirrors<const N: usize>(gpu: &Gpu, tensors: [&Tensor; N]) -> ([QuadTexture; N], bool) {
    let fits = tensors.iter().all(|t| gpu.quad_texture_fits(t));
    (tensors.map(|t| gpu.quad_texture(t, fits)), fits)
}

fn texture_views<const N: usize>(textures: &[QuadTexture; N]) -> [wgpu::BindingResource<'_>; N] {
    std::array::from_fn(|i| textures[i].binding())
}

/// An elementwise nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Activation {
    Relu,
    LeakyRelu { alpha: f32 },
    Tanh,
    Sigmoid,
}

/// The elementwise step a matmul or conv applies to each value as it stores it, which saves
/// the pass over the output that a separate activation kernel would take. `Y` is the tensor
/// type: `&Tensor` for the kernels, `&[f32]` for their CPU twins.
#[derive(Clone, Copy, Debug)]
pub enum Fused<Y> {
    /// Store act(v): the forward pass of the activation that follows the layer.
    Activation(Activation),
    /// Store v · act'(y[e]) at element e, y the activation's forward output: the backward pass
    /// through an activation, applied by the kernel that produces the gradient at its output.
    Gradient(Activation, Y),
}

impl<Y> Fused<Y> {
    pub fn activation(&self) -> Activation {
        match self {
            Fused::Activation(act) | Fused::Gradient(act, _) => *act,
        }
    }
}

/// Adam's hyper-parameters (Keras names and defaults: eps 1e-7).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamParams {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Clip each gradient element to [-clip, clip] before the update (Keras `clipvalue`).
    pub clip: Option<f32>,
}

/// Per-step values that kernels read from a uniform the trainer rewrites before each
/// submission: the optimizer step count (1-based, for Adam's bias correction) and the
/// RNG counter, so that a step's random numbers depend only on (seed, step, stream).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepUniform {
    pub step: u32,
    pub seed: u32,
    /// The RNG kernels' element pair 0 is this pair of the stream: a long draw made in parts
    /// (generate's chunks of images) gives the values one draw would. 0 in training.
    pub first_pair: u32,
    pub _pad: u32,
}

impl StepUniform {
    /// The uniform of training step `step` (the RNG from each stream's first pair).
    pub fn new(step: u32, seed: u32) -> StepUniform {
        StepUniform { step, seed, first_pair: 0, _pad: 0 }
    }
}
