//! A GAN as a model file describes it: both networks and the training recipe. The built-in
//! presets are such files (assets/models/*.toml), compiled into the binary.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use super::spec::{LayerSpec, NetSpec};
use crate::cpu;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::kernels::optim::RmsPropParams;
use crate::kernels::{AdamParams, StepUniform, rng};

/// Distribution of the generator's latent noise.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Noise {
    Uniform { low: f32, high: f32 },
    Normal { mean: f32, std: f32 },
}

impl Noise {
    /// Fills `out` with this noise from RNG stream `stream` at the step `step` holds.
    pub fn draw(self, gpu: &Gpu, out: &Tensor, stream: u32, step: &wgpu::Buffer) -> Dispatch {
        match self {
            Noise::Uniform { low, high } => {
                rng::rng_uniform(gpu, out, out.len, low, high, stream, step)
            }
            Noise::Normal { mean, std } => {
                rng::rng_normal(gpu, out, out.len, mean, std, stream, step)
            }
        }
    }

    /// [`Noise::draw`] on the CPU, by the RNG's CPU twin: the same values.
    pub fn draw_cpu(self, out: &mut [f32], stream: u32, step: &StepUniform) {
        let len = out.len();
        match self {
            Noise::Uniform { low, high } => {
                cpu::rng::rng_uniform(out, len, low, high, stream, step)
            }
            Noise::Normal { mean, std } => cpu::rng::rng_normal(out, len, mean, std, stream, step),
        }
    }
}

/// How the discriminator's loss combines real and fake images.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscriminatorLoss {
    /// One batch of real and fake images together, loss = mean over both (Keras
    /// `train_on_batch` on a concatenated batch).
    MeanOverBoth,
    /// loss = mean over the real images + mean over the fakes (the TensorFlow tutorials).
    SumOfMeans,
}

/// How the generator runs when it makes the fakes of a discriminator update: in training mode
/// (batch statistics, as a TensorFlow graph does) or in inference mode (moving statistics, as
/// Keras's `generator.predict` does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorMode {
    #[default]
    Training,
    Inference,
}

fn default_beta1() -> f32 {
    0.9
}
fn default_beta2() -> f32 {
    0.999
}
fn default_eps() -> f32 {
    1e-7
}
fn default_rho() -> f32 {
    0.9
}

/// An optimizer with Keras's argument names and defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Optimizer {
    Adam {
        lr: f32,
        #[serde(default = "default_beta1")]
        beta1: f32,
        #[serde(default = "default_beta2")]
        beta2: f32,
        #[serde(default = "default_eps")]
        eps: f32,
        /// Keras `clipvalue`: each gradient element is clipped to [-clip, clip].
        #[serde(default)]
        clip: Option<f32>,
    },
    Rmsprop {
        lr: f32,
        #[serde(default = "default_rho")]
        rho: f32,
        #[serde(default = "default_eps")]
        eps: f32,
        #[serde(default)]
        clip: Option<f32>,
    },
}

impl Optimizer {
    pub fn lr(&self) -> f32 {
        match self {
            Optimizer::Adam { lr, .. } | Optimizer::Rmsprop { lr, .. } => *lr,
        }
    }

    pub fn set_lr(&mut self, new: f32) {
        match self {
            Optimizer::Adam { lr, .. } | Optimizer::Rmsprop { lr, .. } => *lr = new,
        }
    }

    /// Optimizer state tensors per parameter (Adam: m and v; RMSprop: v).
    pub fn moments(&self) -> usize {
        match self {
            Optimizer::Adam { .. } => 2,
            Optimizer::Rmsprop { .. } => 1,
        }
    }

    pub fn adam(&self) -> Option<AdamParams> {
        match *self {
            Optimizer::Adam { lr, beta1, beta2, eps, clip } => {
                Some(AdamParams { lr, beta1, beta2, eps, clip })
            }
            Optimizer::Rmsprop { .. } => None,
        }
    }

    pub fn rmsprop(&self) -> Option<RmsPropParams> {
        match *self {
            Optimizer::Rmsprop { lr, rho, eps, clip } => Some(RmsPropParams { lr, rho, eps, clip }),
            Optimizer::Adam { .. } => None,
        }
    }

    fn check(&self) -> Result<()> {
        let clip = match *self {
            Optimizer::Adam { lr, beta1, beta2, eps, clip } => {
                ensure!(lr > 0.0 && lr.is_finite(), "lr must be a positive number");
                ensure!(
                    (0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2),
                    "betas in [0, 1)"
                );
                ensure!(eps > 0.0, "eps must be positive");
                clip
            }
            Optimizer::Rmsprop { lr, rho, eps, clip } => {
                ensure!(lr > 0.0 && lr.is_finite(), "lr must be a positive number");
                ensure!((0.0..1.0).contains(&rho), "rho in [0, 1)");
                ensure!(eps > 0.0, "eps must be positive");
                clip
            }
        };
        ensure!(clip.is_none_or(|c| c > 0.0), "clip must be positive");
        Ok(())
    }
}

/// Everything about training a GAN that is not a layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Real images per discriminator update; as many fakes join them.
    pub batch: usize,
    /// Noise vectors per generator update (default: `batch`).
    #[serde(default)]
    pub g_batch: Option<usize>,
    pub noise: Noise,
    /// Pixels are scaled from [0, 255] to [low, high] (match the generator's output activation).
    pub pixel_range: (f32, f32),
    /// Target for real images in the discriminator's loss (0.9 = one-sided label smoothing).
    #[serde(default = "one")]
    pub real_label: f32,
    pub d_loss: DiscriminatorLoss,
    pub d_optimizer: Optimizer,
    pub g_optimizer: Optimizer,
    #[serde(default)]
    pub fakes_for_d: GeneratorMode,
    /// Images that count towards an epoch per iteration (default `batch`; a tutorial that
    /// counts real and fake images together says 2 x batch).
    #[serde(default)]
    pub epoch_images_per_iter: Option<usize>,
    /// Every this many epochs, a summary (seed 003's `summarize_performance`): D's accuracy on
    /// fresh real and fake images, a sample grid and a checkpoint.
    #[serde(default)]
    pub summarize_every_epochs: Option<u64>,
}

fn one() -> f32 {
    1.0
}

impl Recipe {
    pub fn g_batch(&self) -> usize {
        self.g_batch.unwrap_or(self.batch)
    }

    pub fn epoch_images_per_iter(&self) -> usize {
        self.epoch_images_per_iter.unwrap_or(self.batch)
    }
}

/// Both networks and how to train them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GanSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// [h, w, c] of the images.
    pub image: [usize; 3],
    pub generator: NetSpec,
    /// Its input is the image; it ends in one logit, or in a sigmoid that is folded into the
    /// loss (binary cross-entropy with logits: the same function, computed stably).
    pub discriminator: NetSpec,
    pub recipe: Recipe,
}

impl GanSpec {
    pub fn noise_dim(&self) -> usize {
        self.generator.input.iter().product()
    }

    pub fn image_len(&self) -> usize {
        self.image.iter().product()
    }

    /// The discriminator up to its logit: a final sigmoid is left to the loss.
    pub fn discriminator_logits(&self) -> NetSpec {
        let mut net = self.discriminator.clone();
        if net.layers.last() == Some(&LayerSpec::Sigmoid) {
            net.layers.pop();
        }
        net
    }

    /// Checks the networks chain and fit each other, the data, and the recipe.
    pub fn check(&self) -> Result<()> {
        self.generator.check().context("generator")?;
        self.discriminator.check().context("discriminator")?;
        ensure!(
            self.discriminator.input == self.image,
            "the discriminator's input must be the image shape"
        );
        let g_out: usize = self.generator.output().iter().product();
        ensure!(
            g_out == self.image_len(),
            "the generator makes {g_out} values per image but images have {:?} = {}",
            self.image,
            self.image_len()
        );
        let d_out: usize = self.discriminator.output().iter().product();
        ensure!(d_out == 1, "the discriminator must end in one value, not {d_out}");
        let r = &self.recipe;
        ensure!(r.batch > 0 && r.g_batch() > 0, "recipe: batch sizes must be at least 1");
        ensure!(r.pixel_range.0 < r.pixel_range.1, "recipe: pixel_range must be [low, high]");
        ensure!((0.0..=1.0).contains(&r.real_label), "recipe: real_label in [0, 1]");
        r.d_optimizer.check().context("recipe: d_optimizer")?;
        r.g_optimizer.check().context("recipe: g_optimizer")?;
        Ok(())
    }
}

/// The file layout: the discriminator's input is the image, so it is not written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    name: String,
    #[serde(default)]
    description: String,
    image: [usize; 3],
    generator: NetFile,
    discriminator: NetFile,
    recipe: Recipe,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetFile {
    #[serde(default)]
    input: Option<Vec<usize>>,
    /// Kept as TOML values until the networks are checked, so every layer's error (unknown
    /// type, missing or misspelt field, shapes that do not chain) names that layer's line.
    layers: Vec<toml::Spanned<toml::Value>>,
}

fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

/// Parses a model file; `origin` names it in errors, which give the line and the problem.
pub fn parse_model(source: &str, origin: &str) -> Result<GanSpec> {
    let file: ModelFile = toml::from_str(source).map_err(|e| {
        let at = e.span().map(|s| format!(":{}", line_of(source, s.start))).unwrap_or_default();
        anyhow::anyhow!("{origin}{at}: {}", e.message())
    })?;
    // Check each network layer by layer so an error names the line of the layer at fault.
    let mut nets = Vec::new();
    for (role, net, input) in [
        ("generator", &file.generator, file.generator.input.clone()),
        ("discriminator", &file.discriminator, Some(file.image.to_vec())),
    ] {
        if role == "discriminator" && net.input.is_some() {
            bail!("{origin}: the discriminator's input is the image; remove its `input`");
        }
        let input =
            input.with_context(|| format!("{origin}: [{role}] needs `input`, e.g. [100]"))?;
        let mut spec = NetSpec { input, layers: Vec::new() };
        for (i, layer) in net.layers.iter().enumerate() {
            let line = line_of(source, layer.span().start);
            let parsed = LayerSpec::deserialize(layer.get_ref().clone()).map_err(|e| {
                anyhow::anyhow!("{origin}:{line}: {role} layer {i}: {}", e.message())
            })?;
            spec.layers.push(parsed);
            if let Err(e) = spec.check() {
                bail!("{origin}:{line}: {role} layer {i}: {e:#}");
            }
        }
        nets.push(spec);
    }
    let discriminator = nets.pop().unwrap();
    let generator = nets.pop().unwrap();
    let spec = GanSpec {
        name: file.name,
        description: file.description,
        image: file.image,
        generator,
        discriminator,
        recipe: file.recipe,
    };
    spec.check().with_context(|| origin.to_string())?;
    Ok(spec)
}

/// The built-in presets, in the order `gan-gpu models` lists them.
pub const PRESETS: [(&str, &str); 5] = [
    ("mlp", include_str!("../../assets/models/mlp.toml")),
    ("mlp-relu", include_str!("../../assets/models/mlp-relu.toml")),
    ("dcgan-avgpool", include_str!("../../assets/models/dcgan-avgpool.toml")),
    ("dcgan", include_str!("../../assets/models/dcgan.toml")),
    ("dcgan-upsample", include_str!("../../assets/models/dcgan-upsample.toml")),
];

/// Names of the built-in presets.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(name, _)| *name).collect()
}

/// A built-in preset by name.
pub fn preset(name: &str) -> Result<GanSpec> {
    let Some((_, source)) = PRESETS.iter().find(|(n, _)| *n == name) else {
        bail!("unknown model {name:?}: the presets are {}", preset_names().join(", "));
    };
    parse_model(source, &format!("assets/models/{name}.toml"))
}

/// A preset name, or the path of a model file (anything ending in .toml).
pub fn load_model(name_or_path: &str) -> Result<GanSpec> {
    if name_or_path.ends_with(".toml") {
        let path = Path::new(name_or_path);
        let source = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model file {}", path.display()))?;
        parse_model(&source, &path.display().to_string())
    } else {
        preset(name_or_path)
    }
}
