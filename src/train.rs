//! The training loop. One iteration = one discriminator update on real and fake images, then
//! one generator update through the (untouched) discriminator. The whole iteration is recorded
//! once at start-up and replayed: each step is one queue submission, and the only readback is
//! the six metric floats on logging steps, mapped asynchronously.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::checkpoint::{Checkpoint, NetState};
use crate::cpu;
use crate::data::Dataset;
use crate::gpu::{Dispatch, Gpu, Op, Staging, Tensor, record};
use crate::images;
use crate::kernels::{AdamParams, StepUniform, gather, loss, metrics, optim, rng};
use crate::nn::presets::{DiscriminatorLoss, GanSpec, Noise};
use crate::nn::{Net, Pass};

/// RNG streams: each random draw of a step has its own, so they never overlap.
pub(crate) const STREAM_D_NOISE: u32 = 0;
pub(crate) const STREAM_BATCH: u32 = 1;
pub(crate) const STREAM_G_NOISE: u32 = 2;
const STREAM_SAMPLES: u32 = 3;

/// Images in the fixed-noise sample grid (10 x 10).
pub const SAMPLE_COUNT: usize = 100;

/// Steps that may be queued on the GPU ahead of the one that is running: enough to keep it
/// busy, few enough that Ctrl-C and metrics are prompt.
const MAX_IN_FLIGHT: usize = 3;

/// What one logged step measured.
#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    pub step: u64,
    pub d_loss: f32,
    pub g_loss: f32,
    pub d_acc_real: f32,
    pub d_acc_fake: f32,
    /// Real images consumed per second since the previous logged step.
    pub images_per_s: f64,
}

/// Metric slots in the GPU metrics buffer, as `kernels::metrics::batch_metrics` writes them.
pub(crate) const SLOT_REAL: usize = 0;
pub(crate) const SLOT_FAKE: usize = 2;
pub(crate) const SLOT_GEN: usize = 4;
pub const METRIC_SLOTS: usize = 6;

/// A GAN on the GPU with its recorded training iteration.
pub struct Trainer {
    pub gpu: Arc<Gpu>,
    pub spec: GanSpec,
    pub seed: u32,
    /// Iterations completed.
    pub step: u64,
    generator: Net,
    discriminator: Net,
    g_moments: (Vec<Tensor>, Vec<Tensor>),
    d_moments: (Vec<Tensor>, Vec<Tensor>),
    step_uniform: wgpu::Buffer,
    iteration: Vec<Op>,
    metrics: Tensor,
    sampler: Pass,
    in_flight: VecDeque<wgpu::SubmissionIndex>,
    pending_metrics: VecDeque<(u64, Staging)>,
    free_staging: Vec<Staging>,
}

fn noise(gpu: &Gpu, noise: Noise, out: &Tensor, stream: u32, step: &wgpu::Buffer) -> Dispatch {
    match noise {
        Noise::Uniform { low, high } => {
            rng::rng_uniform(gpu, out, out.len, low, high, stream, step)
        }
        Noise::Normal { mean, std } => rng::rng_normal(gpu, out, out.len, mean, std, stream, step),
    }
}

fn adam_ops(
    gpu: &Gpu,
    net: &Net,
    grads: &[Tensor],
    m: &[Tensor],
    v: &[Tensor],
    hp: AdamParams,
    step: &wgpu::Buffer,
) -> Vec<Op> {
    (0..net.params.len())
        .map(|i| {
            optim::adam(gpu, &net.params[i], &grads[i], &m[i], &v[i], net.params[i].len, hp, step)
                .into()
        })
        .collect()
}

impl Trainer {
    /// Builds the networks (from `resume` when given, else freshly initialised from `seed`),
    /// uploads the dataset and records one training iteration.
    pub fn new(
        gpu: Arc<Gpu>,
        spec: GanSpec,
        dataset: &Dataset,
        seed: u32,
        resume: Option<Checkpoint>,
    ) -> Result<Trainer> {
        let image_len = dataset.rows * dataset.cols;
        anyhow::ensure!(
            image_len == spec.discriminator.input,
            "the dataset's images are {}x{} = {image_len} pixels but model {} expects {}",
            dataset.rows,
            dataset.cols,
            spec.name,
            spec.discriminator.input
        );
        anyhow::ensure!(
            spec.discriminator.output() == 1,
            "the discriminator must end in one logit"
        );
        anyhow::ensure!(
            spec.generator.output() == image_len,
            "the generator must produce {image_len} pixels"
        );
        let (seed, step, g_state, d_state) = match resume {
            Some(ck) => {
                anyhow::ensure!(
                    ck.spec == spec,
                    "the checkpoint holds model {:?}, not {:?}",
                    ck.spec.name,
                    spec.name
                );
                (ck.seed, ck.step, ck.generator, ck.discriminator)
            }
            None => {
                let (g, d) = initial_state(&spec, seed);
                (seed, 0, g, d)
            }
        };
        let generator = Net::new(&gpu, spec.generator.clone(), &g_state.params);
        let discriminator = Net::new(&gpu, spec.discriminator.clone(), &d_state.params);
        let upload_all = |v: &[Vec<f32>]| v.iter().map(|t| gpu.upload(t)).collect::<Vec<_>>();
        let g_moments = (upload_all(&g_state.adam_m), upload_all(&g_state.adam_v));
        let d_moments = (upload_all(&d_state.adam_m), upload_all(&d_state.adam_v));
        let g_grads = generator.zeros_like_params(&gpu);
        let d_grads = discriminator.zeros_like_params(&gpu);

        let r = &spec.recipe;
        let batch = r.batch;
        let nz = spec.noise_dim();
        let step_uniform = gpu.uniform(&StepUniform::default());
        let dataset_words = gpu.upload_u32(&pack_bytes(&dataset.images));

        // Discriminator update: real rows then fake rows in one batch of 2B.
        let d_noise = gpu.zeros(batch * nz);
        let indices = gpu.zeros(batch);
        let d_input = gpu.zeros(2 * batch * image_len);
        let g_fake = generator.pass(&gpu, batch, &d_noise, None, None);
        let d_train = discriminator.pass(&gpu, 2 * batch, &d_input, Some(&d_grads), None);
        let mut d_targets = vec![r.real_label; batch];
        d_targets.extend(vec![0.0; batch]);
        let d_targets = gpu.upload(&d_targets);
        let d_losses = gpu.zeros(2 * batch);
        let d_grad_scale = match r.d_loss {
            DiscriminatorLoss::MeanOverBoth => 1.0 / (2 * batch) as f32,
            DiscriminatorLoss::SumOfMeans => 1.0 / batch as f32,
        };
        let metrics_buf = gpu.zeros(METRIC_SLOTS);
        let (lo, hi) = r.pixel_range;

        let mut ops: Vec<Op> = vec![
            noise(&gpu, r.noise, &d_noise, STREAM_D_NOISE, &step_uniform).into(),
            rng::rng_randint(
                &gpu,
                &indices,
                batch,
                dataset.count as u32,
                STREAM_BATCH,
                &step_uniform,
            )
            .into(),
            gather::gather_rows(
                &gpu,
                &dataset_words,
                &indices,
                &d_input,
                batch,
                image_len,
                (hi - lo) / 255.0,
                lo,
            )
            .into(),
        ];
        ops.extend(g_fake.forward.iter().cloned());
        ops.push(Op::Copy {
            src: g_fake.output.clone(),
            src_offset: 0,
            dst: d_input.clone(),
            dst_offset: batch * image_len,
            len: batch * image_len,
        });
        ops.extend(d_train.forward.iter().cloned());
        ops.push(
            loss::bce_with_logits(
                &gpu,
                &d_train.output,
                &d_targets,
                &d_train.output_grad,
                &d_losses,
                2 * batch,
                d_grad_scale,
            )
            .into(),
        );
        ops.extend(d_train.backward.iter().cloned());
        ops.push(
            metrics::batch_metrics(
                &gpu,
                &d_train.output,
                &d_losses,
                &metrics_buf,
                SLOT_REAL,
                0,
                batch,
                true,
            )
            .into(),
        );
        ops.push(
            metrics::batch_metrics(
                &gpu,
                &d_train.output,
                &d_losses,
                &metrics_buf,
                SLOT_FAKE,
                batch,
                batch,
                false,
            )
            .into(),
        );
        ops.extend(adam_ops(
            &gpu,
            &discriminator,
            &d_grads,
            &d_moments.0,
            &d_moments.1,
            r.d_optimizer,
            &step_uniform,
        ));

        // Generator update: fakes labelled real, gradients through D into G; D's weights stay.
        let g_noise = gpu.zeros(batch * nz);
        let g_train = generator.pass(&gpu, batch, &g_noise, Some(&g_grads), None);
        // D's input gradient is G's output gradient: the two passes share that buffer.
        let d_judge =
            discriminator.pass(&gpu, batch, &g_train.output, None, Some(&g_train.output_grad));
        let g_targets = gpu.upload(&vec![1.0; batch]);
        let g_losses = gpu.zeros(batch);
        ops.push(noise(&gpu, r.noise, &g_noise, STREAM_G_NOISE, &step_uniform).into());
        ops.extend(g_train.forward.iter().cloned());
        ops.extend(d_judge.forward.iter().cloned());
        ops.push(
            loss::bce_with_logits(
                &gpu,
                &d_judge.output,
                &g_targets,
                &d_judge.output_grad,
                &g_losses,
                batch,
                1.0 / batch as f32,
            )
            .into(),
        );
        ops.extend(d_judge.backward.iter().cloned());
        ops.extend(g_train.backward.iter().cloned());
        ops.push(
            metrics::batch_metrics(
                &gpu,
                &d_judge.output,
                &g_losses,
                &metrics_buf,
                SLOT_GEN,
                0,
                batch,
                true,
            )
            .into(),
        );
        ops.extend(adam_ops(
            &gpu,
            &generator,
            &g_grads,
            &g_moments.0,
            &g_moments.1,
            r.g_optimizer,
            &step_uniform,
        ));

        // The sample grid's noise is fixed for the whole run (and across resumes).
        let mut sample_noise = vec![0.0; SAMPLE_COUNT * nz];
        let sample_step = StepUniform { step: 0, seed, _pad: [0; 2] };
        match r.noise {
            Noise::Uniform { low, high } => cpu::rng::rng_uniform(
                &mut sample_noise,
                SAMPLE_COUNT * nz,
                low,
                high,
                STREAM_SAMPLES,
                &sample_step,
            ),
            Noise::Normal { mean, std } => cpu::rng::rng_normal(
                &mut sample_noise,
                SAMPLE_COUNT * nz,
                mean,
                std,
                STREAM_SAMPLES,
                &sample_step,
            ),
        }
        let sampler = generator.pass(&gpu, SAMPLE_COUNT, &gpu.upload(&sample_noise), None, None);

        Ok(Trainer {
            gpu,
            spec,
            seed,
            step,
            generator,
            discriminator,
            g_moments,
            d_moments,
            step_uniform,
            iteration: ops,
            metrics: metrics_buf,
            sampler,
            in_flight: VecDeque::new(),
            pending_metrics: VecDeque::new(),
            free_staging: Vec::new(),
        })
    }

    /// Submits one training iteration. With `log`, its metrics are read back asynchronously
    /// and come out of a later [`Trainer::poll_metrics`].
    pub fn step(&mut self, log: bool) {
        self.step += 1;
        let uniform = StepUniform { step: self.step as u32, seed: self.seed, _pad: [0; 2] };
        self.gpu.queue.write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&uniform));
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        record(&mut encoder, &self.iteration);
        let staging = log.then(|| {
            let s = self
                .free_staging
                .pop()
                .unwrap_or_else(|| Staging::new(&self.gpu, (METRIC_SLOTS * 4) as u64));
            s.copy_from(&mut encoder, &self.metrics.buffer);
            s
        });
        let index = self.gpu.queue.submit([encoder.finish()]);
        if let Some(s) = staging {
            s.map();
            self.pending_metrics.push_back((self.step, s));
        }
        self.in_flight.push_back(index);
        if self.in_flight.len() > MAX_IN_FLIGHT {
            let oldest = self.in_flight.pop_front().unwrap();
            self.gpu
                .device
                .poll(wgpu::PollType::Wait { submission_index: Some(oldest), timeout: None })
                .expect("GPU device lost");
        }
    }

    /// Metrics of logged steps whose readback has completed, oldest first; with `wait`, all of
    /// them (waits for the GPU).
    pub fn poll_metrics(&mut self, wait: bool) -> Vec<(u64, [f32; METRIC_SLOTS])> {
        let poll = if wait { wgpu::PollType::wait_indefinitely() } else { wgpu::PollType::Poll };
        self.gpu.device.poll(poll).expect("GPU device lost");
        let mut done = Vec::new();
        while let Some((step, staging)) = self.pending_metrics.front() {
            let Some(bytes) = staging.try_take() else { break };
            let values: [f32; METRIC_SLOTS] =
                bytemuck::cast_slice(&bytes)[..METRIC_SLOTS].try_into().unwrap();
            done.push((*step, values));
            let (_, staging) = self.pending_metrics.pop_front().unwrap();
            self.free_staging.push(staging);
        }
        done
    }

    /// The generator's images for the fixed sample noise, in the recipe's pixel range.
    pub fn samples(&self) -> Vec<f32> {
        self.gpu.run(&self.sampler.forward);
        self.gpu.read(&self.sampler.output)
    }

    /// Everything needed to continue exactly where this step left off (waits for the GPU).
    pub fn checkpoint(&self) -> Checkpoint {
        let read_all = |ts: &[Tensor]| ts.iter().map(|t| self.gpu.read(t)).collect::<Vec<_>>();
        Checkpoint {
            spec: self.spec.clone(),
            step: self.step,
            seed: self.seed,
            generator: NetState {
                params: read_all(&self.generator.params),
                adam_m: read_all(&self.g_moments.0),
                adam_v: read_all(&self.g_moments.1),
            },
            discriminator: NetState {
                params: read_all(&self.discriminator.params),
                adam_m: read_all(&self.d_moments.0),
                adam_v: read_all(&self.d_moments.1),
            },
        }
    }

    /// The loss and accuracy figures of one metrics readback, combined as the recipe defines.
    pub fn metrics_from(
        &self,
        step: u64,
        values: [f32; METRIC_SLOTS],
        images_per_s: f64,
    ) -> Metrics {
        let d_loss = match self.spec.recipe.d_loss {
            DiscriminatorLoss::MeanOverBoth => (values[SLOT_REAL] + values[SLOT_FAKE]) / 2.0,
            DiscriminatorLoss::SumOfMeans => values[SLOT_REAL] + values[SLOT_FAKE],
        };
        Metrics {
            step,
            d_loss,
            g_loss: values[SLOT_GEN],
            d_acc_real: values[SLOT_REAL + 1],
            d_acc_fake: values[SLOT_FAKE + 1],
            images_per_s,
        }
    }
}

/// Freshly initialised generator and discriminator with zero optimizer moments.
pub(crate) fn initial_state(spec: &GanSpec, seed: u32) -> (NetState, NetState) {
    let fresh = |net: &crate::nn::NetSpec, salt: u64| {
        let params = net.init_params(seed as u64 * 2 + salt);
        let zeros: Vec<Vec<f32>> = params.iter().map(|p| vec![0.0; p.len()]).collect();
        NetState { params, adam_m: zeros.clone(), adam_v: zeros }
    };
    (fresh(&spec.generator, 0), fresh(&spec.discriminator, 1))
}

/// Bytes packed four to a little-endian u32 word, the form the gather kernel reads.
fn pack_bytes(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut word = [0u8; 4];
            word[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(word)
        })
        .collect()
}

/// What `train` is asked to do.
#[derive(Clone, Debug, Serialize)]
pub struct TrainOptions {
    /// Train until this many iterations are complete (counting those of a resumed checkpoint).
    pub iters: u64,
    pub seed: u32,
    pub out: PathBuf,
    pub sample_every: u64,
    pub checkpoint_every: u64,
    pub log_every: u64,
    pub progress: bool,
}

/// How a run ended.
#[derive(Debug)]
pub struct Summary {
    pub steps_done: u64,
    pub interrupted: bool,
    pub last: Option<Metrics>,
    pub seconds: f64,
}

fn checkpoint_paths(out: &Path, step: u64) -> (PathBuf, PathBuf) {
    let dir = out.join("checkpoints");
    (dir.join(format!("step-{step:06}.safetensors")), dir.join("latest.safetensors"))
}

/// Writes a checkpoint of the trainer's current step, and `latest.safetensors` beside it.
pub fn save_checkpoint(trainer: &Trainer, out: &Path) -> Result<PathBuf> {
    let (path, latest) = checkpoint_paths(out, trainer.step);
    let ck = trainer.checkpoint();
    ck.save(&path)?;
    ck.save(&latest)?;
    Ok(path)
}

fn save_samples(trainer: &Trainer, out: &Path) -> Result<()> {
    let pixels = images::to_bytes(&trainer.samples(), trainer.spec.recipe.pixel_range);
    let dir = out.join("samples");
    std::fs::create_dir_all(&dir)?;
    images::save_grid(
        &dir.join(format!("step-{:06}.png", trainer.step)),
        &pixels,
        SAMPLE_COUNT,
        28,
        28,
    )
}

/// Runs the training loop until `opts.iters` or until `stop` is raised (Ctrl-C): the step in
/// progress finishes, a checkpoint is written, and the run ends cleanly.
pub fn train(trainer: &mut Trainer, opts: &TrainOptions, stop: &AtomicBool) -> Result<Summary> {
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(opts.out.join("metrics.jsonl"))
        .context("opening metrics.jsonl")?;
    let start_step = trainer.step;
    let bar = if opts.progress {
        indicatif::ProgressBar::new(opts.iters)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}",
        )
        .unwrap()
        .progress_chars("=> "),
    );
    bar.set_position(start_step);
    let started = Instant::now();
    let mut last_log = (start_step, Instant::now());
    let mut last = None;
    let mut interrupted = false;
    let batch = trainer.spec.recipe.batch as f64;

    let mut write_metrics = |trainer: &Trainer,
                             ready: Vec<(u64, [f32; METRIC_SLOTS])>,
                             last: &mut Option<Metrics>,
                             last_log: &mut (u64, Instant)|
     -> Result<()> {
        for (step, values) in ready {
            let now = Instant::now();
            let rate = (step - last_log.0) as f64 * batch
                / now.duration_since(last_log.1).as_secs_f64().max(1e-9);
            *last_log = (step, now);
            let m = trainer.metrics_from(step, values, rate);
            writeln!(log, "{}", serde_json::to_string(&m)?)?;
            bar.set_message(format!(
                "d_loss {:.3} g_loss {:.3} acc {:.2}/{:.2}",
                m.d_loss, m.g_loss, m.d_acc_real, m.d_acc_fake
            ));
            *last = Some(m);
        }
        Ok(())
    };

    while trainer.step < opts.iters {
        let next = trainer.step + 1;
        let log_step = next.is_multiple_of(opts.log_every) || next == opts.iters;
        trainer.step(log_step);
        bar.set_position(trainer.step);
        let ready = trainer.poll_metrics(false);
        write_metrics(trainer, ready, &mut last, &mut last_log)?;
        if opts.sample_every > 0 && trainer.step.is_multiple_of(opts.sample_every) {
            save_samples(trainer, &opts.out)?;
        }
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        if opts.checkpoint_every > 0
            && trainer.step.is_multiple_of(opts.checkpoint_every)
            && trainer.step < opts.iters
        {
            save_checkpoint(trainer, &opts.out)?;
        }
    }
    let ready = trainer.poll_metrics(true);
    write_metrics(trainer, ready, &mut last, &mut last_log)?;
    log.sync_all()?;
    if trainer.step > start_step {
        if opts.sample_every == 0 || !trainer.step.is_multiple_of(opts.sample_every) {
            save_samples(trainer, &opts.out)?;
        }
        save_checkpoint(trainer, &opts.out)?;
    }
    bar.finish_and_clear();
    Ok(Summary {
        steps_done: trainer.step - start_step,
        interrupted,
        last,
        seconds: started.elapsed().as_secs_f64(),
    })
}
