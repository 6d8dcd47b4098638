//! The training loop. One iteration = one discriminator update on real and fake images, then
//! one generator update through the (untouched) discriminator. The whole iteration is recorded
//! once at start-up and replayed: each step is one queue submission, and the only readback is
//! the six metric floats on logging steps (reduced on those steps only), mapped asynchronously.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::checkpoint::{Checkpoint, GeneratorEma, NetState};
use crate::data::Dataset;
use crate::eval::TrainEval;
use crate::gpu::{Gpu, Op, Staging, Tensor, record};
use crate::images;
use crate::kernels::gather::PackedRows;
use crate::kernels::{StepUniform, loss, metrics, optim, rng};
use crate::nn::gan::{DiscriminatorLoss, GanSpec, GeneratorMode, Optimizer};
use crate::nn::spec::NetSpec;
use crate::nn::{self, Grads, Mode, Net, Pass};
use crate::report;

/// RNG streams: each random draw of a step has its own, so they never overlap.
pub(crate) const STREAM_D_NOISE: u32 = 0;
pub(crate) const STREAM_BATCH: u32 = 1;
pub(crate) const STREAM_G_NOISE: u32 = 2;
const STREAM_SAMPLES: u32 = 3;
const STREAM_EVAL_BATCH: u32 = 4;
const STREAM_EVAL_NOISE: u32 = 5;

/// Real and fake images the discriminator is evaluated on in a summary (seed 003's
/// `summarize_performance`).
pub const EVAL_COUNT: usize = 100;

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

/// Dropout streams of each pass (layer i of a pass uses base + i): distinct from the other
/// streams and from each other, so no two masks of a step coincide.
pub(crate) const DROPOUT_G_FAKES: u32 = 1000;
pub(crate) const DROPOUT_D_TRAIN: u32 = 2000;
pub(crate) const DROPOUT_G_TRAIN: u32 = 3000;
pub(crate) const DROPOUT_D_JUDGE: u32 = 4000;

/// A network with its optimizer state on the GPU.
struct Trained {
    net: Net,
    grads: Vec<Tensor>,
    /// moments[k][j]: optimizer moment k of trainable parameter j.
    moments: Vec<Vec<Tensor>>,
}

impl Trained {
    fn new(gpu: &Gpu, spec: NetSpec, state: &NetState) -> Trained {
        let net = Net::new(gpu, spec, &state.params);
        let grads = net.zeros_like_trainable(gpu);
        let moments =
            state.moments.iter().map(|m| m.iter().map(|t| gpu.upload(t)).collect()).collect();
        Trained { net, grads, moments }
    }

    /// One optimizer update of every trainable parameter from `grads`.
    fn update(&self, gpu: &Gpu, opt: &Optimizer, step: &wgpu::Buffer) -> Vec<Op> {
        self.net
            .trainable()
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let (w, g) = (&self.net.params[i], &self.grads[j]);
                match (opt.adam(), opt.rmsprop()) {
                    (Some(hp), _) => optim::adam(
                        gpu,
                        w,
                        g,
                        &self.moments[0][j],
                        &self.moments[1][j],
                        w.len,
                        hp,
                        step,
                    ),
                    (_, Some(hp)) => optim::rmsprop(gpu, w, g, &self.moments[0][j], w.len, hp),
                    _ => unreachable!("an optimizer is Adam or RMSprop"),
                }
                .into()
            })
            .collect()
    }

    fn state(&self, gpu: &Gpu) -> NetState {
        let read_all = |ts: &[Tensor]| ts.iter().map(|t| gpu.read(t)).collect::<Vec<_>>();
        NetState {
            params: read_all(&self.net.params),
            moments: self.moments.iter().map(|m| read_all(m)).collect(),
        }
    }
}

/// The exponential moving average of the generator's tensors, on the GPU.
struct Ema {
    decay: f32,
    /// The generator with the averages for weights, for sample grids.
    average: Net,
    sampler: Pass,
}

/// A GAN on the GPU with its recorded training iteration.
pub struct Trainer {
    pub gpu: Arc<Gpu>,
    pub spec: GanSpec,
    pub seed: u32,
    /// Iterations completed.
    pub step: u64,
    generator: Trained,
    discriminator: Trained,
    step_uniform: wgpu::Buffer,
    iteration: Vec<Op>,
    /// The iteration's loss and accuracy reductions into `metrics`: recorded after it, on
    /// logged steps only (they read buffers the iteration leaves as they are).
    metric_ops: Vec<Op>,
    metrics: Tensor,
    sampler: Pass,
    sample_noise: Tensor,
    ema: Option<Ema>,
    /// Discriminator accuracy on fresh real and fake images, in inference mode.
    evaluation: Vec<Op>,
    eval_metrics: Tensor,
    in_flight: VecDeque<wgpu::SubmissionIndex>,
    pending_metrics: VecDeque<(u64, Staging)>,
    free_staging: Vec<Staging>,
}

fn mode(m: GeneratorMode) -> Mode {
    match m {
        GeneratorMode::Training => Mode::Training,
        GeneratorMode::Inference => Mode::Inference,
    }
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
        spec.check()?;
        let [h, w, c] = spec.image;
        anyhow::ensure!(
            (dataset.rows, dataset.cols, 1) == (h, w, c),
            "the dataset's images are {}x{}x1 but model {} expects {h}x{w}x{c}",
            dataset.rows,
            dataset.cols,
            spec.name,
        );
        let image_len = spec.image_len();
        check_fits(&gpu, &spec)?;
        let (seed, step, g_state, d_state, ema) = match resume {
            Some(ck) => {
                anyhow::ensure!(
                    ck.spec == spec,
                    "the checkpoint holds model {:?}, not {:?}",
                    ck.spec.name,
                    spec.name
                );
                (ck.seed, ck.step, ck.generator, ck.discriminator, ck.ema)
            }
            None => {
                let (g, d) = initial_state(&spec, seed);
                (seed, 0, g, d, None)
            }
        };
        let generator = Trained::new(&gpu, spec.generator.clone(), &g_state);
        let discriminator = Trained::new(&gpu, spec.discriminator_logits(), &d_state);
        let (g, d) = (&generator, &discriminator);

        let r = &spec.recipe;
        let (batch, g_batch) = (r.batch, r.g_batch());
        let nz = spec.noise_dim();
        let step_uniform = gpu.uniform(&StepUniform::default());
        let su = &step_uniform;
        let dataset_rows = PackedRows::upload(&gpu, &dataset.images, image_len);
        let no_grads = Grads::default();

        // Discriminator update: real rows then fake rows in one batch of 2B.
        let d_noise = gpu.zeros(batch * nz);
        let indices = gpu.zeros(batch);
        let d_input = gpu.zeros(2 * batch * image_len);
        let g_fakes =
            g.net.pass(&gpu, batch, &d_noise, mode(r.fakes_for_d), no_grads, DROPOUT_G_FAKES, su);
        let d_grads = Grads { params: Some(&d.grads), ..Grads::default() };
        let d_train =
            d.net.pass(&gpu, 2 * batch, &d_input, Mode::Training, d_grads, DROPOUT_D_TRAIN, su);
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
            r.noise.draw(&gpu, &d_noise, STREAM_D_NOISE, su).into(),
            rng::rng_randint(&gpu, &indices, batch, dataset.count as u32, STREAM_BATCH, su).into(),
        ];
        let scale = (hi - lo) / 255.0;
        ops.extend(
            dataset_rows
                .gather(&gpu, &indices, &d_input, batch, scale, lo)
                .into_iter()
                .map(Op::from),
        );
        ops.extend(g_fakes.forward.iter().cloned());
        ops.push(Op::Copy {
            src: g_fakes.output.clone(),
            src_offset: 0,
            dst: d_input.clone(),
            dst_offset: batch * image_len,
            len: batch * image_len,
        });
        ops.extend(d_train.forward.iter().cloned());
        let (z, t, dz) = (&d_train.output, &d_targets, &d_train.output_grad);
        ops.push(loss::bce_with_logits(&gpu, z, t, dz, &d_losses, 2 * batch, d_grad_scale).into());
        ops.extend(d_train.backward.iter().cloned());
        // D's logits and losses here are not written again in the iteration.
        let mut metric_ops: Vec<Op> = vec![
            metrics::batch_metrics(&gpu, z, &d_losses, &metrics_buf, SLOT_REAL, 0, batch, true)
                .into(),
            metrics::batch_metrics(
                &gpu,
                z,
                &d_losses,
                &metrics_buf,
                SLOT_FAKE,
                batch,
                batch,
                false,
            )
            .into(),
        ];
        ops.extend(d.update(&gpu, &r.d_optimizer, su));

        // Generator update: fakes labelled real, gradients through D into G; D's weights stay.
        let g_noise = gpu.zeros(g_batch * nz);
        // D's input gradient is G's output gradient: the two passes share that buffer, and D
        // applies the derivative of G's last activation where it can.
        let boundary = nn::activation_between(&g.net.spec, &d.net.spec);
        let g_grads = Grads {
            params: Some(&g.grads),
            output_grad_activated: boundary.is_some(),
            ..Grads::default()
        };
        let g_train =
            g.net.pass(&gpu, g_batch, &g_noise, Mode::Training, g_grads, DROPOUT_G_TRAIN, su);
        let through_d = Grads {
            input: Some(&g_train.output_grad),
            input_activation: boundary,
            ..Grads::default()
        };
        let d_judge = d.net.pass(
            &gpu,
            g_batch,
            &g_train.output,
            Mode::Training,
            through_d,
            DROPOUT_D_JUDGE,
            su,
        );
        let g_targets = gpu.upload(&vec![1.0; g_batch]);
        let g_losses = gpu.zeros(g_batch);
        ops.push(r.noise.draw(&gpu, &g_noise, STREAM_G_NOISE, su).into());
        ops.extend(g_train.forward.iter().cloned());
        ops.extend(d_judge.forward.iter().cloned());
        let (z, dz) = (&d_judge.output, &d_judge.output_grad);
        ops.push(
            loss::bce_with_logits(
                &gpu,
                z,
                &g_targets,
                dz,
                &g_losses,
                g_batch,
                1.0 / g_batch as f32,
            )
            .into(),
        );
        ops.extend(d_judge.backward.iter().cloned());
        ops.extend(g_train.backward.iter().cloned());
        metric_ops.push(
            metrics::batch_metrics(&gpu, z, &g_losses, &metrics_buf, SLOT_GEN, 0, g_batch, true)
                .into(),
        );
        ops.extend(g.update(&gpu, &r.g_optimizer, su));

        // The sample grid's noise is fixed for the whole run (and across resumes); the
        // generator makes it in inference mode, as Keras's `predict` does.
        let mut sample_noise = vec![0.0; SAMPLE_COUNT * nz];
        let sample_step = StepUniform::new(0, seed);
        r.noise.draw_cpu(&mut sample_noise, STREAM_SAMPLES, &sample_step);
        let sample_noise = gpu.upload(&sample_noise);
        let sampler =
            g.net.pass(&gpu, SAMPLE_COUNT, &sample_noise, Mode::Inference, no_grads, 0, su);

        // Summaries: D judges EVAL_COUNT fresh real images and as many fakes, in inference
        // mode, as Keras's `evaluate` does.
        let (eval_noise, eval_indices) = (gpu.zeros(EVAL_COUNT * nz), gpu.zeros(EVAL_COUNT));
        let eval_input = gpu.zeros(2 * EVAL_COUNT * image_len);
        let eval_fakes =
            g.net.pass(&gpu, EVAL_COUNT, &eval_noise, Mode::Inference, no_grads, 0, su);
        let eval_d =
            d.net.pass(&gpu, 2 * EVAL_COUNT, &eval_input, Mode::Inference, no_grads, 0, su);
        let mut eval_targets = vec![1.0; EVAL_COUNT];
        eval_targets.extend(vec![0.0; EVAL_COUNT]);
        let (eval_targets, eval_losses) = (gpu.upload(&eval_targets), gpu.zeros(2 * EVAL_COUNT));
        let (eval_grad, eval_metrics) = (gpu.zeros(2 * EVAL_COUNT), gpu.zeros(4));
        let mut evaluation: Vec<Op> = vec![
            r.noise.draw(&gpu, &eval_noise, STREAM_EVAL_NOISE, su).into(),
            rng::rng_randint(
                &gpu,
                &eval_indices,
                EVAL_COUNT,
                dataset.count as u32,
                STREAM_EVAL_BATCH,
                su,
            )
            .into(),
        ];
        evaluation.extend(
            dataset_rows
                .gather(&gpu, &eval_indices, &eval_input, EVAL_COUNT, scale, lo)
                .into_iter()
                .map(Op::from),
        );
        evaluation.extend(eval_fakes.forward.iter().cloned());
        evaluation.push(Op::Copy {
            src: eval_fakes.output.clone(),
            src_offset: 0,
            dst: eval_input.clone(),
            dst_offset: EVAL_COUNT * image_len,
            len: EVAL_COUNT * image_len,
        });
        evaluation.extend(eval_d.forward.iter().cloned());
        let z = &eval_d.output;
        evaluation.push(
            loss::bce_with_logits(
                &gpu,
                z,
                &eval_targets,
                &eval_grad,
                &eval_losses,
                2 * EVAL_COUNT,
                0.0,
            )
            .into(),
        );
        evaluation.push(
            metrics::batch_metrics(&gpu, z, &eval_losses, &eval_metrics, 0, 0, EVAL_COUNT, true)
                .into(),
        );
        evaluation.push(
            metrics::batch_metrics(
                &gpu,
                z,
                &eval_losses,
                &eval_metrics,
                2,
                EVAL_COUNT,
                EVAL_COUNT,
                false,
            )
            .into(),
        );

        let mut trainer = Trainer {
            gpu,
            spec,
            seed,
            step,
            generator,
            discriminator,
            step_uniform,
            iteration: ops,
            metric_ops,
            metrics: metrics_buf,
            sampler,
            sample_noise,
            ema: None,
            evaluation,
            eval_metrics,
            in_flight: VecDeque::new(),
            pending_metrics: VecDeque::new(),
            free_staging: Vec::new(),
        };
        if let Some(ema) = ema {
            trainer.attach_ema(ema.decay, &ema.params);
        }
        Ok(trainer)
    }

    /// Keeps an exponential moving average of the generator's tensors from now on: it starts
    /// at the current weights and is updated at the end of every step, in the step's own
    /// submission. A trainer resumed from a checkpoint with an average keeps it already; asking
    /// for another decay then is an error.
    pub fn keep_ema(&mut self, decay: f32) -> Result<()> {
        check_ema_decay(decay)?;
        match &self.ema {
            Some(ema) if ema.decay == decay => {}
            Some(ema) => anyhow::bail!(
                "the checkpoint keeps a moving average with decay {}: resume with --ema {} or \
                 without --ema",
                ema.decay,
                ema.decay
            ),
            None => {
                let current = self.generator.state(&self.gpu).params;
                self.attach_ema(decay, &current);
            }
        }
        Ok(())
    }

    /// Uploads the averages and appends their update to the recorded iteration.
    ///
    /// Every generator tensor is averaged, batch norm's moving statistics included: the average
    /// network is roughly the trained one of 1 / (1 - decay) steps earlier, and averaged
    /// statistics lag the same way, where copied ones would describe the current weights.
    fn attach_ema(&mut self, decay: f32, values: &[Vec<f32>]) {
        let gpu = &self.gpu;
        let average = Net::new(gpu, self.spec.generator.clone(), values);
        for (avg, weights) in average.params.iter().zip(&self.generator.net.params) {
            self.iteration.push(optim::ema_update(gpu, avg, weights, avg.len, decay).into());
        }
        let no_grads = Grads::default();
        let (noise, su) = (&self.sample_noise, &self.step_uniform);
        let sampler = average.pass(gpu, SAMPLE_COUNT, noise, Mode::Inference, no_grads, 0, su);
        self.ema = Some(Ema { decay, average, sampler });
    }

    /// The decay of the generator's moving average, when the trainer keeps one.
    pub fn ema_decay(&self) -> Option<f32> {
        self.ema.as_ref().map(|ema| ema.decay)
    }

    /// The recorded training iteration, for timing it kernel by kernel.
    pub fn iteration(&self) -> &[Op] {
        &self.iteration
    }

    /// Submits one training iteration. With `log`, its metrics are read back asynchronously
    /// and come out of a later [`Trainer::poll_metrics`].
    pub fn step(&mut self, log: bool) {
        self.step += 1;
        let uniform = StepUniform::new(self.step as u32, self.seed);
        self.gpu.queue.write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&uniform));
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        record(&mut encoder, &self.iteration);
        let staging = log.then(|| {
            record(&mut encoder, &self.metric_ops);
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
        if !wait {
            self.gpu.device.poll(wgpu::PollType::Poll).expect("GPU device lost");
        }
        let mut done = Vec::new();
        while let Some((step, staging)) = self.pending_metrics.front() {
            let bytes = if wait { Some(staging.take(&self.gpu)) } else { staging.try_take() };
            let Some(bytes) = bytes else { break };
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

    /// Like [`Trainer::samples`], from the generator's moving average when one is kept.
    pub fn ema_samples(&self) -> Option<Vec<f32>> {
        let ema = self.ema.as_ref()?;
        self.gpu.run(&ema.sampler.forward);
        Some(self.gpu.read(&ema.sampler.output))
    }

    /// The discriminator's accuracy on EVAL_COUNT fresh real images and as many fresh fakes
    /// (waits for the GPU). The images depend on the seed and the current step only.
    pub fn evaluate_discriminator(&self) -> (f32, f32) {
        self.gpu.run(&self.evaluation);
        let m = self.gpu.read(&self.eval_metrics);
        (m[1], m[3])
    }

    /// Everything needed to continue exactly where this step left off (waits for the GPU).
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            spec: self.spec.clone(),
            step: self.step,
            seed: self.seed,
            generator: self.generator.state(&self.gpu),
            discriminator: self.discriminator.state(&self.gpu),
            ema: self.ema.as_ref().map(|ema| GeneratorEma {
                decay: ema.decay,
                params: ema.average.params.iter().map(|t| self.gpu.read(t)).collect(),
            }),
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

/// What the trainer binds whole must fit the device's storage-binding limit (128 MiB under
/// WebGPU's defaults): the batches of noise and images that the networks exchange, every
/// parameter, and one image's activations. The passes split larger batches' activations into
/// chunks (see [`crate::nn::batch_chunks`]); the dataset is sharded.
fn check_fits(gpu: &Gpu, spec: &GanSpec) -> Result<()> {
    let limit = gpu.largest_binding();
    let r = &spec.recipe;
    let mib = |bytes: u64| bytes.div_ceil(1 << 20);
    let batches = [
        (2 * r.batch).max(r.g_batch()) * spec.image_len(),
        r.batch.max(r.g_batch()) * spec.noise_dim(),
    ];
    let need = 4 * *batches.iter().max().unwrap() as u64;
    anyhow::ensure!(
        need <= limit,
        "batch {} of model {} needs a {} MiB buffer of images, over this device's limit of {} MiB \
         per binding: use a smaller --batch-size",
        r.batch,
        spec.name,
        mib(need),
        mib(limit)
    );
    let largest = |net: &NetSpec| {
        let params = net.params().iter().map(|p| p.numel()).max().unwrap_or(0);
        4 * params.max(net.widest_activation()) as u64
    };
    let need = largest(&spec.generator).max(largest(&spec.discriminator));
    anyhow::ensure!(
        need <= limit,
        "model {} needs a {} MiB buffer for one image's activations or its largest parameter, \
         over this device's limit of {} MiB per binding: use a smaller model or another device",
        spec.name,
        mib(need),
        mib(limit)
    );
    Ok(())
}

/// A progress bar over `steps` training steps (steps/s, time left and a message), or a hidden
/// one when not `visible`.
pub(crate) fn step_progress_bar(steps: u64, visible: bool) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    indicatif::ProgressBar::new(steps).with_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}",
        )
        .unwrap()
        .progress_chars("=> "),
    )
}

/// A moving average's decay must lie strictly between 0 (no averaging) and 1 (frozen).
pub fn check_ema_decay(decay: f32) -> Result<()> {
    anyhow::ensure!(
        decay > 0.0 && decay < 1.0,
        "--ema {decay} is not a decay: give a number between 0 and 1, such as 0.999"
    );
    Ok(())
}

/// Freshly initialised generator and discriminator with zero optimizer moments.
pub(crate) fn initial_state(spec: &GanSpec, seed: u32) -> (NetState, NetState) {
    let fresh = |net: &NetSpec, opt: &Optimizer, salt: u64| {
        let params = net.init_params(seed as u64 * 2 + salt);
        let trainable = net
            .params()
            .iter()
            .filter(|p| p.trainable)
            .map(|p| vec![0.0; p.numel()])
            .collect::<Vec<_>>();
        NetState { params, moments: vec![trainable; opt.moments()] }
    };
    let r = &spec.recipe;
    (fresh(&spec.generator, &r.g_optimizer, 0), fresh(&spec.discriminator, &r.d_optimizer, 1))
}

/// Milliseconds per training iteration: `warmup` untimed steps (pipelines compile, caches
/// fill), then `iters` steps timed from the first submission to the last one's completion.
pub fn time_iterations(trainer: &mut Trainer, warmup: u64, iters: u64) -> f64 {
    for _ in 0..warmup {
        trainer.step(false);
    }
    trainer.gpu.wait();
    let start = Instant::now();
    for _ in 0..iters {
        trainer.step(false);
    }
    trainer.gpu.wait();
    start.elapsed().as_secs_f64() * 1000.0 / iters.max(1) as f64
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
    /// Every this many iterations (seed 003's "every N epochs"): D's accuracy on fresh real
    /// and fake images into metrics.jsonl, a sample grid and a checkpoint named by epoch.
    pub summarize_every: Option<u64>,
    /// Iterations per epoch, to name summaries by epoch.
    pub iters_per_epoch: u64,
    pub progress: bool,
    /// Every `every` iterations: FID, IS, confidence and class histogram of generated images
    /// into metrics.jsonl (`train --eval-every`).
    pub eval: Option<TrainEval>,
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
    save_samples_as(trainer, out, &format!("step-{:06}.png", trainer.step))
}

/// samples/NAME from the trained weights and, with a moving average, samples/NAME-ema.png
/// from the average (what `generate` draws from), both of the same fixed noise.
fn save_samples_as(trainer: &Trainer, out: &Path, name: &str) -> Result<()> {
    let dir = out.join("samples");
    std::fs::create_dir_all(&dir)?;
    let [h, w, _] = trainer.spec.image;
    let save = |samples: Vec<f32>, name: &str| {
        let pixels = images::to_bytes(&samples, trainer.spec.recipe.pixel_range);
        images::save_grid(&dir.join(name), &pixels, SAMPLE_COUNT, h, w)
    };
    save(trainer.samples(), name)?;
    match trainer.ema_samples() {
        Some(samples) => save(samples, &name.replace(".png", "-ema.png")),
        None => Ok(()),
    }
}

/// metrics.jsonl and the progress bar.
struct Log {
    file: std::fs::File,
    bar: indicatif::ProgressBar,
    /// (step, time) of the previous logged step, for images/s.
    previous: (u64, Instant),
    last: Option<Metrics>,
}

impl Log {
    fn metrics(&mut self, trainer: &Trainer, ready: Vec<(u64, [f32; METRIC_SLOTS])>) -> Result<()> {
        for (step, values) in ready {
            let now = Instant::now();
            let seconds = now.duration_since(self.previous.1).as_secs_f64().max(1e-9);
            let rate = (step - self.previous.0) as f64 * trainer.spec.recipe.batch as f64 / seconds;
            self.previous = (step, now);
            let m = trainer.metrics_from(step, values, rate);
            writeln!(self.file, "{}", serde_json::to_string(&m)?)?;
            self.bar.set_message(format!(
                "d_loss {:.3} g_loss {:.3} acc {:.2}/{:.2}",
                m.d_loss, m.g_loss, m.d_acc_real, m.d_acc_fake
            ));
            self.last = Some(m);
        }
        Ok(())
    }
}

/// Seed 003's `summarize_performance`: D's accuracy on fresh real and fake images into
/// metrics.jsonl, a sample grid and a checkpoint, named by epoch.
fn summarize(trainer: &Trainer, opts: &TrainOptions, log: &mut Log) -> Result<()> {
    let epoch = trainer.step / opts.iters_per_epoch.max(1);
    let (real, fake) = trainer.evaluate_discriminator();
    let line = serde_json::json!({
        "step": trainer.step, "epoch": epoch, "summary_d_acc_real": real, "summary_d_acc_fake": fake,
    });
    writeln!(log.file, "{line}")?;
    log.bar.println(format!("epoch {epoch}: D accuracy on real {real:.2}, on fake {fake:.2}"));
    save_samples_as(trainer, &opts.out, &format!("epoch-{epoch:03}.png"))?;
    trainer
        .checkpoint()
        .save(&opts.out.join(format!("checkpoints/epoch-{epoch:03}.safetensors")))?;
    report::write(&opts.out).map(drop)
}

/// Runs the training loop until `opts.iters` or until `stop` is raised (Ctrl-C): the step in
/// progress finishes, a checkpoint is written, and the run ends cleanly.
pub fn train(trainer: &mut Trainer, opts: &TrainOptions, stop: &AtomicBool) -> Result<Summary> {
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(opts.out.join("metrics.jsonl"))
        .context("opening metrics.jsonl")?;
    let start_step = trainer.step;
    let bar = step_progress_bar(opts.iters, opts.progress);
    bar.set_position(start_step);
    let started = Instant::now();
    let mut log = Log { file, bar, previous: (start_step, Instant::now()), last: None };
    let mut interrupted = false;

    while trainer.step < opts.iters {
        let next = trainer.step + 1;
        let log_step = next.is_multiple_of(opts.log_every) || next == opts.iters;
        trainer.step(log_step);
        log.bar.set_position(trainer.step);
        let ready = trainer.poll_metrics(false);
        log.metrics(trainer, ready)?;
        if opts.sample_every > 0 && trainer.step.is_multiple_of(opts.sample_every) {
            save_samples(trainer, &opts.out)?;
        }
        if opts.summarize_every.is_some_and(|n| n > 0 && trainer.step.is_multiple_of(n)) {
            summarize(trainer, opts, &mut log)?;
        }
        if let Some(eval) = opts.eval.as_ref().filter(|e| trainer.step.is_multiple_of(e.every)) {
            let scores = eval.score(&trainer.gpu, &trainer.checkpoint(), opts.seed)?;
            writeln!(log.file, "{}", scores.metrics_line(trainer.step))?;
            log.bar.println(format!("step {}: {}", trainer.step, scores.summary()));
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
            report::write(&opts.out)?;
        }
    }
    let ready = trainer.poll_metrics(true);
    log.metrics(trainer, ready)?;
    log.file.sync_all()?;
    if trainer.step > start_step {
        if opts.sample_every == 0 || !trainer.step.is_multiple_of(opts.sample_every) {
            save_samples(trainer, &opts.out)?;
        }
        save_checkpoint(trainer, &opts.out)?;
        report::write(&opts.out)?;
    }
    log.bar.finish_and_clear();
    Ok(Summary {
        steps_done: trainer.step - start_step,
        interrupted,
        last: log.last,
        seconds: started.elapsed().as_secs_f64(),
    })
}
