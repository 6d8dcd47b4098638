//! Host side of `shaders/conv.wgsl`: 2-D convolution and transposed convolution on NHWC
//! activations with [kh, kw, in_c, out_c] (Keras HWIO) weights, and their gradients.
//!
//! A conv's output viewed as a matrix is [batch*out_h*out_w, out_c] = im2col(x)·W, so the
//! kernels are matmul.wgsl's register-blocked GEMMs with a gathering read, and bias (and batch
//! norm) are per column as for dense layers: the bias gradient is [`bias_grad`] over
//! batch*out_h*out_w rows. A transposed conv is the adjoint of a conv, so it is described by
//! that conv's [`Conv2dGeometry`] and runs on the same three kernels with roles swapped.
//!
//! Two variants, as for matmul: `subgroup` for devices with 8-lane subgroups and `portable` for
//! every device, chosen by `Gpu::variants` (measured by [`crate::tune`]). Outputs with 16
//! channels or fewer take the portable kernel on every device, with a narrow workgroup: an
//! 8-lane tile is 32 channels wide, and most of it would idle.
//!
//! Convs with a one-channel side at stride 1 along w and filters at most 8 wide can take the
//! one-channel rows kernels instead, where `Gpu::variants` says Rows (measured against the
//! tiles by [`crate::tune`]; the rows were 1.4-3.9x faster on lavapipe): [`conv2d`] with one
//! output channel, its weight gradient, and the gathers of a one-channel image (a conv of a
//! one-channel input, and the input gradient of a conv to one channel). Other one-output-channel convs with
//! widths divisible by 4 run as four pixel channels ([`pixel_quad_geometry`]).
//!
//! [`bias_grad`]: crate::kernels::bias::bias_grad

use anyhow::{Context, Result, ensure};
use bytemuck::{Pod, Zeroable};

use super::activation::FusedStores;
use super::{Fused, MANY_SLICES, Slicing, flag, slicing, store_constants, tiled_workgroup_side};
use crate::gpu::{Dispatch, Gpu, Op, Pipeline, Shader, Tensor, Variant};
use crate::shaders;

/// How a convolution pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Padding {
    /// Keras/TF 'same': output ceil(n / s); total padding max((ceil(n/s) - 1)*s + k - n, 0),
    /// the smaller half before.
    Same,
    /// None: output (n - k) / s + 1.
    Valid,
    /// Zero rows and columns on each side (PyTorch's `padding`, here possibly uneven).
    Explicit { top: usize, bottom: usize, left: usize, right: usize },
}

/// Padding along one axis: 'same', or explicit (before, after); 'valid' is (0, 0).
#[derive(Clone, Copy, Debug)]
enum AxisPad {
    Same,
    Explicit(usize, usize),
}

impl Padding {
    fn axes(self) -> (AxisPad, AxisPad) {
        match self {
            Padding::Same => (AxisPad::Same, AxisPad::Same),
            Padding::Valid => (AxisPad::Explicit(0, 0), AxisPad::Explicit(0, 0)),
            Padding::Explicit { top, bottom, left, right } => {
                (AxisPad::Explicit(top, bottom), AxisPad::Explicit(left, right))
            }
        }
    }
}

/// Output length and padding before, along one axis, of a conv over `n` pixels; None when
/// the kernel does not fit even once.
fn conv_axis(n: usize, k: usize, s: usize, pad: AxisPad) -> Option<(usize, usize)> {
    match pad {
        AxisPad::Same => {
            let out = n.div_ceil(s);
            Some((out, ((out - 1) * s + k).saturating_sub(n) / 2))
        }
        AxisPad::Explicit(before, after) => {
            let padded = n + before + after;
            (padded >= k).then(|| ((padded - k) / s + 1, before))
        }
    }
}

/// Output length and crop before (the adjoint conv's padding before), along one axis, of a
/// transposed conv over `n` pixels: `size` when given, else the base length plus `extra`.
fn transposed_axis(
    n: usize,
    k: usize,
    s: usize,
    pad: AxisPad,
    extra: usize,
    size: Option<usize>,
) -> Result<(usize, usize)> {
    let full = (n - 1) * s + k;
    let out = match size {
        Some(out) => {
            // tf.nn.conv2d_transpose's rule: the conv it is the adjoint of takes `out` to `n`.
            let back = conv_axis(out, k, s, pad).map(|(m, _)| m);
            ensure!(
                out > 0 && back == Some(n),
                "a transposed conv from {n} pixels cannot give {out} with kernel {k}, stride {s}, \
                 {pad:?} padding (the conv back from {out} gives {back:?})"
            );
            out
        }
        None => {
            let base = match pad {
                AxisPad::Same => n * s,
                AxisPad::Explicit(before, after) => full.saturating_sub(before + after),
            };
            ensure!(base > 0, "a transposed conv from {n} pixels with {pad:?} padding is empty");
            base + extra
        }
    };
    let before = match pad {
        // Computed from the size before output_padding, which (as in PyTorch) only adds rows
        // at the end.
        AxisPad::Same => full.saturating_sub(out - extra) / 2,
        AxisPad::Explicit(before, _) => before,
    };
    Ok((out, before))
}

/// The shape of one conv2d: input x [batch, in_h, in_w, in_c], output y [batch, out_h, out_w,
/// out_c], weights [kernel_h, kernel_w, in_c, out_c], all row-major. Tap (kh, kw) connects
/// input pixel (oh*stride_h + kh - pad_top, ow*stride_w + kw - pad_left) to output pixel
/// (oh, ow); pixels outside the input are zero. A transposed conv is described by the conv it
/// is the adjoint of (see [`Conv2dGeometry::transposed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Conv2dGeometry {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl Conv2dGeometry {
    /// conv2d as Keras/TF define it: 'same' total padding max((ceil(n/s) - 1)*s + k - n, 0),
    /// the smaller half before; 'valid' none. An error if the output would be empty.
    pub fn conv(
        batch: usize,
        in_hw: (usize, usize),
        in_c: usize,
        out_c: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: Padding,
    ) -> Result<Self> {
        check_sizes(batch, in_hw, in_c, out_c, kernel, stride)?;
        let (pad_h, pad_w) = padding.axes();
        let empty = || {
            format!(
                "conv2d of a {}x{} kernel over {}x{} pixels with {padding:?} padding is empty",
                kernel.0, kernel.1, in_hw.0, in_hw.1
            )
        };
        let (out_h, pad_top) = conv_axis(in_hw.0, kernel.0, stride.0, pad_h).with_context(empty)?;
        let (out_w, pad_left) =
            conv_axis(in_hw.1, kernel.1, stride.1, pad_w).with_context(empty)?;
        Ok(Conv2dGeometry {
            batch,
            in_h: in_hw.0,
            in_w: in_hw.1,
            in_c,
            out_h,
            out_w,
            out_c,
            kernel_h: kernel.0,
            kernel_w: kernel.1,
            stride_h: stride.0,
            stride_w: stride.1,
            pad_top,
            pad_left,
        })
    }

    /// Transposed conv (Keras Conv2DTranspose, tf.nn.conv2d_transpose): input in_hw x in_c,
    /// output out_hw x out_c, where out_hw is `output_size` when given, else 'same' in*s,
    /// 'valid' (in-1)*s + k, explicit (in-1)*s + k - before - after, plus `output_padding`
    /// rows and columns at the end (PyTorch's, each < stride).
    ///
    /// Returned as the geometry of the conv2d it is the adjoint of: that conv's input is the
    /// transposed conv's output (out_hw, out_c) and its output is the transposed conv's input
    /// (in_hw, in_c); weights [kh, kw, out_c, in_c], Keras's Conv2DTranspose kernel shape.
    /// Output rows that no input reaches (a 'valid' output larger than (in-1)*s + k) are bias.
    #[allow(clippy::too_many_arguments)]
    pub fn transposed(
        batch: usize,
        in_hw: (usize, usize),
        in_c: usize,
        out_c: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: Padding,
        output_padding: (usize, usize),
        output_size: Option<(usize, usize)>,
    ) -> Result<Self> {
        check_sizes(batch, in_hw, in_c, out_c, kernel, stride)?;
        ensure!(
            output_padding.0 < stride.0 && output_padding.1 < stride.1,
            "output_padding {output_padding:?} must be smaller than the stride {stride:?}"
        );
        ensure!(
            output_size.is_none() || output_padding == (0, 0),
            "a transposed conv takes output_size or output_padding, not both"
        );
        let (pad_h, pad_w) = padding.axes();
        let (out_h, pad_top) = transposed_axis(
            in_hw.0,
            kernel.0,
            stride.0,
            pad_h,
            output_padding.0,
            output_size.map(|s| s.0),
        )?;
        let (out_w, pad_left) = transposed_axis(
            in_hw.1,
            kernel.1,
            stride.1,
            pad_w,
            output_padding.1,
            output_size.map(|s| s.1),
        )?;
        Ok(Conv2dGeometry {
            batch,
            in_h: out_h,
            in_w: out_w,
            in_c: out_c,
            out_h: in_hw.0,
            out_w: in_hw.1,
            out_c: in_c,
            kernel_h: kernel.0,
            kernel_w: kernel.1,
            stride_h: stride.0,
            stride_w: stride.1,
            pad_top,
            pad_left,
        })
    }

    /// Elements of x: batch * in_h * in_w * in_c.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }

    /// Elements of y: batch * out_h * out_w * out_c.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.out_c
    }

    /// Elements of W: kernel_h * kernel_w * in_c * out_c.
    pub fn weight_len(&self) -> usize {
        self.kernel_h * self.kernel_w * self.in_c * self.out_c
    }
}

fn check_sizes(
    batch: usize,
    in_hw: (usize, usize),
    in_c: usize,
    out_c: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
) -> Result<()> {
    let sizes = [batch, in_hw.0, in_hw.1, in_c, out_c, kernel.0, kernel.1, stride.0, stride.1];
    ensure!(
        sizes.iter().all(|&s| s > 0),
        "conv with a zero size: batch {batch}, input {in_hw:?}, channels {in_c} -> {out_c}, \
         kernel {kernel:?}, stride {stride:?}"
    );
    Ok(())
}

/// The WGSL module for `gpu`: the whole file where subgroups are available, else its portable
/// part; with quad views where the device reads through them.
fn module(gpu: &Gpu) -> Shader {
    gpu.gemm_module(match gpu.caps.subgroup_size {
        Some(_) => shaders::CONV,
        None => shaders::CONV.portable_part("conv.wgsl (portable part)"),
    })
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    batch: u32,
    x_h: u32,
    x_w: u32,
    x_c: u32,
    y_h: u32,
    y_w: u32,
    y_c: u32,
    k_h: u32,
    k_w: u32,
    s_h: u32,
    s_w: u32,
    pad_top: u32,
    pad_left: u32,
    backward_data: u32,
    has_bias: u32,
    wg_cols: u32,
    row_groups: u32,
    slice_images: u32,
    split_channels: u32,
    split_stride: u32,
}

impl Params {
    fn new(
        g: &Conv2dGeometry,
        backward_data: bool,
        has_bias: bool,
        wg_cols: usize,
        (row_groups, slice_images): (usize, usize),
    ) -> Params {
        // `launch` has checked that every size fits in an i32.
        let u = |v: usize| v as u32;
        Params {
            batch: u(g.batch),
            x_h: u(g.in_h),
            x_w: u(g.in_w),
            x_c: u(g.in_c),
            y_h: u(g.out_h),
            y_w: u(g.out_w),
            y_c: u(g.out_c),
            k_h: u(g.kernel_h),
            k_w: u(g.kernel_w),
            s_h: u(g.stride_h),
            s_w: u(g.stride_w),
            pad_top: u(g.pad_top),
            pad_left: u(g.pad_left),
            backward_data: backward_data.into(),
            has_bias: has_bias.into(),
            wg_cols: u(wg_cols),
            row_groups: u(row_groups),
            slice_images: u(slice_images),
            split_channels: u(if backward_data { g.out_c } else { g.in_c }),
            split_stride: 0,
        }
    }

    /// Cuts a gather into `splits` of `channels` gathered channels each, writing partial
    /// outputs of `out_len` floats one after another.
    fn split(&mut self, splits: usize, channels: usize, out_len: usize) {
        if splits > 1 {
            self.split_channels = channels as u32;
            self.split_stride = out_len as u32;
        }
    }
}

/// The most floats the weight gradient's slices may take together.
const SLICE_FLOATS: usize = 4 << 20;

/// Batch slices for a weight gradient over `g`: `wanted`, as far as each sums at least
/// `slicing`'s pixels and all take SLICE_FLOATS at most, every slice the same whole number of
/// images but the last.
fn batch_slices(g: &Conv2dGeometry, wanted: usize, slicing: &Slicing) -> usize {
    let pixels = g.batch * g.out_h * g.out_w;
    let most = (pixels / slicing.slice_pixels).min(SLICE_FLOATS / g.weight_len());
    let slices = wanted.min(most).max(1);
    g.batch.div_ceil(g.batch.div_ceil(slices))
}

/// What one conv dispatch computes.
#[derive(Clone, Copy, PartialEq)]
enum Pass {
    Forward,
    BackwardData,
    BackwardWeight,
}

impl Pass {
    /// The kernel variant `gpu` runs this pass on.
    fn variant(self, gpu: &Gpu) -> Variant {
        match self {
            Pass::BackwardWeight => gpu.variants().conv_weight_grad,
            Pass::Forward | Pass::BackwardData => gpu.variants().conv,
        }
    }
}

/// What a conv dispatch does to its sums before storing them: adding a bias and applying an
/// activation or an activation's derivative (the gathers), or adding them to the output (the
/// weight gradient).
#[derive(Clone, Copy, Default)]
struct Epilogue<'a> {
    bias: Option<&'a Tensor>,
    fused: Option<Fused<&'a Tensor>>,
    accumulate: bool,
}

/// Builds one conv dispatch: `a` is the gathered image (x, or dy for backward data), `b` the
/// other operand (W, or dy for the weight gradient), `c` the output; for a weight gradient cut
/// into batch slices, also the dispatch that sums them into `c`.
fn launch(
    gpu: &Gpu,
    pass: Pass,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    g: &Conv2dGeometry,
    epilogue: Epilogue,
) -> Vec<Op> {
    let Epilogue { bias, fused, accumulate } = epilogue;
    let sizes = [
        g.batch, g.in_h, g.in_w, g.in_c, g.out_h, g.out_w, g.out_c, g.kernel_h, g.kernel_w,
        g.stride_h, g.stride_w,
    ];
    assert!(sizes.iter().all(|&s| s > 0), "conv with a zero size: {g:?}");
    let (x, w, y) = (g.input_len(), g.weight_len(), g.output_len());
    let (label, a_len, b_len, c_len) = match pass {
        Pass::Forward => ("conv2d", x, w, y),
        Pass::BackwardData => ("conv2d_backward_data", y, w, x),
        Pass::BackwardWeight => ("conv2d_backward_weight", x, y, w),
    };
    check_operands(g, label, [a, b, c], [a_len, b_len, c_len]);
    // Output columns and gathered channels per tap.
    let (cols, gathered) = match pass {
        Pass::Forward | Pass::BackwardWeight => (g.out_c, g.in_c),
        Pass::BackwardData => (g.in_c, g.out_c),
    };
    assert!(!accumulate || pass == Pass::BackwardWeight, "only the weight gradient accumulates");
    assert!(fused.is_none() || pass != Pass::BackwardWeight, "a weight gradient activated");
    if let Some(bias) = bias {
        assert!(pass != Pass::BackwardWeight, "the weight gradient has no bias");
        assert!(bias.len >= cols, "{label}: bias of {} elements for {cols} channels", bias.len);
    }
    let variant = pass.variant(gpu);
    if variant == Variant::Tiled && cols > 16 {
        return launch_tiled(gpu, pass, [a, b, c], g, epilogue, (label, c_len, cols, gathered));
    }
    let subgroup = variant == Variant::Subgroup && cols > 16;
    // Rows of a tile (TILE_ROWS in conv.wgsl): images of one pixel in the gather, rows of dW in
    // the weight gradient; in the subgroup kernels the fewest of 8, 16, 32 that cover them.
    let weight_rows = g.kernel_h * g.kernel_w * g.in_c;
    let tile_rows = match (subgroup, pass) {
        (false, _) => 8,
        (true, Pass::BackwardWeight) => weight_rows.next_power_of_two().clamp(8, 32),
        (true, _) => g.batch.next_power_of_two().clamp(8, 32),
    };
    let blocks = g.batch.div_ceil(tile_rows);
    let row_tiles = match pass {
        Pass::Forward => g.out_h * g.out_w * blocks,
        Pass::BackwardData => g.in_h * g.in_w * blocks,
        Pass::BackwardWeight => weight_rows.div_ceil(tile_rows),
    };
    // The gather kernels' B is a tap's weight slice, op(W_tap) = [gathered, cols], stored
    // [in_c, out_c]: transposed for backward data. When one side is 1 the bytes read the same
    // either way, so take the layout whose rows run along the other side, for vec4 loads.
    let (trans_b, b_row) = match pass {
        Pass::BackwardWeight => (false, g.out_c),
        _ if gathered == 1 || cols == 1 => (cols == 1, gathered.max(cols)),
        Pass::Forward => (false, g.out_c),
        Pass::BackwardData => (true, g.out_c),
    };
    let kind = if pass == Pass::BackwardWeight { "conv_weight_grad" } else { "conv_gather" };
    let entry = format!("{kind}_{}", if subgroup { "subgroup" } else { "portable" });
    // Operands that fit a texture are read through their mirrors; 4 floats at once where
    // their rows are whole quads.
    let (mirror_a, mirror_b) = (gpu.gemm_quads_fit(a), gpu.gemm_quads_fit(b));
    let vec_a = gathered % 4 == 0 && mirror_a;
    let vec_b = b_row % 4 == 0 && mirror_b;
    // Tile: 8 lanes x 4 columns in one subgroup (one per workgroup for the gather, 8 for the
    // weight gradient), or 64 invocations of 4 columns by 8 rows, as few columns wide as the
    // output needs (1, 2, 4 or 8 blocks of 4).
    let wg_cols = if subgroup { 8 } else { cols.div_ceil(4).next_power_of_two().min(8) };
    let tiles_per_group = match (subgroup, pass) {
        (true, Pass::BackwardWeight) => 8,
        (true, _) => 1,
        (false, _) => 64 / wg_cols,
    };
    let col_tiles = cols.div_ceil(4 * wg_cols);
    let slicing = slicing(gpu);
    let slices = match pass {
        // A subgroup tile is one vector; portable tiles are one invocation each.
        Pass::BackwardWeight if subgroup => {
            batch_slices(g, slicing.tile_vectors.div_ceil(row_tiles * col_tiles), slicing)
        }
        Pass::BackwardWeight => {
            let vectors = (row_tiles * cols.div_ceil(4)).div_ceil(8);
            batch_slices(g, slicing.tile_vectors.div_ceil(vectors), slicing)
        }
        _ => 1,
    };
    // Only the portable gathers of more than one channel split.
    let (splits, split_channels) = if pass == Pass::BackwardWeight || subgroup || gathered == 1 {
        (1, gathered)
    } else {
        gather_splits(gathered, row_tiles * cols.div_ceil(4), c_len, slicing)
    };
    let stores = dispatch_stores(gpu, epilogue, (c_len, cols), (slices, splits), a);
    let mut constants = vec![
        ("VEC_A", flag(vec_a)),
        ("TRANS_B", flag(trans_b)),
        ("VEC_B", flag(vec_b)),
        ("MIRROR_A", flag(mirror_a)),
        ("MIRROR_B", flag(mirror_b)),
        ("PACK_TAPS", flag(pass != Pass::BackwardWeight && gathered == 1)),
        ("TILE_ROWS", tile_rows as f64),
    ];
    constants.extend(stores.constants);
    let pipeline = gpu.pipeline(&module(gpu), &entry, &constants);
    let row_groups = row_tiles.div_ceil(tiles_per_group);
    let slice_images = g.batch.div_ceil(slices);
    let partials = (slices * splits > 1).then(|| gpu.zeros(slices * splits * c_len));
    let out = partials.as_ref().unwrap_or(c);
    let groups = if subgroup && pass != Pass::BackwardWeight {
        // One workgroup per tile, a flat count: conv_gather_subgroup orders them itself.
        gpu.grid(row_tiles * col_tiles, 1)
    } else {
        grid(gpu, col_tiles, row_groups * slices * splits)
    };
    let backward_data = pass == Pass::BackwardData;
    let has_bias = bias.is_some() && splits == 1;
    let mut params = Params::new(g, backward_data, has_bias, wg_cols, (row_groups, slice_images));
    params.split(splits, split_channels, c_len);
    let operands = ([a, b, out], [mirror_a, mirror_b]);
    let dispatch = conv_dispatch(gpu, pass, (label, &pipeline, groups), &params, operands, &stores);
    sum_partials(gpu, dispatch, partials.as_ref(), c, (slices, splits, c_len, cols), epilogue)
}

/// The stores of a conv dispatch with `slices` batch slices (a weight gradient) or `splits`
/// (a gather): each slice's partial dW is summed into c afterwards, which then accumulates;
/// each split's partial output gets the bias and the epilogue as the splits are summed.
fn dispatch_stores<'a>(
    gpu: &Gpu,
    Epilogue { bias, fused, accumulate }: Epilogue<'a>,
    (c_len, cols): (usize, usize),
    (slices, splits): (usize, usize),
    a: &'a Tensor,
) -> FusedStores<'a> {
    match splits {
        1 => FusedStores::new(gpu, bias, fused, (c_len, cols), accumulate && slices == 1, a),
        _ => FusedStores::new(gpu, None, None, (c_len, cols), false, a),
    }
}

/// `dispatch`, then where it wrote `partials` (`slices` batch slices of a weight gradient, or
/// `splits` of a gather, each `len` floats) the dispatches that sum them into `c`.
fn sum_partials(
    gpu: &Gpu,
    dispatch: Dispatch,
    partials: Option<&Tensor>,
    c: &Tensor,
    (slices, splits, len, cols): (usize, usize, usize, usize),
    epilogue: Epilogue,
) -> Vec<Op> {
    match partials {
        Some(partials) if splits > 1 => {
            let sum = sum_splits(gpu, partials, c, (splits, len, cols), epilogue);
            vec![dispatch.into(), sum.into()]
        }
        _ => then_sum_slices(gpu, dispatch.into(), partials, c, (slices, len), epilogue.accumulate),
    }
}

/// The fewest gathered channels a split of a gather sums.
const MIN_SPLIT_CHANNELS: usize = 16;

/// The most floats a gather's split partial outputs may take together (64 MiB).
const SPLIT_FLOATS: usize = 16 << 20;

/// Splits of a portable gather's `gathered` channels and the channels each sums (whole quads),
/// so that its `invocations` reach `slicing`'s target, each split summing at least
/// MIN_SPLIT_CHANNELS and all taking SPLIT_FLOATS at most (outputs of `out_len` floats).
fn gather_splits(
    gathered: usize,
    invocations: usize,
    out_len: usize,
    slicing: &Slicing,
) -> (usize, usize) {
    let wanted = (slicing.tile_vectors * 8).div_ceil(invocations);
    let channels =
        gathered.div_ceil(wanted.min(most_splits(gathered, out_len))).next_multiple_of(4);
    (gathered.div_ceil(channels), channels)
}

/// The most splits a gather of `gathered` channels into `out_len` floats may take.
fn most_splits(gathered: usize, out_len: usize) -> usize {
    (gathered / MIN_SPLIT_CHANNELS).min(SPLIT_FLOATS / out_len).max(1)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SplitParams {
    rows: u32,
    cols: u32,
    splits: u32,
    has_bias: u32,
}

/// splits.wgsl: `c` = the sum of `splits` partial outputs of `len` floats in rows of `cols`
/// (one after another in `partials`), through the gather's bias and fused epilogue.
fn sum_splits(
    gpu: &Gpu,
    partials: &Tensor,
    c: &Tensor,
    (splits, len, cols): (usize, usize, usize),
    Epilogue { bias, fused, .. }: Epilogue,
) -> Dispatch {
    let stores = FusedStores::new(gpu, bias, fused, (len, cols), false, partials);
    let rows = len / cols;
    let params = gpu.uniform(&SplitParams {
        rows: rows as u32,
        cols: cols as u32,
        splits: splits as u32,
        has_bias: bias.is_some().into(),
    });
    let pipeline = gpu.pipeline(&gpu.gemm_module(shaders::SPLITS), "sum_splits", &stores.constants);
    let bindings = [
        params.as_entire_binding(),
        partials.binding(),
        c.binding(),
        stores.epilogue.binding(),
        stores.e4.binding(),
    ];
    let groups = gpu.grid(rows * cols.div_ceil(4), 64);
    gpu.dispatch("sum_splits", &pipeline, &bindings, groups).reading(&[&stores.e4])
}

/// [`launch`] on conv.wgsl's tiled kernels (the Tiled variant, for outputs of more than 16
/// columns: narrower ones take the portable kernels, as they do the subgroup's), with the
/// dispatch's label, output length, output columns and gathered channels as `launch` found
/// them: tiles of 128 x 128 outputs where the grid (counting the gathers' splits) has enough of
/// them, else 64 x 64 (TILED_WG), as for matmul_tiled. Weight gradients always take many
/// slices and the gathers split as under many slices: these kernels are for discrete GPUs.
fn launch_tiled(
    gpu: &Gpu,
    pass: Pass,
    [a, b, c]: [&Tensor; 3],
    g: &Conv2dGeometry,
    epilogue: Epilogue,
    (label, c_len, cols, gathered): (&'static str, usize, usize, usize),
) -> Vec<Op> {
    // Rows of the GEMM (of its largest phase, for backward data) and the phases.
    let (rows, phases) = match pass {
        Pass::Forward => (g.batch * g.out_h * g.out_w, 1),
        Pass::BackwardData => (
            g.batch * g.in_h.div_ceil(g.stride_h) * g.in_w.div_ceil(g.stride_w),
            g.stride_h * g.stride_w,
        ),
        Pass::BackwardWeight => (g.kernel_h * g.kernel_w * g.in_c, 1),
    };
    let gather = pass != Pass::BackwardWeight;
    let split_room = if gather { most_splits(gathered, c_len) } else { 1 };
    let tiles_of_128 = rows.div_ceil(128) * cols.div_ceil(128) * phases * split_room;
    let tiled_wg = tiled_workgroup_side(tiles_of_128) as usize;
    let side = 8 * tiled_wg;
    let (row_tiles, col_tiles) = (rows.div_ceil(side), cols.div_ceil(side));
    let invocations = row_tiles * col_tiles * phases * tiled_wg * tiled_wg;
    let (slices, (splits, split_channels)) = if gather {
        (1, gather_splits(gathered, invocations, c_len, &MANY_SLICES))
    } else {
        let wanted = (MANY_SLICES.tile_vectors * 8).div_ceil(invocations);
        (batch_slices(g, wanted, &MANY_SLICES), (1, gathered))
    };
    let stores = dispatch_stores(gpu, epilogue, (c_len, cols), (slices, splits), a);
    let (mirror_a, mirror_b) = (gpu.gemm_quads_fit(a), gpu.gemm_quads_fit(b));
    // b's rows (W's, or dy's for the weight gradient) run along y_c.
    let mut constants = vec![
        ("VEC_A", flag(gathered % 4 == 0 && mirror_a)),
        ("VEC_B", flag(g.out_c.is_multiple_of(4) && mirror_b)),
        ("MIRROR_A", flag(mirror_a)),
        ("MIRROR_B", flag(mirror_b)),
        ("TILED_WG", tiled_wg as f64),
    ];
    constants.extend(stores.constants);
    let kind = if gather { "conv_gather" } else { "conv_weight_grad" };
    let pipeline = gpu.pipeline(&module(gpu), &format!("{kind}_tiled"), &constants);
    let partials = (slices * splits > 1).then(|| gpu.zeros(slices * splits * c_len));
    let out = partials.as_ref().unwrap_or(c);
    let groups = grid(gpu, col_tiles, row_tiles * phases * slices * splits);
    let slice_images = g.batch.div_ceil(slices);
    let has_bias = epilogue.bias.is_some() && splits == 1;
    let mut params =
        Params::new(g, pass == Pass::BackwardData, has_bias, 0, (row_tiles, slice_images));
    params.split(splits, split_channels, c_len);
    let operands = ([a, b, out], [mirror_a, mirror_b]);
    let dispatch = conv_dispatch(gpu, pass, (label, &pipeline, groups), &params, operands, &stores);
    sum_partials(gpu, dispatch, partials.as_ref(), c, (slices, splits, c_len, cols), epilogue)
}

/// One dispatch of a conv.wgsl kernel for `pass`: its parameters, operands a and b with their
/// texture mirrors (read where `mirrors` says), its output, and for the gathers the stores'
/// epilogue bindings.
fn conv_dispatch(
    gpu: &Gpu,
    pass: Pass,
    (label, pipeline, groups): (&'static str, &Pipeline, [u32; 3]),
    params: &Params,
    ([a, b, out], [mirror_a, mirror_b]): ([&Tensor; 3], [bool; 2]),
    stores: &FusedStores,
) -> Dispatch {
    let params = gpu.uniform(params);
    let (a4, b4) = (gpu.gemm_quads(a, mirror_a), gpu.gemm_quads(b, mirror_b));
    let mut bindings = vec![
        params.as_entire_binding(),
        a.binding(),
        a4.binding(),
        b.binding(),
        b4.binding(),
        out.binding(),
    ];
    // Only the gather kernels have the epilogue bindings.
    if pass != Pass::BackwardWeight {
        bindings.push(stores.epilogue.binding());
        bindings.push(stores.e4.binding());
    }
    gpu.dispatch(label, pipeline, &bindings, groups).reading(&[&a4, &b4, &stores.e4])
}

/// `dispatch`, then for a weight gradient cut into `slices` batch slices (`partials`, each
/// slice's `len` elements of dW in a row) the sum of the slices into `dw` (added to its values
/// when `accumulate`).
fn then_sum_slices(
    gpu: &Gpu,
    dispatch: Op,
    partials: Option<&Tensor>,
    dw: &Tensor,
    (slices, len): (usize, usize),
    accumulate: bool,
) -> Vec<Op> {
    let mut ops = vec![dispatch];
    if let Some(partials) = partials {
        // dW is the column sums of the [slices, dW] matrix of partials.
        ops.extend(super::bias::bias_grad(gpu, partials, dw, slices, len, accumulate));
    }
    ops
}

/// Whether [`conv2d`] runs `g` as one-channel rows (conv.wgsl's `conv_rows_one_channel`): on
/// the Rows variant (see [`crate::tune`]), with one output channel, stride 1 along w, and a
/// filter at most MAX_ROWS_FILTER_W wide.
fn one_channel_rows(gpu: &Gpu, g: &Conv2dGeometry) -> bool {
    gpu.variants().one_channel_conv == Variant::Rows
        && g.out_c == 1
        && g.stride_w == 1
        && g.kernel_w <= MAX_ROWS_FILTER_W
}

/// The widest filter the rows kernels take (their taps are written out).
const MAX_ROWS_FILTER_W: usize = 8;

/// The most blocks of 4 pixels one invocation of a rows kernel computes (ROW_BLOCKS).
const MAX_ROW_BLOCKS: usize = 7;

/// The one-channel rows dispatch of `conv2d` (see [`one_channel_rows`]).
fn launch_rows(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    g: &Conv2dGeometry,
    fused: Option<Fused<&Tensor>>,
) -> Op {
    check_operands(g, "conv2d", [x, w, y], [g.input_len(), g.weight_len(), g.output_len()]);
    // An output row's activation outputs, 4 at a time.
    let stores = FusedStores::new(gpu, bias, fused, (g.output_len(), g.out_w), false, x);
    let quads = g.in_c.is_multiple_of(4);
    // Two output rows per invocation.
    let invocations = g.batch * g.out_h.div_ceil(2) * g.out_w.div_ceil(4 * row_blocks(g));
    let params = Params::new(g, false, bias.is_some(), 1, (1, g.batch));
    let rows =
        RowsGather { entry: "conv_rows_one_channel", label: "conv2d", blocks: row_blocks(g) };
    rows.dispatch(gpu, [x, w, y], (quads, quads), stores, params, invocations)
}

/// Whether the gather of `pass` (forward or backward data) over `g` runs as rows from one
/// channel (conv.wgsl's `conv_rows_from_one_channel`): on the Rows variant, where the gathered
/// image has one channel, the stride along w is 1 and the filter at most MAX_ROWS_FILTER_W
/// wide.
fn rows_from_one_channel(gpu: &Gpu, pass: Pass, g: &Conv2dGeometry) -> bool {
    let gathered = if pass == Pass::Forward { g.in_c } else { g.out_c };
    gpu.variants().one_channel_conv == Variant::Rows
        && gathered == 1
        && g.stride_w == 1
        && g.kernel_w <= MAX_ROWS_FILTER_W
}

/// The rows-from-one-channel dispatch of a gather (see [`rows_from_one_channel`]): `src` is the
/// gathered image, `dst` the output.
#[allow(clippy::too_many_arguments)]
fn launch_rows_from_one_channel(
    gpu: &Gpu,
    pass: Pass,
    src: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    dst: &Tensor,
    g: &Conv2dGeometry,
    fused: Option<Fused<&Tensor>>,
) -> Op {
    let backward = pass == Pass::BackwardData;
    let (label, src_len, dst_len, dst_c, dst_w) = if backward {
        ("conv2d_backward_data", g.output_len(), g.input_len(), g.in_c, g.in_w)
    } else {
        ("conv2d", g.input_len(), g.output_len(), g.out_c, g.out_w)
    };
    check_operands(g, label, [src, w, dst], [src_len, g.weight_len(), dst_len]);
    if let Some(bias) = bias {
        assert!(bias.len >= dst_c, "{label}: bias of {} elements for {dst_c} channels", bias.len);
    }
    let stores = FusedStores::new(gpu, bias, fused, (dst_len, dst_c), false, src);
    let blocks = row_blocks_over(dst_w);
    let dst_h = dst_len / (g.batch * dst_w * dst_c);
    let invocations = g.batch * dst_h * dst_w.div_ceil(4 * blocks) * dst_c.div_ceil(4);
    let params = Params::new(g, backward, bias.is_some(), 1, (1, g.batch));
    // The one-channel values are read one at a time, the weights 4 output channels at a time.
    let quads = (false, dst_c.is_multiple_of(4));
    let rows = RowsGather { entry: "conv_rows_from_one_channel", label, blocks };
    rows.dispatch(gpu, [src, w, dst], quads, stores, params, invocations)
}

/// A dispatch of one of the rows gathers, which bind what conv_gather binds.
struct RowsGather {
    entry: &'static str,
    label: &'static str,
    /// ROW_BLOCKS.
    blocks: usize,
}

impl RowsGather {
    /// `src` is gathered through `w` into `dst`; `quads` says whether the rows of `src` and `w`
    /// are whole quads (read 4 floats at a time from their mirrors).
    fn dispatch(
        &self,
        gpu: &Gpu,
        [src, w, dst]: [&Tensor; 3],
        quads: (bool, bool),
        stores: FusedStores,
        params: Params,
        invocations: usize,
    ) -> Op {
        let (mirror_src, mirror_w) = (gpu.gemm_quads_fit(src), gpu.gemm_quads_fit(w));
        let mut constants = vec![
            ("FILTER_W", f64::from(params.k_w)),
            ("ROW_BLOCKS", self.blocks as f64),
            ("VEC_A", flag(quads.0 && mirror_src)),
            ("VEC_B", flag(quads.1 && mirror_w)),
            ("MIRROR_A", flag(mirror_src)),
            ("MIRROR_B", flag(mirror_w)),
        ];
        constants.extend(stores.constants);
        let pipeline = gpu.pipeline(&module(gpu), self.entry, &constants);
        let params = gpu.uniform(&params);
        let (src4, w4) = (gpu.gemm_quads(src, mirror_src), gpu.gemm_quads(w, mirror_w));
        let bindings = [
            params.as_entire_binding(),
            src.binding(),
            src4.binding(),
            w.binding(),
            w4.binding(),
            dst.binding(),
            stores.epilogue.binding(),
            stores.e4.binding(),
        ];
        gpu.dispatch(self.label, &pipeline, &bindings, gpu.grid(invocations, 64))
            .reading(&[&src4, &w4, &stores.e4])
            .into()
    }
}

/// The weight gradient of a one-channel rows conv (conv.wgsl's
/// `conv_weight_grad_rows_one_channel`), cut into batch slices as [`launch`]'s are where its
/// invocations (one per tap row and channel quad) are too few to fill the device.
fn launch_rows_weight_grad(
    gpu: &Gpu,
    x: &Tensor,
    dy: &Tensor,
    dw: &Tensor,
    g: &Conv2dGeometry,
    accumulate: bool,
) -> Vec<Op> {
    let label = "conv2d_backward_weight";
    check_operands(g, label, [x, dy, dw], [g.input_len(), g.output_len(), g.weight_len()]);
    let (mirror_x, mirror_dy) = (gpu.gemm_quads_fit(x), gpu.gemm_quads_fit(dy));
    let tiles = g.kernel_h * g.in_c.div_ceil(4);
    let slicing = slicing(gpu);
    let slices = batch_slices(g, slicing.rows_invocations.div_ceil(tiles), slicing);
    // Stores run along dW's taps of in_c channels.
    let [vec_c, accumulates] = store_constants(g.in_c, accumulate && slices == 1);
    let constants = [
        ("FILTER_W", g.kernel_w as f64),
        ("ROW_BLOCKS", row_blocks(g) as f64),
        ("VEC_A", flag(g.in_c.is_multiple_of(4) && mirror_x)),
        // dy's rows are read 4 outputs at a time (see dy_row_quad).
        ("VEC_B", flag(g.out_w.is_multiple_of(4) && mirror_dy)),
        ("MIRROR_A", flag(mirror_x)),
        ("MIRROR_B", flag(mirror_dy)),
        vec_c,
        accumulates,
    ];
    let entry = "conv_weight_grad_rows_one_channel";
    let pipeline = gpu.pipeline(&module(gpu), entry, &constants);
    let slice_images = g.batch.div_ceil(slices);
    let params = Params::new(g, false, false, 1, (1, slice_images));
    let params = gpu.uniform(&params);
    let partials = (slices > 1).then(|| gpu.zeros(slices * g.weight_len()));
    let out = partials.as_ref().unwrap_or(dw);
    let (x4, dy4) = (gpu.gemm_quads(x, mirror_x), gpu.gemm_quads(dy, mirror_dy));
    let bindings = [
        params.as_entire_binding(),
        x.binding(),
        x4.binding(),
        dy.binding(),
        dy4.binding(),
        out.binding(),
    ];
    let groups = gpu.grid(tiles * slices, 64);
    let dispatch = gpu.dispatch(label, &pipeline, &bindings, groups).reading(&[&x4, &dy4]);
    then_sum_slices(
        gpu,
        dispatch.into(),
        partials.as_ref(),
        dw,
        (slices, g.weight_len()),
        accumulate,
    )
}

/// Blocks of 4 outputs per invocation of the one-channel rows kernels: the fewest for the
/// fewest segments per output row.
fn row_blocks(g: &Conv2dGeometry) -> usize {
    row_blocks_over(g.out_w)
}

/// Blocks of 4 pixels per invocation of a rows kernel over rows of `width` pixels.
fn row_blocks_over(width: usize) -> usize {
    let segments = width.div_ceil(4 * MAX_ROW_BLOCKS);
    width.div_ceil(4 * segments)
}

/// Asserts that the tensors hold `lens` elements and that `g` fits the kernels, which index
/// with u32 and do tap arithmetic with i32.
fn check_operands(g: &Conv2dGeometry, label: &str, tensors: [&Tensor; 3], lens: [usize; 3]) {
    let largest = [g.input_len(), g.output_len(), g.weight_len(), g.pad_top, g.pad_left];
    assert!(largest.iter().all(|&v| v < i32::MAX as usize), "conv too large: {g:?}");
    assert!(
        tensors.iter().zip(lens).all(|(t, len)| t.len >= len),
        "{label} {g:?}: tensors of {:?} elements for {lens:?}",
        tensors.map(|t| t.len)
    );
}

/// Workgroups for `cols` column tiles by `rows` row tiles, the rows folded into z past the
/// per-dimension limit (the kernels read the tile as y + z * num_workgroups.y).
fn grid(gpu: &Gpu, cols: usize, rows: usize) -> [u32; 3] {
    let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
    assert!(cols <= max, "conv: {cols} column tiles");
    let z = rows.div_ceil(max).max(1);
    let y = rows.div_ceil(z);
    assert!(z <= max, "conv: {rows} row tiles");
    [cols as u32, y as u32, z as u32]
}

/// The geometry that computes `g`'s conv with 4 neighbouring output pixels as its 4 output
/// channels, where `g` has one output channel and an output width that is a multiple of 4
/// (see conv.wgsl's pixel-quad filters): the output's bytes are the same, every tile column
/// is used instead of one in four, for 3 * stride_w more taps along w.
pub fn pixel_quad_geometry(g: &Conv2dGeometry) -> Option<Conv2dGeometry> {
    (g.out_c == 1 && g.out_w.is_multiple_of(4)).then(|| Conv2dGeometry {
        out_w: g.out_w / 4,
        out_c: 4,
        kernel_w: g.kernel_w + 3 * g.stride_w,
        stride_w: 4 * g.stride_w,
        ..*g
    })
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct QuadFilter {
    k_h: u32,
    k_w: u32,
    in_c: u32,
    s_w: u32,
    accumulate: u32,
}

/// One of the pixel-quad filter kernels, one invocation per element of its output: `widen`
/// takes `g`'s filter to the widened one, else the widened gradient back to `g`'s (added to
/// `to` when `accumulate`).
fn quad_filter_dispatch(
    gpu: &Gpu,
    widen: bool,
    from: &Tensor,
    to: &Tensor,
    g: &Conv2dGeometry,
    accumulate: bool,
) -> Dispatch {
    let quad = pixel_quad_geometry(g).expect("a one-channel output of a width divisible by 4");
    let (entry, from_len, to_len) = if widen {
        ("widen_filter_to_pixel_quads", g.weight_len(), quad.weight_len())
    } else {
        ("fold_pixel_quad_filter_grad", quad.weight_len(), g.weight_len())
    };
    assert!(from.len >= from_len && to.len >= to_len, "{entry}: tensors too small for {g:?}");
    let u = |v: usize| u32::try_from(v).unwrap();
    let params = gpu.uniform(&QuadFilter {
        k_h: u(g.kernel_h),
        k_w: u(g.kernel_w),
        in_c: u(g.in_c),
        s_w: u(g.stride_w),
        accumulate: accumulate.into(),
    });
    let pipeline = gpu.pipeline(&module(gpu), entry, &[]);
    gpu.dispatch(
        entry,
        &pipeline,
        &[params.as_entire_binding(), from.binding(), to.binding()],
        gpu.grid(to_len, 64),
    )
}

/// `wide` = the filter `w` of `g` (one output channel) widened for [`pixel_quad_geometry`]:
/// channel j of `wide` is `w` shifted j * stride_w taps along w.
pub fn widen_filter_to_pixel_quads(
    gpu: &Gpu,
    w: &Tensor,
    wide: &Tensor,
    g: &Conv2dGeometry,
) -> Dispatch {
    quad_filter_dispatch(gpu, true, w, wide, g, false)
}

/// `dw` = the gradient of `g`'s filter from the gradient `dwide` of its widened one: each tap
/// sums the 4 shifted copies of it (and its own value when `accumulate`).
pub fn fold_pixel_quad_filter_grad(
    gpu: &Gpu,
    dwide: &Tensor,
    dw: &Tensor,
    g: &Conv2dGeometry,
    accumulate: bool,
) -> Dispatch {
    quad_filter_dispatch(gpu, false, dwide, dw, g, accumulate)
}

/// y = f(conv(x, w) (+ bias[out_c] on every pixel)), f what is `fused` into the stores when
/// Some: the activation after a conv layer (the layer and its activation in one pass), or the
/// derivative of the activation before a transposed conv, whose input gradient this is.
/// x [batch, in_h, in_w, in_c], w [kernel_h, kernel_w, in_c, out_c], y [batch, out_h, out_w,
/// out_c]; `y` must be a tensor of its own.
pub fn conv2d(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    g: &Conv2dGeometry,
    fused: Option<Fused<&Tensor>>,
) -> Vec<Op> {
    if one_channel_rows(gpu, g) {
        return vec![launch_rows(gpu, x, w, bias, y, g, fused)];
    }
    if rows_from_one_channel(gpu, Pass::Forward, g) {
        return vec![launch_rows_from_one_channel(gpu, Pass::Forward, x, w, bias, y, g, fused)];
    }
    let epilogue = |bias| Epilogue { bias, fused, accumulate: false };
    let Some(quad) = pixel_quad_geometry(g) else {
        return launch(gpu, Pass::Forward, x, w, y, g, epilogue(bias));
    };
    let wide = gpu.zeros(quad.weight_len());
    let mut ops = vec![widen_filter_to_pixel_quads(gpu, w, &wide, g).into()];
    // The one channel's bias on each of the 4 pixel channels.
    let bias4 = bias.map(|b| {
        let b4 = gpu.zeros(4);
        ops.extend((0..4).map(|j| Op::Copy {
            src: b.clone(),
            src_offset: 0,
            dst: b4.clone(),
            dst_offset: j,
            len: 1,
        }));
        b4
    });
    ops.extend(launch(gpu, Pass::Forward, x, &wide, y, &quad, epilogue(bias4.as_ref())));
    ops
}

/// dx = f(convᵀ(dy, w) (+ bias[in_c] on every pixel)): the gradient of conv2d with respect
/// to its input, f the derivative of the activation before the conv when `fused`; and with a
/// bias (and an activation fused) the forward pass of the transposed conv this geometry
/// describes.
pub fn conv2d_backward_data(
    gpu: &Gpu,
    dy: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    dx: &Tensor,
    g: &Conv2dGeometry,
    fused: Option<Fused<&Tensor>>,
) -> Vec<Op> {
    if rows_from_one_channel(gpu, Pass::BackwardData, g) {
        let pass = Pass::BackwardData;
        return vec![launch_rows_from_one_channel(gpu, pass, dy, w, bias, dx, g, fused)];
    }
    // The pixel-quad form does not pay here: with one gathered channel the kernel already
    // packs 4 taps per step (measured 20 ms plain against 22-25 ms as pixel quads, for dcgan's
    // 7x7 conv at batch 16, before that conv took the rows kernels).
    let epilogue = Epilogue { bias, fused, accumulate: false };
    launch(gpu, Pass::BackwardData, dy, w, dx, g, epilogue)
}

/// dw = im2col(x)ᵀ·dy (+ dw when `accumulate`): the gradient of conv2d with respect to its
/// weights.
pub fn conv2d_backward_weight(
    gpu: &Gpu,
    x: &Tensor,
    dy: &Tensor,
    dw: &Tensor,
    g: &Conv2dGeometry,
    accumulate: bool,
) -> Vec<Op> {
    let backward = |dw: &Tensor, g: &Conv2dGeometry, accumulate: bool| {
        let epilogue = Epilogue { accumulate, ..Epilogue::default() };
        launch(gpu, Pass::BackwardWeight, x, dy, dw, g, epilogue)
    };
    if one_channel_rows(gpu, g) {
        return launch_rows_weight_grad(gpu, x, dy, dw, g, accumulate);
    }
    let Some(quad) = pixel_quad_geometry(g) else {
        return backward(dw, g, accumulate);
    };
    let dwide = gpu.zeros(quad.weight_len());
    let mut ops = backward(&dwide, &quad, false);
    ops.push(fold_pixel_quad_filter_grad(gpu, &dwide, dw, g, accumulate).into());
    ops
}

/// Transposed conv y = act(convᵀ(x, w) (+ bias)), act the activation `fused` when Some, for `g` from
/// [`Conv2dGeometry::transposed`]: x [batch, g.out_h, g.out_w, g.out_c], w [kh, kw, g.in_c,
/// g.out_c], y [batch, g.in_h, g.in_w, g.in_c].
pub fn conv_transpose2d(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    g: &Conv2dGeometry,
    fused: Option<Fused<&Tensor>>,
) -> Vec<Op> {
    conv2d_backward_data(gpu, x, w, bias, y, g, fused)
}

/// The transposed conv's input gradient: the conv it is the adjoint of, applied to dy, times
/// the derivative of the activation before the layer when `fused`.
pub fn conv_transpose2d_backward_data(
    gpu: &Gpu,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
    g: &Conv2dGeometry,
    fused: Option<Fused<&Tensor>>,
) -> Vec<Op> {
    conv2d(gpu, dy, w, None, dx, g, fused)
}

/// The transposed conv's weight gradient: dy plays the conv's input and x its output gradient.
pub fn conv_transpose2d_backward_weight(
    gpu: &Gpu,
    x: &Tensor,
    dy: &Tensor,
    dw: &Tensor,
    g: &Conv2dGeometry,
    accumulate: bool,
) -> Vec<Op> {
    conv2d_backward_weight(gpu, dy, x, dw, g, accumulate)
}
