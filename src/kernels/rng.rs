//! Host side of `shaders/rng.wgsl`: uniform, normal and integer random numbers from
//! Threefry-2x32-20 keyed by (seed, stream) with counter (step, element pair), where seed and
//! step come from the trainer's [`StepUniform`](super::StepUniform) buffer `step` when the
//! dispatch runs. `stream` tells apart the uses of randomness within a step. Dropout draws
//! its mask from the same generator.

use bytemuck::{Pod, Zeroable};

use super::flag;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shaders;

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    len: u32,
    /// Index in the stream of the output's first element.
    first: u32,
    stream: u32,
    bound: u32,
    offset: f32,
    scale: f32,
    rate: f32,
}

/// One thread per element pair of the stream that the output overlaps.
fn rng_dispatch(
    gpu: &Gpu,
    entry: &'static str,
    out: &Tensor,
    params: Params,
    step: &wgpu::Buffer,
) -> Dispatch {
    assert!(params.len as usize <= out.len, "{entry}: {} elements of {}", params.len, out.len);
    let (first, len) = (params.first as usize, params.len as usize);
    let pairs = (first + len).div_ceil(2) - first / 2;
    let uniform = gpu.uniform(&params);
    // Only dropout reads `out` (in place), through its mirror where it fits; the generators
    // only write it, and their pipelines have no texture binding.
    let dropout = entry == "dropout";
    let read_texture = dropout && gpu.quad_texture_fits(out);
    let out4 = gpu.quad_texture(out, read_texture);
    let pipeline = gpu.pipeline(&shaders::RNG, entry, &[("TEXTURES", flag(read_texture))]);
    let mut bindings = vec![out.binding(), uniform.as_entire_binding(), step.as_entire_binding()];
    if dropout {
        bindings.push(out4.binding());
    }
    gpu.dispatch(entry, &pipeline, &bindings, gpu.grid(pairs, WG)).reading(&[&out4])
}

/// `len` as the shader's u32, small enough that element indices up to first + len + 1 cannot
/// overflow.
fn checked_len(first: usize, len: usize) -> u32 {
    assert!(first + len < 1 << 31, "rng: elements {first}.. {len} are past the counter range");
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
    let params = Params {
        len: checked_len(0, len),
        first: 0,
        stream,
        bound: 0,
        offset: low,
        scale: high - low,
        rate: 0.0,
    };
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
    let params = Params {
        len: checked_len(0, len),
        first: 0,
        stream,
        bound: 0,
        offset: mean,
        scale: std,
        rate: 0.0,
    };
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
    let params = Params {
        len: checked_len(0, len),
        first: 0,
        stream,
        bound,
        offset: 0.0,
        scale: 0.0,
        rate: 0.0,
    };
    rng_dispatch(gpu, "rng_randint", out, params, step)
}

/// Inverted dropout (as Keras's) of the first `len` elements of `t`, in place; `t[0]` is
/// element `first` of the stream.
fn dropout(
    gpu: &Gpu,
    t: &Tensor,
    len: usize,
    first: usize,
    rate: f32,
    stream: u32,
    step: &wgpu::Buffer,
) -> Dispatch {
    assert!((0.0..1.0).contains(&rate), "dropout rate {rate} is outside [0, 1)");
    let scale = 1.0 / (1.0 - rate);
    let params = Params {
        len: checked_len(first, len),
        first: first as u32,
        stream,
        bound: 0,
        offset: 0.0,
        scale,
        rate,
    };
    rng_dispatch(gpu, "dropout", t, params, step)
}

/// x = x * mask / (1 - rate) in place, mask[i] = 1 where the uniform variate
/// [`rng_uniform`] would give element first + i (same stream and step) is at least `rate`,
/// else 0: each element is dropped with probability `rate`, and the kept ones are scaled up so
/// that the mean is unchanged. `first` places a chunk of a batch within the whole batch's mask.
pub fn dropout_forward(
    gpu: &Gpu,
    x: &Tensor,
    len: usize,
    first: usize,
    rate: f32,
    stream: u32,
    step: &wgpu::Buffer,
) -> Dispatch {
    dropout(gpu, x, len, first, rate, stream, step)
}

/// dy = dy * mask / (1 - rate) in place: the gradient of [`dropout_forward`], whose mask it
/// regenerates from the same stream at the same step.
pub fn dropout_backward(
    gpu: &Gpu,
    dy: &Tensor,
    len: usize,
    first: usize,
    rate: f32,
    stream: u32,
    step: &wgpu::Buffer,
) -> Dispatch {
    dropout(gpu, dy, len, first, rate, stream, step)
}
