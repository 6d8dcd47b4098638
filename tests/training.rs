//! Real training steps on the GPU: the discriminator learns, and resuming is exact.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use gan_gpu::check::{ELEMENTWISE, compare};
use gan_gpu::cpu;
use gan_gpu::data::{self, Dataset, DatasetName};
use gan_gpu::eval::{Evaluator, TrainEval};
use gan_gpu::nn::gan::{self, GanSpec};
use gan_gpu::train::{self, TrainOptions, Trainer};

/// The MLP presets: cheap enough to train for hundreds of steps in a test.
const MLPS: [&str; 2] = ["mlp", "mlp-relu"];

fn mnist() -> &'static Dataset {
    static DATA: std::sync::OnceLock<Dataset> = std::sync::OnceLock::new();
    DATA.get_or_init(|| {
        data::load_training_set(DatasetName::Mnist, None).expect("MNIST (set GAN_GPU_DATA)")
    })
}

fn small(name: &str, batch: usize) -> GanSpec {
    let mut spec = gan::preset(name).unwrap();
    spec.recipe.batch = batch;
    spec
}

/// Real steps of each MLP preset from scratch: in the first few dozen the generator fools a
/// still-untrained discriminator (every image is "real"; PyTorch shows the same), then the
/// discriminator learns to separate real from fake: its fake accuracy climbs from ~0 and the
/// generator's loss rises. 300 steps of batch 64 take a few seconds on the CPU adapter.
#[test]
fn discriminator_separates_real_from_fake() {
    for gpu in common::gpus() {
        let _gl = common::serialize_gl(gpu);
        for name in MLPS {
            let mut trainer = Trainer::new(gpu.clone(), small(name, 64), mnist(), 7, None).unwrap();
            let mut history = Vec::new();
            for step in 1..=300u64 {
                trainer.step(step % 20 == 0);
                history.extend(trainer.poll_metrics(false));
            }
            history.extend(trainer.poll_metrics(true));
            let metrics: Vec<_> =
                history.iter().map(|(s, v)| trainer.metrics_from(*s, *v, 0.0)).collect();
            assert_eq!(metrics.len(), 15);
            let early = &metrics[1]; // step 40
            let late = metrics.last().unwrap();
            eprintln!("{name} on {}: step 40 {early:?}\n  step 300 {late:?}", gpu.describe());
            assert!(early.d_acc_fake < 0.5, "{name}: D already separated at step 40? {early:?}");
            assert!(
                late.d_acc_real > 0.9 && late.d_acc_fake > 0.6,
                "{name}: D does not separate real from fake after 300 steps: {late:?}"
            );
            assert!(
                late.d_loss < 0.75 * early.d_loss,
                "{name}: D loss did not fall: {early:?} {late:?}"
            );
            assert!(late.g_loss > early.g_loss, "{name}: G loss did not rise: {early:?} {late:?}");
        }
    }
}

/// 10 steps, checkpoint, 10 more in a new trainer == 20 steps in one go, bit for bit; with the
/// generator's moving average too, which the resumed trainer takes from the checkpoint alone.
#[test]
fn resume_continues_exactly() {
    let gpu = &common::gpus()[0];
    let _gl = common::serialize_gl(gpu);
    let spec = small("mlp", 32);
    for ema in [None, Some(0.9)] {
        let fresh = || {
            let mut t = Trainer::new(gpu.clone(), spec.clone(), mnist(), 3, None).unwrap();
            if let Some(decay) = ema {
                t.keep_ema(decay).unwrap();
            }
            t
        };
        let mut straight = fresh();
        for _ in 0..20 {
            straight.step(false);
        }
        let mut first = fresh();
        for _ in 0..10 {
            first.step(false);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        first.checkpoint().save(&path).unwrap();
        let loaded = gan_gpu::checkpoint::Checkpoint::load(&path).unwrap();
        assert_eq!(loaded, first.checkpoint());
        assert_eq!(loaded.ema.as_ref().map(|e| e.decay), ema);
        let mut resumed =
            Trainer::new(gpu.clone(), spec.clone(), mnist(), 999, Some(loaded)).unwrap();
        assert_eq!((resumed.step, resumed.seed, resumed.ema_decay()), (10, 3, ema));
        for _ in 0..10 {
            resumed.step(false);
        }
        let (a, b) = (straight.checkpoint(), resumed.checkpoint());
        assert_eq!(a.step, 20);
        assert!(a == b, "resumed training (EMA {ema:?}) diverged from uninterrupted training");
        // And the run really moved: step 10's weights differ from step 20's.
        let ten = first.checkpoint();
        assert_ne!(ten.generator.params, a.generator.params);
        if let (Some(at_ten), Some(at_twenty)) = (ten.ema, a.ema) {
            assert_ne!(at_ten.params, at_twenty.params);
        }
    }
}

/// The moving average the GPU keeps inside each step equals the one the CPU computes from the
/// weights read back after every step, for every generator tensor: an MLP, and a DCGAN whose
/// batch norm's moving statistics are averaged too.
#[test]
fn ema_is_the_moving_average_of_the_weights() {
    let gpu = &common::gpus()[0];
    let _gl = common::serialize_gl(gpu);
    let decay = 0.8;
    for (name, batch) in [("mlp", 16), ("dcgan-avgpool", 2)] {
        let mut trainer = Trainer::new(gpu.clone(), small(name, batch), mnist(), 5, None).unwrap();
        // A few steps first, so that the average starts from trained weights, not the initial.
        for _ in 0..2 {
            trainer.step(false);
        }
        trainer.keep_ema(decay).unwrap();
        let mut want = trainer.checkpoint().generator.params;
        for _ in 0..4 {
            trainer.step(false);
            for (average, weights) in want.iter_mut().zip(&trainer.checkpoint().generator.params) {
                cpu::optim::ema_update(average, weights, weights.len(), decay);
            }
        }
        let ck = trainer.checkpoint();
        let got = ck.ema.expect("the trainer keeps an average").params;
        let names = small(name, batch).generator.params();
        for ((average, want), p) in got.iter().zip(&want).zip(&names) {
            if let Err(e) = compare(&format!("{name} {}", p.name), average, want, ELEMENTWISE) {
                panic!("{e}");
            }
        }
        // The average lags the weights wherever training moved them.
        let moved = got.iter().zip(&ck.generator.params).filter(|(a, w)| a != w).count();
        assert_eq!(moved, names.len(), "{name}: an average equals its weights");
    }
}

/// The whole loop writes what it promises, and a second run with the same options resumes.
#[test]
fn train_loop_writes_outputs() {
    let gpu = &common::gpus()[0];
    let _gl = common::serialize_gl(gpu);
    let dir = tempfile::tempdir().unwrap();
    let opts = TrainOptions {
        iters: 12,
        seed: 1,
        out: dir.path().to_path_buf(),
        sample_every: 5,
        checkpoint_every: 5,
        log_every: 4,
        summarize_every: Some(6),
        iters_per_epoch: 3,
        progress: false,
        eval: None,
    };
    let mut trainer = Trainer::new(gpu.clone(), small("mlp", 16), mnist(), 1, None).unwrap();
    let summary = train::train(&mut trainer, &opts, &AtomicBool::new(false)).unwrap();
    assert_eq!((summary.steps_done, summary.interrupted), (12, false));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let logged: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l.get("d_loss").is_some()).collect();
    assert_eq!(logged.iter().map(|l| l["step"].as_u64().unwrap()).collect::<Vec<_>>(), [4, 8, 12]);
    for key in ["d_loss", "g_loss", "d_acc_real", "d_acc_fake", "images_per_s"] {
        assert!(logged.iter().all(|l| l[key].as_f64().unwrap().is_finite()), "{key}");
    }
    for f in [
        "samples/step-000005.png",
        "samples/step-000010.png",
        "samples/step-000012.png",
        "checkpoints/step-000005.safetensors",
        "checkpoints/step-000010.safetensors",
        "checkpoints/step-000012.safetensors",
        "checkpoints/latest.safetensors",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    // Summaries every 6 iterations (2 epochs of 3): D's accuracy on fresh images, a grid and
    // a checkpoint named by epoch.
    let summaries: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l.get("summary_d_acc_real").is_some()).collect();
    assert_eq!(summaries.iter().map(|l| l["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 4]);
    for l in &summaries {
        for key in ["summary_d_acc_real", "summary_d_acc_fake"] {
            let acc = l[key].as_f64().unwrap();
            assert!(
                (0.0..=1.0).contains(&acc) && (acc * 100.0 - (acc * 100.0).round()).abs() < 1e-4,
                "{key} {acc}"
            );
        }
    }
    for f in ["samples/epoch-002.png", "samples/epoch-004.png", "checkpoints/epoch-004.safetensors"]
    {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    let grid = image::open(dir.path().join("samples/step-000012.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (10 * 30 + 2, 10 * 30 + 2));
    // An interrupted run stops after the step in progress and still checkpoints it.
    let ck =
        gan_gpu::checkpoint::Checkpoint::load(&dir.path().join("checkpoints/latest.safetensors"))
            .unwrap();
    let mut resumed = Trainer::new(gpu.clone(), ck.spec.clone(), mnist(), 0, Some(ck)).unwrap();
    let stop = AtomicBool::new(true);
    let summary = train::train(&mut resumed, &TrainOptions { iters: 100, ..opts }, &stop).unwrap();
    assert_eq!((summary.steps_done, summary.interrupted), (1, true));
    assert!(dir.path().join("checkpoints/step-000013.safetensors").is_file());
}

/// The GPU trainer and the CPU reference (the same iteration built from the kernels' CPU
/// twins) follow the same losses from the same seed, on every adapter, for every preset:
/// the MLPs for tens of steps, the convolutional ones for a few steps of a tiny batch (the
/// CPU twins are plain loops).
#[test]
fn gpu_training_follows_the_cpu_reference() {
    // Losses are means over the batch: after 50 steps of chaotic GAN dynamics, f32 rounding
    // differences between the GPU and the CPU stay below this.
    const LOSS_TOLERANCE: f32 = 2e-3;
    for (name, batch, steps) in [
        ("mlp", 32, 50),
        ("mlp-relu", 32, 20),
        ("dcgan-avgpool", 4, 3),
        ("dcgan", 2, 2),
        ("dcgan-upsample", 2, 2),
    ] {
        let mut spec = small(name, batch);
        spec.recipe.g_batch = None;
        let mut reference = gan_gpu::reference::ReferenceTrainer::new(spec.clone(), mnist(), 11);
        let want: Vec<_> = (0..steps).map(|_| reference.step()).collect();
        for gpu in common::gpus() {
            let _gl = common::serialize_gl(gpu);
            let mut trainer = Trainer::new(gpu.clone(), spec.clone(), mnist(), 11, None).unwrap();
            for (step, want) in (1..).zip(&want) {
                trainer.step(true);
                let got = trainer.poll_metrics(true);
                assert_eq!(got.len(), 1);
                let (s, got) = got[0];
                assert_eq!(s, step);
                for (i, (g, w)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (g - w).abs() <= LOSS_TOLERANCE,
                        "{name} on {} step {step} metric {i}: GPU {g} vs CPU {w}\n{got:?}\n{want:?}",
                        common::describe(gpu)
                    );
                }
            }
        }
    }
}

/// `--eval-every`: every N iterations one metrics.jsonl line holding exactly the figures of
/// the generator's images (a small reference and image count keep it quick).
#[test]
fn eval_every_writes_scores() {
    let gpu = &common::gpus()[0];
    let _gl = common::serialize_gl(gpu);
    let test = data::load_test_set(DatasetName::Mnist, None).unwrap();
    let reference = Dataset {
        images: test.images[..300 * 784].to_vec(),
        labels: test.labels[..300].to_vec(),
        count: 300,
        ..test
    };
    let classifier = gan_gpu::classifier::Classifier::shipped(gpu).unwrap();
    let hidden = indicatif::ProgressBar::hidden();
    let evaluator = Evaluator::new(gpu, classifier, &reference, &hidden).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = TrainOptions {
        iters: 7,
        seed: 2,
        out: dir.path().to_path_buf(),
        sample_every: 0,
        checkpoint_every: 0,
        log_every: 2,
        summarize_every: None,
        iters_per_epoch: 100,
        progress: false,
        eval: Some(TrainEval { every: 3, count: 40, evaluator: Arc::new(evaluator) }),
    };
    let mut trainer = Trainer::new(gpu.clone(), small("mlp", 16), mnist(), 2, None).unwrap();
    train::train(&mut trainer, &opts, &AtomicBool::new(false)).unwrap();
    let scored: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l.get("fid").is_some())
        .collect();
    assert_eq!(scored.iter().map(|l| l["step"].as_u64().unwrap()).collect::<Vec<_>>(), [3, 6]);
    for line in &scored {
        let mut keys: Vec<&str> = line.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["class_hist", "fid", "is", "mean_confidence", "modes_covered", "step"]);
        let hist: Vec<u64> =
            line["class_hist"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect();
        assert_eq!((hist.len(), hist.iter().sum::<u64>()), (10, 40), "{line}");
        assert!(line["fid"].as_f64().unwrap() > 0.0, "{line}");
        assert!((1.0..=10.0).contains(&line["is"].as_f64().unwrap()), "{line}");
        assert!(line["modes_covered"].as_u64().unwrap() <= 10, "{line}");
    }
    // The generator moved between the two evaluations, and so did its figures.
    assert_ne!(scored[0]["fid"], scored[1]["fid"]);
}

/// A dense or conv layer applies the activation after it in its own stores, which saves a pass
/// over its output: in every preset's networks the only activation dispatches left are those
/// after other layers (batch norm, reshape), and training still follows the CPU reference
/// (`gpu_training_follows_the_cpu_reference`), which applies every activation on its own.
#[test]
fn activations_after_dense_and_conv_layers_take_no_pass_of_their_own() {
    use gan_gpu::gpu::Op;
    use gan_gpu::nn::spec::{LayerSpec, NetSpec};
    use gan_gpu::nn::{Grads, Mode, Net};
    let gpu = &common::gpus()[0];
    let unfused = |spec: &NetSpec| {
        let producer = |l: &LayerSpec| {
            matches!(
                l,
                LayerSpec::Dense { .. }
                    | LayerSpec::Conv2d { .. }
                    | LayerSpec::ConvTranspose2d { .. }
            )
        };
        let layers = &spec.layers;
        (0..layers.len())
            .filter(|&i| layers[i].activation().is_some() && (i == 0 || !producer(&layers[i - 1])))
            .count()
    };
    for name in gan::preset_names() {
        let spec = gan::preset(name).unwrap();
        for net_spec in [spec.generator.clone(), spec.discriminator_logits()] {
            let net = Net::new(gpu, net_spec.clone(), &net_spec.init_params(1));
            let input = gpu.zeros(2 * net_spec.input.iter().product::<usize>());
            let grads = net.zeros_like_trainable(gpu);
            let all = Grads { params: Some(&grads), ..Grads::default() };
            let step = gpu.uniform(&gan_gpu::kernels::StepUniform::default());
            let pass = net.pass(gpu, 2, &input, Mode::Training, all, 0, &step);
            let activations = pass
                .forward
                .iter()
                .filter(|op| matches!(op, Op::Dispatch(d) if d.label == "activation_forward"))
                .count();
            assert_eq!(activations, unfused(&net_spec), "{name}: {net_spec:?}");
        }
    }
}
