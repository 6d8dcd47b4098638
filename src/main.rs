//! The `gan-gpu` command line: a thin layer over the library.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use gan_gpu::bench;
use gan_gpu::checkpoint::Checkpoint;
use gan_gpu::classifier::{self, Classifier};
use gan_gpu::data::{self, DatasetName};
use gan_gpu::eval::{self, TrainEval};
use gan_gpu::generate;
use gan_gpu::gpu::{self, BackendChoice, Gpu, GpuOptions, Variant, Variants};
use gan_gpu::nn::gan::{self, GanSpec};
use gan_gpu::report;
use gan_gpu::train::{self, TrainOptions, Trainer};
use gan_gpu::tune;

#[derive(Parser)]
#[command(name = "gan-gpu", version, about = "Train GANs on any GPU with handwritten WGSL kernels")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters found, with the features and limits gan-gpu uses.
    Devices {
        #[command(flatten)]
        gpu: GpuArgs,
        /// One JSON object per adapter.
        #[arg(long)]
        json: bool,
        /// Measure the kernel variants on the adapter the other commands would use (--backend,
        /// --adapter), print the timings and cache the fastest.
        #[arg(long)]
        tune: bool,
    },
    /// The digit classifier behind `eval`: train it on MNIST, or measure its test accuracy.
    Classifier {
        #[command(subcommand)]
        command: ClassifierCommand,
    },
    /// List the built-in models with their parameter counts.
    Models {
        /// One JSON object per model.
        #[arg(long)]
        json: bool,
    },
    /// Train a GAN.
    Train(TrainArgs),
    /// Time training iterations of a model on the GPU: ms per iteration and images/s; or, with
    /// --kernel, single kernels checked against their CPU twins, next to the device's ceilings.
    Bench {
        /// Built-in model or model file; default: every built-in model.
        #[arg(long, conflicts_with = "kernel")]
        model: Option<String>,
        /// Time one kernel family (matmul, conv, conv-transpose, batchnorm, pool, upsample,
        /// activations, loss, adam, rmsprop, rng, gather) or all of them, instead of a model.
        #[arg(long)]
        kernel: Option<String>,
        #[arg(long, requires = "kernel", long_help = gan_gpu::bench::SHAPE_HELP)]
        shape: Option<String>,
        /// With --kernel: time each case for at least this long (default: 5 submissions of
        /// about 50 ms), for steadier figures or to let a profiler attach
        /// (tools/lavapipe_jit.py).
        #[arg(long, requires = "kernel")]
        seconds: Option<f64>,
        /// Timed training iterations of a model (after 2 untimed ones that compile the
        /// pipelines); kernels are timed by --seconds instead.
        #[arg(long, default_value_t = 20)]
        iters: u64,
        #[arg(long)]
        batch_size: Option<usize>,
        /// One JSON object per model (per kernel and shape with --kernel).
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value_t = DatasetName::Mnist)]
        dataset: DatasetName,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Rebuild OUT/report.html and OUT/plots/*.png from a training run's outputs (`train`
    /// writes them too, at every checkpoint and at the end).
    Report {
        /// The training run's --out directory.
        out: PathBuf,
    },
    /// Generate images from a checkpoint: FILE.png (a grid) and FILE.idx (IDX3, as MNIST).
    Generate {
        #[command(flatten)]
        checkpoint: CheckpointArgs,
        #[arg(long, default_value_t = 100)]
        count: usize,
        #[arg(long, default_value_t = 0)]
        seed: u32,
        /// Output path without extension (an extension given is replaced).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Walk the latent space between two seeds (a strip PNG and an animated GIF), or show
    /// latent arithmetic such as "a + b - c" over points that are seeds or means of seeds.
    Interpolate(InterpolateArgs),
    /// Score digits: classifier-FID against the MNIST test set, inception score, confidence
    /// and class histogram of a checkpoint's images or of any image set, beside the figures of
    /// real test data, real training data and uniform noise.
    Eval(EvalArgs),
}

#[derive(Args)]
struct EvalArgs {
    /// A checkpoint whose generator makes the images.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Images to score instead: an IDX3 file (raw or .gz) or a folder of 28x28 PNGs.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Images to generate from --checkpoint [default: 10000].
    #[arg(long)]
    count: Option<usize>,
    /// Score the trained weights even where the checkpoint has their moving average (train
    /// --ema), which is scored by default.
    #[arg(long)]
    no_ema: bool,
    /// Seed of the generator's noise and of the reference samples.
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// Classifier weights (default: the one shipped inside gan-gpu).
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// Directory holding MNIST's IDX files (also GAN_GPU_DATA).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// One JSON object: fid, is, mean_confidence, class_hist, modes_covered, references.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    gpu: GpuArgs,
}

/// A checkpoint whose generator makes images.
#[derive(Args)]
struct CheckpointArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    /// Use the trained weights even where the checkpoint has their moving average (train
    /// --ema), which is used by default.
    #[arg(long)]
    no_ema: bool,
}

/// The checkpoint at `path`, without its generator's moving average when `no_ema`.
fn load_checkpoint(path: &Path, no_ema: bool) -> Result<Checkpoint> {
    let mut ck = Checkpoint::load(path)?;
    if no_ema {
        ck.ema = None;
    }
    Ok(ck)
}

impl CheckpointArgs {
    fn load(&self) -> Result<Checkpoint> {
        load_checkpoint(&self.checkpoint, self.no_ema)
    }
}

#[derive(Args)]
struct InterpolateArgs {
    #[command(flatten)]
    checkpoint: CheckpointArgs,
    /// The seed at the strip's start: its latent vector is the noise that `generate --seed`
    /// draws for its first image.
    #[arg(long, value_name = "SEED", allow_hyphen_values = true)]
    from: Option<String>,
    /// The seed at the strip's end.
    #[arg(long, value_name = "SEED", allow_hyphen_values = true)]
    to: Option<String>,
    /// Images in the strip, both ends included.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Interpolate along the great circle instead of the straight line (normal noise only).
    #[arg(long)]
    slerp: bool,
    /// Latent arithmetic instead of a walk: names from --point joined by + and -, such as
    /// "a + b - c"; the strip shows each term's image, then the result's.
    #[arg(long, value_name = "EXPR", allow_hyphen_values = true)]
    expr: Option<String>,
    /// A named point of --expr: NAME=SEED, or NAME=SEED,SEED,... for the mean of several
    /// seeds' latent vectors. Repeat for each name.
    #[arg(long, value_name = "NAME=SEEDS")]
    point: Vec<String>,
    /// The strip (PNG); a walk's animation goes beside it with the extension .gif.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    gpu: GpuArgs,
}

#[derive(Args)]
struct GpuArgs {
    /// Graphics API: auto honours WGPU_BACKEND, else picks the best adapter of any.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Use the adapter whose name contains this (also WGPU_ADAPTER_NAME).
    #[arg(long)]
    adapter: Option<String>,
    /// Kernel variants (also GAN_GPU_KERNELS): auto measures which are fastest on the adapter
    /// the first time it is used and caches the choice (in GAN_GPU_CACHE_DIR, else the user's
    /// cache directory; `devices --tune` measures again); portable forces the kernels that need
    /// no optional GPU feature; subgroup the subgroup ones; tiled the workgroup-memory matmul
    /// and conv kernels (for discrete GPUs).
    #[arg(long, value_parser = ["auto", "portable", "subgroup", "tiled"])]
    kernels: Option<String>,
    /// Read every kernel operand from its storage buffer, never through a texture mirror (also
    /// GAN_GPU_TEXTURE_MIRRORS=off): to measure what the mirrors are worth on an adapter.
    #[arg(long)]
    no_texture_mirrors: bool,
}

impl GpuArgs {
    /// Opens the device and sets its kernel variants as --kernels says.
    fn open(&self) -> Result<Arc<Gpu>> {
        let gpu = Gpu::new(&self.options())?;
        match self.kernels_choice().as_str() {
            "portable" => {}
            "subgroup" => {
                if gpu.caps.subgroup_size.is_none() {
                    bail!(
                        "--kernels subgroup: {} has no 8-lane subgroups; use --kernels auto or \
                         portable",
                        gpu.describe()
                    );
                }
                gpu.set_variants(Variants {
                    reads: gpu.variants().reads,
                    ..Variants::all(Variant::Subgroup)
                });
            }
            "tiled" => gpu.set_variants(Variants {
                matmul: Variant::Tiled,
                conv: Variant::Tiled,
                conv_weight_grad: Variant::Tiled,
                ..gpu.variants()
            }),
            _ => {
                let cache = tune::default_cache_dir();
                tune::choose(&gpu, cache.as_deref(), false, || {
                    eprintln!(
                        "measuring which kernel variants are fastest on {} (once per adapter)",
                        gpu.describe()
                    )
                })?;
            }
        }
        Ok(gpu)
    }

    fn kernels_choice(&self) -> String {
        self.kernels
            .clone()
            .or_else(|| std::env::var("GAN_GPU_KERNELS").ok())
            .unwrap_or_else(|| "auto".into())
    }

    fn options(&self) -> GpuOptions {
        let mut opts = GpuOptions {
            backend: self.backend,
            adapter: self.adapter.clone(),
            ..Default::default()
        };
        opts.portable_kernels = self.kernels_choice() == "portable";
        opts.texture_mirrors &= !self.no_texture_mirrors;
        opts
    }
}

#[derive(Args)]
struct TrainArgs {
    /// Built-in model (see `gan-gpu models`) or a model file (.toml); default mlp, or the
    /// checkpoint's with --resume.
    #[arg(long)]
    model: Option<String>,
    /// Train until this many iterations are done in all (a resumed run counts its own).
    #[arg(long, conflicts_with = "epochs")]
    iters: Option<u64>,
    /// Train for this many passes over the dataset (iterations = epochs * images / batch).
    #[arg(long)]
    epochs: Option<f64>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning rate of both optimizers (default: the model's recipe).
    #[arg(long)]
    lr: Option<f32>,
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// Directory for samples, metrics, checkpoints and the configuration.
    #[arg(long, default_value = "runs/gan")]
    out: PathBuf,
    #[arg(long, default_value_t = 500)]
    sample_every: u64,
    #[arg(long, default_value_t = 1000)]
    checkpoint_every: u64,
    #[arg(long, default_value_t = 50)]
    log_every: u64,
    /// Every N epochs: D's accuracy on fresh real and fake images, a grid and a checkpoint
    /// (default: the model's recipe, e.g. 10 for dcgan; 0 turns it off).
    #[arg(long, value_name = "EPOCHS")]
    summarize_every: Option<u64>,
    /// Every N iterations: FID, IS, confidence and class histogram of 2000 generated images
    /// (the same noise each time) against the MNIST test set, into metrics.jsonl.
    #[arg(long, value_name = "N")]
    eval_every: Option<u64>,
    /// Keep an exponential moving average of the generator's weights with this decay (e.g.
    /// 0.999), updated on the GPU every step; checkpoints store it and generate uses it. A
    /// resumed run keeps the checkpoint's average without this flag.
    #[arg(long, value_name = "DECAY")]
    ema: Option<f32>,
    /// Continue from a checkpoint (default: OUT/checkpoints/latest.safetensors).
    #[arg(long, num_args = 0..=1, value_name = "CHECKPOINT")]
    resume: Option<Option<PathBuf>>,
    #[arg(long, value_enum, default_value_t = DatasetName::Mnist)]
    dataset: DatasetName,
    /// Directory holding the dataset's IDX files (also GAN_GPU_DATA).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    gpu: GpuArgs,
}

#[derive(Subcommand)]
enum ClassifierCommand {
    /// Train the classifier (assets/classifier/lenet.toml) on the MNIST training set with
    /// gan-gpu's kernels, printing the test accuracy after every epoch; writes its weights.
    Train {
        /// Epochs (default: the model file's).
        #[arg(long)]
        epochs: Option<usize>,
        /// Where to write the weights (safetensors).
        #[arg(long, default_value = "runs/classifier.safetensors")]
        out: PathBuf,
        /// Directory holding MNIST's IDX files (also GAN_GPU_DATA).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        seed: u32,
        /// Hide the progress bar.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Accuracy on the 10,000 MNIST test digits.
    Eval {
        /// Weights from `classifier train --out` (default: the shipped ones).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// One JSON object: accuracy, correct, count, weights, device.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        gpu: GpuArgs,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Devices { gpu, json, tune: true } => tune_variants(&gpu, json),
        Command::Devices { gpu, json, tune: false } => devices(&gpu.options(), json),
        Command::Models { json } => models(json),
        Command::Train(args) => train_command(args),
        Command::Classifier { command } => classifier_command(command),
        Command::Bench { kernel: Some(kernel), shape, seconds, json, gpu, .. } => {
            let kernels = bench::Kernel::parse_list(&kernel)?;
            let gpu = gpu.open()?;
            if !json {
                println!("on {}, kernels {}", gpu.describe(), gpu.variants().describe());
                println!("{}", bench::table_header());
            }
            bench::run(&gpu, &kernels, shape.as_deref(), seconds.unwrap_or(0.0), |row| {
                if json {
                    println!("{}", serde_json::to_string(row).expect("a row serializes"));
                } else {
                    println!("{}", bench::table_line(row));
                }
            })
        }
        Command::Bench {
            model,
            shape,
            seconds,
            iters,
            batch_size,
            json,
            dataset,
            data_dir,
            gpu,
            ..
        } => {
            // clap's `requires = "kernel"` lets these through next to --model.
            if shape.is_some() || seconds.is_some() {
                bail!("--shape and --seconds time single kernels: add --kernel NAME");
            }
            let models = match model {
                Some(m) => vec![m],
                None => gan::preset_names().into_iter().map(String::from).collect(),
            };
            let dataset = data::load_training_set(dataset, data_dir.as_deref())?;
            let gpu = gpu.open()?;
            for name in models {
                let mut spec = gan::load_model(&name)?;
                override_recipe(&mut spec, batch_size, None)?;
                let batch = spec.recipe.batch;
                let mut trainer = Trainer::new(gpu.clone(), spec, &dataset, 0, None)?;
                let ms = train::time_iterations(&mut trainer, 2, iters.max(1));
                let images_per_s = batch as f64 * 1000.0 / ms;
                let kernels = bench::time_by_kernel(&gpu, trainer.iteration(), ms);
                if json {
                    let line = serde_json::json!({
                        "model": name, "batch": batch, "iters": iters, "ms_per_iter": ms,
                        "images_per_s": images_per_s, "device": gpu.describe(),
                        "variants": gpu.variants(), "kernels": kernels,
                    });
                    println!("{line}");
                } else {
                    println!(
                        "{name:<16} batch {batch:>4}  {ms:>10.2} ms/iter  {images_per_s:>9.1} images/s  on {}, kernels {}",
                        gpu.describe(),
                        gpu.variants().describe()
                    );
                    for k in &kernels {
                        println!(
                            "    {:<32} {:>4} dispatches {:>10.2} ms {:>6.1}%",
                            k.kernel,
                            k.dispatches,
                            k.ms,
                            100.0 * k.share
                        );
                    }
                    // The shares are of this sum, not of the step: the two come from separate
                    // runs, which a busy machine can take a third apart.
                    let timed = kernels.iter().map(|k| k.ms).sum::<f64>();
                    println!(
                        "    {:<32} {:>26.2} ms (each dispatch timed on its own; the step, run whole: {ms:.2} ms)",
                        "all dispatches", timed
                    );
                }
            }
            Ok(())
        }
        Command::Report { out } => {
            println!("wrote {}", report::write(&out)?.display());
            Ok(())
        }
        Command::Interpolate(args) => interpolate_command(args),
        Command::Generate { checkpoint, count, seed, out, gpu } => {
            if count == 0 {
                bail!("--count must be at least 1");
            }
            let ck = checkpoint.load()?;
            let gpu = gpu.open()?;
            let (png, idx) = generate::write_images(&gpu, &ck, count, seed, &out)?;
            println!("wrote {} and {}", png.display(), idx.display());
            Ok(())
        }
        Command::Eval(args) => eval_command(args),
    }
}

fn interpolate_command(args: InterpolateArgs) -> Result<()> {
    use gan_gpu::latent;
    enum Strip {
        Walk { from: u32, to: u32 },
        Arithmetic(latent::Expression),
    }
    let strip = match (&args.from, &args.to, &args.expr) {
        (Some(from), Some(to), None) => {
            anyhow::ensure!(
                args.point.is_empty(),
                "--point names the points of --expr: add --expr"
            );
            Strip::Walk {
                from: latent::parse_seed(from, "--from")?,
                to: latent::parse_seed(to, "--to")?,
            }
        }
        (None, None, Some(expr)) => {
            anyhow::ensure!(!args.slerp, "--slerp is for walks from --from to --to, not --expr");
            Strip::Arithmetic(latent::Expression::parse(expr, &args.point)?)
        }
        (_, _, Some(_)) => bail!("give --from and --to, or --expr, not both"),
        _ => bail!("give --from SEED and --to SEED for a walk, or --expr with --point"),
    };
    let ck = args.checkpoint.load()?;
    let gpu = args.gpu.open()?;
    let written = match strip {
        Strip::Walk { from, to } => {
            let pixels = latent::interpolation(&gpu, &ck, from, to, args.steps, args.slerp)?;
            latent::write_strip(&ck, &pixels, &args.out, true)?
        }
        Strip::Arithmetic(expr) => {
            let pixels = latent::arithmetic(&gpu, &ck, &expr);
            latent::write_strip(&ck, &pixels, &args.out, false)?
        }
    };
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    println!("wrote {}", names.join(" and "));
    Ok(())
}

/// `train --eval-every`: the classifier with the MNIST test set's statistics, computed once.
fn train_eval(gpu: &Gpu, every: u64, data_dir: Option<&Path>, quiet: bool) -> Result<TrainEval> {
    let test_set = data::load_test_set(DatasetName::Mnist, data_dir)?;
    let progress = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        eprintln!(
            "scoring {} generated images every {every} iterations against the {}",
            eval::TRAIN_EVAL_COUNT,
            test_set.source
        );
        indicatif::ProgressBar::new(test_set.count as u64)
    };
    let evaluator = eval::Evaluator::new(gpu, Classifier::shipped(gpu)?, &test_set, &progress)?;
    progress.finish_and_clear();
    Ok(TrainEval { every, count: eval::TRAIN_EVAL_COUNT, evaluator: Arc::new(evaluator) })
}

/// Images per `eval --checkpoint` unless --count says otherwise.
const EVAL_COUNT: usize = 10_000;

fn eval_command(args: EvalArgs) -> Result<()> {
    // Every argument and file is checked before the slow work starts.
    let source = match (&args.checkpoint, &args.images) {
        (Some(_), Some(_)) => bail!("give --checkpoint or --images, not both"),
        (None, None) => bail!(
            "give --checkpoint FILE (a generator to score) or --images PATH (an IDX3 file or a folder of PNGs)"
        ),
        (Some(path), None) => {
            let count = args.count.unwrap_or(EVAL_COUNT);
            if count < 2 {
                bail!("--count must be at least 2: FID fits a covariance to the images");
            }
            let ck = load_checkpoint(path, args.no_ema)?;
            eval::check_scorable(&ck.spec)?;
            EvalSource::Checkpoint(Box::new(ck), count)
        }
        (None, Some(path)) => {
            if args.count.is_some() || args.no_ema {
                bail!(
                    "--count and --no-ema apply to --checkpoint; --images scores every image it holds"
                );
            }
            let (images, count) = eval::load_images(path)?;
            if count < 2 {
                bail!("{}: {count} image; FID needs at least 2", path.display());
            }
            EvalSource::Images(images, count)
        }
    };
    let data_dir = args.data_dir.as_deref();
    let test_set = data::load_test_set(DatasetName::Mnist, data_dir)?;
    let training_set = data::load_training_set(DatasetName::Mnist, data_dir)?;
    let gpu = args.gpu.open()?;
    let classifier = match &args.classifier {
        Some(path) => Classifier::load(&gpu, path)?,
        None => Classifier::shipped(&gpu)?,
    };
    let count = match &source {
        EvalSource::Checkpoint(_, count) | EvalSource::Images(_, count) => *count,
    };
    // Embedded: the test set, the scored images, as many training images and noise images.
    let progress = indicatif::ProgressBar::new((test_set.count + 3 * count) as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} images {msg}",
        )
        .unwrap()
        .progress_chars("=> "),
    );
    progress.enable_steady_tick(std::time::Duration::from_millis(200));
    let evaluator = eval::Evaluator::new(&gpu, classifier, &test_set, &progress)?;
    let (what, scores) = match source {
        EvalSource::Checkpoint(ck, count) => {
            progress.set_message(format!("generating {count} images"));
            let images = eval::generated_images(&gpu, &ck, count, args.seed)?;
            progress.set_message(format!("embedding {count} generated images"));
            ("generated", evaluator.score_images(&gpu, &images, count, &progress))
        }
        EvalSource::Images(images, count) => {
            progress.set_message(format!("embedding {count} images"));
            ("scored images", evaluator.score_images(&gpu, &images, count, &progress))
        }
    };
    let report = evaluator.report(&gpu, scores, count, &training_set, args.seed, &progress);
    progress.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.table(what));
    }
    Ok(())
}

enum EvalSource {
    Checkpoint(Box<Checkpoint>, usize),
    Images(Vec<u8>, usize),
}

fn devices(opts: &GpuOptions, json: bool) -> Result<()> {
    let adapters = gpu::list_adapters(opts);
    if adapters.is_empty() {
        // Gpu::new gives the explanatory error.
        Gpu::new(opts)?;
    }
    let cache = tune::default_cache_dir();
    for a in adapters {
        let chosen = tune::known(&a.info, &a.caps, cache.as_deref());
        if json {
            let mut line = serde_json::to_value(&a)?;
            line["chosen_variants"] = serde_json::to_value(chosen)?;
            println!("{line}");
        } else {
            println!(
                "{} ({}, {}, driver {} {})",
                a.name, a.backend, a.device_type, a.driver, a.driver_info
            );
            println!(
                "  features: {}",
                if a.features.is_empty() { "-".into() } else { a.features.join(", ") }
            );
            println!(
                "  subgroup size {}..{}, storage binding {} MiB, workgroup storage {} KiB, {} invocations/workgroup",
                a.subgroup_min_size,
                a.subgroup_max_size,
                a.max_storage_buffer_binding_size >> 20,
                a.max_compute_workgroup_storage_size >> 10,
                a.max_compute_invocations_per_workgroup
            );
            let chosen = chosen.map_or("measured on first use".into(), |v| v.describe());
            println!("  kernel variants: {} ({chosen})", a.kernel_variants.join("; "));
            if !a.caps.texture_mirrors {
                println!("  operands read from storage buffers, not texture mirrors");
            }
        }
    }
    Ok(())
}

/// `devices --tune`: measures the kernel variants again and caches the fastest.
fn tune_variants(args: &GpuArgs, json: bool) -> Result<()> {
    let gpu = Gpu::new(&args.options())?;
    let cache = tune::default_cache_dir();
    let choice = tune::choose(&gpu, cache.as_deref(), true, || {
        eprintln!("measuring the kernel variants on {}", gpu.describe())
    })?;
    if json {
        let line = serde_json::json!({
            "device": gpu.describe(),
            "variants": choice.variants,
            "timings": choice.timings,
        });
        println!("{line}");
        return Ok(());
    }
    println!("{}", gpu.describe());
    for t in &choice.timings {
        let result = match (&t.ms, &t.error) {
            (Some(ms), _) => format!("{ms:10.3} ms"),
            (None, error) => format!("excluded: {}", error.as_deref().unwrap_or("?")),
        };
        println!("  {:<16} {:<11} {result}", t.family.name(), t.variant.name());
    }
    println!("chosen: {}", choice.variants.describe());
    match &cache {
        Some(dir) => println!("cached in {}", dir.display()),
        None => println!("not cached: no cache directory (set GAN_GPU_CACHE_DIR)"),
    }
    Ok(())
}

fn models(json: bool) -> Result<()> {
    for name in gan::preset_names() {
        let spec = gan::preset(name)?;
        let (g, d) = (&spec.generator, &spec.discriminator);
        if json {
            let line = serde_json::json!({
                "name": name,
                "description": spec.description,
                "params_g": g.param_count(),
                "params_d": d.param_count(),
                "trainable_g": g.trainable_count(),
                "trainable_d": d.trainable_count(),
                "batch": spec.recipe.batch,
            });
            println!("{line}");
        } else {
            println!(
                "{name:<16} G {:>9} params ({:>9} trainable)   D {:>9} params ({:>9} trainable)   {}",
                g.param_count(),
                g.trainable_count(),
                d.param_count(),
                d.trainable_count(),
                spec.description
            );
        }
    }
    Ok(())
}

/// --batch-size and --lr over a model's recipe.
fn override_recipe(spec: &mut GanSpec, batch_size: Option<usize>, lr: Option<f32>) -> Result<()> {
    let r = &mut spec.recipe;
    if let Some(b) = batch_size {
        if b == 0 {
            bail!("--batch-size must be at least 1");
        }
        // A recipe with its own generator batch keeps its ratio to the real batch.
        r.g_batch = r.g_batch.map(|g| (g * b).div_ceil(r.batch));
        r.batch = b;
    }
    if let Some(lr) = lr {
        if !(lr > 0.0 && lr.is_finite()) {
            bail!("--lr must be a positive number");
        }
        r.g_optimizer.set_lr(lr);
        r.d_optimizer.set_lr(lr);
    }
    Ok(())
}

fn train_command(args: TrainArgs) -> Result<()> {
    let resume_path = args
        .resume
        .as_ref()
        .map(|p| p.clone().unwrap_or_else(|| args.out.join("checkpoints/latest.safetensors")));
    let resume = resume_path.as_deref().map(Checkpoint::load).transpose()?;
    let spec = match (&resume, &args.model) {
        (Some(ck), Some(model)) if &ck.spec.name != model => {
            bail!(
                "the checkpoint is of model {:?}, not {model:?}: drop --model or --resume",
                ck.spec.name
            )
        }
        (Some(ck), _) => {
            if args.batch_size.is_some() || args.lr.is_some() {
                bail!(
                    "--batch-size and --lr cannot change when resuming: the checkpoint fixes them"
                );
            }
            ck.spec.clone()
        }
        (None, model) => {
            let mut spec = gan::load_model(model.as_deref().unwrap_or("mlp"))?;
            override_recipe(&mut spec, args.batch_size, args.lr)?;
            spec
        }
    };
    for (flag, value) in [("--log-every", args.log_every)] {
        if value == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    if let Some(every) = args.eval_every {
        if every == 0 {
            bail!("--eval-every must be at least 1");
        }
        eval::check_scorable(&spec)?;
        if args.dataset != DatasetName::Mnist {
            bail!("--eval-every scores digits with an MNIST classifier: it needs --dataset mnist");
        }
    }
    args.ema.map(train::check_ema_decay).transpose()?;
    let dataset = data::load_training_set(args.dataset, args.data_dir.as_deref())?;
    let iters = match (args.iters, args.epochs) {
        (Some(i), _) => i,
        (None, Some(e)) if e > 0.0 => {
            (e * dataset.count as f64 / spec.recipe.epoch_images_per_iter() as f64).ceil() as u64
        }
        (None, Some(_)) => bail!("--epochs must be positive"),
        (None, None) => 3000,
    };
    let gpu = args.gpu.open()?;
    let stop = stop_on_ctrl_c("a checkpoint")?;
    eprintln!(
        "training {} on {} with {} images from {}",
        spec.name,
        gpu.describe(),
        dataset.count,
        dataset.source
    );
    let seed = resume.as_ref().map_or(args.seed, |ck| ck.seed);
    let start = resume.as_ref().map_or(0, |ck| ck.step);
    if start >= iters {
        bail!(
            "the checkpoint is already at step {start}; ask for more with --iters N (N > {start})"
        );
    }
    let iters_per_epoch =
        (dataset.count as u64).div_ceil(spec.recipe.epoch_images_per_iter() as u64);
    let summarize_every = args
        .summarize_every
        .or(spec.recipe.summarize_every_epochs)
        .filter(|&n| n > 0)
        .map(|n| n * iters_per_epoch);
    let opts = TrainOptions {
        iters,
        seed,
        out: args.out.clone(),
        sample_every: args.sample_every,
        checkpoint_every: args.checkpoint_every,
        log_every: args.log_every,
        summarize_every,
        iters_per_epoch,
        progress: !args.quiet,
        eval: args
            .eval_every
            .map(|every| train_eval(&gpu, every, args.data_dir.as_deref(), args.quiet))
            .transpose()?,
    };
    // The trainer checks the model against the device before anything is written.
    let mut trainer = Trainer::new(gpu.clone(), spec, &dataset, seed, resume)?;
    if let Some(decay) = args.ema {
        trainer.keep_ema(decay)?;
    }
    if let Some(decay) = trainer.ema_decay() {
        eprintln!("keeping a moving average of the generator's weights, decay {decay}");
    }
    write_config(&args.out, &trainer.spec, &opts, &gpu, &dataset.source, resume_path.as_deref())?;
    let summary = train::train(&mut trainer, &opts, &stop)?;
    let per_s = summary.steps_done as f64 / summary.seconds.max(1e-9);
    eprintln!(
        "{} {} iterations in {:.1} s ({per_s:.1} it/s); now at step {}; outputs in {}",
        if summary.interrupted { "interrupted after" } else { "trained" },
        summary.steps_done,
        summary.seconds,
        trainer.step,
        args.out.display()
    );
    if let Some(m) = summary.last {
        eprintln!(
            "last: d_loss {:.4} g_loss {:.4} d_acc_real {:.3} d_acc_fake {:.3}",
            m.d_loss, m.g_loss, m.d_acc_real, m.d_acc_fake
        );
    }
    if summary.interrupted {
        std::process::exit(130);
    }
    Ok(())
}

fn write_config(
    out: &Path,
    spec: &GanSpec,
    opts: &TrainOptions,
    gpu: &Gpu,
    data_source: &str,
    resumed_from: Option<&Path>,
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let config = serde_json::json!({
        "model": spec,
        "train": opts,
        "device": { "name": gpu.info.name, "backend": format!("{:?}", gpu.info.backend), "caps": gpu.caps, "variants": gpu.variants() },
        "dataset": data_source,
        "resumed_from": resumed_from,
        "version": env!("CARGO_PKG_VERSION"),
    });
    gan_gpu::checkpoint::write_atomically(
        &out.join("config.json"),
        serde_json::to_string_pretty(&config)?.as_bytes(),
    )
}

/// A flag that the first Ctrl-C raises, so that a long run finishes its step and writes
/// `what_is_saved` before exiting; a second Ctrl-C exits at once.
fn stop_on_ctrl_c(what_is_saved: &'static str) -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\nstopping: finishing the step and writing {what_is_saved} (Ctrl-C again to abort)"
        );
    })
    .context("installing the Ctrl-C handler")?;
    Ok(stop)
}

fn classifier_command(command: ClassifierCommand) -> Result<()> {
    match command {
        ClassifierCommand::Train { epochs, out, data_dir, seed, quiet, gpu } => {
            let model = classifier::ModelFile::shipped();
            let epochs = epochs.unwrap_or(model.train.epochs);
            if epochs == 0 {
                bail!("--epochs must be at least 1");
            }
            let train_set = data::load_training_set(DatasetName::Mnist, data_dir.as_deref())?;
            let test_set = data::load_test_set(DatasetName::Mnist, data_dir.as_deref())?;
            let gpu = gpu.open()?;
            let stop = stop_on_ctrl_c("the weights")?;
            eprintln!(
                "training the classifier on {} for {epochs} epochs, {} images of {}",
                gpu.describe(),
                train_set.count,
                train_set.source
            );
            let opts = classifier::TrainOptions { epochs, seed, progress: !quiet };
            let outcome = classifier::train(
                gpu.clone(),
                &model,
                &train_set,
                &test_set,
                &opts,
                &stop,
                |e, trained| {
                    trained.save(&gpu, &out)?;
                    println!(
                        "epoch {}: loss {:.4}, lr {:.2e}, test accuracy {:.2}% ({:.1} s training); wrote {}",
                        e.epoch,
                        e.loss,
                        e.lr,
                        100.0 * e.test_accuracy,
                        e.train_seconds,
                        out.display()
                    );
                    Ok(())
                },
            )?;
            if let classifier::Outcome::Interrupted { classifier, steps } = outcome {
                classifier.save(&gpu, &out)?;
                eprintln!("interrupted after {steps} steps; wrote {}", out.display());
                std::process::exit(130);
            }
            Ok(())
        }
        ClassifierCommand::Eval { weights, json, data_dir, gpu } => {
            let gpu = gpu.open()?;
            let classifier = match &weights {
                Some(path) => Classifier::load(&gpu, path)?,
                None => Classifier::shipped(&gpu)?,
            };
            let test_set = data::load_test_set(DatasetName::Mnist, data_dir.as_deref())?;
            let accuracy = classifier.accuracy(&gpu, &test_set);
            let correct = (accuracy * test_set.count as f64).round() as usize;
            let source = weights.as_ref().map_or("shipped".into(), |p| p.display().to_string());
            if json {
                let line = serde_json::json!({
                    "accuracy": accuracy, "correct": correct, "count": test_set.count,
                    "weights": source, "device": gpu.describe(),
                });
                println!("{line}");
            } else {
                println!(
                    "test accuracy {:.2}% ({correct} of {}), weights {source}, on {}",
                    100.0 * accuracy,
                    test_set.count,
                    gpu.describe()
                );
            }
            Ok(())
        }
    }
}
