//! Host side of every WGSL kernel family: each function builds a [`Dispatch`](crate::gpu::Dispatch)
//! once (pipeline, bind group, parameters), which a test runs once and the trainer replays every
//! step. Each has a twin in [`crate::cpu`] with the same name and argument order.

use crate::gpu::{Gpu, QuadTexture, Tensor, Variant};

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

/// TILED_WG of the workgroup-memory kernels (matmul_tiled, conv.wgsl's tiled kernels) for an
/// output of `tiles_of_128` tiles of 128 x 128: those tiles (16 x 16 invocations of 8 x 8)
/// where there are enough of them to give a large GPU's every multiprocessor one (H100: 132),
/// else tiles of 64 (8 x 8 invocations), four times as many.
pub(crate) fn tiled_workgroup_side(tiles_of_128: usize) -> u32 {
    if tiles_of_128 >= 128 { 16 } else { 8 }
}

/// How long sums are cut into slices (weight and bias gradients over a batch's pixels or a
/// tall matrix's rows, conv gathers over many channels, matrix-vector products), summed in
/// parallel into partial sums that another dispatch adds up: a slice costs a pass of stores
/// and a share of that sum, and buys parallelism where the output alone has too few
/// invocations. One per [`Variant`] of the slices family.
pub(crate) struct Slicing {
    /// SIMD vectors of work (8 lanes) the GEMM-tile conv weight gradients and the portable
    /// gathers are cut to reach, where their outputs alone have fewer tiles (a subgroup tile is
    /// one vector, a portable tile one lane).
    pub tile_vectors: usize,
    /// Invocations the one-channel rows weight gradient is cut to reach (one per tap row and
    /// channel quad otherwise: D's 5x5 32 -> 1 conv has 40).
    pub rows_invocations: usize,
    /// The fewest output pixels a conv's batch slice sums over, so that its stores stay a
    /// small share.
    pub slice_pixels: usize,
    /// Rows one bias_grad invocation sums (bias.wgsl).
    pub column_rows: usize,
    /// Matrix-vector products split each dot product across a workgroup (matvec_split)
    /// rather than walk it in one invocation (matvec).
    pub split_matvec: bool,
}

/// Variant::FewSlices, for a CPU adapter: D's first conv of one input channel has 25 rows of
/// dW, one or two vectors, which left a core idle and ran at 0.3 GFLOP/s at dcgan-upsample's
/// batch of 512; more slices made dcgan-avgpool's layers 1.5-3x slower. llvmpipe runs a
/// workgroup of 64 on one thread, so 16 workgroups of the rows kernel keep its cores busy.
const FEW_SLICES: Slicing = Slicing {
    tile_vectors: 8,
    rows_invocations: 1024,
    slice_pixels: 1024,
    column_rows: 256,
    split_matvec: false,
};

/// Variant::ManySlices, for a discrete GPU, which wants tens of thousands of invocations in
/// flight, each waiting on a short chain of loads: with few slices an H200 summed dcgan's
/// first D conv's dW (9 x 64) over 25k pixels per invocation, 2.6 GFLOP/s.
pub(crate) const MANY_SLICES: Slicing = Slicing {
    tile_vectors: 8192,
    rows_invocations: 65536,
    slice_pixels: 256,
    column_rows: 32,
    split_matvec: true,
};

/// The slicing of `gpu`'s slices variant.
pub(crate) fn slicing(gpu: &Gpu) -> &'static Slicing {
    match gpu.variants().slices {
        Variant::FewSlices => &FEW_SLICES,
        Variant::ManySlices => &MANY_SLICES,
        // Gpu::set_variants lets slices take only the two above.
        other => unreachable!("{other:?} is not a slicing"),
    }
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
