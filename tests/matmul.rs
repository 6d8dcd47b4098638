//! The matmul family: GPU kernels against the CPU twin on every adapter and variant, the twin
//! against PyTorch and against finite differences, and an opt-in speed report.

mod common;

use std::sync::Mutex;
use std::time::Instant;

use gan_gpu::check::{REDUCTION, compare};
use gan_gpu::gpu::{Gpu, Op, Variant, Variants};
use gan_gpu::kernels::Activation;
use gan_gpu::{cpu, kernels};
use rand::{Rng, rngs::StdRng};

/// A random matmul problem and its CPU twin's answer.
struct Case {
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    a: Vec<f32>,
    b: Vec<f32>,
    bias: Option<Vec<f32>>,
    activation: Option<Activation>,
    /// For a gradient through the activation: that activation's output, shaped as C.
    act_out: Option<Vec<f32>>,
    /// C's values before the call, when the case accumulates into them.
    initial: Option<Vec<f32>>,
    want: Vec<f32>,
}

impl Case {
    fn new(
        rng: &mut StdRng,
        (m, k, n): (usize, usize, usize),
        trans_a: bool,
        trans_b: bool,
        bias: bool,
        accumulate: bool,
        (activation, gradient): (Option<Activation>, bool),
    ) -> Case {
        let a = common::random_vec(rng, m * k, -1.0, 1.0);
        let b = common::random_vec(rng, k * n, -1.0, 1.0);
        let bias = bias.then(|| common::random_vec(rng, n, -1.0, 1.0));
        let act_out = gradient.then(|| common::random_vec(rng, m * n, -1.0, 1.0));
        let initial = accumulate.then(|| common::random_vec(rng, m * n, -1.0, 1.0));
        let mut want = initial.clone().unwrap_or_else(|| vec![0.0; m * n]);
        cpu::matmul::matmul(
            &a,
            &b,
            bias.as_deref(),
            &mut want,
            m,
            n,
            k,
            trans_a,
            trans_b,
            accumulate,
            common::fused(activation, act_out.as_deref()),
        );
        Case { m, n, k, trans_a, trans_b, a, b, bias, activation, act_out, initial, want }
    }

    fn name(&self) -> String {
        let t = |on| if on { "T" } else { "N" };
        format!(
            "matmul m={} n={} k={} {}{}{}{}{}{}",
            self.m,
            self.n,
            self.k,
            t(self.trans_a),
            t(self.trans_b),
            if self.bias.is_some() { " +bias" } else { "" },
            if self.initial.is_some() { " +=" } else { "" },
            self.activation.map_or(String::new(), |act| format!(" {act:?}")),
            if self.act_out.is_some() { "'" } else { "" }
        )
    }

    /// Uploads the operands and the output (NaN-filled unless the case accumulates); returns
    /// the dispatch and the output.
    fn dispatch(&self, gpu: &Gpu) -> (gan_gpu::gpu::Dispatch, gan_gpu::gpu::Tensor) {
        let (a, b) = (gpu.upload(&self.a), gpu.upload(&self.b));
        let bias = self.bias.as_ref().map(|v| gpu.upload(v));
        let c = gpu.upload(self.initial.as_ref().unwrap_or(&common::poison(self.m * self.n)));
        let act_out = self.act_out.as_ref().map(|v| gpu.upload(v));
        let d = kernels::matmul::matmul(
            gpu,
            &a,
            &b,
            bias.as_ref(),
            &c,
            self.m,
            self.n,
            self.k,
            self.trans_a,
            self.trans_b,
            self.initial.is_some(),
            common::fused(self.activation, act_out.as_ref()),
        );
        (d, c)
    }

    fn check(&self, gpu: &Gpu) -> Result<(), String> {
        let (d, c) = self.dispatch(gpu);
        gpu.run(&[d.into()]);
        compare(&self.name(), &gpu.read(&c), &self.want, REDUCTION)
    }
}

/// (m, k, n) of the dense layers' forward, dX and dW products for batch size `b`, each with the
/// transposes training uses.
fn preset_shapes(b: usize) -> Vec<((usize, usize, usize), bool, bool)> {
    let forward = [(b, 100, 128), (b, 128, 784), (b, 784, 128), (b, 128, 1)];
    let dx = [(b, 784, 128), (b, 1, 128), (b, 128, 784)];
    let dw = [(100, b, 128), (128, b, 784), (784, b, 128), (128, b, 1)];
    let mut shapes = Vec::new();
    shapes.extend(forward.map(|s| (s, false, false)));
    shapes.extend(dx.map(|s| (s, false, true)));
    shapes.extend(dw.map(|s| (s, true, false)));
    shapes
}

/// Held by the tests that switch a device's matmul variant, which tests running beside them
/// on the same devices would otherwise pick up.
static MATMUL_VARIANT: Mutex<()> = Mutex::new(());

/// Runs `body` on every test GPU with each matmul variant it can run (tune.rs chooses among
/// them per adapter), then with many slices, naming the variant in its failures. `body` gets
/// the stride of the cases to check: every one, but every 13th (cycling through the
/// transposes) for the workgroup-memory tiles on a CPU adapter, which never chooses them and
/// takes 6 s (Vulkan) to 30 s (GL) to compile each of their pipelines.
fn on_every_matmul_variant(test: &str, body: impl Fn(&Gpu, usize) -> Vec<String>) {
    let _variant = MATMUL_VARIANT.lock().unwrap_or_else(|e| e.into_inner());
    common::on_every_gpu(test, |gpu| {
        let chosen = gpu.variants();
        let mut failures = Vec::new();
        for &matmul in Variant::runnable(&gpu.caps) {
            gpu.set_variants(Variants { matmul, ..chosen });
            let stride = if matmul == Variant::Tiled && gpu.caps.cpu { 13 } else { 1 };
            let found = body(gpu, stride);
            failures.extend(found.into_iter().map(|e| format!("{e} ({})", matmul.name())));
        }
        // Again with the sums of matrix-vector products split across workgroups (the slices
        // family's many slices; the other products run as before).
        gpu.set_variants(Variants { slices: Variant::ManySlices, ..chosen });
        let found = body(gpu, 1);
        failures.extend(found.into_iter().map(|e| format!("{e} (many slices)")));
        gpu.set_variants(chosen);
        assert!(failures.is_empty(), "on {}:\n{}", gpu.describe(), failures.join("\n"));
    });
}

#[test]
fn matmul_matches_cpu_twin() {
    on_every_matmul_variant("matmul_matches_cpu_twin", |gpu, stride| {
        let mut rng = common::rng(1);
        let mut failures = Vec::new();
        let mut drawn = 0;
        // Every case is drawn, so that the random ones are the same whatever the stride.
        let mut check = |case: Case| {
            drawn += 1;
            if (drawn - 1) % stride == 0
                && let Err(e) = case.check(gpu)
            {
                failures.push(e);
            }
        };
        // Edges of every tile: 1, primes, one past and one short of multiples of 4, 8, 32, 64.
        let small = [
            (1, 1, 1),
            (1, 7, 1),
            (3, 1, 5),
            (5, 3, 1),
            (7, 13, 11),
            (33, 5, 31),
            (65, 9, 33),
            (31, 64, 63),
            (4, 8, 4),
            (97, 37, 67),
            // One column (matvec without trans_a): rows and k one past and one short of
            // multiples of 4.
            (33, 37, 1),
            (70, 256, 1),
            // k over 4 rounds of matvec_split's 64 lanes, ending mid-quad.
            (9, 1027, 1),
        ];
        for (i, &shape) in small.iter().enumerate() {
            for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
                // An activation on two cases in three, through its derivative on one of those
                // where there is no bias (a gradient has none).
                let bias = (i + trans_a as usize).is_multiple_of(2);
                check(Case::new(
                    &mut rng,
                    shape,
                    trans_a,
                    trans_b,
                    bias,
                    (i + trans_b as usize).is_multiple_of(3),
                    ((i % 3 != 0).then_some(common::ACTIVATIONS[i % 4]), i % 3 == 2 && !bias),
                ));
            }
        }
        // A few random shapes, every transpose combination with and without bias; with a bias
        // through an activation, without one through an activation's derivative.
        for trans_a in [false, true] {
            for trans_b in [false, true] {
                for bias in [false, true] {
                    let shape =
                        (rng.random_range(1..80), rng.random_range(1..80), rng.random_range(1..80));
                    let act = if bias { Activation::Sigmoid } else { Activation::Tanh };
                    check(Case::new(
                        &mut rng,
                        shape,
                        trans_a,
                        trans_b,
                        bias,
                        trans_a && !bias,
                        (Some(act), !bias),
                    ));
                }
            }
        }
        // The training shapes at the smallest batch; forward with bias and an activation, input
        // gradients through the activation's derivative, as the layers use them, and weight
        // gradients accumulating, as they do over the chunks of a split batch.
        for (shape, trans_a, trans_b) in preset_shapes(64) {
            let forward = !trans_a && !trans_b;
            let act = (!trans_a).then_some(Activation::LeakyRelu { alpha: 0.2 });
            check(Case::new(&mut rng, shape, trans_a, trans_b, forward, trans_a, (act, trans_b)));
        }
        // C large enough for matmul_tiled's tiles of 128 (at least 128 of them), its sides
        // off every tile size; checked at every stride.
        for (trans_a, trans_b) in [(false, false), (true, true)] {
            let act = Some(Activation::Relu);
            let case =
                Case::new(&mut rng, (1030, 9, 2050), trans_a, trans_b, true, false, (act, false));
            failures.extend(case.check(gpu).err());
        }
        failures
    });
}

/// A dense layer's weight and bias gradients in one pass (or two, where the device has too
/// few storage buffers or the product is a matrix-vector one), against the CPU twin on every
/// matmul variant: shapes off every tile size, one input or output, starting from poison or
/// accumulating.
#[test]
fn matmul_weight_grad_matches_cpu_twin() {
    on_every_matmul_variant("matmul_weight_grad_matches_cpu_twin", |gpu, stride| {
        let mut rng = common::rng(3);
        let mut failures = Vec::new();
        let shapes = [
            (1, 1, 1),
            (5, 1, 1),
            (3, 7, 1),
            (7, 1, 5),
            (33, 37, 65),
            (64, 100, 128),
            (256, 784, 128),
            // matmul_tiled's tiles of 128.
            (9, 1030, 2050),
        ];
        for (i, &(batch, inputs, outputs)) in shapes.iter().enumerate() {
            // The last (tiles of 128) at every stride.
            if i % stride != 0 && i + 1 != shapes.len() {
                continue;
            }
            let accumulate = i % 2 == 1;
            let x = common::random_vec(&mut rng, batch * inputs, -1.0, 1.0);
            let dy = common::random_vec(&mut rng, batch * outputs, -1.0, 1.0);
            let mut start = |len| {
                if accumulate {
                    common::random_vec(&mut rng, len, -1.0, 1.0)
                } else {
                    common::poison(len)
                }
            };
            let (dw0, db0) = (start(inputs * outputs), start(outputs));
            let (mut dw, mut db) = (dw0.clone(), db0.clone());
            cpu::matmul::matmul_weight_grad(
                &x, &dy, &mut dw, &mut db, batch, inputs, outputs, accumulate,
            );
            let (gx, gdy, gdw, gdb) =
                (gpu.upload(&x), gpu.upload(&dy), gpu.upload(&dw0), gpu.upload(&db0));
            gpu.run(&kernels::matmul::matmul_weight_grad(
                gpu, &gx, &gdy, &gdw, &gdb, batch, inputs, outputs, accumulate,
            ));
            let name = format!("weight grad batch={batch} {inputs}->{outputs} acc={accumulate}");
            for (what, got, want) in [("dw", &gdw, &dw), ("db", &gdb, &db)] {
                if let Err(e) = compare(&format!("{name} {what}"), &gpu.read(got), want, REDUCTION)
                {
                    failures.push(e);
                }
            }
        }
        failures
    });
}

/// PyTorch's linear layer, y = x·wᵀ + b with w [out, in], and its gradients, from the fixtures.
#[test]
fn cpu_twin_matches_pytorch_linear() {
    for case in ["linear_100_128", "linear_128_1", "linear_128_784", "linear_784_128"] {
        let get = |t: &str| common::fixture(&format!("{case}.{t}"));
        let (x, xs) = get("x");
        let (w, ws) = get("w");
        let (b, _) = get("b");
        let (gy, _) = get("gy");
        let (batch, inp, out) = (xs[0], xs[1], ws[0]);
        assert_eq!(ws[1], inp);
        let run = |name: &str, a: &[f32], b2: &[f32], bias, m, n, k, ta, tb| {
            let mut got = vec![0.0; m * n];
            cpu::matmul::matmul(a, b2, bias, &mut got, m, n, k, ta, tb, false, None);
            let (want, _) = get(name);
            compare(&format!("{case}.{name}"), &got, &want, REDUCTION).unwrap();
        };
        run("y", &x, &w, Some(&b[..]), batch, out, inp, false, true);
        run("gx", &gy, &w, None, batch, inp, out, false, false);
        run("gw", &gy, &x, None, out, inp, batch, true, false);
    }
}

/// For L = Σ gy ⊙ (x·W + b), dL/dx = gy·Wᵀ and dL/dW = xᵀ·gy, checked by central differences.
#[test]
fn cpu_twin_gradients_match_finite_differences() {
    let (batch, inp, out) = (3, 5, 4);
    let mut rng = common::rng(7);
    let x = common::random_vec(&mut rng, batch * inp, -1.0, 1.0);
    let w = common::random_vec(&mut rng, inp * out, -1.0, 1.0);
    let b = common::random_vec(&mut rng, out, -1.0, 1.0);
    let gy = common::random_vec(&mut rng, batch * out, -1.0, 1.0);
    let loss = |x: &[f64], w: &[f64]| {
        let mut l = 0.0;
        for r in 0..batch {
            for o in 0..out {
                let y: f64 =
                    b[o] as f64 + (0..inp).map(|i| x[r * inp + i] * w[i * out + o]).sum::<f64>();
                l += gy[r * out + o] as f64 * y;
            }
        }
        l
    };
    let numeric = |v: &[f32], is_x: bool| -> Vec<f32> {
        let h = 1e-3;
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
        (0..v.len())
            .map(|i| {
                let (mut xp, mut wp, mut xm, mut wm) =
                    (x64.clone(), w64.clone(), x64.clone(), w64.clone());
                if is_x {
                    xp[i] += h;
                    xm[i] -= h;
                } else {
                    wp[i] += h;
                    wm[i] -= h;
                }
                ((loss(&xp, &wp) - loss(&xm, &wm)) / (2.0 * h)) as f32
            })
            .collect()
    };
    let mut dx = vec![0.0; batch * inp];
    cpu::matmul::matmul(&gy, &w, None, &mut dx, batch, inp, out, false, true, false, None);
    compare("dX = gy·Wᵀ", &dx, &numeric(&x, true), REDUCTION).unwrap();
    let mut dw = vec![0.0; inp * out];
    cpu::matmul::matmul(&x, &gy, None, &mut dw, inp, out, batch, true, false, false, None);
    compare("dW = xᵀ·gy", &dw, &numeric(&w, false), REDUCTION).unwrap();
}

/// GFLOP/s of every variant on every training shape at batch 256, each validated first.
/// Run with `cargo test --release --test matmul -- --ignored --nocapture matmul_speed`.
#[test]
#[ignore]
fn matmul_speed() {
    let mut rng = common::rng(3);
    let cases: Vec<Case> = preset_shapes(256)
        .into_iter()
        .map(|(shape, ta, tb)| Case::new(&mut rng, shape, ta, tb, !ta && !tb, false, (None, false)))
        .collect();
    for gpu in common::gpus() {
        let variant = gpu.variants().matmul.name();
        println!("\n{} [{variant}]", gpu.describe());
        // Median and best of 5: the best is what an otherwise idle machine gives.
        println!("{:<34} {:>9} {:>9} {:>9}", "shape", "ms", "GFLOP/s", "best");
        for case in &cases {
            case.check(gpu).unwrap();
            let (d, _c) = case.dispatch(gpu);
            let flops = 2.0 * (case.m * case.n * case.k) as f64;
            // Enough dispatches per submit to take ~0.2 s, so the submit cost vanishes.
            let t = Instant::now();
            gpu.run(&[d.clone().into()]);
            let reps = ((0.2 / t.elapsed().as_secs_f64()) as usize).clamp(2, 200);
            let ops: Vec<Op> = (0..reps).map(|_| d.clone().into()).collect();
            let mut times: Vec<f64> = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    gpu.run(&ops);
                    t.elapsed().as_secs_f64() / reps as f64
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            println!(
                "{:<34} {:>9.3} {:>9.2} {:>9.2}",
                case.name(),
                median * 1e3,
                flops / median / 1e9,
                flops / times[0] / 1e9
            );
        }
    }
}
