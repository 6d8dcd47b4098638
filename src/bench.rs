//! `gan-gpu bench --kernel`: each kernel family checked against its CPU twin and then timed on
//! the shapes the presets run (or one given with `--shape`), next to the device's measured
//! ceilings: copy bandwidth and the best matmul or conv rate.
//!
//! Timing: one submission replays the same dispatch many times, timed by GPU timestamp queries
//! around it where the device has them (`timer: "timestamp"`), else by the wall clock around
//! submit and wait (`"wall"`); the median of a few such submissions, divided by the calls in
//! each, is `ms`.

use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::check::{self, Tolerance};
use crate::cpu;
use crate::gpu::{Gpu, Op, Staging, Tensor, record, record_timed};
use crate::kernels::conv::{Conv2dGeometry, Padding};
use crate::kernels::optim::RmsPropParams;
use crate::kernels::{
    Activation, AdamParams, Fused, StepUniform, activation, batchnorm, conv, gather, loss, matmul,
    optim, pool, rng,
};

/// The kernel families `--kernel` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Matmul,
    Conv,
    ConvTranspose,
    Batchnorm,
    Pool,
    Upsample,
    Activations,
    Loss,
    Adam,
    Rmsprop,
    Rng,
    Gather,
}

impl Kernel {
    pub const ALL: [Kernel; 12] = [
        Kernel::Matmul,
        Kernel::Conv,
        Kernel::ConvTranspose,
        Kernel::Batchnorm,
        Kernel::Pool,
        Kernel::Upsample,
        Kernel::Activations,
        Kernel::Loss,
        Kernel::Adam,
        Kernel::Rmsprop,
        Kernel::Rng,
        Kernel::Gather,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Matmul => "matmul",
            Kernel::Conv => "conv",
            Kernel::ConvTranspose => "conv-transpose",
            Kernel::Batchnorm => "batchnorm",
            Kernel::Pool => "pool",
            Kernel::Upsample => "upsample",
            Kernel::Activations => "activations",
            Kernel::Loss => "loss",
            Kernel::Adam => "adam",
            Kernel::Rmsprop => "rmsprop",
            Kernel::Rng => "rng",
            Kernel::Gather => "gather",
        }
    }

    /// A kernel name, or `all` for every one.
    pub fn parse_list(s: &str) -> Result<Vec<Kernel>> {
        if s == "all" {
            return Ok(Kernel::ALL.to_vec());
        }
        match Kernel::ALL.iter().find(|k| k.name() == s) {
            Some(&k) => Ok(vec![k]),
            None => {
                let names: Vec<&str> = Kernel::ALL.iter().map(|k| k.name()).collect();
                bail!("unknown kernel {s:?}: one of {}, or all", names.join(", "))
            }
        }
    }

    /// The shapes the presets run: batch sizes as the presets have them for the dense layers
    /// and optimizers, batch 16 for the convolutional layers (so that `--kernel all` takes
    /// about a minute on a CPU adapter).
    pub fn default_shapes(self) -> &'static [&'static str] {
        match self {
            // mlp at batch 128: G dense 100->128 and 128->784 (with their bias and activation),
            // D dense 784->128 and 128->1 on 128 real + 128 fake images, dX (dY·Wᵀ, through the
            // derivative of the activation before the layer) and dW (Xᵀ·dY); dcgan's G dense 100->6272 at batch 256 and D's 3136->1 on 256 images;
            // dcgan-upsample's G dense 100->12544 at 256 and D's 8192->1 on 512 images;
            // dcgan-avgpool's D dense 256->32->1 at 16.
            Kernel::Matmul => &[
                "128,128,100,bias,leaky_relu",
                "128,784,128,bias,tanh",
                "128,128,784,tb,leaky_relu,grad",
                "128,784,128,ta",
                "256,128,784,bias,leaky_relu",
                "128,784,128,tb,tanh,grad",
                "784,128,256,ta",
                "256,1,128,bias",
                "256,6272,100,bias,leaky_relu",
                "256,1,3136,bias",
                "256,12544,100,bias",
                "512,1,8192,bias",
                "16,32,256,bias,relu",
                "16,1,32,bias",
            ],
            // dcgan's D (3x3 stride 2) and G's last conv (7x7), dcgan-avgpool's D (5x5 valid),
            // dcgan-upsample's G (5x5 after each upsampling, then to 32 and 1 channels) and D
            // (5x5 stride 2, 2, 2, 1).
            Kernel::Conv => &[
                "16,28,28,1,64,3,2,same,bias,leaky_relu",
                "16,14,14,64,64,3,2,same,bias,leaky_relu",
                "16,28,28,128,1,7,1,same,bias,sigmoid",
                "16,28,28,1,8,5,1,valid,bias,relu",
                "16,12,12,8,16,5,1,valid,bias,relu",
                "16,14,14,256,128,5,1,same,bias",
                "16,28,28,128,64,5,1,same,bias",
                "16,28,28,64,32,5,1,same,bias",
                "16,28,28,32,1,5,1,same,bias,sigmoid",
                "16,28,28,1,64,5,2,same,bias,leaky_relu",
                "16,14,14,64,128,5,2,same,bias,leaky_relu",
                "16,7,7,128,256,5,2,same,bias,leaky_relu",
                "16,4,4,256,512,5,1,same,bias,leaky_relu",
            ],
            // dcgan's G (4x4 stride 2 to 14 and 28) and dcgan-avgpool's G (5x5 stride 2 to 3, 6,
            // 12, 28).
            Kernel::ConvTranspose => &[
                "16,7,7,128,128,4,2,same,bias,leaky_relu",
                "16,14,14,128,128,4,2,same,bias,leaky_relu",
                "16,2,2,25,256,5,2,same,3",
                "16,6,6,128,64,5,2,same,12",
                "16,12,12,64,1,5,2,valid,28",
            ],
            // dcgan-upsample's G: dense 12544 units, then 14x14x128, 28x28x64; dcgan-avgpool's
            // G 12x12x64.
            Kernel::Batchnorm => &["16,12544", "3136,128", "12544,64", "2304,64"],
            // dcgan-avgpool's D after its two convs.
            Kernel::Pool => &["16,24,24,8", "16,8,8,16"],
            // dcgan-upsample's G.
            Kernel::Upsample => &["16,7,7,256", "16,14,14,128"],
            // mlp's hidden and output layers at batch 128, dcgan's G at batch 16.
            Kernel::Activations => &[
                "16384,leaky_relu",
                "100352,tanh",
                "200704,leaky_relu",
                "12544,sigmoid",
                "16384,relu",
            ],
            // D's logits: a batch of 128, and dcgan's 256 fakes plus reals; the classifier's
            // 10 logits at its training batch of 32 and for 1000 images being scored.
            Kernel::Loss => &["128", "256", "512", "32,10", "1000,10"],
            // The largest parameter tensors: mlp's 784x128 and 100x128, dcgan's 100x6272 and
            // 4x4x128x128.
            Kernel::Adam => &["100352", "12800", "627200", "262144"],
            // dcgan-upsample's D: 5x5x256x512 and 5x5x64x128.
            Kernel::Rmsprop => &["3276800", "204800"],
            // Noise: mlp's 128x100 uniform, dcgan's 256x100 normal, dropout of 16x7x7x256.
            Kernel::Rng => &["12800,uniform", "25600,normal", "200704,dropout"],
            // A batch of MNIST digits: 128 and 256 rows of 784 bytes.
            Kernel::Gather => &["128,784", "256,784"],
        }
    }
}

/// `--shape` syntax per kernel, for the CLI's help.
pub const SHAPE_HELP: &str = "One shape for the kernel (default: the shapes the presets run):
  matmul          M,N,K[,ta][,tb][,bias][,ACT][,grad]   C[M,N] = act(op(A)·op(B) + bias); ta: A
                                    stored [K,M]; tb: B stored [N,K]; ACT as for activations;
                                    grad: times act' instead (an input gradient through ACT)
  conv            B,H,W,C,K,F,S,same|valid[,bias][,ACT]   B images HxWxC, K filters FxF,
                                    stride S; times forward (with bias and ACT), dx and dw
  conv-transpose  B,H,W,C,K,F,S,same|valid[,O][,bias][,ACT]   input HxWxC to K channels (OxO
                                    when given); times forward (with bias and ACT), dx and dw
  batchnorm       ROWS,COLS         training forward and backward (3 dispatches each)
  pool            B,H,W,C           2x2 average pooling, forward and backward
  upsample        B,H,W,C           2x upsampling, forward and backward
  activations     LEN,relu|leaky_relu|tanh|sigmoid   forward and backward
  loss            N[,C]             sigmoid cross-entropy with logits and its gradient; with C,
                                    softmax cross-entropy of N rows of C classes, and softmax
  adam            LEN               one Adam step
  rmsprop         LEN               one RMSprop step
  rng             LEN,uniform|normal|dropout
  gather          COUNT,ROW_LEN     COUNT rows of ROW_LEN bytes, scaled to floats";

/// One output of a case and what its CPU twin says it should hold.
pub struct Check {
    pub name: String,
    pub got: Tensor,
    pub want: Vec<f32>,
    pub tol: Tolerance,
    /// (row length, rows): `want` holds only these rows of `got`, where the CPU twin would take
    /// minutes over the whole output.
    pub rows: Option<(usize, Vec<usize>)>,
}

/// One timed thing: the recorded work of one call, its outputs with their expected values,
/// and the work it does (FLOPs and the fewest bytes it must move).
pub struct Case {
    pub kernel: Kernel,
    pub shape: String,
    pub ops: Vec<Op>,
    pub checks: Vec<Check>,
    pub flops: f64,
    pub bytes: f64,
}

/// What `gan-gpu bench --kernel` prints per line.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub kernel: String,
    pub shape: String,
    /// Milliseconds per call.
    pub ms: f64,
    pub gflops: f64,
    /// The fewest bytes the call must read and write, per second.
    pub gbps: f64,
    /// gflops and gbps as fractions of the device's ceilings.
    pub flops_share: f64,
    pub bandwidth_share: f64,
    /// Calls recorded in each timed submission.
    pub calls: usize,
    pub timer: &'static str,
}

/// The device's measured ceilings.
#[derive(Clone, Copy, Debug)]
pub struct Ceilings {
    pub gflops: f64,
    pub gbps: f64,
}

/// Submissions timed per case; `ms` is their median.
const REPETITIONS: usize = 5;
/// Each timed submission aims for this long, so that submission overhead is amortized.
const TARGET_SECONDS: f64 = 0.05;
const MAX_CALLS: usize = 1000;

/// Runs `case` once, compares each output with the CPU twin's (an error, without timing, if
/// any disagrees), then times it.
pub fn measure(gpu: &Gpu, case: &Case, ceilings: Option<Ceilings>) -> Result<Row> {
    measure_for(gpu, case, ceilings, 0.0)
}

/// [`measure`], timing for at least `seconds` (more submissions, the same median): steadier
/// figures, and time for a profiler to attach.
pub fn measure_for(
    gpu: &Gpu,
    case: &Case,
    ceilings: Option<Ceilings>,
    seconds: f64,
) -> Result<Row> {
    check_and_time(gpu, case, ceilings, false, seconds)
}

/// [`measure_for`], reporting the fastest repetition when `best` and the median otherwise.
fn check_and_time(
    gpu: &Gpu,
    case: &Case,
    ceilings: Option<Ceilings>,
    best: bool,
    seconds: f64,
) -> Result<Row> {
    gpu.run(&case.ops);
    for c in &case.checks {
        let mut got = gpu.read(&c.got);
        if let Some((len, rows)) = &c.rows {
            got = rows_of(&got, *len, rows);
        }
        check::compare(
            &format!("{} {} {}", case.kernel.name(), case.shape, c.name),
            &got,
            &c.want,
            c.tol,
        )
        .map_err(anyhow::Error::msg)
        .context("the GPU kernel disagrees with its CPU twin; not timing it")?;
    }
    let (ms, calls, timer) = time_ops(gpu, &case.ops, best, seconds);
    Ok(row(case.kernel.name(), &case.shape, (ms, calls, timer), case.flops, case.bytes, ceilings))
}

fn row(
    kernel: &str,
    shape: &str,
    (ms, calls, timer): (f64, usize, &'static str),
    flops: f64,
    bytes: f64,
    ceilings: Option<Ceilings>,
) -> Row {
    let gflops = flops / ms / 1e6;
    let gbps = bytes / ms / 1e6;
    let share = |v: f64, c: f64| if c > 0.0 { v / c } else { 0.0 };
    Row {
        kernel: kernel.to_string(),
        shape: shape.to_string(),
        ms,
        gflops,
        gbps,
        flops_share: ceilings.map_or(0.0, |c| share(gflops, c.gflops)),
        bandwidth_share: ceilings.map_or(0.0, |c| share(gbps, c.gbps)),
        calls,
        timer,
    }
}

/// Milliseconds per call of `ops`, the calls per submission and the timer used: one untimed
/// run, then the median (the fastest when `best`, for ceilings) of [`REPETITIONS`] submissions
/// (more, until `seconds` have passed) of as many calls as fill [`TARGET_SECONDS`], each timed
/// by GPU timestamps where the device has them, else by the wall clock around submit and wait.
fn time_ops(gpu: &Gpu, ops: &[Op], best: bool, seconds: f64) -> (f64, usize, &'static str) {
    let start = Instant::now();
    gpu.run(ops);
    let once = start.elapsed().as_secs_f64();
    let calls = ((TARGET_SECONDS / once.max(1e-6)) as usize).clamp(1, MAX_CALLS);
    let repeated: Vec<Op> = ops.iter().cycle().take(ops.len() * calls).cloned().collect();
    let timer = if gpu.caps.timestamps { "timestamp" } else { "wall" };
    let one_submission = || {
        let ms = if gpu.caps.timestamps {
            timestamped_ms(gpu, &repeated)
        } else {
            let start = Instant::now();
            gpu.run(&repeated);
            start.elapsed().as_secs_f64() * 1e3
        };
        ms / calls as f64
    };
    let timing = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < REPETITIONS || timing.elapsed().as_secs_f64() < seconds {
        samples.push(one_submission());
    }
    samples.sort_by(f64::total_cmp);
    (samples[if best { 0 } else { samples.len() / 2 }], calls, timer)
}

/// Milliseconds between GPU timestamps written by empty compute passes before and after `ops`,
/// all in one submission.
fn timestamped_ms(gpu: &Gpu, ops: &[Op]) -> f64 {
    let queries = timestamp_queries(gpu, 2);
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    let mark = |encoder: &mut wgpu::CommandEncoder, begin: Option<u32>, end: Option<u32>| {
        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("bench timestamp"),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &queries,
                beginning_of_pass_write_index: begin,
                end_of_pass_write_index: end,
            }),
        });
    };
    mark(&mut encoder, Some(0), None);
    record(&mut encoder, ops);
    mark(&mut encoder, None, Some(1));
    let [t0, t1] = submit_and_read_timestamps(gpu, encoder, &queries, 2)[..] else {
        unreachable!()
    };
    t1.saturating_sub(t0) as f64 * gpu.queue.get_timestamp_period() as f64 / 1e6
}

fn timestamp_queries(gpu: &Gpu, count: u32) -> wgpu::QuerySet {
    gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("bench"),
        ty: wgpu::QueryType::Timestamp,
        count,
    })
}

/// Resolves the first `count` of `queries` at the end of `encoder`, submits it and returns
/// the raw timestamps once the GPU is done.
fn submit_and_read_timestamps(
    gpu: &Gpu,
    mut encoder: wgpu::CommandEncoder,
    queries: &wgpu::QuerySet,
    count: u32,
) -> Vec<u64> {
    let size = 8 * count as u64;
    let resolved = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("bench timestamps"),
        size,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let staging = Staging::new(gpu, size);
    encoder.resolve_query_set(queries, 0..count, &resolved, 0);
    staging.copy_from(&mut encoder, &resolved);
    gpu.queue.submit([encoder.finish()]);
    staging.map();
    let bytes = loop {
        gpu.wait();
        if let Some(bytes) = staging.try_take() {
            break bytes;
        }
        std::thread::yield_now();
    };
    bytemuck::pod_collect_to_vec(&bytes)
}

/// GPU time of one kind of kernel (dispatch label) within a recorded step.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelTime {
    pub kernel: &'static str,
    pub dispatches: usize,
    pub ms: f64,
    /// Of the summed time of the step's dispatches, each timed on its own. Not of the step's
    /// time in a run of steps: that is measured in another run, which on a shared machine can
    /// differ by a third, and the dispatches overlap in it.
    pub share: f64,
}

/// Dispatches timed per submission: a query set holds at most 4096 queries, two per dispatch.
const TIMED_DISPATCHES: usize = 2048;

/// Where the time of `ops` (a recorded step that takes `step_ms` in a run of steps) goes:
/// the median over [`REPETITIONS`] runs (one for steps over a second, where noise matters
/// less than the minutes) of each dispatch's time, summed by kernel, longest first, with each
/// kernel's share of the sum. Each dispatch is timed by GPU timestamps around its own compute
/// pass where the device has them, else by the wall clock around its own submission.
pub fn time_by_kernel(gpu: &Gpu, ops: &[Op], step_ms: f64) -> Vec<KernelTime> {
    let repetitions = if step_ms > 1000.0 { 1 } else { REPETITIONS };
    let runs: Vec<Vec<f64>> = (0..repetitions)
        .map(|_| if gpu.caps.timestamps { timestamped_each(gpu, ops) } else { wall_each(gpu, ops) })
        .collect();
    let labels = ops.iter().filter_map(|op| match op {
        Op::Dispatch(d) => Some(d.label),
        Op::Copy { .. } => None,
    });
    let mut by_kernel: Vec<KernelTime> = Vec::new();
    for (k, label) in labels.enumerate() {
        let mut samples: Vec<f64> = runs.iter().map(|run| run[k]).collect();
        samples.sort_by(f64::total_cmp);
        let ms = samples[samples.len() / 2];
        match by_kernel.iter_mut().find(|t| t.kernel == label) {
            Some(t) => {
                t.dispatches += 1;
                t.ms += ms;
            }
            None => by_kernel.push(KernelTime { kernel: label, dispatches: 1, ms, share: 0.0 }),
        }
    }
    let total: f64 = by_kernel.iter().map(|t| t.ms).sum();
    for t in &mut by_kernel {
        t.share = t.ms / total;
    }
    by_kernel.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    by_kernel
}

/// Milliseconds of each dispatch of `ops`, by GPU timestamps around its own compute pass.
fn timestamped_each(gpu: &Gpu, ops: &[Op]) -> Vec<f64> {
    let period_ms = gpu.queue.get_timestamp_period() as f64 / 1e6;
    let mut each = Vec::new();
    let mut rest = ops;
    while !rest.is_empty() {
        // The longest prefix with at most TIMED_DISPATCHES dispatches.
        let mut seen = 0;
        let cut = rest
            .iter()
            .position(|op| {
                seen += matches!(op, Op::Dispatch(_)) as usize;
                seen > TIMED_DISPATCHES
            })
            .unwrap_or(rest.len());
        let (window, after) = rest.split_at(cut);
        let count = window.iter().filter(|op| matches!(op, Op::Dispatch(_))).count() as u32;
        if count > 0 {
            let queries = timestamp_queries(gpu, 2 * count);
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            record_timed(&mut encoder, window, &queries);
            let stamps = submit_and_read_timestamps(gpu, encoder, &queries, 2 * count);
            each.extend(stamps.chunks(2).map(|t| t[1].saturating_sub(t[0]) as f64 * period_ms));
        } else {
            gpu.run(window);
        }
        rest = after;
    }
    each
}

/// Milliseconds of each dispatch of `ops`, by the wall clock around its own submission.
fn wall_each(gpu: &Gpu, ops: &[Op]) -> Vec<f64> {
    let mut each = Vec::new();
    for op in ops {
        let start = Instant::now();
        gpu.run(std::slice::from_ref(op));
        if matches!(op, Op::Dispatch(_)) {
            each.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    each
}

/// The device's ceilings: bandwidth from the better of a copy of `copy_mib` MiB (bytes read
/// plus bytes written) and an elementwise kernel over as many floats (on an H200 the copy
/// moved 0.84 TB/s, where the kernels read and wrote up to 1.7), arithmetic from the best of
/// the `arithmetic` kernels' first cases (each checked first), each from its fastest
/// repetition. Returns them with one row per measurement, kernel "ceiling".
pub fn measure_ceilings(
    gpu: &Gpu,
    copy_mib: usize,
    arithmetic: &[(Kernel, &str)],
) -> Result<(Ceilings, Vec<Row>)> {
    let len = copy_mib << 18;
    let (src, dst) = (gpu.upload(&vec![1.0; len]), gpu.zeros(len));
    let copy = [Op::Copy { src, src_offset: 0, dst, dst_offset: 0, len }];
    let timing = time_ops(gpu, &copy, true, 0.0);
    let mut rows =
        vec![row("ceiling", &format!("copy {copy_mib} MiB"), timing, 0.0, 8.0 * len as f64, None)];
    let mut rng = StdRng::seed_from_u64(1);
    let stream = (Kernel::Activations, format!("{len},relu"));
    for (kernel, shape) in std::iter::once(stream)
        .chain(arithmetic.iter().map(|&(kernel, shape)| (kernel, shape.to_string())))
    {
        let case = cases(gpu, kernel, &shape, &mut rng)?.remove(0);
        let mut r = check_and_time(gpu, &case, None, true, 0.0)?;
        r.kernel = "ceiling".into();
        r.shape = format!("{} {}", kernel.name(), r.shape);
        rows.push(r);
    }
    let gbps = rows[..2].iter().fold(0f64, |m, r| m.max(r.gbps));
    let gflops = rows[2..].iter().fold(0f64, |m, r| m.max(r.gflops));
    for r in &mut rows {
        r.bandwidth_share = r.gbps / gbps;
    }
    for r in &mut rows[2..] {
        r.flops_share = r.gflops / gflops;
    }
    Ok((Ceilings { gflops, gbps }, rows))
}

/// The kernels and shapes the arithmetic ceiling is the best of: large matmuls, and the
/// forward pass of a conv whose long reduction (5x5x128 taps) the conv gather runs faster
/// than any matmul shape on lavapipe.
pub const CEILING_SHAPES: [(Kernel, &str); 4] = [
    (Kernel::Matmul, "512,512,512"),
    (Kernel::Matmul, "1024,512,256"),
    (Kernel::Matmul, "256,1024,512"),
    (Kernel::Conv, "16,7,7,128,256,5,2,same"),
];

/// [`CEILING_SHAPES`], and on an adapter that is not a CPU products large enough to fill a
/// discrete GPU (an H200 ran `512,512,512` at a ninth of `4096,4096,4096`'s rate).
pub fn ceiling_shapes(gpu: &Gpu) -> Vec<(Kernel, &'static str)> {
    let mut shapes = CEILING_SHAPES.to_vec();
    if !gpu.caps.cpu {
        shapes.extend([(Kernel::Matmul, "2048,2048,2048"), (Kernel::Matmul, "4096,4096,4096")]);
    }
    shapes
}

/// Ceilings, then every case of `kernels` (on `shape`, else their default shapes), each timed
/// for at least `seconds` and handed to `emit` as soon as it is measured. Stops at the first
/// kernel that disagrees with its CPU twin.
pub fn run(
    gpu: &Gpu,
    kernels: &[Kernel],
    shape: Option<&str>,
    seconds: f64,
    mut emit: impl FnMut(&Row),
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(0);
    // A given shape is parsed (and its cases built) before the ceilings take their seconds.
    let given = match shape {
        Some(s) => {
            ensure!(kernels.len() == 1, "--shape needs a single --kernel, not all");
            Some(cases(gpu, kernels[0], s, &mut rng)?)
        }
        None => None,
    };
    let (ceilings, rows) = measure_ceilings(gpu, 64, &ceiling_shapes(gpu))?;
    rows.iter().for_each(&mut emit);
    let mut measure_all = |cases: Vec<Case>| -> Result<()> {
        for case in cases {
            emit(&measure_for(gpu, &case, Some(ceilings), seconds)?);
        }
        Ok(())
    };
    match given {
        Some(given) => measure_all(given)?,
        None => {
            for &kernel in kernels {
                for s in kernel.default_shapes() {
                    measure_all(cases(gpu, kernel, s, &mut rng)?)?;
                }
            }
        }
    }
    Ok(())
}

/// The table's header, aligned with [`table_line`].
pub fn table_header() -> String {
    format!(
        "{:<15} {:<34} {:>10} {:>9} {:>8} {:>7} {:>7} {:>6}  timer",
        "kernel", "shape", "ms", "GFLOP/s", "GB/s", "%flops", "%bw", "calls"
    )
}

pub fn table_line(r: &Row) -> String {
    format!(
        "{:<15} {:<34} {:>10.4} {:>9.2} {:>8.2} {:>6.1}% {:>6.1}% {:>6}  {}",
        r.kernel,
        r.shape,
        r.ms,
        r.gflops,
        r.gbps,
        100.0 * r.flops_share,
        100.0 * r.bandwidth_share,
        r.calls,
        r.timer
    )
}

/// Random values in [-1, -0.1] ∪ [0.1, 1]: non-zero, so that a kernel that skips an input
/// or writes zeros shows.
fn random(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len)
        .map(|_| {
            let v: f32 = rng.random_range(0.1..1.0);
            if rng.random_bool(0.5) { v } else { -v }
        })
        .collect()
}

fn fields(kernel: Kernel, shape: &str, min: usize, max: usize) -> Result<Vec<&str>> {
    let f: Vec<&str> = shape.split(',').map(str::trim).collect();
    ensure!(
        (min..=max).contains(&f.len()),
        "{} shape {shape:?}: expected {} (see --help)",
        kernel.name(),
        SHAPE_HELP.lines().find(|l| l.trim_start().starts_with(kernel.name())).unwrap_or("").trim()
    );
    Ok(f)
}

fn num(field: &str) -> Result<usize> {
    let n: usize = field.parse().with_context(|| format!("{field:?} is not a number"))?;
    ensure!(n > 0, "sizes must be positive, not {field:?}");
    Ok(n)
}

fn nums(f: &[&str]) -> Result<Vec<usize>> {
    f.iter().map(|s| num(s)).collect()
}

/// `rows` of a row-major matrix with rows of `len`, one after another.
fn rows_of(matrix: &[f32], len: usize, rows: &[usize]) -> Vec<f32> {
    rows.iter().flat_map(|&r| &matrix[r * len..(r + 1) * len]).copied().collect()
}

/// One check of `got` against `want`.
fn expect(name: &str, got: &Tensor, want: Vec<f32>, tol: Tolerance) -> Check {
    Check { name: name.to_string(), got: got.clone(), want, tol, rows: None }
}

/// An activation by its `--shape` name (leaky ReLU with the presets' slope, 0.2).
fn activation_named(name: &str) -> Result<Activation> {
    Ok(match name {
        "relu" => Activation::Relu,
        "leaky_relu" => Activation::LeakyRelu { alpha: 0.2 },
        "tanh" => Activation::Tanh,
        "sigmoid" => Activation::Sigmoid,
        other => bail!("activation {other:?}: relu, leaky_relu, tanh or sigmoid"),
    })
}

/// The cases one shape of a kernel gives (forward and backward passes are cases of their own),
/// with the CPU twins' results, built but not run.
pub fn cases(gpu: &Gpu, kernel: Kernel, shape: &str, rng: &mut StdRng) -> Result<Vec<Case>> {
    let case = |label: &str, ops: Vec<Op>, checks: Vec<Check>, flops: f64, bytes: f64| Case {
        kernel,
        shape: if label.is_empty() { shape.to_string() } else { format!("{shape} {label}") },
        ops,
        checks,
        flops,
        bytes,
    };
    let step = StepUniform::new(1, 7);
    Ok(match kernel {
        Kernel::Matmul => {
            let f = fields(kernel, shape, 3, 7)?;
            let [m, n, k] = nums(&f[..3])?[..] else { unreachable!() };
            let (mut ta, mut tb, mut bias, mut act, mut grad) = (false, false, None, None, false);
            for flag in &f[3..] {
                match *flag {
                    "ta" => ta = true,
                    "tb" => tb = true,
                    "bias" => bias = Some(random(rng, n)),
                    "grad" => grad = true,
                    name => {
                        act = Some(
                            activation_named(name)
                                .context("matmul flag: ta, tb, bias, grad or an activation")?,
                        )
                    }
                }
            }
            ensure!(!grad || act.is_some(), "matmul flag grad: the gradient of which activation?");
            let largest = 4 * (m * k).max(k * n).max(m * n) as u64;
            ensure!(
                largest <= gpu.limits.max_storage_buffer_binding_size,
                "matmul {shape}: an operand of {} MiB passes the device's {} MiB storage binding \
                 (WebGPU's default limit); take smaller sides",
                largest >> 20,
                gpu.limits.max_storage_buffer_binding_size >> 20
            );
            let (a, b) = (random(rng, m * k), random(rng, k * n));
            // With `grad`, C is the gradient at an activation's output y, which its stores
            // multiply by act'(y).
            let y = random(rng, m * n);
            let gy = gpu.upload(&y);
            // The twin computes every row of C up to 2^28 multiply-adds (seconds), else 16 rows
            // spread over C, first and last among them: op(A)'s rows and y's, then a product
            // of 16 rows.
            let rows: Vec<usize> = if m * n * k <= 1 << 28 {
                (0..m).collect()
            } else {
                (0..16).map(|r| r * (m - 1) / 15).collect()
            };
            let a_at = |i: usize, kk: usize| if ta { a[kk * m + i] } else { a[i * k + kk] };
            let op_a: Vec<f32> =
                rows.iter().flat_map(|&i| (0..k).map(move |kk| a_at(i, kk))).collect();
            let op_y = rows_of(&y, n, &rows);
            let mut want = vec![0.0; rows.len() * n];
            let cpu_fused = act.map(|act| {
                if grad { Fused::Gradient(act, &op_y[..]) } else { Fused::Activation(act) }
            });
            cpu::matmul::matmul(
                &op_a,
                &b,
                bias.as_deref(),
                &mut want,
                rows.len(),
                n,
                k,
                false,
                tb,
                false,
                cpu_fused,
            );
            let (ga, gb, gc) = (gpu.upload(&a), gpu.upload(&b), gpu.zeros(m * n));
            let gbias = bias.as_deref().map(|v| gpu.upload(v));
            let fused = act
                .map(|act| if grad { Fused::Gradient(act, &gy) } else { Fused::Activation(act) });
            let d =
                matmul::matmul(gpu, &ga, &gb, gbias.as_ref(), &gc, m, n, k, ta, tb, false, fused);
            let bytes = 4.0 * (m * k + k * n + m * n) as f64;
            vec![case(
                "",
                vec![d.into()],
                vec![Check {
                    rows: (rows.len() < m).then_some((n, rows)),
                    ..expect("C", &gc, want, check::REDUCTION)
                }],
                2.0 * (m * n * k) as f64,
                bytes,
            )]
        }
        Kernel::Conv | Kernel::ConvTranspose => {
            let transposed = kernel == Kernel::ConvTranspose;
            let f = fields(kernel, shape, 8, if transposed { 11 } else { 10 })?;
            let [b, h, w, c, k, fk, s] = nums(&f[..7])?[..] else { unreachable!() };
            let padding = match f[7] {
                "same" => Padding::Same,
                "valid" => Padding::Valid,
                other => bail!("padding {other:?}: same or valid"),
            };
            // The forward pass's epilogue, as the presets' layers have it.
            let (mut size, mut with_bias, mut act) = (None, false, None);
            for flag in &f[8..] {
                match *flag {
                    "bias" => with_bias = true,
                    o if transposed && o.parse::<usize>().is_ok() => size = Some(num(o)?),
                    name => act = Some(activation_named(name).context("conv flag")?),
                }
            }
            let g = if transposed {
                Conv2dGeometry::transposed(
                    b,
                    (h, w),
                    c,
                    k,
                    (fk, fk),
                    (s, s),
                    padding,
                    (0, 0),
                    size.map(|o| (o, o)),
                )?
            } else {
                Conv2dGeometry::conv(b, (h, w), c, k, (fk, fk), (s, s), padding)?
            };
            let flops = 2.0 * (g.output_len() * g.kernel_h * g.kernel_w * g.in_c) as f64;
            let bytes = 4.0 * (g.input_len() + g.output_len() + g.weight_len()) as f64;
            // The conv's input and output; a transposed conv reads the output and writes the input.
            let (xin, xout, wt) = (
                random(rng, g.input_len()),
                random(rng, g.output_len()),
                random(rng, g.weight_len()),
            );
            let (gin, gout, gw) = (gpu.upload(&xin), gpu.upload(&xout), gpu.upload(&wt));
            let bias_len = if transposed { g.in_c } else { g.out_c };
            let bias = with_bias.then(|| random(rng, bias_len));
            let gbias = bias.as_deref().map(|v| gpu.upload(v));
            let (rin, rout, rw) =
                (gpu.zeros(g.input_len()), gpu.zeros(g.output_len()), gpu.zeros(g.weight_len()));
            let (mut win, mut wout, mut ww) =
                (vec![0.0; g.input_len()], vec![0.0; g.output_len()], vec![0.0; g.weight_len()]);
            let tol = check::REDUCTION;
            let (cpu_fused, fused) = (act.map(Fused::Activation), act.map(Fused::Activation));
            if transposed {
                cpu::conv::conv_transpose2d(&xout, &wt, bias.as_deref(), &mut win, &g, cpu_fused);
                cpu::conv::conv_transpose2d_backward_data(&xin, &wt, &mut wout, &g, None);
                cpu::conv::conv_transpose2d_backward_weight(&xout, &xin, &mut ww, &g, false);
                vec![
                    case(
                        "fwd",
                        conv::conv_transpose2d(gpu, &gout, &gw, gbias.as_ref(), &rin, &g, fused),
                        vec![expect("y", &rin, win, tol)],
                        flops,
                        bytes,
                    ),
                    case(
                        "dx",
                        conv::conv_transpose2d_backward_data(gpu, &gin, &gw, &rout, &g, None),
                        vec![expect("dx", &rout, wout, tol)],
                        flops,
                        bytes,
                    ),
                    case(
                        "dw",
                        conv::conv_transpose2d_backward_weight(gpu, &gout, &gin, &rw, &g, false),
                        vec![expect("dw", &rw, ww, tol)],
                        flops,
                        bytes,
                    ),
                ]
            } else {
                cpu::conv::conv2d(&xin, &wt, bias.as_deref(), &mut wout, &g, cpu_fused);
                cpu::conv::conv2d_backward_data(&xout, &wt, None, &mut win, &g, None);
                cpu::conv::conv2d_backward_weight(&xin, &xout, &mut ww, &g, false);
                vec![
                    case(
                        "fwd",
                        conv::conv2d(gpu, &gin, &gw, gbias.as_ref(), &rout, &g, fused),
                        vec![expect("y", &rout, wout, tol)],
                        flops,
                        bytes,
                    ),
                    case(
                        "dx",
                        conv::conv2d_backward_data(gpu, &gout, &gw, None, &rin, &g, None),
                        vec![expect("dx", &rin, win, tol)],
                        flops,
                        bytes,
                    ),
                    case(
                        "dw",
                        conv::conv2d_backward_weight(gpu, &gin, &gout, &rw, &g, false),
                        vec![expect("dw", &rw, ww, tol)],
                        flops,
                        bytes,
                    ),
                ]
            }
        }
        Kernel::Batchnorm => {
            let f = fields(kernel, shape, 2, 2)?;
            let [rows, cols] = nums(&f)?[..] else { unreachable!() };
            let len = rows * cols;
            let (eps, momentum) = (1e-3, 0.9);
            let (x, dy) = (random(rng, len), random(rng, len));
            let (gamma, beta) = (random(rng, cols), random(rng, cols));
            let (rm0, rv0) = (vec![0.0; cols], vec![1.0; cols]);
            let mut y = vec![0.0; len];
            let (mut mean, mut var) = (vec![0.0; cols], vec![0.0; cols]);
            let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
            cpu::batchnorm::batch_norm_train(
                &x, &mut y, &gamma, &beta, &mut mean, &mut var, &mut rm, &mut rv, rows, cols, eps,
                momentum, false,
            );
            let mut dx = vec![0.0; len];
            let (mut dgamma, mut dbeta) = (vec![0.0; cols], vec![0.0; cols]);
            cpu::batchnorm::batch_norm_backward(
                &x,
                &dy,
                &gamma,
                &mean,
                &var,
                &mut dx,
                &mut dgamma,
                &mut dbeta,
                rows,
                cols,
                eps,
            );
            let (gx, gdy, ggamma, gbeta) =
                (gpu.upload(&x), gpu.upload(&dy), gpu.upload(&gamma), gpu.upload(&beta));
            let (gy, gmean, gvar) = (gpu.zeros(len), gpu.zeros(cols), gpu.zeros(cols));
            let (grm, grv) = (gpu.upload(&rm0), gpu.upload(&rv0));
            let fwd = batchnorm::batch_norm_train(
                gpu, &gx, &gy, &ggamma, &gbeta, &gmean, &gvar, &grm, &grv, rows, cols, eps,
                momentum, false,
            );
            // The backward pass reads the statistics the CPU computed, so that it is checked
            // on its own.
            let (smean, svar) = (gpu.upload(&mean), gpu.upload(&var));
            let (gdx, gdgamma, gdbeta) = (gpu.zeros(len), gpu.zeros(cols), gpu.zeros(cols));
            let bwd = batchnorm::batch_norm_backward(
                gpu, &gx, &gdy, &ggamma, &smean, &svar, &gdx, &gdgamma, &gdbeta, rows, cols, eps,
            );
            let tol = check::REDUCTION;
            vec![
                case(
                    "fwd",
                    fwd,
                    vec![
                        expect("y", &gy, y, tol),
                        expect("mean", &gmean, mean, tol),
                        expect("var", &gvar, var, tol),
                    ],
                    7.0 * len as f64,
                    8.0 * len as f64,
                ),
                case(
                    "bwd",
                    bwd,
                    vec![
                        expect("dx", &gdx, dx, tol),
                        expect("dgamma", &gdgamma, dgamma, tol),
                        expect("dbeta", &gdbeta, dbeta, tol),
                    ],
                    10.0 * len as f64,
                    12.0 * len as f64,
                ),
            ]
        }
        Kernel::Pool | Kernel::Upsample => {
            let f = fields(kernel, shape, 4, 4)?;
            let [b, h, w, c] = nums(&f)?[..] else { unreachable!() };
            let big = b * h * w * c;
            let small = if kernel == Kernel::Pool { b * (h / 2) * (w / 2) * c } else { 4 * big };
            ensure!(small > 0, "pool of {h}x{w}: the output is empty");
            let (x, dy) = (random(rng, big), random(rng, small));
            let (mut y, mut dx) = (vec![0.0; small], vec![0.0; big]);
            let (gx, gdy, gy, gdx) =
                (gpu.upload(&x), gpu.upload(&dy), gpu.zeros(small), gpu.zeros(big));
            let tol = check::ELEMENTWISE;
            let (fwd, bwd, fwd_flops, bwd_flops) = if kernel == Kernel::Pool {
                cpu::pool::avg_pool2x2(&x, &mut y, b, h, w, c);
                cpu::pool::avg_pool2x2_backward(&dy, &mut dx, b, h, w, c);
                (
                    pool::avg_pool2x2(gpu, &gx, &gy, b, h, w, c),
                    pool::avg_pool2x2_backward(gpu, &gdy, &gdx, b, h, w, c),
                    4 * small,
                    big,
                )
            } else {
                cpu::pool::upsample2x(&x, &mut y, b, h, w, c);
                cpu::pool::upsample2x_backward(&dy, &mut dx, b, h, w, c);
                (
                    pool::upsample2x(gpu, &gx, &gy, b, h, w, c),
                    pool::upsample2x_backward(gpu, &gdy, &gdx, b, h, w, c),
                    0,
                    4 * big,
                )
            };
            let bytes = 4.0 * (big + small) as f64;
            vec![
                case(
                    "fwd",
                    vec![fwd.into()],
                    vec![expect("y", &gy, y, tol)],
                    fwd_flops as f64,
                    bytes,
                ),
                case(
                    "bwd",
                    vec![bwd.into()],
                    vec![expect("dx", &gdx, dx, tol)],
                    bwd_flops as f64,
                    bytes,
                ),
            ]
        }
        Kernel::Activations => {
            let f = fields(kernel, shape, 2, 2)?;
            let len = num(f[0])?;
            let act = activation_named(f[1])?;
            let (x, dy) = (random(rng, len), random(rng, len));
            let mut y = x.clone();
            cpu::activation::activation_forward(&mut y, len, act);
            let mut dx = dy.clone();
            cpu::activation::activation_backward(&y, &mut dx, len, act);
            let (gx, gy, gdy) = (gpu.upload(&x), gpu.upload(&y), gpu.upload(&dy));
            let tol = check::ELEMENTWISE;
            vec![
                case(
                    "fwd",
                    vec![activation::activation_forward(gpu, &gx, len, act).into()],
                    vec![expect("y", &gx, y, tol)],
                    0.0,
                    8.0 * len as f64,
                ),
                case(
                    "bwd",
                    vec![activation::activation_backward(gpu, &gy, &gdy, len, act).into()],
                    vec![expect("dx", &gdy, dx, tol)],
                    0.0,
                    12.0 * len as f64,
                ),
            ]
        }
        Kernel::Loss if shape.contains(',') => {
            let f = fields(kernel, shape, 2, 2)?;
            let (rows, classes) = (num(f[0])?, num(f[1])?);
            let n = rows * classes;
            let logits = random(rng, n);
            let labels: Vec<u32> = (0..rows).map(|_| rng.random_range(0..classes as u32)).collect();
            let (mut dlogits, mut losses, mut probs) =
                (vec![0.0; n], vec![0.0; rows], vec![0.0; n]);
            let scale = 1.0 / rows as f32;
            cpu::loss::softmax_cross_entropy(
                &logits,
                &labels,
                &mut dlogits,
                &mut losses,
                rows,
                classes,
                scale,
            );
            cpu::loss::softmax(&logits, &mut probs, rows, classes);
            let (g_logits, g_labels) = (gpu.upload(&logits), gpu.upload_u32(&labels));
            let (g_dlogits, g_losses, g_probs) = (gpu.zeros(n), gpu.zeros(rows), gpu.zeros(n));
            let cross_entropy = loss::softmax_cross_entropy(
                gpu, &g_logits, &g_labels, &g_dlogits, &g_losses, rows, classes, scale,
            );
            let softmax = loss::softmax(gpu, &g_logits, &g_probs, rows, classes);
            let tol = check::ELEMENTWISE;
            vec![
                case(
                    "cross-entropy",
                    vec![cross_entropy.into()],
                    vec![
                        expect("dlogits", &g_dlogits, dlogits, tol),
                        expect("losses", &g_losses, losses, tol),
                    ],
                    0.0,
                    (4 * (2 * n + 2 * rows)) as f64,
                ),
                case(
                    "softmax",
                    vec![softmax.into()],
                    vec![expect("probs", &g_probs, probs, tol)],
                    0.0,
                    (8 * n) as f64,
                ),
            ]
        }
        Kernel::Loss => {
            let f = fields(kernel, shape, 1, 1)?;
            let n = num(f[0])?;
            let z = random(rng, n);
            let t: Vec<f32> = (0..n).map(|_| rng.random_range(0.0..1.0)).collect();
            let (mut dz, mut losses) = (vec![0.0; n], vec![0.0; n]);
            let scale = 1.0 / n as f32;
            cpu::loss::bce_with_logits(&z, &t, &mut dz, &mut losses, n, scale);
            let (gz, gt, gdz, gl) = (gpu.upload(&z), gpu.upload(&t), gpu.zeros(n), gpu.zeros(n));
            let d = loss::bce_with_logits(gpu, &gz, &gt, &gdz, &gl, n, scale);
            let tol = check::ELEMENTWISE;
            vec![case(
                "",
                vec![d.into()],
                vec![expect("dz", &gdz, dz, tol), expect("losses", &gl, losses, tol)],
                0.0,
                16.0 * n as f64,
            )]
        }
        Kernel::Adam | Kernel::Rmsprop => {
            let f = fields(kernel, shape, 1, 1)?;
            let len = num(f[0])?;
            let (p, g) = (random(rng, len), random(rng, len));
            // Second moments must be non-negative.
            let v: Vec<f32> = random(rng, len).iter().map(|x| x.abs()).collect();
            let (gp, gg, gv) = (gpu.upload(&p), gpu.upload(&g), gpu.upload(&v));
            let (mut wp, mut wv) = (p.clone(), v.clone());
            let tol = check::ELEMENTWISE;
            if kernel == Kernel::Adam {
                let m = random(rng, len);
                let mut wm = m.clone();
                let hp = AdamParams { lr: 2e-4, beta1: 0.5, beta2: 0.999, eps: 1e-7, clip: None };
                cpu::optim::adam(&mut wp, &g, &mut wm, &mut wv, len, hp, &step);
                let gm = gpu.upload(&m);
                let d = optim::adam(gpu, &gp, &gg, &gm, &gv, len, hp, &gpu.uniform(&step));
                vec![case(
                    "",
                    vec![d.into()],
                    vec![
                        expect("params", &gp, wp, tol),
                        expect("m", &gm, wm, tol),
                        expect("v", &gv, wv, tol),
                    ],
                    12.0 * len as f64,
                    28.0 * len as f64,
                )]
            } else {
                let hp = RmsPropParams { lr: 8e-4, rho: 0.9, eps: 1e-7, clip: Some(1.0) };
                cpu::optim::rmsprop(&mut wp, &g, &mut wv, len, hp);
                let d = optim::rmsprop(gpu, &gp, &gg, &gv, len, hp);
                vec![case(
                    "",
                    vec![d.into()],
                    vec![expect("params", &gp, wp, tol), expect("v", &gv, wv, tol)],
                    8.0 * len as f64,
                    20.0 * len as f64,
                )]
            }
        }
        Kernel::Rng => {
            let f = fields(kernel, shape, 2, 2)?;
            let len = num(f[0])?;
            let step_buffer = gpu.uniform(&step);
            let stream = 3;
            let (d, out, want, bytes) = match f[1] {
                "uniform" => {
                    let mut want = vec![0.0; len];
                    cpu::rng::rng_uniform(&mut want, len, -1.0, 1.0, stream, &step);
                    let out = gpu.zeros(len);
                    let d = rng::rng_uniform(gpu, &out, len, -1.0, 1.0, stream, &step_buffer);
                    (d, out, want, 4 * len)
                }
                "normal" => {
                    let mut want = vec![0.0; len];
                    cpu::rng::rng_normal(&mut want, len, 0.0, 1.0, stream, &step);
                    let out = gpu.zeros(len);
                    let d = rng::rng_normal(gpu, &out, len, 0.0, 1.0, stream, &step_buffer);
                    (d, out, want, 4 * len)
                }
                "dropout" => {
                    let x = random(rng, len);
                    let mut want = x.clone();
                    cpu::rng::dropout_forward(&mut want, len, 0, 0.4, stream, &step);
                    let out = gpu.upload(&x);
                    let d = rng::dropout_forward(gpu, &out, len, 0, 0.4, stream, &step_buffer);
                    (d, out, want, 8 * len)
                }
                other => bail!("rng distribution {other:?}: uniform, normal or dropout"),
            };
            vec![case(
                "",
                vec![d.into()],
                vec![expect("out", &out, want, check::ELEMENTWISE)],
                0.0,
                bytes as f64,
            )]
        }
        Kernel::Gather => {
            let f = fields(kernel, shape, 2, 2)?;
            let [count, row_len] = nums(&f)?[..] else { unreachable!() };
            // A dataset of 1000 rows, as the trainer keeps it: bytes packed four to a word.
            let rows = 1000;
            let mut bytes = vec![0u8; rows * row_len];
            rng.fill(&mut bytes[..]);
            let indices: Vec<u32> = (0..count).map(|_| rng.random_range(0..rows as u32)).collect();
            let (scale, offset) = (1.0 / 127.5, -1.0);
            let mut want = vec![0.0; count * row_len];
            cpu::gather::gather_rows(
                &bytes, 0, rows, &indices, &mut want, count, row_len, scale, offset,
            );
            let (gimages, gidx, gout) = (
                gpu.upload_u32(&gather::pack_bytes(&bytes)),
                gpu.upload_u32(&indices),
                gpu.zeros(count * row_len),
            );
            let d = gather::gather_rows(
                gpu, &gimages, 0, rows, &gidx, &gout, count, row_len, scale, offset,
            );
            vec![case(
                "",
                vec![d.into()],
                vec![expect("out", &gout, want, check::ELEMENTWISE)],
                2.0 * (count * row_len) as f64,
                (5 * count * row_len + 4 * count) as f64,
            )]
        }
    })
}
