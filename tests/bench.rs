//! `gan-gpu bench`: every kernel family measured on tiny shapes, a kernel whose output
//! disagrees with the CPU twin refused, a training step split by kernel, and the CLI's JSON
//! lines.

mod common;

use std::process::Command;

use gan_gpu::bench::{self, Kernel, Row};
use gan_gpu::data::{self, DatasetName};
use gan_gpu::gpu::{Gpu, GpuOptions, Op};
use gan_gpu::nn::gan;
use gan_gpu::train::{self, Trainer};
use rand::{SeedableRng, rngs::StdRng};

/// Two tiny shapes per kernel, covering each shape syntax's options.
const TINY: &[(Kernel, &str)] = &[
    (Kernel::Matmul, "8,8,8"),
    (Kernel::Matmul, "5,12,7,ta,tb"),
    (Kernel::Conv, "2,6,6,3,4,3,2,same"),
    (Kernel::Conv, "1,5,5,2,3,3,1,valid"),
    (Kernel::ConvTranspose, "2,3,3,4,2,4,2,same"),
    (Kernel::ConvTranspose, "1,2,2,3,2,5,2,same,3"),
    (Kernel::Batchnorm, "4,8"),
    (Kernel::Batchnorm, "37,3"),
    (Kernel::Pool, "2,4,4,3"),
    (Kernel::Pool, "1,5,3,2"),
    (Kernel::Upsample, "2,3,3,2"),
    (Kernel::Upsample, "1,1,2,5"),
    (Kernel::Activations, "100,leaky_relu"),
    (Kernel::Activations, "33,sigmoid"),
    (Kernel::Loss, "16"),
    (Kernel::Loss, "3"),
    (Kernel::Loss, "5,3"),
    (Kernel::Loss, "9,10"),
    (Kernel::Adam, "64"),
    (Kernel::Adam, "5"),
    (Kernel::Rmsprop, "64"),
    (Kernel::Rmsprop, "7"),
    (Kernel::Rng, "64,normal"),
    (Kernel::Rng, "33,dropout"),
    (Kernel::Gather, "4,28"),
    (Kernel::Gather, "3,5"),
];

fn gpu() -> std::sync::Arc<Gpu> {
    Gpu::new(&GpuOptions::default()).expect("a GPU adapter (mesa-vulkan-drivers gives lavapipe)")
}

fn finite_positive(what: &str, v: f64) {
    assert!(v.is_finite() && v > 0.0, "{what} = {v}");
}

#[test]
fn every_kernel_is_checked_and_timed_on_tiny_shapes() {
    let gpu = gpu();
    let (ceilings, ceiling_rows) = bench::measure_ceilings(
        &gpu,
        1,
        &[(Kernel::Matmul, "64,64,64"), (Kernel::Conv, "2,6,6,4,8,3,1,same")],
    )
    .unwrap();
    finite_positive("copy ceiling", ceilings.gbps);
    finite_positive("arithmetic ceiling", ceilings.gflops);
    assert_eq!(ceiling_rows.len(), 4);
    assert!(ceiling_rows.iter().all(|r| r.kernel == "ceiling"));
    let fastest = ceiling_rows[..2].iter().map(|r| r.bandwidth_share).fold(0.0, f64::max);
    assert_eq!(fastest, 1.0, "the copy or the elementwise kernel is the bandwidth ceiling");
    let best = ceiling_rows[2..].iter().map(|r| r.flops_share).fold(0.0, f64::max);
    assert_eq!(best, 1.0, "the best matmul or conv is the arithmetic ceiling");
    let mut rng = StdRng::seed_from_u64(5);
    let mut seen = Vec::new();
    for &(kernel, shape) in TINY {
        let cases = bench::cases(&gpu, kernel, shape, &mut rng).unwrap();
        let expected = match kernel {
            Kernel::Conv | Kernel::ConvTranspose => 3,
            Kernel::Batchnorm | Kernel::Pool | Kernel::Upsample | Kernel::Activations => 2,
            // Softmax cross-entropy and softmax.
            Kernel::Loss if shape.contains(',') => 2,
            _ => 1,
        };
        assert_eq!(cases.len(), expected, "{} {shape}", kernel.name());
        for case in cases {
            let r: Row = bench::measure(&gpu, &case, Some(ceilings))
                .unwrap_or_else(|e| panic!("{} {}: {e:#}", kernel.name(), case.shape));
            let what = format!("{} {}", r.kernel, r.shape);
            assert_eq!(r.kernel, kernel.name());
            assert!(r.shape.starts_with(shape), "{what}");
            finite_positive(&format!("{what} ms"), r.ms);
            finite_positive(&format!("{what} gbps"), r.gbps);
            finite_positive(&format!("{what} bandwidth share"), r.bandwidth_share);
            assert!(r.calls >= 1, "{what}");
            assert_eq!(r.timer, if gpu.caps.timestamps { "timestamp" } else { "wall" });
            let counts_flops = !matches!(kernel, Kernel::Activations | Kernel::Loss | Kernel::Rng)
                && r.shape != "2,3,3,2 fwd"
                && r.shape != "1,1,2,5 fwd";
            if counts_flops {
                finite_positive(&format!("{what} gflops"), r.gflops);
                finite_positive(&format!("{what} flops share"), r.flops_share);
            } else {
                assert_eq!(r.gflops, 0.0, "{what}");
            }
            seen.push(kernel);
        }
    }
    for kernel in Kernel::ALL {
        assert!(seen.contains(&kernel), "{} not measured", kernel.name());
    }
}

/// `bench --kernel --seconds S` keeps timing a case until S have passed, so a profiler has a
/// steady kernel to attach to.
#[test]
fn a_case_is_timed_for_at_least_the_seconds_asked() {
    let gpu = gpu();
    let mut rng = StdRng::seed_from_u64(8);
    let case = bench::cases(&gpu, Kernel::Matmul, "8,8,8", &mut rng).unwrap().remove(0);
    let start = std::time::Instant::now();
    let long = bench::measure_for(&gpu, &case, None, 0.4).unwrap();
    assert!(start.elapsed().as_secs_f64() >= 0.4, "timed for {:?}", start.elapsed());
    assert!(long.calls >= 1 && long.ms > 0.0 && long.ms.is_finite(), "{long:?}");
}

#[test]
fn a_result_that_disagrees_with_the_cpu_twin_is_not_timed() {
    let gpu = gpu();
    let mut rng = StdRng::seed_from_u64(6);
    for (kernel, shape) in [(Kernel::Matmul, "8,8,8"), (Kernel::Batchnorm, "4,8")] {
        let mut case = bench::cases(&gpu, kernel, shape, &mut rng).unwrap().remove(0);
        // As right, the case passes; one expected element off by 1% of the scale fails it.
        let last = case.checks.len() - 1;
        let want = &mut case.checks[last].want;
        let scale = want.iter().fold(0f32, |m, w| m.max(w.abs()));
        want[1] += 0.01 * scale;
        let err = bench::measure(&gpu, &case, None).expect_err("a wrong result was timed");
        let msg = format!("{err:#}");
        assert!(msg.contains("CPU twin") && msg.contains("not timing"), "{msg}");
    }
}

#[test]
fn bad_kernels_and_shapes_are_clear_errors() {
    let gpu = gpu();
    let mut rng = StdRng::seed_from_u64(7);
    let err = Kernel::parse_list("matmull").unwrap_err().to_string();
    assert!(err.contains("unknown kernel") && err.contains("conv-transpose"), "{err}");
    assert_eq!(Kernel::parse_list("all").unwrap(), Kernel::ALL.to_vec());
    let err =
        bench::run(&gpu, &Kernel::ALL, Some("8,8,8"), 0.0, |_| panic!("measured")).unwrap_err();
    assert!(err.to_string().contains("single --kernel"), "{err}");
    for (kernel, shape, needle) in [
        (Kernel::Matmul, "8,8", "M,N,K"),
        (Kernel::Matmul, "8,8,8,tc", "ta, tb, bias, grad or an activation"),
        (Kernel::Conv, "1,5,5,2,3,3,1,full", "same or valid"),
        (Kernel::Conv, "1,5,5,2,3,3,1,same,bias,softplus", "relu, leaky_relu, tanh or sigmoid"),
        (Kernel::Loss, "0", "positive"),
        (Kernel::Loss, "4,0", "positive"),
        (Kernel::Rng, "8,poisson", "uniform, normal or dropout"),
    ] {
        let err = match bench::cases(&gpu, kernel, shape, &mut rng) {
            Ok(_) => panic!("{} {shape} was accepted", kernel.name()),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(needle), "{} {shape}: {err}", kernel.name());
    }
}

#[test]
fn cli_prints_json_lines() {
    let out = Command::new(env!("CARGO_BIN_EXE_gan-gpu"))
        .args(["bench", "--kernel", "matmul", "--shape", "8,8,8", "--json"])
        .output()
        .expect("running gan-gpu");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let kernels: Vec<&str> = lines.iter().map(|l| l["kernel"].as_str().unwrap()).collect();
    let ceilings = bench::ceiling_shapes(&gpu()).len() + 2;
    assert_eq!(kernels[..ceilings], vec!["ceiling"; ceilings]);
    assert_eq!(kernels[ceilings..], ["matmul"]);
    let last = &lines[ceilings];
    assert_eq!(last["shape"], "8,8,8");
    for field in ["ms", "gflops", "gbps"] {
        finite_positive(field, last[field].as_f64().unwrap());
    }
    let timer = if gpu().caps.timestamps { "timestamp" } else { "wall" };
    assert_eq!(last["timer"], timer);
}

/// `bench --model`'s split of a training step by kernel accounts for every dispatch, on every
/// adapter (timestamps on Vulkan, the wall clock per dispatch on GL).
#[test]
fn a_training_step_is_split_by_kernel() {
    let dataset = data::load_training_set(DatasetName::Mnist, None).unwrap();
    let mut spec = gan::preset("mlp").unwrap();
    spec.recipe.batch = 8;
    for gpu in common::gpus() {
        let _gl = common::serialize_gl(gpu);
        let mut trainer = Trainer::new(gpu.clone(), spec.clone(), &dataset, 0, None).unwrap();
        let ms = train::time_iterations(&mut trainer, 1, 2);
        let split = bench::time_by_kernel(gpu, trainer.iteration(), ms);
        let dispatches = |label: &str| {
            trainer
                .iteration()
                .iter()
                .filter(|op| matches!(op, Op::Dispatch(d) if d.label == label))
                .count()
        };
        let total: usize = split.iter().map(|k| k.dispatches).sum();
        assert_eq!(
            total,
            trainer.iteration().iter().filter(|op| matches!(op, Op::Dispatch(_))).count()
        );
        let timed: f64 = split.iter().map(|k| k.ms).sum();
        for k in &split {
            assert_eq!(k.dispatches, dispatches(k.kernel), "{}", k.kernel);
            assert!(k.ms.is_finite() && k.ms >= 0.0 && (k.share - k.ms / timed).abs() < 1e-9);
        }
        let shares: f64 = split.iter().map(|k| k.share).sum();
        assert!((shares - 1.0).abs() < 1e-9, "shares of the dispatches' time sum to {shares}");
        assert!(split.windows(2).all(|w| w[0].ms >= w[1].ms), "longest first");
        // Four dense layers' forward and backward products dominate the MLP's step.
        assert_eq!(dispatches("matmul"), 16);
        assert!(split.iter().any(|k| k.kernel == "adam"), "{}", common::describe(gpu));
    }
}

#[test]
fn cli_prints_a_model_line_with_its_kernels() {
    let out = Command::new(env!("CARGO_BIN_EXE_gan-gpu"))
        .args(["bench", "--model", "mlp", "--iters", "1", "--batch-size", "8", "--json"])
        .output()
        .expect("running gan-gpu");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(line["model"], "mlp");
    assert_eq!(line["batch"], 8);
    for field in ["ms_per_iter", "images_per_s"] {
        finite_positive(field, line[field].as_f64().unwrap());
    }
    let kernels: Vec<&str> =
        line["kernels"].as_array().unwrap().iter().map(|k| k["kernel"].as_str().unwrap()).collect();
    for kernel in ["matmul", "adam", "gather_rows", "bce_with_logits"] {
        assert!(kernels.contains(&kernel), "{kernel} missing from {kernels:?}");
    }
}
