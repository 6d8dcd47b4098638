//! Host side of `shaders/rng.wgsl`: uniform, normal and integer random numbers from
//! Threefry-2x32-20 keyed by (seed, stream) with counter (step, element pair), where seed and
//! step come from the trainer's [`StepUniform`](super::StepUniform) buffer `step` when the
//! dispatch runs. `stream` tells apart the uses of randomness within a step.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shaders;

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    len: u32,
    stream: u32,
    bound: u32,
    offset: f32,
    scale: f32,
}

/// One thread per element pair.
fn rng_dispatch(
    gpu: &Gpu,
    entry: &'static str,
    out: &Tensor,
    params: Params,
    step: &wgpu::Buffer,
) -> Dispatch {
    assert!(params.len as usize <= out.len, "{entry}: {} elements of {}", params.len, out.len);
    let uniform = gpu.uniform(&params);
    let pipeline = gpu.pipeline(&shaders::RNG, entry, &[]);
    gpu.dispatch(
        entry,
        &pipeline,
        &[out.binding(), uniform.as_entire_binding(), step.as_entire_binding()],
        gpu.grid((params.len as usize).div_ceil(2), WG),
    )
}

/// `len` as the shader's u32, small enough that the element index 2k + 1 cannot overflow.
fn checked_len(len: usize) -> u32 {
    assert!(len < 1 << 31, "rng: {len} elements is past the counter range");
    len as u32
}

/// out = low + (high - low) * u, u uniform in [0, 1) with 24 random bits.
pub fn rng_uniform(
    gpu: &Gpu,
    out: &Tensor,
    len: usize,
    low: f32,
    high: f32,
    stream: u32,
    step: &wgpu::Buffer,
) -> Dispatch {
    let params = Params { len: checked_len(len), stream, bound: 0, offset: low, scale: high - low };
    rng_dispatch(gpu, "rng_uniform", out, params, step)
}

/// out = mean + std * z, z standard normal by Box-Muller (element 2k the cosine branch,
/// 2k+1 the sine branch of the same pair of words).
pub fn rng_normal(
    gpu: &Gpu,
    out: &Tensor,
    len: usize,
    mean: f32,
    std: f32,
    stream: u32,
    step: &wgpu::Buffer,
) -> Dispatch {
    let params = Params { len: checked_len(len), stream, bound: 0, offset: mean, scale: std };
    rng_dispatch(gpu, "rng_normal", out, params, step)
}

/// u32 values uniform in [0, bound): the high word of (random word) * bound, whose bias is
/// at most bound / 2^32.
pub fn rng_randint(
    gpu: &Gpu,
    out: &Tensor,
    len: usize,
    bound: u32,
    stream: u32,
    step: &wgpu::Buffer,
) -> Dispatch {
    let params = Params { len: checked_len(len), stream, bound, offset: 0.0, scale: 0.0 };
    rng_dispatch(gpu, "rng_randint", out, params, step)
}
