//! The digit classifier behind `gan-gpu eval` (issue 5): a small LeNet-style CNN
//! (`assets/classifier/lenet.toml`) trained on MNIST by gan-gpu's own kernels. Its penultimate
//! activations (the features) and class probabilities are what `eval` compares between real
//! and generated digits; its trained weights ship in the binary
//! (`assets/classifier/lenet.safetensors`).
//!
//! The network is held as two [`Net`]s: the body (every layer but the last), whose output is
//! the feature vector, and the head (the last layer, dense with [`CLASSES`] logits) on top of it.
//! Training records one step once (batch drawn on the GPU, images and labels gathered with the
//! same indices, forward, softmax cross-entropy, backward, Adam) and replays it: one queue
//! submission per step.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomically;
use crate::data::Dataset;
use crate::gpu::{Gpu, Op, Tensor, record};
use crate::kernels::gather::{PackedRows, gather_labels, pack_bytes};
use crate::kernels::{AdamParams, StepUniform, loss, optim, rng};
use crate::nn::spec::{LayerSpec, NetSpec};
use crate::nn::{self, Grads, Mode, Net};
use crate::train::step_progress_bar;

/// Digit classes.
pub const CLASSES: usize = 10;
/// Side of the images the classifier reads: 28 x 28 grey bytes, as MNIST.
pub const SIDE: usize = 28;
pub const IMAGE_LEN: usize = SIDE * SIDE;
/// Pixels as the classifier sees them: byte / 255, in [0, 1].
pub const PIXEL_SCALE: f32 = 1.0 / 255.0;

/// The shipped model file: the network and its training recipe.
pub const MODEL_FILE: &str = include_str!("../assets/classifier/lenet.toml");
/// Weights trained by `gan-gpu classifier train` (see assets/README.md).
const SHIPPED_WEIGHTS: &[u8] = include_bytes!("../assets/classifier/lenet.safetensors");
const FORMAT: &str = "gan-gpu-classifier-1";

/// Images per forward pass when embedding: bounds the activations' buffers (36 MB for the
/// shipped network's widest layer).
const CHUNK: usize = 1000;

/// RNG stream of the batch indices, and the dropout streams of the two parts (layer i of a
/// part uses base + i).
pub const STREAM_BATCH: u32 = 0;
pub const DROPOUT_BODY: u32 = 1000;
pub const DROPOUT_HEAD: u32 = 2000;

/// How the classifier is trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub batch: usize,
    pub epochs: usize,
    /// The learning rate is multiplied by this after every epoch.
    pub lr_decay: f32,
    pub adam: AdamParams,
}

impl Recipe {
    /// Adam's learning rate in `epoch` (0-based).
    pub fn lr(&self, epoch: usize) -> f32 {
        self.adam.lr * self.lr_decay.powi(epoch as i32)
    }
}

/// A classifier model file: the network's input and layers, and `[train]`, the recipe.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub input: Vec<usize>,
    pub layers: Vec<LayerSpec>,
    pub train: Recipe,
}

impl ModelFile {
    /// Parses and checks a model file; `origin` names it in errors.
    pub fn parse(source: &str, origin: &str) -> Result<ModelFile> {
        let file: ModelFile = toml::from_str(source).with_context(|| origin.to_string())?;
        check_spec(&file.spec()).with_context(|| origin.to_string())?;
        ensure!(file.train.batch > 0, "{origin}: train.batch must be at least 1");
        Ok(file)
    }

    /// `assets/classifier/lenet.toml`.
    pub fn shipped() -> ModelFile {
        ModelFile::parse(MODEL_FILE, "assets/classifier/lenet.toml").expect("a valid model file")
    }

    pub fn spec(&self) -> NetSpec {
        NetSpec { input: self.input.clone(), layers: self.layers.clone() }
    }
}

/// A network the classifier can be: 28x28x1 images in, CLASSES logits out of a last dense layer
/// with at least one layer before it.
fn check_spec(spec: &NetSpec) -> Result<()> {
    spec.check()?;
    ensure!(spec.input == [SIDE, SIDE, 1], "the input must be [28, 28, 1], not {:?}", spec.input);
    ensure!(
        spec.layers.len() >= 2
            && matches!(spec.layers.last(), Some(LayerSpec::Dense { units }) if *units == CLASSES),
        "the last layer must be dense with {CLASSES} units (the logits), after at least one other"
    );
    Ok(())
}

/// The body (all layers but the last) and the head (the last) as networks of their own.
fn split(spec: &NetSpec) -> (NetSpec, NetSpec) {
    let (last, body) = spec.layers.split_last().expect("a checked spec");
    let body = NetSpec { input: spec.input.clone(), layers: body.to_vec() };
    let head = NetSpec { input: body.output(), layers: vec![last.clone()] };
    (body, head)
}

/// What [`Classifier::embed`] computes for a set of images.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    /// [count, dim]: the penultimate activations (the input of the last layer).
    pub features: Vec<f32>,
    /// [count, CLASSES]: the softmax of the logits.
    pub probs: Vec<f32>,
    pub dim: usize,
}

/// A digit classifier with its parameters on the GPU.
pub struct Classifier {
    pub spec: NetSpec,
    body: Net,
    head: Net,
}

impl Classifier {
    /// A classifier of network `spec` with the given tensors (every tensor of `spec.params()`).
    pub fn new(gpu: &Gpu, spec: NetSpec, params: &[Vec<f32>]) -> Result<Classifier> {
        check_spec(&spec)?;
        let shapes = spec.params();
        ensure!(params.len() == shapes.len(), "{} tensors for {}", params.len(), shapes.len());
        for (shape, values) in shapes.iter().zip(params) {
            ensure!(
                shape.numel() == values.len(),
                "tensor {} has {} values, expected {}",
                shape.name,
                values.len(),
                shape.numel()
            );
        }
        let (body, head) = split(&spec);
        let body_tensors = body.params().len();
        let body = Net::new(gpu, body, &params[..body_tensors]);
        let head = Net::new(gpu, head, &params[body_tensors..]);
        Ok(Classifier { spec, body, head })
    }

    /// The weights compiled into the binary from `assets/classifier/lenet.safetensors`.
    pub fn shipped(gpu: &Gpu) -> Result<Classifier> {
        Classifier::from_bytes(gpu, SHIPPED_WEIGHTS)
            .context("the shipped classifier weights are damaged")
    }

    /// Weights written by [`Classifier::save`] (`gan-gpu classifier train --out`).
    pub fn load(gpu: &Gpu, path: &Path) -> Result<Classifier> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read classifier weights {}", path.display()))?;
        Classifier::from_bytes(gpu, &bytes).with_context(|| {
            format!(
                "{} is not a gan-gpu classifier (written by `gan-gpu classifier train`)",
                path.display()
            )
        })
    }

    fn from_bytes(gpu: &Gpu, bytes: &[u8]) -> Result<Classifier> {
        let (_, metadata) = SafeTensors::read_metadata(bytes)?;
        let meta = metadata.metadata().clone().unwrap_or_default();
        let field = |key: &str| meta.get(key).with_context(|| format!("metadata has no {key:?}"));
        ensure!(field("format")? == FORMAT, "format {:?}, expected {FORMAT:?}", field("format")?);
        let spec: NetSpec = serde_json::from_str(field("spec")?)?;
        check_spec(&spec)?;
        let tensors = SafeTensors::deserialize(bytes)?;
        let params = spec
            .params()
            .iter()
            .map(|p| {
                let view =
                    tensors.tensor(&p.name).with_context(|| format!("no tensor {}", p.name))?;
                if view.dtype() != Dtype::F32 || view.shape() != p.shape {
                    bail!(
                        "tensor {} is {:?} {:?}, not F32 {:?}",
                        p.name,
                        view.dtype(),
                        view.shape(),
                        p.shape
                    );
                }
                Ok(bytemuck::pod_collect_to_vec(view.data()))
            })
            .collect::<Result<Vec<Vec<f32>>>>()?;
        Classifier::new(gpu, spec, &params)
    }

    /// Every tensor of `spec.params()`, read back from the GPU.
    pub fn params(&self, gpu: &Gpu) -> Vec<Vec<f32>> {
        self.body.params.iter().chain(&self.head.params).map(|t| gpu.read(t)).collect()
    }

    /// Writes the weights (safetensors, the network in the metadata), atomically.
    pub fn save(&self, gpu: &Gpu, path: &Path) -> Result<()> {
        let params = self.params(gpu);
        let shapes = self.spec.params();
        let views = shapes
            .iter()
            .zip(&params)
            .map(|(p, data)| {
                let view =
                    TensorView::new(Dtype::F32, p.shape.clone(), bytemuck::cast_slice(data))?;
                Ok((p.name.clone(), view))
            })
            .collect::<Result<Vec<_>>>()?;
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("spec".to_string(), serde_json::to_string(&self.spec)?),
        ]);
        write_atomically(path, &safetensors::serialize(views, Some(metadata))?)
    }

    /// Width of the feature vector.
    pub fn dim(&self) -> usize {
        self.head.spec.input[0]
    }

    /// Features and class probabilities of `count` 28x28 grey byte images (as
    /// [`Dataset::images`]), on the GPU in chunks, in inference mode.
    pub fn embed(&self, gpu: &Gpu, images: &[u8], count: usize) -> Embedding {
        assert!(
            images.len() >= count * IMAGE_LEN,
            "{count} images need {} bytes",
            count * IMAGE_LEN
        );
        let dim = self.dim();
        let chunk = count.clamp(1, CHUNK);
        let input = gpu.zeros(chunk * IMAGE_LEN);
        let step = gpu.uniform(&StepUniform::default());
        let no_grads = Grads::default();
        let body = self.body.pass(gpu, chunk, &input, Mode::Inference, no_grads, 0, &step);
        let head = self.head.pass(gpu, chunk, &body.output, Mode::Inference, no_grads, 0, &step);
        let probs = gpu.zeros(chunk * CLASSES);
        let mut ops = body.forward.clone();
        ops.extend(head.forward.iter().cloned());
        ops.push(loss::softmax(gpu, &head.output, &probs, chunk, CLASSES).into());
        let mut out = Embedding {
            features: Vec::with_capacity(count * dim),
            probs: Vec::with_capacity(count * CLASSES),
            dim,
        };
        for start in (0..count).step_by(chunk) {
            let n = chunk.min(count - start);
            let bytes = &images[start * IMAGE_LEN..(start + n) * IMAGE_LEN];
            let pixels: Vec<f32> = bytes.iter().map(|&b| b as f32 * PIXEL_SCALE).collect();
            gpu.write(&input, &pixels);
            gpu.run(&ops);
            out.features.extend_from_slice(&gpu.read(&body.output)[..n * dim]);
            out.probs.extend_from_slice(&gpu.read(&probs)[..n * CLASSES]);
        }
        out
    }

    /// Share of `dataset`'s images whose most probable class is their label.
    pub fn accuracy(&self, gpu: &Gpu, dataset: &Dataset) -> f64 {
        let embedding = self.embed(gpu, &dataset.images, dataset.count);
        accuracy(&embedding.probs, &dataset.labels[..dataset.count])
    }
}

/// The most probable class of each row of `probs` ([count, CLASSES]); the first on ties.
pub fn predictions(probs: &[f32]) -> Vec<usize> {
    probs
        .chunks_exact(CLASSES)
        .map(|row| (0..CLASSES).fold(0, |best, c| if row[c] > row[best] { c } else { best }))
        .collect()
}

/// Share of rows of `probs` whose most probable class is the label.
pub fn accuracy(probs: &[f32], labels: &[u8]) -> f64 {
    let predicted = predictions(probs);
    assert_eq!(predicted.len(), labels.len(), "one label per row");
    let right = predicted.iter().zip(labels).filter(|&(&p, &l)| p == l as usize).count();
    right as f64 / labels.len().max(1) as f64
}

/// A classifier being trained, with its recorded step and Adam's state on the GPU.
pub struct Trainer {
    pub gpu: Arc<Gpu>,
    pub classifier: Classifier,
    pub recipe: Recipe,
    pub seed: u32,
    /// Steps done (Adam's t of the last one).
    pub step: u64,
    /// Gradients and Adam's (m, v) of the body's trainable parameters, then the head's.
    grads: [Vec<Tensor>; 2],
    moments: [(Vec<Tensor>, Vec<Tensor>); 2],
    step_uniform: wgpu::Buffer,
    /// Batch, forward, loss and backward: recorded once.
    iteration: Vec<Op>,
    /// Adam on every parameter, recorded again when the learning rate changes.
    update: Vec<Op>,
    losses: Tensor,
    in_flight: Option<wgpu::SubmissionIndex>,
}

impl Trainer {
    /// Records a training step of `classifier` on batches of `train_set`.
    pub fn new(
        gpu: Arc<Gpu>,
        classifier: Classifier,
        train_set: &Dataset,
        recipe: Recipe,
        seed: u32,
    ) -> Result<Trainer> {
        ensure!(
            (train_set.rows, train_set.cols) == (SIDE, SIDE),
            "the classifier reads 28x28 images, not {}x{}",
            train_set.rows,
            train_set.cols
        );
        ensure!(train_set.count > 0, "an empty training set");
        ensure!(recipe.batch > 0, "a batch of at least 1 image");
        let g = &gpu;
        let batch = recipe.batch;
        let (body, head) = (&classifier.body, &classifier.head);
        let grads = [body.zeros_like_trainable(g), head.zeros_like_trainable(g)];
        let moments = [
            (body.zeros_like_trainable(g), body.zeros_like_trainable(g)),
            (head.zeros_like_trainable(g), head.zeros_like_trainable(g)),
        ];
        let step_uniform = g.uniform(&StepUniform::default());
        let su = &step_uniform;
        let images =
            PackedRows::upload(g, &train_set.images[..train_set.count * IMAGE_LEN], IMAGE_LEN);
        let labels = g.upload_u32(&pack_bytes(&train_set.labels[..train_set.count]));
        let (indices, input, batch_labels) =
            (g.zeros(batch), g.zeros(batch * IMAGE_LEN), g.zeros(batch));
        // The head's input gradient is the body's output gradient: the passes share it, and
        // the head applies the derivative of the body's last activation where it can.
        let boundary = nn::activation_between(&body.spec, &head.spec);
        let body_grads = Grads {
            params: Some(&grads[0]),
            output_grad_activated: boundary.is_some(),
            ..Grads::default()
        };
        let body_pass = body.pass(g, batch, &input, Mode::Training, body_grads, DROPOUT_BODY, su);
        let head_grads = Grads {
            params: Some(&grads[1]),
            input: Some(&body_pass.output_grad),
            input_activation: boundary,
            ..Grads::default()
        };
        let head_pass =
            head.pass(g, batch, &body_pass.output, Mode::Training, head_grads, DROPOUT_HEAD, su);
        let losses = g.zeros(batch);
        let count = u32::try_from(train_set.count)?;
        let mut iteration: Vec<Op> =
            vec![rng::rng_randint(g, &indices, batch, count, STREAM_BATCH, su).into()];
        iteration.extend(
            images.gather(g, &indices, &input, batch, PIXEL_SCALE, 0.0).into_iter().map(Op::from),
        );
        iteration.push(gather_labels(g, &labels, &indices, &batch_labels, batch).into());
        iteration.extend(body_pass.forward.iter().cloned());
        iteration.extend(head_pass.forward.iter().cloned());
        iteration.push(
            loss::softmax_cross_entropy(
                g,
                &head_pass.output,
                &batch_labels,
                &head_pass.output_grad,
                &losses,
                batch,
                CLASSES,
                1.0 / batch as f32,
            )
            .into(),
        );
        iteration.extend(head_pass.backward.iter().cloned());
        iteration.extend(body_pass.backward.iter().cloned());
        let mut trainer = Trainer {
            gpu,
            classifier,
            seed,
            step: 0,
            grads,
            moments,
            step_uniform,
            iteration,
            update: Vec::new(),
            losses,
            in_flight: None,
            recipe,
        };
        trainer.set_lr(trainer.recipe.adam.lr);
        Ok(trainer)
    }

    /// Records Adam's update of every parameter with learning rate `lr`.
    pub fn set_lr(&mut self, lr: f32) {
        let hp = AdamParams { lr, ..self.recipe.adam };
        let (gpu, su) = (&self.gpu, &self.step_uniform);
        let nets = [&self.classifier.body, &self.classifier.head];
        self.update = nets
            .iter()
            .zip(&self.grads)
            .zip(&self.moments)
            .flat_map(|((net, grads), (m, v))| {
                net.trainable().into_iter().enumerate().map(move |(j, i)| {
                    let w = &net.params[i];
                    optim::adam(gpu, w, &grads[j], &m[j], &v[j], w.len, hp, su).into()
                })
            })
            .collect();
    }

    /// Submits one training step; at most two are queued on the GPU.
    pub fn step(&mut self) {
        self.step += 1;
        let uniform = StepUniform::new(self.step as u32, self.seed);
        self.gpu.queue.write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&uniform));
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        record(&mut encoder, &self.iteration);
        record(&mut encoder, &self.update);
        let index = self.gpu.queue.submit([encoder.finish()]);
        if let Some(previous) = self.in_flight.replace(index) {
            let wait = wgpu::PollType::Wait { submission_index: Some(previous), timeout: None };
            self.gpu.device.poll(wait).expect("GPU device lost");
        }
    }

    /// The last step's gradients of the trainable parameters, in `spec.params()` order (waits
    /// for the GPU).
    pub fn grads(&self) -> Vec<Vec<f32>> {
        self.grads.iter().flatten().map(|t| self.gpu.read(t)).collect()
    }

    /// The mean loss of the last step's batch (waits for the GPU).
    pub fn batch_loss(&self) -> f32 {
        let losses = self.gpu.read(&self.losses);
        losses.iter().sum::<f32>() / losses.len() as f32
    }
}

/// What `train` is asked to do.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub epochs: usize,
    pub seed: u32,
    pub progress: bool,
}

/// One epoch of training, as `train` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    pub steps: u64,
    pub lr: f32,
    /// Mean of the batch losses sampled during the epoch.
    pub loss: f32,
    pub test_accuracy: f64,
    /// Seconds the epoch's training steps took (the test excluded).
    pub train_seconds: f64,
}

/// Batch losses are read back every this many steps, for the progress bar and the report.
const LOSS_EVERY: u64 = 50;

/// How `train` ended: every epoch done, or `stop` raised after `steps` steps in all.
pub enum Outcome {
    Finished(Classifier),
    Interrupted { classifier: Classifier, steps: u64 },
}

/// Trains a fresh classifier of `model` (initialised from `seed`) on `train_set`. After every
/// epoch, `on_epoch` gets the report (with the accuracy on `test_set`) and the classifier as it
/// stands (to save it, so that a crash loses one epoch at most). Raising `stop` ends the run
/// after the current step, with the classifier as it stands then.
pub fn train(
    gpu: Arc<Gpu>,
    model: &ModelFile,
    train_set: &Dataset,
    test_set: &Dataset,
    opts: &TrainOptions,
    stop: &AtomicBool,
    mut on_epoch: impl FnMut(&EpochReport, &Classifier) -> Result<()>,
) -> Result<Outcome> {
    let spec = model.spec();
    let classifier = Classifier::new(&gpu, spec.clone(), &spec.init_params(opts.seed as u64))?;
    let mut trainer = Trainer::new(gpu, classifier, train_set, model.train.clone(), opts.seed)?;
    let steps_per_epoch = train_set.count.div_ceil(model.train.batch) as u64;
    let bar = step_progress_bar(steps_per_epoch * opts.epochs as u64, opts.progress);
    for epoch in 0..opts.epochs {
        let lr = model.train.lr(epoch);
        trainer.set_lr(lr);
        let started = Instant::now();
        let mut sampled = Vec::new();
        for i in 1..=steps_per_epoch {
            if stop.load(Ordering::SeqCst) {
                bar.finish_and_clear();
                trainer.gpu.wait();
                let steps = trainer.step;
                return Ok(Outcome::Interrupted { classifier: trainer.classifier, steps });
            }
            trainer.step();
            if i % LOSS_EVERY == 0 || i == steps_per_epoch {
                sampled.push(trainer.batch_loss());
                bar.set_message(format!("loss {:.4}", sampled.last().unwrap()));
            }
            bar.inc(1);
        }
        trainer.gpu.wait();
        let train_seconds = started.elapsed().as_secs_f64();
        let report = EpochReport {
            epoch: epoch + 1,
            steps: trainer.step,
            lr,
            loss: sampled.iter().sum::<f32>() / sampled.len() as f32,
            test_accuracy: trainer.classifier.accuracy(&trainer.gpu, test_set),
            train_seconds,
        };
        bar.suspend(|| on_epoch(&report, &trainer.classifier))?;
    }
    bar.finish_and_clear();
    Ok(Outcome::Finished(trainer.classifier))
}
