//! The conv family: GPU kernels against the CPU twins on every adapter, the twins against
//! PyTorch and against finite differences, the geometry against Keras's sizes, and an opt-in
//! speed report.

mod common;

use std::sync::Mutex;
use std::time::Instant;

use gan_gpu::check::{REDUCTION, compare};
use gan_gpu::gpu::{Gpu, Op, Tensor, Variant, Variants};
use gan_gpu::kernels::conv::{Conv2dGeometry, Padding};
use gan_gpu::kernels::{Activation, Fused};
use gan_gpu::{cpu, kernels};
use rand::{Rng, rngs::StdRng};

/// One kernel of the family, called through its GPU launcher or its CPU twin.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kernel {
    Conv2d,
    Conv2dBackwardData,
    Conv2dBackwardWeight,
    ConvTranspose2d,
    ConvTranspose2dBackwardData,
    ConvTranspose2dBackwardWeight,
}

use Kernel::*;

impl Kernel {
    /// Lengths of its two operands and its output, in argument order.
    fn lens(self, g: &Conv2dGeometry) -> [usize; 3] {
        let (x, w, y) = (g.input_len(), g.weight_len(), g.output_len());
        match self {
            Conv2d | ConvTranspose2dBackwardData => [x, w, y],
            Conv2dBackwardData | ConvTranspose2d => [y, w, x],
            Conv2dBackwardWeight => [x, y, w],
            ConvTranspose2dBackwardWeight => [y, x, w],
        }
    }

    /// Length of the bias it takes, if it takes one. conv2d_backward_data takes one too, as
    /// the transposed conv's forward, which tests it.
    fn bias_len(self, g: &Conv2dGeometry) -> Option<usize> {
        match self {
            Conv2d => Some(g.out_c),
            ConvTranspose2d => Some(g.in_c),
            _ => None,
        }
    }

    /// Whether it is an input gradient, which can apply the derivative of the activation before
    /// the layer.
    fn input_gradient(self) -> bool {
        matches!(self, Conv2dBackwardData | ConvTranspose2dBackwardData)
    }

    /// The channels a gather sums over (None for the weight gradients).
    fn gathered(self, g: &Conv2dGeometry) -> Option<usize> {
        match self {
            Conv2d | ConvTranspose2dBackwardData => Some(g.in_c),
            Conv2dBackwardData | ConvTranspose2d => Some(g.out_c),
            _ => None,
        }
    }

    /// Whether it can add to its output's values (the weight gradients).
    fn accumulates(self) -> bool {
        matches!(self, Conv2dBackwardWeight | ConvTranspose2dBackwardWeight)
    }

    /// The CPU twin; `epilogue` is what the kernels that store through an activation or its
    /// derivative apply, and whether the weight gradients accumulate.
    fn cpu(
        self,
        a: &[f32],
        b: &[f32],
        bias: Option<&[f32]>,
        out: &mut [f32],
        g: &Conv2dGeometry,
        (fused, accumulate): (Option<Fused<&[f32]>>, bool),
    ) {
        use cpu::conv::*;
        match self {
            Conv2d => conv2d(a, b, bias, out, g, fused),
            Conv2dBackwardData => conv2d_backward_data(a, b, bias, out, g, fused),
            Conv2dBackwardWeight => conv2d_backward_weight(a, b, out, g, accumulate),
            ConvTranspose2d => conv_transpose2d(a, b, bias, out, g, fused),
            ConvTranspose2dBackwardData => conv_transpose2d_backward_data(a, b, out, g, fused),
            ConvTranspose2dBackwardWeight => {
                conv_transpose2d_backward_weight(a, b, out, g, accumulate)
            }
        }
    }

    /// The GPU launcher, with the CPU twin's arguments.
    #[allow(clippy::too_many_arguments)]
    fn gpu(
        self,
        gpu: &Gpu,
        a: &Tensor,
        b: &Tensor,
        bias: Option<&Tensor>,
        out: &Tensor,
        g: &Conv2dGeometry,
        (fused, accumulate): (Option<Fused<&Tensor>>, bool),
    ) -> Vec<Op> {
        use kernels::conv::*;
        match self {
            Conv2d => conv2d(gpu, a, b, bias, out, g, fused),
            Conv2dBackwardData => conv2d_backward_data(gpu, a, b, bias, out, g, fused),
            Conv2dBackwardWeight => conv2d_backward_weight(gpu, a, b, out, g, accumulate),
            ConvTranspose2d => conv_transpose2d(gpu, a, b, bias, out, g, fused),
            ConvTranspose2dBackwardData => conv_transpose2d_backward_data(gpu, a, b, out, g, fused),
            ConvTranspose2dBackwardWeight => {
                conv_transpose2d_backward_weight(gpu, a, b, out, g, accumulate)
            }
        }
    }
}

const CONV: [Kernel; 3] = [Conv2d, Conv2dBackwardData, Conv2dBackwardWeight];
const TRANSPOSED: [Kernel; 3] =
    [ConvTranspose2d, ConvTranspose2dBackwardData, ConvTranspose2dBackwardWeight];

/// One kernel call on random data, with its CPU twin's answer.
struct Call {
    name: String,
    kernel: Kernel,
    g: Conv2dGeometry,
    a: Vec<f32>,
    b: Vec<f32>,
    bias: Option<Vec<f32>>,
    activation: Option<Activation>,
    /// For an input gradient through an activation: that activation's output, shaped as the
    /// call's output.
    act_out: Option<Vec<f32>>,
    /// The output's values before the call, when the call accumulates into them.
    initial: Option<Vec<f32>>,
    want: Vec<f32>,
}

impl Call {
    /// With `extra`, the kernels that take a bias get one and apply an activation, the input
    /// gradients apply an activation's derivative at random activation outputs (one of the
    /// four activations, drawn at random), and the weight gradients add to random values.
    fn new(rng: &mut StdRng, name: &str, kernel: Kernel, g: Conv2dGeometry, extra: bool) -> Call {
        let [a_len, b_len, out_len] = kernel.lens(&g);
        let a = common::random_vec(rng, a_len, -1.0, 1.0);
        let b = common::random_vec(rng, b_len, -1.0, 1.0);
        let bias =
            kernel.bias_len(&g).filter(|_| extra).map(|n| common::random_vec(rng, n, -1.0, 1.0));
        let act_out =
            (extra && kernel.input_gradient()).then(|| common::random_vec(rng, out_len, -1.0, 1.0));
        let activation = (bias.is_some() || act_out.is_some())
            .then(|| common::ACTIVATIONS[rng.random_range(0..4)]);
        let initial =
            (extra && kernel.accumulates()).then(|| common::random_vec(rng, out_len, -1.0, 1.0));
        let mut want = initial.clone().unwrap_or_else(|| vec![0.0; out_len]);
        let fused = common::fused(activation, act_out.as_deref());
        kernel.cpu(&a, &b, bias.as_deref(), &mut want, &g, (fused, initial.is_some()));
        let what = match (&activation, &act_out, &initial) {
            (Some(act), Some(_), _) => format!(" {act:?}'"),
            (Some(act), None, _) => format!(" +bias, {act:?}"),
            (_, _, Some(_)) => " +=".to_string(),
            _ => String::new(),
        };
        let name = format!("{kernel:?}{what} {name}");
        Call { name, kernel, g, a, b, bias, activation, act_out, initial, want }
    }

    /// Uploads the operands and the output (NaN-filled unless the call accumulates); returns
    /// the ops and the output.
    fn dispatch(&self, gpu: &Gpu) -> (Vec<Op>, Tensor) {
        let (a, b) = (gpu.upload(&self.a), gpu.upload(&self.b));
        let bias = self.bias.as_ref().map(|v| gpu.upload(v));
        let out = gpu.upload(self.initial.as_ref().unwrap_or(&common::poison(self.want.len())));
        let act_out = self.act_out.as_ref().map(|v| gpu.upload(v));
        let epilogue = (common::fused(self.activation, act_out.as_ref()), self.initial.is_some());
        (self.kernel.gpu(gpu, &a, &b, bias.as_ref(), &out, &self.g, epilogue), out)
    }

    fn check(&self, gpu: &Gpu) -> Result<(), String> {
        let (ops, out) = self.dispatch(gpu);
        gpu.run(&ops);
        compare(&self.name, &gpu.read(&out), &self.want, REDUCTION)
    }
}

/// conv2d geometry shorthand: batch, (h, w), in_c -> out_c, kernel, stride, padding.
fn conv(
    batch: usize,
    hw: (usize, usize),
    channels: (usize, usize),
    kernel: usize,
    stride: usize,
    padding: Padding,
) -> Conv2dGeometry {
    Conv2dGeometry::conv(
        batch,
        hw,
        channels.0,
        channels.1,
        (kernel, kernel),
        (stride, stride),
        padding,
    )
    .unwrap()
}

/// Transposed conv geometry shorthand, output size from the padding.
fn transposed(
    batch: usize,
    hw: (usize, usize),
    channels: (usize, usize),
    kernel: usize,
    stride: usize,
    padding: Padding,
) -> Conv2dGeometry {
    Conv2dGeometry::transposed(
        batch,
        hw,
        channels.0,
        channels.1,
        (kernel, kernel),
        (stride, stride),
        padding,
        (0, 0),
        None,
    )
    .unwrap()
}

/// The DCGAN presets' layers: (name, geometry, transposed) at this batch size.
fn preset_shapes(batch: usize) -> Vec<(&'static str, Conv2dGeometry, bool)> {
    use Padding::{Same, Valid};
    let b = batch;
    let valid_to_28 = Conv2dGeometry::transposed(
        b,
        (12, 12),
        64,
        1,
        (5, 5),
        (2, 2),
        Valid,
        (0, 0),
        Some((28, 28)),
    );
    let to_3 =
        Conv2dGeometry::transposed(b, (2, 2), 25, 256, (5, 5), (2, 2), Same, (0, 0), Some((3, 3)));
    vec![
        ("conv k3 s2 28x28x1 -> 14x14x64", conv(b, (28, 28), (1, 64), 3, 2, Same), false),
        ("conv k3 s2 14x14x64 -> 7x7x64", conv(b, (14, 14), (64, 64), 3, 2, Same), false),
        ("convT k4 s2 7x7x128 -> 14x14x128", transposed(b, (7, 7), (128, 128), 4, 2, Same), true),
        (
            "convT k4 s2 14x14x128 -> 28x28x128",
            transposed(b, (14, 14), (128, 128), 4, 2, Same),
            true,
        ),
        ("conv k7 s1 28x28x128 -> 28x28x1", conv(b, (28, 28), (128, 1), 7, 1, Same), false),
        ("conv k5 s2 28x28x1 -> 14x14x64", conv(b, (28, 28), (1, 64), 5, 2, Same), false),
        ("conv k5 s2 14x14x64 -> 7x7x128", conv(b, (14, 14), (64, 128), 5, 2, Same), false),
        ("conv k5 s2 7x7x128 -> 4x4x256", conv(b, (7, 7), (128, 256), 5, 2, Same), false),
        ("conv k5 s1 4x4x256 -> 4x4x512", conv(b, (4, 4), (256, 512), 5, 1, Same), false),
        ("conv k5 s1 14x14x256 -> 14x14x128", conv(b, (14, 14), (256, 128), 5, 1, Same), false),
        ("conv k5 s1 28x28x128 -> 28x28x64", conv(b, (28, 28), (128, 64), 5, 1, Same), false),
        ("conv k5 s1 28x28x64 -> 28x28x32", conv(b, (28, 28), (64, 32), 5, 1, Same), false),
        ("conv k5 s1 28x28x32 -> 28x28x1", conv(b, (28, 28), (32, 1), 5, 1, Same), false),
        ("conv k5 valid 28x28x1 -> 24x24x8", conv(b, (28, 28), (1, 8), 5, 1, Valid), false),
        ("conv k5 valid 12x12x8 -> 8x8x16", conv(b, (12, 12), (8, 16), 5, 1, Valid), false),
        ("convT k5 s2 2x2x25 -> 3x3x256", to_3.unwrap(), true),
        ("convT k5 s2 3x3x256 -> 6x6x128", transposed(b, (3, 3), (256, 128), 5, 2, Same), true),
        ("convT k5 s2 6x6x128 -> 12x12x64", transposed(b, (6, 6), (128, 64), 5, 2, Same), true),
        ("convT k5 s2 valid 12x12x64 -> 28x28x1", valid_to_28.unwrap(), true),
    ]
}

/// Every kernel of every case, with bias on the passes that take one and the weight gradients
/// accumulating in every other case.
fn calls(rng: &mut StdRng, cases: &[(String, Conv2dGeometry, bool)]) -> Vec<Call> {
    let mut calls = Vec::new();
    for (i, (name, g, is_transposed)) in cases.iter().enumerate() {
        for kernel in if *is_transposed { TRANSPOSED } else { CONV } {
            calls.push(Call::new(rng, name, kernel, *g, i % 2 == 0));
        }
    }
    calls
}

#[test]
fn conv_matches_cpu_twin() {
    use Padding::{Explicit, Same, Valid};
    let mut cases: Vec<(String, Conv2dGeometry, bool)> = Vec::new();
    let mut case = |name: &str, g: anyhow::Result<Conv2dGeometry>, is_transposed| {
        cases.push((name.to_string(), g.unwrap(), is_transposed))
    };
    let c = Conv2dGeometry::conv;
    let t = Conv2dGeometry::transposed;
    // Odd and even kernels, strides 1 and 2, channel counts on and off multiples of 4, batch
    // 1, batches that leave a partial tile of 8, 16 or 32 images, and 1x1 maps.
    case("k3 s1 same 5x6x3 -> 5", c(2, (5, 6), 3, 5, (3, 3), (1, 1), Same), false);
    case("k3 s2 same 7x7x4 -> 8", c(3, (7, 7), 4, 8, (3, 3), (2, 2), Same), false);
    case("k5 s2 same 9x9x1 -> 6, batch 1", c(1, (9, 9), 1, 6, (5, 5), (2, 2), Same), false);
    case("k4 s2 same 8x9x6 -> 3", c(2, (8, 9), 6, 3, (4, 4), (2, 2), Same), false);
    case("k7 s1 same 6x6x8 -> 1", c(2, (6, 6), 8, 1, (7, 7), (1, 1), Same), false);
    case("k5 s1 valid 9x8x2 -> 7", c(2, (9, 8), 2, 7, (5, 5), (1, 1), Valid), false);
    case("k5 s2 same 9x7x3 -> 1", c(3, (9, 7), 3, 1, (5, 5), (2, 2), Same), false);
    // One output channel over a width divisible by 4: computed as 4 pixel channels.
    case("k7 s1 same 5x8x8 -> 1", c(2, (5, 8), 8, 1, (7, 7), (1, 1), Same), false);
    case("k3 s2 same 4x16x5 -> 1", c(9, (4, 16), 5, 1, (3, 3), (2, 2), Same), false);
    // One output channel at stride 1 along w: one-channel rows (conv_rows_one_channel and its
    // weight gradient), with the widest filter it takes and stride 2 along h, row segments
    // that end mid-block and mid-row over channels off multiples of 4, and a weight gradient
    // in two batch slices; a filter one tap wider takes the pixel quads.
    case("k3x8 s2x1 valid 6x9x8 -> 1", c(3, (6, 9), 8, 1, (3, 8), (2, 1), Valid), false);
    case("k5 s1 same 7x30x6 -> 1, batch 11", c(11, (7, 30), 6, 1, (5, 5), (1, 1), Same), false);
    case("k2x9 s1 same 5x12x4 -> 1", c(2, (5, 12), 4, 1, (2, 9), (1, 1), Same), false);
    case("k1 s1 valid 3x5x4 -> 1", c(2, (3, 5), 4, 1, (1, 1), (1, 1), Valid), false);
    case("k3 s1 same 1x1x5 -> 33, batch 9", c(9, (1, 1), 5, 33, (3, 3), (1, 1), Same), false);
    case("k5 s2 same 1x1x12 -> 20", c(3, (1, 1), 12, 20, (5, 5), (2, 2), Same), false);
    case("k5 s1 same 4x4x12 -> 40, batch 10", c(10, (4, 4), 12, 40, (5, 5), (1, 1), Same), false);
    // Batches past one tile of the subgroup kernels' largest (32 images), ending mid-tile;
    // the weight gradient's batch slices then end with a shorter one.
    case("k3 s2 same 5x5x6 -> 40, batch 37", c(37, (5, 5), 6, 40, (3, 3), (2, 2), Same), false);
    // One input channel over many pixels: dW fills too few SIMD vectors, so the weight
    // gradients sum batch slices (the last one shorter), portable and subgroup, with and
    // without accumulating.
    case("k5 s1 valid 28x28x1 -> 8, batch 5", c(5, (28, 28), 1, 8, (5, 5), (1, 1), Valid), false);
    case("k5 s1 valid 26x27x1 -> 8, batch 5", c(5, (26, 27), 1, 8, (5, 5), (1, 1), Valid), false);
    case("k3 s1 same 20x20x1 -> 40, batch 7", c(7, (20, 20), 1, 40, (3, 3), (1, 1), Same), false);
    case("k3 s1 same 19x21x1 -> 36, batch 7", c(7, (19, 21), 1, 36, (3, 3), (1, 1), Same), false);
    // Images larger than the weight gradient's cache block (one per block), whose rectangles
    // of output pixels end mid-step.
    case("k3 s1 same 23x23x40 -> 36", c(3, (23, 23), 40, 36, (3, 3), (1, 1), Same), false);
    let uneven = Explicit { top: 1, bottom: 0, left: 2, right: 1 };
    case("k3x2 s2x1 explicit 6x5x4 -> 6", c(2, (6, 5), 4, 6, (3, 2), (2, 1), uneven), false);
    case("k1 s2 valid 5x5x8 -> 9", c(2, (5, 5), 8, 9, (1, 1), (2, 2), Valid), false);
    case("k5 s1 valid 5x5x16 -> 24 (1x1 out)", c(9, (5, 5), 16, 24, (5, 5), (1, 1), Valid), false);
    // Transposed: 'same', 'valid' with rows that no input reaches, output_padding, and the
    // phases of stride 2 and 3.
    let t_to = |hw, ch: (usize, usize), k, s, pad, extra, size| {
        t(2, hw, ch.0, ch.1, (k, k), (s, s), pad, extra, size)
    };
    case("T k4 s2 same 3x3x5 -> 4", t_to((3, 3), (5, 4), 4, 2, Same, (0, 0), None), true);
    case(
        "T k5 s2 same 2x2x3 -> 3x3x6",
        t_to((2, 2), (3, 6), 5, 2, Same, (0, 0), Some((3, 3))),
        true,
    );
    case(
        "T k5 s2 valid 3x3x4 -> 10x10x2",
        t_to((3, 3), (4, 2), 5, 2, Valid, (0, 0), Some((10, 10))),
        true,
    );
    case("T k3 s2 same 3x4x8 -> 4, +(1,1)", t_to((3, 4), (8, 4), 3, 2, Same, (1, 1), None), true);
    case("T k3 s3 valid 3x3x4 -> 20", t_to((3, 3), (4, 20), 3, 3, Valid, (0, 0), None), true);
    let batch_20 = t(20, (2, 3), 34, 24, (4, 4), (2, 2), Same, (0, 0), None);
    case("T k4 s2 same 2x3x34 -> 24, batch 20", batch_20, true);
    case("T k2 s2 same 1x1x8 -> 2x2x1", t_to((1, 1), (8, 1), 2, 2, Same, (0, 0), None), true);
    // From one channel at stride 1: the forward gathers one channel (rows from one channel),
    // the input gradient is a one-channel rows conv through an activation's derivative, read 4
    // outputs at a time where the rows are whole quads.
    case("T k3 s1 same 5x8x1 -> 6", t_to((5, 8), (1, 6), 3, 1, Same, (0, 0), None), true);
    case("T k4 s1 same 6x7x1 -> 5", t_to((6, 7), (1, 5), 4, 1, Same, (0, 0), None), true);
    case("T k5 s1 same 4x7x1 -> 3", t_to((4, 7), (1, 3), 5, 1, Same, (0, 0), None), true);
    // To one channel at stride 1: the input gradient gathers one channel (rows from one
    // channel, through an activation's derivative in the second).
    case("T k5 s1 valid 4x5x7 -> 1", t_to((4, 5), (7, 1), 5, 1, Valid, (0, 0), None), true);
    case("T k3 s1 same 5x6x8 -> 1", t_to((5, 6), (8, 1), 3, 1, Same, (0, 0), None), true);
    // A selection of the presets' layers, at batch 2.
    let keep = [0, 2, 4, 8, 12, 13, 14, 15, 18];
    for (i, (name, g, is_transposed)) in preset_shapes(2).into_iter().enumerate() {
        if keep.contains(&i) {
            cases.push((format!("preset {name}"), g, is_transposed));
        }
    }
    let calls = calls(&mut common::rng(1), &cases);
    let _variant = ONE_CHANNEL_VARIANT.lock().unwrap_or_else(|e| e.into_inner());
    common::on_every_gpu("conv_matches_cpu_twin", |gpu| {
        let mut failures: Vec<String> =
            calls.iter().filter_map(|call| call.check(gpu).err()).collect();
        // The one-channel convs again on their other variant, the GEMM tiles (tune.rs chooses
        // between the two per adapter).
        let rows = gpu.variants();
        gpu.set_variants(Variants { one_channel_conv: Variant::Tiles, ..rows });
        let one_channel = calls.iter().filter(|c| c.g.in_c == 1 || c.g.out_c == 1);
        failures
            .extend(one_channel.filter_map(|call| call.check(gpu).err()).map(|e| e + " (tiles)"));
        // Again with many slices (tune.rs chooses few or many per adapter): the weight
        // gradients, cut into many batch slices, and the gathers that many slices split (32
        // channels or more).
        gpu.set_variants(Variants { slices: Variant::ManySlices, ..rows });
        let sliced = calls.iter().filter(|c| c.kernel.gathered(&c.g).is_none_or(|n| n >= 32));
        failures
            .extend(sliced.filter_map(|call| call.check(gpu).err()).map(|e| e + " (many slices)"));
        // Every conv again on the workgroup-memory tiles (tune.rs's Tiled, for discrete GPUs;
        // passes of 16 output columns or fewer keep the other kernels). A CPU adapter compiles
        // those pipelines slowly (GL 9 s each), so there only the cases of TILED_ON_CPU.
        let few_on_cpu =
            |c: &&Call| !gpu.caps.cpu || TILED_ON_CPU.iter().any(|name| c.name.ends_with(name));
        let (conv, conv_weight_grad) = (Variant::Tiled, Variant::Tiled);
        gpu.set_variants(Variants { conv, conv_weight_grad, ..rows });
        let tiled = calls.iter().filter(few_on_cpu);
        failures.extend(tiled.filter_map(|call| call.check(gpu).err()).map(|e| e + " (tiled)"));
        // Again reading operands through quad views of their buffers rather than texture
        // mirrors (tune.rs's Buffers reads, off CPU adapters), on the chosen kernels: on CPU
        // adapters only the cases of TILED_ON_CPU on Vulkan, for the time their pipelines take
        // to compile (shader_backends.rs checks the rewritten modules' GLSL).
        gpu.set_variants(Variants { reads: Variant::Buffers, ..rows });
        let views = calls.iter().filter(few_on_cpu);
        if gpu.quad_views() && (!gpu.caps.cpu || gpu.info.backend == wgpu::Backend::Vulkan) {
            failures.extend(
                views.filter_map(|call| call.check(gpu).err()).map(|e| e + " (quad views)"),
            );
        }
        gpu.set_variants(rows);
        assert!(failures.is_empty(), "on {}:\n{}", gpu.describe(), failures.join("\n"));
    });
}

/// The cases the tiled conv kernels are checked on where a CPU adapter runs them: channels
/// off multiples of 4 (scalar gathers) through a bias and activation, with a batch and
/// channels that end mid-tile and a weight gradient accumulating over batch slices; whole
/// quads of channels (vector gathers), both gathers split in two (the input gradient's second
/// split with a quad past its 36 channels); a transposed conv by the phases of stride 2,
/// through a bias and activation, its forward a scalar gather of 34 channels in two splits.
const TILED_ON_CPU: [&str; 3] = [
    " k3 s2 same 5x5x6 -> 40, batch 37",
    " k3 s1 same 23x23x40 -> 36",
    " T k4 s2 same 2x3x34 -> 24, batch 20",
];

/// Held by the tests that switch one-channel convs between rows and tiles, or need the rows:
/// the tests of this file share their devices.
static ONE_CHANNEL_VARIANT: Mutex<()> = Mutex::new(());

/// Past 65535 workgroups in a dimension the grid folds: the subgroup gather's flat count into
/// y (65792 tiles, with the 17 channels that choose it), the portable kernels' row blocks into z
/// (4.2M two-channel tiles, 64 to a workgroup), and the one-channel rows kernels' invocations
/// into y (8.4M rows of one pixel, two to an invocation). Two input channels keep the first two off the one-channel
/// rows kernels.
#[test]
fn conv_covers_folded_grids() {
    let _rows = ONE_CHANNEL_VARIANT.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = common::rng(2);
    let wide = conv(1, (257, 256), (2, 17), 1, 1, Padding::Same);
    let wide = Call::new(&mut rng, "1x1 over 257x256x2 pixels to 17", Conv2d, wide, true);
    let narrow = conv(1, (2048, 2049), (2, 2), 1, 1, Padding::Same);
    let narrow = Call::new(&mut rng, "1x1 over 2048x2049x2 pixels to 2", Conv2d, narrow, true);
    let rows = conv(1, (65536 * 128 + 1, 1), (1, 1), 1, 1, Padding::Same);
    let rows = Call::new(&mut rng, "1x1 over 8388609x1x1 pixels to 1", Conv2d, rows, true);
    let grid = |ops: &[Op]| match ops {
        [Op::Dispatch(d)] => d.workgroups,
        _ => panic!("one dispatch expected, got {}", ops.len()),
    };
    common::on_every_gpu("conv, folded grids", |gpu| {
        let workgroups = grid(&wide.dispatch(gpu).0);
        if gpu.caps.subgroup_size.is_some() {
            assert!(workgroups[1] > 1, "{}: grid {workgroups:?}", wide.name);
        }
        wide.check(gpu).unwrap();
        let workgroups = grid(&narrow.dispatch(gpu).0);
        assert!(workgroups[2] > 1, "{}: grid {workgroups:?}", narrow.name);
        narrow.check(gpu).unwrap();
        let workgroups = grid(&rows.dispatch(gpu).0);
        assert!(workgroups[1] > 1, "{}: grid {workgroups:?}", rows.name);
        rows.check(gpu).unwrap();
    });
}

/// The pixel-quad path's filter kernels against their CPU twins, and what the twins mean: the
/// widened filter over the pixel-quad geometry is the same conv, and folding is widening's
/// adjoint (so the folded gradient is the filter's gradient).
#[test]
fn pixel_quad_filters_match_cpu_twins() {
    use gan_gpu::check::ELEMENTWISE;
    use gan_gpu::kernels::conv::pixel_quad_geometry;
    let mut rng = common::rng(3);
    for (hw, in_c, k, s) in [((5, 8), 3, 7, 1), ((6, 16), 5, 3, 2), ((4, 12), 1, 4, 3)] {
        let g = conv(2, hw, (in_c, 1), k, s, Padding::Same);
        let quad = pixel_quad_geometry(&g).unwrap();
        let name = format!("{hw:?}x{in_c} k{k} s{s}");
        let x = common::random_vec(&mut rng, g.input_len(), -1.0, 1.0);
        let w = common::random_vec(&mut rng, g.weight_len(), -1.0, 1.0);
        let dwide = common::random_vec(&mut rng, quad.weight_len(), -1.0, 1.0);
        let mut wide = vec![0.0; quad.weight_len()];
        cpu::conv::widen_filter_to_pixel_quads(&w, &mut wide, &g);
        let mut dw = vec![0.0; g.weight_len()];
        cpu::conv::fold_pixel_quad_filter_grad(&dwide, &mut dw, &g, false);
        // Folding onto earlier sums adds to them.
        let earlier = common::random_vec(&mut rng, g.weight_len(), -1.0, 1.0);
        let mut dw_plus = earlier.clone();
        cpu::conv::fold_pixel_quad_filter_grad(&dwide, &mut dw_plus, &g, true);
        let (mut y, mut y_quad) = (vec![0.0; g.output_len()], vec![0.0; g.output_len()]);
        cpu::conv::conv2d(&x, &w, None, &mut y, &g, None);
        cpu::conv::conv2d(&x, &wide, None, &mut y_quad, &quad, None);
        compare(&format!("{name}: quad conv"), &y_quad, &y, REDUCTION).unwrap();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum();
        let (widened, folded): (f64, f64) = (dot(&wide, &dwide), dot(&w, &dw));
        assert!((widened - folded).abs() < 1e-4 * widened.abs().max(1.0), "{name}: adjoint");
        common::on_every_gpu("pixel-quad filters", |gpu| {
            let (gw, gdwide) = (gpu.upload(&w), gpu.upload(&dwide));
            let gwide = gpu.upload(&common::poison(wide.len()));
            let gdw = gpu.upload(&common::poison(dw.len()));
            let gdw_plus = gpu.upload(&earlier);
            gpu.run(&[
                kernels::conv::widen_filter_to_pixel_quads(gpu, &gw, &gwide, &g).into(),
                kernels::conv::fold_pixel_quad_filter_grad(gpu, &gdwide, &gdw, &g, false).into(),
                kernels::conv::fold_pixel_quad_filter_grad(gpu, &gdwide, &gdw_plus, &g, true)
                    .into(),
            ]);
            compare(&format!("{name}: widen"), &gpu.read(&gwide), &wide, ELEMENTWISE).unwrap();
            compare(&format!("{name}: fold"), &gpu.read(&gdw), &dw, ELEMENTWISE).unwrap();
            let got = gpu.read(&gdw_plus);
            compare(&format!("{name}: fold +="), &got, &dw_plus, ELEMENTWISE).unwrap();
        });
    }
}

/// NCHW [n, c, h, w] to NHWC.
fn nhwc(v: &[f32], shape: &[usize]) -> Vec<f32> {
    let [n, c, h, w] = shape.try_into().unwrap();
    let mut out = vec![0.0; v.len()];
    for (i, &x) in v.iter().enumerate() {
        let (b, ch, y, xx) = (i / (c * h * w), i / (h * w) % c, i / w % h, i % w);
        out[((b * h + y) * w + xx) * c + ch] = x;
    }
    assert_eq!(n * c * h * w, v.len());
    out
}

/// PyTorch weights [out, in, kh, kw] to HWIO [kh, kw, in, out]. A transposed conv's weights
/// [in_t, out_t, kh, kw] are the same tensor for the conv it is the adjoint of, whose output
/// is the transposed conv's input, so they convert the same way.
fn hwio(v: &[f32], shape: &[usize]) -> Vec<f32> {
    let [cout, cin, kh, kw] = shape.try_into().unwrap();
    let mut out = vec![0.0; v.len()];
    for (i, &x) in v.iter().enumerate() {
        let (co, ci, y, xx) = (i / (cin * kh * kw), i / (kh * kw) % cin, i / kw % kh, i % kw);
        out[((y * kw + xx) * cin + ci) * cout + co] = x;
    }
    out
}

/// The fixtures' case table (kept in the safetensors header, as ops.json has it).
fn fixture_cases() -> serde_json::Value {
    let path = std::env::var("GAN_GPU_FIXTURES").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/ops.safetensors").into()
    });
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("fixtures at {path}: {e}"));
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let table = &metadata.metadata().as_ref().expect("fixture metadata")["cases"];
    serde_json::from_str(table).unwrap()
}

/// The conv_* and convt_* fixtures: Conv2dGeometry gives PyTorch's sizes and pads, and every
/// CPU twin gives its values: y, gx, gw, and gb by the bias gradient over all pixels.
#[test]
fn cpu_twins_match_pytorch() {
    let cases = fixture_cases();
    let mut checked = 0;
    for (case, spec) in cases.as_object().unwrap() {
        let is_transposed = match spec["op"].as_str() {
            Some("conv2d") => false,
            Some("conv_transpose2d") => true,
            _ => continue,
        };
        let get = |t: &str| common::fixture(&format!("{case}.{t}"));
        let (x, xs) = get("x");
        let (w, ws) = get("w");
        let (b, _) = get("b");
        let (y, ys) = get("y");
        let (gy, _) = get("gy");
        let (gx, _) = get("gx");
        let (gw, _) = get("gw");
        let (gb, _) = get("gb");
        let num = |key: &str| spec[key].as_u64().unwrap_or_else(|| panic!("{case}.{key}")) as usize;
        let (stride, size_in, size_out) = (num("stride"), num("in"), num("out"));
        let padding = match spec["padding"].as_str() {
            Some("same") => Padding::Same,
            Some("valid") => Padding::Valid,
            other => panic!("{case}: padding {other:?}"),
        };
        let (batch, k) = (xs[0], ws[2]);
        assert_eq!((xs[2], ys[2]), (size_in, size_out), "{case}: fixture shapes");
        let g = if is_transposed {
            let g = Conv2dGeometry::transposed(
                batch,
                (size_in, size_in),
                xs[1],
                ys[1],
                (k, k),
                (stride, stride),
                padding,
                (0, 0),
                Some((size_out, size_out)),
            )
            .unwrap();
            assert_eq!(g.pad_top, num("crop_before"), "{case}: crop before");
            assert_eq!((g.out_h - 1) * stride + k, num("full"), "{case}: full size");
            g
        } else {
            let g = conv(batch, (size_in, size_in), (xs[1], ys[1]), k, stride, padding);
            let pad_after = (g.out_h - 1) * stride + k - size_in - g.pad_top;
            assert_eq!((g.pad_top, pad_after), (num("pad_before"), num("pad_after")), "{case}");
            g
        };
        assert_eq!(
            (g.in_h, g.out_h),
            if is_transposed { (size_out, size_in) } else { (size_in, size_out) }
        );
        let w = hwio(&w, &ws);
        let (x, gy) = (nhwc(&x, &xs), nhwc(&gy, &ys));
        let run =
            |kernel: Kernel, a: &[f32], b2: &[f32], bias: Option<&[f32]>, want: &[f32], what| {
                let mut got = vec![0.0; want.len()];
                kernel.cpu(a, b2, bias, &mut got, &g, (None, false));
                compare(&format!("{case}.{what}"), &got, want, REDUCTION).unwrap();
            };
        let [forward, data, weight] = if is_transposed { TRANSPOSED } else { CONV };
        run(forward, &x, &w, Some(&b), &nhwc(&y, &ys), "y");
        run(data, &gy, &w, None, &nhwc(&gx, &xs), "gx");
        run(weight, &x, &gy, None, &hwio(&gw, &ws), "gw");
        let mut got_gb = vec![0.0; gb.len()];
        cpu::bias::bias_grad(&gy, &mut got_gb, gy.len() / gb.len(), gb.len(), false);
        compare(&format!("{case}.gb"), &got_gb, &gb, REDUCTION).unwrap();
        checked += 1;
    }
    assert_eq!(checked, 13, "conv and transposed conv fixtures");
}

/// Keras's sizes and the errors for convs that cannot be.
#[test]
fn geometry_follows_keras() {
    use Padding::{Same, Valid};
    // The generator of seed 002: 2 -> 3 -> 6 -> 12 ('same', output sizes as given) -> 28
    // ('valid', one row past (12-1)*2 + 5 = 27, which output_padding reaches too).
    let t = |n, pad, extra: usize, size| {
        Conv2dGeometry::transposed(1, (n, n), 4, 4, (5, 5), (2, 2), pad, (extra, extra), size)
    };
    assert_eq!(t(2, Same, 0, Some((3, 3))).unwrap().in_h, 3);
    assert_eq!(t(3, Same, 0, None).unwrap().in_h, 6);
    assert_eq!(t(6, Same, 0, None).unwrap().in_w, 12);
    let to_28 = t(12, Valid, 0, Some((28, 28))).unwrap();
    assert_eq!((to_28.in_h, to_28.pad_top, to_28.out_h), (28, 0, 12));
    assert_eq!(t(12, Valid, 1, None).unwrap(), to_28);
    assert_eq!(t(12, Valid, 0, None).unwrap().in_h, 27);
    // Not the adjoint of any conv: 'same' from 2 pixels cannot give 5, nor 'valid' 12 give 30.
    assert!(t(2, Same, 0, Some((5, 5))).is_err());
    assert!(t(12, Valid, 0, Some((30, 30))).is_err());
    assert!(t(3, Same, 2, None).is_err(), "output_padding must stay below the stride");
    let c = |n, k, pad| Conv2dGeometry::conv(1, (n, n), 1, 1, (k, k), (1, 1), pad);
    assert!(c(4, 5, Valid).is_err(), "a 5x5 kernel does not fit 4x4 pixels");
    assert_eq!(c(4, 5, Same).unwrap().out_h, 4);
    assert!(Conv2dGeometry::conv(0, (4, 4), 1, 1, (3, 3), (1, 1), Same).is_err());
}

/// An independent f64 conv for the finite differences: L = Σ gy ⊙ conv(x, w).
fn loss(x: &[f64], w: &[f64], gy: &[f32], g: &Conv2dGeometry) -> f64 {
    let mut l = 0.0;
    for n in 0..g.batch {
        for oh in 0..g.out_h {
            for ow in 0..g.out_w {
                for co in 0..g.out_c {
                    let mut y = 0.0;
                    for kh in 0..g.kernel_h {
                        for kw in 0..g.kernel_w {
                            let ih = (oh * g.stride_h + kh) as isize - g.pad_top as isize;
                            let iw = (ow * g.stride_w + kw) as isize - g.pad_left as isize;
                            if ih < 0 || iw < 0 || ih >= g.in_h as isize || iw >= g.in_w as isize {
                                continue;
                            }
                            let pixel = (n * g.in_h + ih as usize) * g.in_w + iw as usize;
                            for ci in 0..g.in_c {
                                let wi = ((kh * g.kernel_w + kw) * g.in_c + ci) * g.out_c + co;
                                y += x[pixel * g.in_c + ci] * w[wi];
                            }
                        }
                    }
                    l += gy[((n * g.out_h + oh) * g.out_w + ow) * g.out_c + co] as f64 * y;
                }
            }
        }
    }
    l
}

/// dL/dx = conv2d_backward_data(gy, w) and dL/dw = conv2d_backward_weight(x, gy), checked by
/// central differences on a strided, unevenly padded conv.
#[test]
fn cpu_twin_gradients_match_finite_differences() {
    let g = conv(2, (5, 4), (2, 3), 3, 2, Padding::Same);
    assert_eq!((g.out_h, g.out_w, g.pad_top, g.pad_left), (3, 2, 1, 0));
    let mut rng = common::rng(7);
    let x = common::random_vec(&mut rng, g.input_len(), -1.0, 1.0);
    let w = common::random_vec(&mut rng, g.weight_len(), -1.0, 1.0);
    let gy = common::random_vec(&mut rng, g.output_len(), -1.0, 1.0);
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    let h = 1e-3;
    let numeric = |of_x: bool| -> Vec<f32> {
        let len = if of_x { x64.len() } else { w64.len() };
        (0..len)
            .map(|i| {
                let at = |d: f64| {
                    let (mut x, mut w) = (x64.clone(), w64.clone());
                    if of_x {
                        x[i] += d
                    } else {
                        w[i] += d
                    }
                    loss(&x, &w, &gy, &g)
                };
                ((at(h) - at(-h)) / (2.0 * h)) as f32
            })
            .collect()
    };
    let mut dx = vec![0.0; g.input_len()];
    cpu::conv::conv2d_backward_data(&gy, &w, None, &mut dx, &g, None);
    compare("dL/dx", &dx, &numeric(true), REDUCTION).unwrap();
    let mut dw = vec![0.0; g.weight_len()];
    cpu::conv::conv2d_backward_weight(&x, &gy, &mut dw, &g, false);
    compare("dL/dw", &dw, &numeric(false), REDUCTION).unwrap();
}

/// GFLOP/s (2·batch·out_h·out_w·kh·kw·in_c·out_c per pass, padding taps included) of every
/// pass of every preset layer at batch 128, on every adapter, each validated first at batch 2:
/// the same pipelines, where the CPU twin at batch 128 would take minutes. GAN_GPU_CONV_SPEED=TEXT
/// keeps the layers and passes whose name contains TEXT.
/// Run with `cargo test --release --test conv -- --ignored --nocapture conv_speed`.
#[test]
#[ignore]
fn conv_speed() {
    let mut rng = common::rng(3);
    let named: Vec<(String, Conv2dGeometry, bool)> =
        preset_shapes(2).into_iter().map(|(n, g, t)| (n.to_string(), g, t)).collect();
    let checks = calls(&mut rng, &named);
    let timed: Vec<(Kernel, Conv2dGeometry, bool)> = preset_shapes(128)
        .into_iter()
        .flat_map(|(_, g, t)| (if t { TRANSPOSED } else { CONV }).map(|k| (k, g, true)))
        .collect();
    for gpu in common::gpus() {
        let variant = gpu.variants().conv.name();
        println!("\n{} [{variant}]", gpu.describe());
        // Median and best of 3: the best is what an otherwise idle machine gives.
        println!("{:<56} {:>9} {:>9} {:>9}", "layer, pass", "ms", "GFLOP/s", "best");
        let only = std::env::var("GAN_GPU_CONV_SPEED").unwrap_or_default();
        for (check, &(kernel, g, bias)) in checks.iter().zip(&timed) {
            if !check.name.contains(&only) {
                continue;
            }
            check.check(gpu).unwrap();
            let [a_len, b_len, out_len] = kernel.lens(&g);
            let a = gpu.upload(&common::random_vec(&mut rng, a_len, -1.0, 1.0));
            let b = gpu.upload(&common::random_vec(&mut rng, b_len, -1.0, 1.0));
            let bias = kernel.bias_len(&g).filter(|_| bias).map(|n| gpu.zeros(n));
            let out = gpu.zeros(out_len);
            let d = kernel.gpu(gpu, &a, &b, bias.as_ref(), &out, &g, (None, false));
            let flops = 2.0
                * (g.batch * g.out_h * g.out_w * g.kernel_h * g.kernel_w * g.in_c * g.out_c) as f64;
            // Enough dispatches per submit to take ~0.2 s, so the submit cost vanishes.
            let t = Instant::now();
            gpu.run(&d);
            let reps = ((0.2 / t.elapsed().as_secs_f64()) as usize).clamp(1, 100);
            let ops: Vec<Op> = (0..reps).flat_map(|_| d.clone()).collect();
            let mut times: Vec<f64> = (0..3)
                .map(|_| {
                    let t = Instant::now();
                    gpu.run(&ops);
                    t.elapsed().as_secs_f64() / reps as f64
                })
                .collect();
            times.sort_by(f64::total_cmp);
            println!(
                "{:<56} {:>9.2} {:>9.2} {:>9.2}",
                check.name.replacen(" preset", "", 1),
                times[1] * 1e3,
                flops / times[1] / 1e9,
                flops / times[0] / 1e9
            );
        }
    }
}
