//! Host side of `shaders/pool.wgsl`: 2x2 average pooling with stride 2 and nearest-neighbour
//! upsampling x2 on NHWC maps, with their gradients. Pooling keeps Keras's `valid` rule: an odd
//! last row or column belongs to no window, so the output is h/2 x w/2 (rounded down).

use bytemuck::{Pod, Zeroable};

use super::{flag, mirrors};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shaders;

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    batch: u32,
    channels: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    scale: f32,
}

/// One thread per element of `dst` (per quad of channels when `c` is a multiple of 4), a
/// [batch, out_h, out_w, c] map read from `src`, a [batch, in_h, in_w, c] map.
#[allow(clippy::too_many_arguments)]
fn pass(
    gpu: &Gpu,
    entry: &'static str,
    src: &Tensor,
    dst: &Tensor,
    batch: usize,
    c: usize,
    (in_h, in_w): (usize, usize),
    (out_h, out_w): (usize, usize),
    scale: f32,
) -> Dispatch {
    let (in_len, out_len) = (batch * in_h * in_w * c, batch * out_h * out_w * c);
    assert!(in_len <= src.len && out_len <= dst.len, "{entry}: tensors too small");
    assert!(in_len.max(out_len) <= u32::MAX as usize, "{entry}: {out_len} elements");
    // Channels each thread takes: a quad where they come in quads (the *_quads entry points).
    let channels_per_thread = if c.is_multiple_of(4) { 4 } else { 1 };
    let params = gpu.uniform(&Params {
        batch: batch as u32,
        channels: (c / channels_per_thread) as u32,
        in_h: in_h as u32,
        in_w: in_w as u32,
        out_h: out_h as u32,
        out_w: out_w as u32,
        scale,
    });
    let name = if channels_per_thread == 4 { format!("{entry}_quads") } else { entry.to_string() };
    let ([src4], textures) = mirrors(gpu, [src]);
    let pipeline = gpu.pipeline(&shaders::POOL, &name, &[("TEXTURES", flag(textures))]);
    gpu.dispatch(
        entry,
        &pipeline,
        &[src.binding(), dst.binding(), params.as_entire_binding(), src4.binding()],
        gpu.grid(out_len / channels_per_thread, WG),
    )
    .reading(&[&src4])
}

/// y = the mean of each 2x2 window of x, stride 2: x is [batch, h, w, c], y is
/// [batch, h/2, w/2, c].
pub fn avg_pool2x2(
    gpu: &Gpu,
    x: &Tensor,
    y: &Tensor,
    batch: usize,
    h: usize,
    w: usize,
    c: usize,
) -> Dispatch {
    pass(gpu, "pool_2x2", x, y, batch, c, (h, w), (h / 2, w / 2), 0.25)
}

/// dx = the gradient of [`avg_pool2x2`]: each dy element spread as dy/4 over its window;
/// every element of dx is written, zero in an odd last row or column.
pub fn avg_pool2x2_backward(
    gpu: &Gpu,
    dy: &Tensor,
    dx: &Tensor,
    batch: usize,
    h: usize,
    w: usize,
    c: usize,
) -> Dispatch {
    pass(gpu, "unpool_2x2", dy, dx, batch, c, (h / 2, w / 2), (h, w), 0.25)
}

/// y = x with every pixel repeated over a 2x2 block: x is [batch, h, w, c], y is
/// [batch, 2h, 2w, c].
pub fn upsample2x(
    gpu: &Gpu,
    x: &Tensor,
    y: &Tensor,
    batch: usize,
    h: usize,
    w: usize,
    c: usize,
) -> Dispatch {
    pass(gpu, "unpool_2x2", x, y, batch, c, (h, w), (2 * h, 2 * w), 1.0)
}

/// dx = the gradient of [`upsample2x`]: the sum of dy over each pixel's four copies.
pub fn upsample2x_backward(
    gpu: &Gpu,
    dy: &Tensor,
    dx: &Tensor,
    batch: usize,
    h: usize,
    w: usize,
    c: usize,
) -> Dispatch {
    pass(gpu, "pool_2x2", dy, dx, batch, c, (2 * h, 2 * w), (h, w), 1.0)
}
