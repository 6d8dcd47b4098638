//! The whole training iteration on the CPU, composed of the kernels' CPU twins in the order the
//! GPU trainer records them. From the same seed it must follow the GPU's losses step for step;
//! that test checks the wiring of the trainer (which buffer feeds which kernel), which the
//! per-kernel tests cannot see.

use crate::cpu;
use crate::data::Dataset;
use crate::kernels::{AdamParams, StepUniform};
use crate::nn::presets::{DiscriminatorLoss, GanSpec, Noise};
use crate::nn::{LayerSpec, NetSpec};
use crate::train::{
    METRIC_SLOTS, SLOT_FAKE, SLOT_GEN, SLOT_REAL, STREAM_BATCH, STREAM_D_NOISE, STREAM_G_NOISE,
    initial_state,
};

/// A network's parameters in host memory, run with the CPU twins.
pub struct CpuNet {
    pub spec: NetSpec,
    pub params: Vec<Vec<f32>>,
}

impl CpuNet {
    /// The input and every dense layer's output (after the activations that follow it).
    pub fn forward(&self, batch: usize, input: &[f32]) -> Vec<Vec<f32>> {
        let mut acts = vec![input[..batch * self.spec.input].to_vec()];
        let mut width = self.spec.input;
        let mut dense = 0;
        for layer in &self.spec.layers {
            match layer {
                LayerSpec::Dense { units } => {
                    let mut y = vec![0.0; batch * units];
                    let (w, b) = (&self.params[2 * dense], &self.params[2 * dense + 1]);
                    cpu::matmul::matmul(
                        acts.last().unwrap(),
                        w,
                        Some(b),
                        &mut y,
                        batch,
                        *units,
                        width,
                        false,
                        false,
                    );
                    acts.push(y);
                    width = *units;
                    dense += 1;
                }
                LayerSpec::Activation { activation } => {
                    let x = acts.last_mut().unwrap();
                    let len = x.len();
                    cpu::activation::activation_forward(x, len, *activation);
                }
            }
        }
        acts
    }

    /// Parameter gradients (when asked) and the input gradient, from the output gradient.
    pub fn backward(
        &self,
        batch: usize,
        acts: &[Vec<f32>],
        mut grad: Vec<f32>,
        param_grads: bool,
    ) -> (Vec<Vec<f32>>, Vec<f32>) {
        let mut grads = vec![Vec::new(); self.params.len()];
        let mut dense = self.params.len() / 2;
        let mut index = acts.len() - 1;
        for layer in self.spec.layers.iter().rev() {
            match layer {
                LayerSpec::Activation { activation } => {
                    let len = grad.len();
                    cpu::activation::activation_backward(&acts[index], &mut grad, len, *activation);
                }
                LayerSpec::Dense { units } => {
                    dense -= 1;
                    index -= 1;
                    let width = acts[index].len() / batch;
                    if param_grads {
                        let mut dw = vec![0.0; width * units];
                        cpu::matmul::matmul(
                            &acts[index],
                            &grad,
                            None,
                            &mut dw,
                            width,
                            *units,
                            batch,
                            true,
                            false,
                        );
                        let mut db = vec![0.0; *units];
                        cpu::bias::bias_grad(&grad, &mut db, batch, *units);
                        grads[2 * dense] = dw;
                        grads[2 * dense + 1] = db;
                    }
                    let mut dx = vec![0.0; batch * width];
                    cpu::matmul::matmul(
                        &grad,
                        &self.params[2 * dense],
                        None,
                        &mut dx,
                        batch,
                        width,
                        *units,
                        false,
                        true,
                    );
                    grad = dx;
                }
            }
        }
        (grads, grad)
    }
}

struct Optimized {
    net: CpuNet,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl Optimized {
    fn update(&mut self, grads: &[Vec<f32>], hp: AdamParams, step: &StepUniform) {
        for (i, g) in grads.iter().enumerate() {
            let len = g.len();
            cpu::optim::adam(
                &mut self.net.params[i],
                g,
                &mut self.m[i],
                &mut self.v[i],
                len,
                hp,
                step,
            );
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

fn noise(noise: Noise, out: &mut [f32], stream: u32, step: &StepUniform) {
    let len = out.len();
    match noise {
        Noise::Uniform { low, high } => cpu::rng::rng_uniform(out, len, low, high, stream, step),
        Noise::Normal { mean, std } => cpu::rng::rng_normal(out, len, mean, std, stream, step),
    }
}

impl ReferenceTrainer {
    pub fn new(spec: GanSpec, dataset: &Dataset, seed: u32) -> ReferenceTrainer {
        let (g, d) = initial_state(&spec, seed);
        let opt = |spec: &NetSpec, s: crate::checkpoint::NetState| Optimized {
            net: CpuNet { spec: spec.clone(), params: s.params },
            m: s.adam_m,
            v: s.adam_v,
        };
        ReferenceTrainer {
            generator: opt(&spec.generator, g),
            discriminator: opt(&spec.discriminator, d),
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
        let uniform = StepUniform { step: self.step as u32, seed: self.seed, _pad: [0; 2] };
        let r = self.spec.recipe.clone();
        let (batch, nz, image_len) =
            (r.batch, self.spec.noise_dim(), self.spec.discriminator.input);
        let mut out = [0.0; METRIC_SLOTS];

        let mut z = vec![0.0; batch * nz];
        noise(r.noise, &mut z, STREAM_D_NOISE, &uniform);
        let mut indices = vec![0; batch];
        cpu::rng::rng_randint(&mut indices, batch, self.count as u32, STREAM_BATCH, &uniform);
        let mut d_input = vec![0.0; 2 * batch * image_len];
        let (lo, hi) = r.pixel_range;
        cpu::gather::gather_rows(
            &self.images,
            &indices,
            &mut d_input,
            batch,
            image_len,
            (hi - lo) / 255.0,
            lo,
        );
        let fake = self.generator.net.forward(batch, &z).pop().unwrap();
        d_input[batch * image_len..].copy_from_slice(&fake);
        let acts = self.discriminator.net.forward(2 * batch, &d_input);
        let logits = acts.last().unwrap();
        let mut targets = vec![r.real_label; batch];
        targets.extend(vec![0.0; batch]);
        let (mut dz, mut losses) = (vec![0.0; 2 * batch], vec![0.0; 2 * batch]);
        let scale = match r.d_loss {
            DiscriminatorLoss::MeanOverBoth => 1.0 / (2 * batch) as f32,
            DiscriminatorLoss::SumOfMeans => 1.0 / batch as f32,
        };
        cpu::loss::bce_with_logits(logits, &targets, &mut dz, &mut losses, 2 * batch, scale);
        let (d_grads, _) = self.discriminator.net.backward(2 * batch, &acts, dz, true);
        cpu::metrics::batch_metrics(logits, &losses, &mut out, SLOT_REAL, 0, batch, true);
        cpu::metrics::batch_metrics(logits, &losses, &mut out, SLOT_FAKE, batch, batch, false);
        self.discriminator.update(&d_grads, r.d_optimizer, &uniform);

        noise(r.noise, &mut z, STREAM_G_NOISE, &uniform);
        let g_acts = self.generator.net.forward(batch, &z);
        let d_acts = self.discriminator.net.forward(batch, g_acts.last().unwrap());
        let logits = d_acts.last().unwrap();
        let (mut dz, mut losses) = (vec![0.0; batch], vec![0.0; batch]);
        cpu::loss::bce_with_logits(
            logits,
            &vec![1.0; batch],
            &mut dz,
            &mut losses,
            batch,
            1.0 / batch as f32,
        );
        let (_, through_d) = self.discriminator.net.backward(batch, &d_acts, dz, false);
        let (g_grads, _) = self.generator.net.backward(batch, &g_acts, through_d, true);
        cpu::metrics::batch_metrics(logits, &losses, &mut out, SLOT_GEN, 0, batch, true);
        self.generator.update(&g_grads, r.g_optimizer, &uniform);
        out
    }
}
