//! The whole training iteration on the CPU, composed of the kernels' CPU twins in the order the
//! GPU trainer records them. From the same seed it must follow the GPU's losses step for step;
//! that test checks the wiring of the trainer (which buffer feeds which kernel), which the
//! per-kernel tests cannot see.

use crate::checkpoint::NetState;
use crate::cpu;
use crate::data::Dataset;
use crate::kernels::StepUniform;
use crate::nn::Mode;
use crate::nn::gan::{DiscriminatorLoss, GanSpec, GeneratorMode, Optimizer};
use crate::nn::spec::{LayerSpec, NetSpec};
use crate::train::{
    DROPOUT_D_JUDGE, DROPOUT_D_TRAIN, DROPOUT_G_FAKES, DROPOUT_G_TRAIN, METRIC_SLOTS, SLOT_FAKE,
    SLOT_GEN, SLOT_REAL, STREAM_BATCH, STREAM_D_NOISE, STREAM_G_NOISE, initial_state,
};

/// A network's tensors in host memory, run with the CPU twins.
pub struct CpuNet {
    pub spec: NetSpec,
    /// Every tensor of `spec.params()`, state included.
    pub params: Vec<Vec<f32>>,
}

/// What a forward pass keeps for its backward pass.
pub struct Activations {
    /// Per layer: its input and its output.
    io: Vec<(Vec<f32>, Vec<f32>)>,
    /// Batch statistics (mean, variance) of each batch-norm layer in training mode.
    stats: Vec<Option<(Vec<f32>, Vec<f32>)>>,
}

impl Activations {
    pub fn output(&self) -> &[f32] {
        &self.io.last().unwrap().1
    }
}

impl CpuNet {
    /// Index of the first tensor of each layer in `params`.
    fn first_params(&self) -> Vec<usize> {
        let shapes = self.spec.shapes().unwrap();
        let mut first = Vec::new();
        let mut next = 0;
        for (i, layer) in self.spec.layers.iter().enumerate() {
            first.push(next);
            next += layer.params(i, &shapes[i]).unwrap().len();
        }
        first
    }

    pub fn forward(
        &mut self,
        batch: usize,
        input: &[f32],
        mode: Mode,
        stream_base: u32,
        step: &StepUniform,
    ) -> Activations {
        let shapes = self.spec.shapes().unwrap();
        let numel = |s: &[usize]| s.iter().product::<usize>();
        let first = self.first_params();
        let mut x = input[..batch * numel(&shapes[0])].to_vec();
        let mut io = Vec::new();
        let mut stats = Vec::new();
        for (i, layer) in self.spec.layers.iter().enumerate() {
            let in_shape = &shapes[i];
            let mut y = vec![0.0; batch * numel(&shapes[i + 1])];
            let p = first[i];
            let mut layer_stats = None;
            match layer {
                LayerSpec::Dense { units } => {
                    let (w, b) = (&self.params[p], &self.params[p + 1]);
                    cpu::matmul::matmul(
                        &x,
                        w,
                        Some(b),
                        &mut y,
                        batch,
                        *units,
                        in_shape[0],
                        false,
                        false,
                        false,
                        None,
                    );
                }
                LayerSpec::Conv2d { .. } => {
                    let g = layer.conv_geometry(batch, in_shape).unwrap();
                    let (w, b) = (&self.params[p], Some(&self.params[p + 1][..]));
                    cpu::conv::conv2d(&x, w, b, &mut y, &g, None);
                }
                LayerSpec::ConvTranspose2d { .. } => {
                    let g = layer.conv_geometry(batch, in_shape).unwrap();
                    cpu::conv::conv_transpose2d(
                        &x,
                        &self.params[p],
                        Some(&self.params[p + 1]),
                        &mut y,
                        &g,
                        None,
                    );
                }
                LayerSpec::BatchNorm { momentum, eps } => {
                    let cols = *in_shape.last().unwrap();
                    let rows = batch * numel(in_shape) / cols;
                    let (head, state) = self.params.split_at_mut(p + 2);
                    let (gamma, beta) = (&head[p], &head[p + 1]);
                    let (moving_mean, moving_var) = state.split_at_mut(1);
                    match mode {
                        Mode::Training => {
                            let (mut mean, mut var) = (vec![0.0; cols], vec![0.0; cols]);
                            let unbiased = in_shape.len() == 3;
                            cpu::batchnorm::batch_norm_train(
                                &x,
                                &mut y,
                                gamma,
                                beta,
                                &mut mean,
                                &mut var,
                                &mut moving_mean[0],
                                &mut moving_var[0],
                                rows,
                                cols,
                                *eps,
                                *momentum,
                                unbiased,
                            );
                            layer_stats = Some((mean, var));
                        }
                        Mode::Inference => cpu::batchnorm::batch_norm_infer(
                            &x,
                            &mut y,
                            gamma,
                            beta,
                            &moving_mean[0],
                            &moving_var[0],
                            rows,
                            cols,
                            *eps,
                        ),
                    }
                }
                LayerSpec::Dropout { rate } => {
                    y.copy_from_slice(&x);
                    if mode == Mode::Training {
                        let len = y.len();
                        cpu::rng::dropout_forward(
                            &mut y,
                            len,
                            0,
                            *rate,
                            stream_base + i as u32,
                            step,
                        );
                    }
                }
                LayerSpec::AvgPool2x2 => {
                    cpu::pool::avg_pool2x2(&x, &mut y, batch, in_shape[0], in_shape[1], in_shape[2])
                }
                LayerSpec::Upsample2x => {
                    cpu::pool::upsample2x(&x, &mut y, batch, in_shape[0], in_shape[1], in_shape[2])
                }
                LayerSpec::Reshape { .. } | LayerSpec::Flatten => y.copy_from_slice(&x),
                LayerSpec::Relu
                | LayerSpec::LeakyRelu { .. }
                | LayerSpec::Tanh
                | LayerSpec::Sigmoid => {
                    y.copy_from_slice(&x);
                    let len = y.len();
                    cpu::activation::activation_forward(&mut y, len, layer.activation().unwrap());
                }
            }
            io.push((x, y.clone()));
            stats.push(layer_stats);
            x = y;
        }
        Activations { io, stats }
    }

    /// Gradients of the trainable parameters (in order; empty when not asked for) and of the
    /// input, from the output gradient.
    pub fn backward(
        &self,
        batch: usize,
        acts: &Activations,
        mut gy: Vec<f32>,
        param_grads: bool,
        stream_base: u32,
        step: &StepUniform,
    ) -> (Vec<Vec<f32>>, Vec<f32>) {
        let shapes = self.spec.shapes().unwrap();
        let numel = |s: &[usize]| s.iter().product::<usize>();
        let first = self.first_params();
        let mut grads: Vec<Vec<Vec<f32>>> = vec![Vec::new(); self.spec.layers.len()];
        for (i, layer) in self.spec.layers.iter().enumerate().rev() {
            let in_shape = &shapes[i];
            let (x, y) = &acts.io[i];
            let p = first[i];
            let mut dx = vec![0.0; batch * numel(in_shape)];
            match layer {
                LayerSpec::Dense { units } => {
                    let width = in_shape[0];
                    if param_grads {
                        let (mut dw, mut db) = (vec![0.0; width * units], vec![0.0; *units]);
                        cpu::matmul::matmul(
                            x, &gy, None, &mut dw, width, *units, batch, true, false, false, None,
                        );
                        cpu::bias::bias_grad(&gy, &mut db, batch, *units, false);
                        grads[i] = vec![dw, db];
                    }
                    cpu::matmul::matmul(
                        &gy,
                        &self.params[p],
                        None,
                        &mut dx,
                        batch,
                        width,
                        *units,
                        false,
                        true,
                        false,
                        None,
                    );
                }
                LayerSpec::Conv2d { filters, .. } => {
                    let g = layer.conv_geometry(batch, in_shape).unwrap();
                    if param_grads {
                        let (mut dw, mut db) =
                            (vec![0.0; self.params[p].len()], vec![0.0; *filters]);
                        cpu::conv::conv2d_backward_weight(x, &gy, &mut dw, &g, false);
                        let rows = batch * g.out_h * g.out_w;
                        cpu::bias::bias_grad(&gy, &mut db, rows, *filters, false);
                        grads[i] = vec![dw, db];
                    }
                    cpu::conv::conv2d_backward_data(&gy, &self.params[p], None, &mut dx, &g, None);
                }
                LayerSpec::ConvTranspose2d { filters, .. } => {
                    let g = layer.conv_geometry(batch, in_shape).unwrap();
                    if param_grads {
                        let (mut dw, mut db) =
                            (vec![0.0; self.params[p].len()], vec![0.0; *filters]);
                        cpu::conv::conv_transpose2d_backward_weight(x, &gy, &mut dw, &g, false);
                        let rows = batch * g.in_h * g.in_w;
                        cpu::bias::bias_grad(&gy, &mut db, rows, *filters, false);
                        grads[i] = vec![dw, db];
                    }
                    cpu::conv::conv_transpose2d_backward_data(
                        &gy,
                        &self.params[p],
                        &mut dx,
                        &g,
                        None,
                    );
                }
                LayerSpec::BatchNorm { eps, .. } => {
                    let cols = *in_shape.last().unwrap();
                    let rows = batch * numel(in_shape) / cols;
                    let (mean, var) =
                        acts.stats[i].as_ref().expect("backward through a training pass");
                    let (mut dgamma, mut dbeta) = (vec![0.0; cols], vec![0.0; cols]);
                    cpu::batchnorm::batch_norm_backward(
                        x,
                        &gy,
                        &self.params[p],
                        mean,
                        var,
                        &mut dx,
                        &mut dgamma,
                        &mut dbeta,
                        rows,
                        cols,
                        *eps,
                    );
                    if param_grads {
                        grads[i] = vec![dgamma, dbeta];
                    }
                }
                LayerSpec::Dropout { rate } => {
                    let len = gy.len();
                    cpu::rng::dropout_backward(
                        &mut gy,
                        len,
                        0,
                        *rate,
                        stream_base + i as u32,
                        step,
                    );
                    dx = gy.clone();
                }
                LayerSpec::AvgPool2x2 => cpu::pool::avg_pool2x2_backward(
                    &gy,
                    &mut dx,
                    batch,
                    in_shape[0],
                    in_shape[1],
                    in_shape[2],
                ),
                LayerSpec::Upsample2x => cpu::pool::upsample2x_backward(
                    &gy,
                    &mut dx,
                    batch,
                    in_shape[0],
                    in_shape[1],
                    in_shape[2],
                ),
                LayerSpec::Reshape { .. } | LayerSpec::Flatten => dx = gy.clone(),
                LayerSpec::Relu
                | LayerSpec::LeakyRelu { .. }
                | LayerSpec::Tanh
                | LayerSpec::Sigmoid => {
                    let len = gy.len();
                    cpu::activation::activation_backward(
                        y,
                        &mut gy,
                        len,
                        layer.activation().unwrap(),
                    );
                    dx = gy.clone();
                }
            }
            gy = dx;
        }
        (grads.into_iter().flatten().collect(), gy)
    }
}

struct Optimized {
    net: CpuNet,
    moments: Vec<Vec<Vec<f32>>>,
}

impl Optimized {
    fn new(spec: &NetSpec, state: NetState) -> Optimized {
        Optimized {
            net: CpuNet { spec: spec.clone(), params: state.params },
            moments: state.moments,
        }
    }

    fn update(&mut self, grads: &[Vec<f32>], opt: &Optimizer, step: &StepUniform) {
        let trainable: Vec<usize> = self
            .net
            .spec
            .params()
            .iter()
            .enumerate()
            .filter(|(_, p)| p.trainable)
            .map(|(i, _)| i)
            .collect();
        for (j, (&i, g)) in trainable.iter().zip(grads).enumerate() {
            let len = g.len();
            let w = &mut self.net.params[i];
            match (opt.adam(), opt.rmsprop()) {
                (Some(hp), _) => {
                    let (m, v) = self.moments.split_at_mut(1);
                    cpu::optim::adam(w, g, &mut m[0][j], &mut v[0][j], len, hp, step);
                }
                (_, Some(hp)) => cpu::optim::rmsprop(w, g, &mut self.moments[0][j], len, hp),
                _ => unreachable!("an optimizer is Adam or RMSprop"),
            }
        }
    }
}

/// The CPU twin of [`crate::train::Trainer`].
pub struct ReferenceTrainer {
    pub spec: GanSpec,
    pub seed: u32,
    pub step: u64,
    generator: Optimized,
    discriminator: Optimized,
    images: Vec<u8>,
    count: usize,
}

impl ReferenceTrainer {
    pub fn new(spec: GanSpec, dataset: &Dataset, seed: u32) -> ReferenceTrainer {
        let (g, d) = initial_state(&spec, seed);
        ReferenceTrainer {
            generator: Optimized::new(&spec.generator, g),
            discriminator: Optimized::new(&spec.discriminator_logits(), d),
            seed,
            step: 0,
            images: dataset.images.clone(),
            count: dataset.count,
            spec,
        }
    }

    /// One iteration; returns the metrics the GPU trainer reads back.
    pub fn step(&mut self) -> [f32; METRIC_SLOTS] {
        self.step += 1;
        let su = StepUniform::new(self.step as u32, self.seed);
        let r = self.spec.recipe.clone();
        let (batch, g_batch) = (r.batch, r.g_batch());
        let (nz, image_len) = (self.spec.noise_dim(), self.spec.image_len());
        let mut out = [0.0; METRIC_SLOTS];
        let (g, d) = (&mut self.generator, &mut self.discriminator);

        let mut z = vec![0.0; batch * nz];
        r.noise.draw_cpu(&mut z, STREAM_D_NOISE, &su);
        let mut indices = vec![0; batch];
        cpu::rng::rng_randint(&mut indices, batch, self.count as u32, STREAM_BATCH, &su);
        let mut d_input = vec![0.0; 2 * batch * image_len];
        let (lo, hi) = r.pixel_range;
        cpu::gather::gather_rows(
            &self.images,
            0,
            self.count,
            &indices,
            &mut d_input,
            batch,
            image_len,
            (hi - lo) / 255.0,
            lo,
        );
        let fakes_mode = match r.fakes_for_d {
            GeneratorMode::Training => Mode::Training,
            GeneratorMode::Inference => Mode::Inference,
        };
        let fakes = g.net.forward(batch, &z, fakes_mode, DROPOUT_G_FAKES, &su);
        d_input[batch * image_len..].copy_from_slice(fakes.output());
        let acts = d.net.forward(2 * batch, &d_input, Mode::Training, DROPOUT_D_TRAIN, &su);
        let logits = acts.output();
        let mut targets = vec![r.real_label; batch];
        targets.extend(vec![0.0; batch]);
        let (mut dz, mut losses) = (vec![0.0; 2 * batch], vec![0.0; 2 * batch]);
        let scale = match r.d_loss {
            DiscriminatorLoss::MeanOverBoth => 1.0 / (2 * batch) as f32,
            DiscriminatorLoss::SumOfMeans => 1.0 / batch as f32,
        };
        cpu::loss::bce_with_logits(logits, &targets, &mut dz, &mut losses, 2 * batch, scale);
        let (d_grads, _) = d.net.backward(2 * batch, &acts, dz, true, DROPOUT_D_TRAIN, &su);
        cpu::metrics::batch_metrics(logits, &losses, &mut out, SLOT_REAL, 0, batch, true);
        cpu::metrics::batch_metrics(logits, &losses, &mut out, SLOT_FAKE, batch, batch, false);
        d.update(&d_grads, &r.d_optimizer, &su);

        let mut z = vec![0.0; g_batch * nz];
        r.noise.draw_cpu(&mut z, STREAM_G_NOISE, &su);
        let g_acts = g.net.forward(g_batch, &z, Mode::Training, DROPOUT_G_TRAIN, &su);
        let d_acts = d.net.forward(g_batch, g_acts.output(), Mode::Training, DROPOUT_D_JUDGE, &su);
        let logits = d_acts.output();
        let (mut dz, mut losses) = (vec![0.0; g_batch], vec![0.0; g_batch]);
        let ones = vec![1.0; g_batch];
        cpu::loss::bce_with_logits(
            logits,
            &ones,
            &mut dz,
            &mut losses,
            g_batch,
            1.0 / g_batch as f32,
        );
        let (_, through_d) = d.net.backward(g_batch, &d_acts, dz, false, DROPOUT_D_JUDGE, &su);
        let (g_grads, _) = g.net.backward(g_batch, &g_acts, through_d, true, DROPOUT_G_TRAIN, &su);
        cpu::metrics::batch_metrics(logits, &losses, &mut out, SLOT_GEN, 0, g_batch, true);
        g.update(&g_grads, &r.g_optimizer, &su);
        out
    }
}
