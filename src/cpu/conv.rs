//! CPU twin of `shaders/conv.wgsl`: 2-D convolution on NHWC activations with [kh, kw, in_c,
//! out_c] weights and its two gradients, as direct loops accumulated in f64. All three walk the
//! same (output pixel, tap) pairs, so the backward passes are the forward's adjoints by
//! construction; the GPU kernels instead gather, each in its own way.

use crate::kernels::Fused;
use crate::kernels::conv::Conv2dGeometry;

/// Calls `f(x_pixel, y_pixel, tap)` for every output pixel and tap whose input pixel lies inside
/// the image: pixels are indices into [batch, h, w], taps into [kernel_h, kernel_w].
fn for_each_tap(g: &Conv2dGeometry, mut f: impl FnMut(usize, usize, usize)) {
    // The input coordinate o*s + t - pad, when it lies inside [0, len).
    let input = |o: usize, s: usize, t: usize, pad: usize, len: usize| {
        (o * s + t).checked_sub(pad).filter(|&i| i < len)
    };
    for n in 0..g.batch {
        for oh in 0..g.out_h {
            for ow in 0..g.out_w {
                let y_pixel = (n * g.out_h + oh) * g.out_w + ow;
                for kh in 0..g.kernel_h {
                    let Some(ih) = input(oh, g.stride_h, kh, g.pad_top, g.in_h) else { continue };
                    for kw in 0..g.kernel_w {
                        let Some(iw) = input(ow, g.stride_w, kw, g.pad_left, g.in_w) else {
                            continue;
                        };
                        f((n * g.in_h + ih) * g.in_w + iw, y_pixel, kh * g.kernel_w + kw);
                    }
                }
            }
        }
    }
}

fn check_lens(name: &str, lens: [usize; 3], want: [usize; 3]) {
    assert!(lens.iter().zip(&want).all(|(l, w)| l >= w), "{name}: slices {lens:?} for {want:?}");
}

/// Adds `bias[c]` to channel c of every pixel, rounds to f32 and applies what is `fused`.
fn finish(
    acc: &[f64],
    bias: Option<&[f32]>,
    channels: usize,
    out: &mut [f32],
    fused: Option<Fused<&[f32]>>,
) {
    if let Some(bias) = bias {
        assert!(bias.len() >= channels, "conv: bias shorter than the channels");
    }
    for (i, (o, a)) in out.iter_mut().zip(acc).enumerate() {
        let v = (a + bias.map_or(0.0, |b| b[i % channels] as f64)) as f32;
        *o = super::activation::fused(v, i, fused);
    }
}

/// y = f(conv(x, w) (+ bias[out_c] on every pixel)), f what is `fused` when Some.
pub fn conv2d(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    g: &Conv2dGeometry,
    fused: Option<Fused<&[f32]>>,
) {
    check_lens(
        "conv2d",
        [x.len(), w.len(), y.len()],
        [g.input_len(), g.weight_len(), g.output_len()],
    );
    let (cin, cout) = (g.in_c, g.out_c);
    let mut acc = vec![0f64; g.output_len()];
    for_each_tap(g, |xp, yp, tap| {
        for ci in 0..cin {
            let xv = x[xp * cin + ci] as f64;
            let w_row = &w[(tap * cin + ci) * cout..][..cout];
            for (a, &wv) in acc[yp * cout..][..cout].iter_mut().zip(w_row) {
                *a += xv * wv as f64;
            }
        }
    });
    finish(&acc, bias, cout, &mut y[..g.output_len()], fused);
}

/// dx = f(convᵀ(dy, w) (+ bias[in_c] on every pixel)), f what is `fused` when Some: conv2d's
/// input gradient, and with a bias (and an activation) the transposed conv's forward.
pub fn conv2d_backward_data(
    dy: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    dx: &mut [f32],
    g: &Conv2dGeometry,
    fused: Option<Fused<&[f32]>>,
) {
    check_lens(
        "conv2d_backward_data",
        [dy.len(), w.len(), dx.len()],
        [g.output_len(), g.weight_len(), g.input_len()],
    );
    let (cin, cout) = (g.in_c, g.out_c);
    let mut acc = vec![0f64; g.input_len()];
    for_each_tap(g, |xp, yp, tap| {
        let dy_row = &dy[yp * cout..][..cout];
        for ci in 0..cin {
            let w_row = &w[(tap * cin + ci) * cout..][..cout];
            acc[xp * cin + ci] +=
                dy_row.iter().zip(w_row).map(|(&d, &wv)| d as f64 * wv as f64).sum::<f64>();
        }
    });
    finish(&acc, bias, cin, &mut dx[..g.input_len()], fused);
}

/// dw = im2col(x)ᵀ·dy: conv2d's weight gradient.
pub fn conv2d_backward_weight(
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    g: &Conv2dGeometry,
    accumulate: bool,
) {
    check_lens(
        "conv2d_backward_weight",
        [x.len(), dy.len(), dw.len()],
        [g.input_len(), g.output_len(), g.weight_len()],
    );
    let (cin, cout) = (g.in_c, g.out_c);
    let mut acc: Vec<f64> = if accumulate {
        dw[..g.weight_len()].iter().map(|&v| v as f64).collect()
    } else {
        vec![0.0; g.weight_len()]
    };
    for_each_tap(g, |xp, yp, tap| {
        let dy_row = &dy[yp * cout..][..cout];
        for ci in 0..cin {
            let xv = x[xp * cin + ci] as f64;
            for (a, &d) in acc[(tap * cin + ci) * cout..][..cout].iter_mut().zip(dy_row) {
                *a += xv * d as f64;
            }
        }
    });
    finish(&acc, None, cout, &mut dw[..g.weight_len()], None);
}

/// Transposed conv y = act(convᵀ(x, w) (+ bias)), for `g` from
/// `Conv2dGeometry::transposed`.
pub fn conv_transpose2d(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    g: &Conv2dGeometry,
    fused: Option<Fused<&[f32]>>,
) {
    conv2d_backward_data(x, w, bias, y, g, fused);
}

/// The transposed conv's input gradient: the conv it is the adjoint of, applied to dy, through
/// what is `fused` when Some.
pub fn conv_transpose2d_backward_data(
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    g: &Conv2dGeometry,
    fused: Option<Fused<&[f32]>>,
) {
    conv2d(dy, w, None, dx, g, fused);
}

/// The transposed conv's weight gradient: dy plays the conv's input and x its output gradient.
pub fn conv_transpose2d_backward_weight(
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    g: &Conv2dGeometry,
    accumulate: bool,
) {
    conv2d_backward_weight(dy, x, dw, g, accumulate);
}

/// `wide` = the filter `w` of `g` (one output channel) widened for
/// `kernels::conv::pixel_quad_geometry`: wide[kh, kw', ci, j] = w[kh, kw' - j * stride_w, ci]
/// where that tap exists, else 0.
pub fn widen_filter_to_pixel_quads(w: &[f32], wide: &mut [f32], g: &Conv2dGeometry) {
    let wide_w = g.kernel_w + 3 * g.stride_w;
    for kh in 0..g.kernel_h {
        for kw_wide in 0..wide_w {
            for ci in 0..g.in_c {
                for j in 0..4 {
                    let kw = kw_wide.checked_sub(j * g.stride_w).filter(|&kw| kw < g.kernel_w);
                    wide[((kh * wide_w + kw_wide) * g.in_c + ci) * 4 + j] =
                        kw.map_or(0.0, |kw| w[(kh * g.kernel_w + kw) * g.in_c + ci]);
                }
            }
        }
    }
}

/// `dw` = the gradient of `g`'s filter from the gradient `dwide` of its widened one:
/// dw[kh, kw, ci] = sum over j of dwide[kh, kw + j * stride_w, ci, j] (+ dw's value when
/// `accumulate`).
pub fn fold_pixel_quad_filter_grad(
    dwide: &[f32],
    dw: &mut [f32],
    g: &Conv2dGeometry,
    accumulate: bool,
) {
    let wide_w = g.kernel_w + 3 * g.stride_w;
    for kh in 0..g.kernel_h {
        for kw in 0..g.kernel_w {
            for ci in 0..g.in_c {
                let out = &mut dw[(kh * g.kernel_w + kw) * g.in_c + ci];
                let sum: f32 = (0..4)
                    .map(|j| dwide[((kh * wide_w + kw + j * g.stride_w) * g.in_c + ci) * 4 + j])
                    .sum();
                *out = if accumulate { *out + sum } else { sum };
            }
        }
    }
}
