//! The built-in GANs: architectures and training recipes of the classic MNIST tutorials.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::{LayerSpec, NetSpec};
use crate::kernels::{Activation, AdamParams};

/// Distribution of the generator's latent noise.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Noise {
    Uniform { low: f32, high: f32 },
    Normal { mean: f32, std: f32 },
}

/// How the discriminator's loss combines real and fake images.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscriminatorLoss {
    /// One batch of real and fake images together, loss = mean over both (Keras `train_on_batch`
    /// on a concatenated batch).
    MeanOverBoth,
    /// loss = mean over the real images + mean over the fakes (the TensorFlow tutorials).
    SumOfMeans,
}

/// Everything about a GAN that is not a weight: both networks and how to train them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GanSpec {
    pub name: String,
    pub generator: NetSpec,
    /// Ends in one logit; the sigmoid of the tutorials is folded into the loss
    /// (binary cross-entropy with logits), which is the same function, computed stably.
    pub discriminator: NetSpec,
    pub recipe: Recipe,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// Real images per discriminator update (as many fakes join them) and noise vectors per
    /// generator update.
    pub batch: usize,
    pub noise: Noise,
    /// Pixels are scaled from [0, 255] to [low, high].
    pub pixel_range: (f32, f32),
    /// Target for real images in the discriminator's loss (0.9 = one-sided label smoothing).
    pub real_label: f32,
    pub d_loss: DiscriminatorLoss,
    pub d_optimizer: AdamParams,
    pub g_optimizer: AdamParams,
}

impl GanSpec {
    pub fn noise_dim(&self) -> usize {
        self.generator.input
    }
}

const IMAGE: usize = 28 * 28;

fn dense(units: usize) -> LayerSpec {
    LayerSpec::Dense { units }
}

fn act(activation: Activation) -> LayerSpec {
    LayerSpec::Activation { activation }
}

fn adam(lr: f32, beta1: f32) -> AdamParams {
    AdamParams { lr, beta1, beta2: 0.999, eps: 1e-7, clip: None }
}

/// Names of the built-in presets.
pub const NAMES: [&str; 2] = ["mlp", "mlp-relu"];

/// A built-in preset by name.
pub fn preset(name: &str) -> Result<GanSpec> {
    let leaky = Activation::LeakyRelu { alpha: 0.2 };
    let spec = match name {
        // The Keras MLP GAN: LeakyReLU(0.2) hidden layers of 128, tanh images in [-1, 1],
        // uniform noise, real labels smoothed to 0.9, Adam(2e-4, beta1 0.5), D trained on a
        // concatenated batch of 128 real + 128 fake images.
        "mlp" => GanSpec {
            name: name.into(),
            generator: NetSpec {
                input: 100,
                layers: vec![dense(128), act(leaky), dense(IMAGE), act(Activation::Tanh)],
            },
            discriminator: NetSpec { input: IMAGE, layers: vec![dense(128), act(leaky), dense(1)] },
            recipe: Recipe {
                batch: 128,
                noise: Noise::Uniform { low: -1.0, high: 1.0 },
                pixel_range: (-1.0, 1.0),
                real_label: 0.9,
                d_loss: DiscriminatorLoss::MeanOverBoth,
                d_optimizer: adam(2e-4, 0.5),
                g_optimizer: adam(2e-4, 0.5),
            },
        },
        // The TensorFlow MLP GAN: ReLU hidden layers, tanh output, uniform noise,
        // Adam(1e-4), D loss = real mean + fake mean, hard labels.
        "mlp-relu" => GanSpec {
            name: name.into(),
            generator: NetSpec {
                input: 100,
                layers: vec![
                    dense(128),
                    act(Activation::Relu),
                    dense(IMAGE),
                    act(Activation::Tanh),
                ],
            },
            discriminator: NetSpec {
                input: IMAGE,
                layers: vec![dense(128), act(Activation::Relu), dense(1)],
            },
            recipe: Recipe {
                batch: 128,
                noise: Noise::Uniform { low: -1.0, high: 1.0 },
                pixel_range: (-1.0, 1.0),
                real_label: 1.0,
                d_loss: DiscriminatorLoss::SumOfMeans,
                d_optimizer: adam(1e-4, 0.9),
                g_optimizer: adam(1e-4, 0.9),
            },
        },
        _ => bail!("unknown model {name:?}: the presets are {}", NAMES.join(", ")),
    };
    Ok(spec)
}
