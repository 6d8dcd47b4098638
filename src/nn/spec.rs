//! What a network is, independent of any device: its layers, the shape of every activation,
//! and its parameter tensors. Activations are NHWC ([h, w, c] per image) or flat ([n]);
//! weights are stored as Keras stores them (dense [in, out], conv [kh, kw, in, out],
//! transposed conv [kh, kw, out, in]).

use anyhow::{Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::kernels::Activation;
use crate::kernels::conv::{Conv2dGeometry, Padding};

/// Padding as model files write it: "same", "valid" (TensorFlow's rules) or explicit
/// [top, bottom, left, right].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PaddingSpec {
    Named(PaddingName),
    Explicit([usize; 4]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingName {
    Same,
    Valid,
}

impl From<PaddingSpec> for Padding {
    fn from(p: PaddingSpec) -> Padding {
        match p {
            PaddingSpec::Named(PaddingName::Same) => Padding::Same,
            PaddingSpec::Named(PaddingName::Valid) => Padding::Valid,
            PaddingSpec::Explicit([top, bottom, left, right]) => {
                Padding::Explicit { top, bottom, left, right }
            }
        }
    }
}

/// A height x width pair, written as one number (square) or [h, w] in model files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "PairSyntax", into = "[usize; 2]")]
pub struct Pair(pub usize, pub usize);

#[derive(Deserialize)]
#[serde(untagged)]
enum PairSyntax {
    Square(usize),
    Rect([usize; 2]),
}

impl From<PairSyntax> for Pair {
    fn from(p: PairSyntax) -> Pair {
        match p {
            PairSyntax::Square(n) => Pair(n, n),
            PairSyntax::Rect([h, w]) => Pair(h, w),
        }
    }
}

impl From<Pair> for [usize; 2] {
    fn from(p: Pair) -> [usize; 2] {
        [p.0, p.1]
    }
}

impl From<Pair> for (usize, usize) {
    fn from(p: Pair) -> (usize, usize) {
        (p.0, p.1)
    }
}

fn one() -> Pair {
    Pair(1, 1)
}

fn zero() -> Pair {
    Pair(0, 0)
}

fn default_bn_momentum() -> f32 {
    0.99
}

fn default_bn_eps() -> f32 {
    1e-3
}

fn default_leaky_alpha() -> f32 {
    0.3
}

/// One layer, as a model file writes it: `{ type = "conv2d", filters = 64, kernel = 5 }`.
/// Defaults are Keras's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// Fully connected: y = x·W + b.
    Dense {
        units: usize,
    },
    Conv2d {
        filters: usize,
        kernel: Pair,
        #[serde(default = "one")]
        stride: Pair,
        #[serde(default = "valid")]
        padding: PaddingSpec,
    },
    /// The adjoint of a conv2d (Keras Conv2DTranspose / tf.nn.conv2d_transpose). The output
    /// size follows TensorFlow's rules plus PyTorch's output_padding, or is given explicitly.
    ConvTranspose2d {
        filters: usize,
        kernel: Pair,
        #[serde(default = "one")]
        stride: Pair,
        #[serde(default = "valid")]
        padding: PaddingSpec,
        #[serde(default = "zero")]
        output_padding: Pair,
        #[serde(default)]
        output_size: Option<Pair>,
    },
    /// Per-channel normalisation with batch statistics in training, moving ones in inference;
    /// moving = momentum * moving + (1 - momentum) * batch (Keras's convention).
    BatchNorm {
        #[serde(default = "default_bn_momentum")]
        momentum: f32,
        #[serde(default = "default_bn_eps")]
        eps: f32,
    },
    /// Inverted dropout in training (kept values scaled by 1/(1-rate)), identity in inference.
    Dropout {
        rate: f32,
    },
    AvgPool2x2,
    Upsample2x,
    /// A view with another shape and the same number of elements (no copy).
    Reshape {
        shape: Vec<usize>,
    },
    Flatten,
    Relu,
    LeakyRelu {
        #[serde(default = "default_leaky_alpha")]
        alpha: f32,
    },
    Tanh,
    Sigmoid,
}

fn valid() -> PaddingSpec {
    PaddingSpec::Named(PaddingName::Valid)
}

impl LayerSpec {
    /// The elementwise nonlinearity this layer is, if it is one.
    pub fn activation(&self) -> Option<Activation> {
        match self {
            LayerSpec::Relu => Some(Activation::Relu),
            LayerSpec::LeakyRelu { alpha } => Some(Activation::LeakyRelu { alpha: *alpha }),
            LayerSpec::Tanh => Some(Activation::Tanh),
            LayerSpec::Sigmoid => Some(Activation::Sigmoid),
            _ => None,
        }
    }
}

/// A network: the shape of one input (without the batch) and its layers, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetSpec {
    pub input: Vec<usize>,
    pub layers: Vec<LayerSpec>,
}

/// One parameter tensor (or, when not trainable, a state tensor such as a moving mean).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamShape {
    /// Checkpoint name: "<layer index>.<layer type>.<tensor>", e.g. "0.dense.w".
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
    pub trainable: bool,
}

/// How a parameter starts, as Keras initialises it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Uniform in ±sqrt(6 / (fan_in + fan_out)).
    GlorotUniform {
        fan_in: usize,
        fan_out: usize,
    },
    Zeros,
    Ones,
}

impl ParamShape {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// (h, w, c) of an image-shaped activation.
fn hwc(shape: &[usize], layer: &str) -> Result<(usize, usize, usize)> {
    match shape {
        [h, w, c] => Ok((*h, *w, *c)),
        _ => bail!("{layer} needs an image-shaped input [h, w, c], got {shape:?}"),
    }
}

impl LayerSpec {
    /// Short name used in parameter names and messages.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Dense { .. } => "dense",
            LayerSpec::Conv2d { .. } => "conv2d",
            LayerSpec::ConvTranspose2d { .. } => "conv_transpose2d",
            LayerSpec::BatchNorm { .. } => "batch_norm",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::AvgPool2x2 => "avg_pool2x2",
            LayerSpec::Upsample2x => "upsample2x",
            LayerSpec::Reshape { .. } => "reshape",
            LayerSpec::Flatten => "flatten",
            LayerSpec::Relu => "relu",
            LayerSpec::LeakyRelu { .. } => "leaky_relu",
            LayerSpec::Tanh => "tanh",
            LayerSpec::Sigmoid => "sigmoid",
        }
    }

    /// The geometry of a conv or transposed conv layer on `input` for `batch` images.
    pub fn conv_geometry(&self, batch: usize, input: &[usize]) -> Result<Conv2dGeometry> {
        let (h, w, c) = hwc(input, self.kind())?;
        match self {
            LayerSpec::Conv2d { filters, kernel, stride, padding } => Conv2dGeometry::conv(
                batch,
                (h, w),
                c,
                *filters,
                (*kernel).into(),
                (*stride).into(),
                (*padding).into(),
            ),
            LayerSpec::ConvTranspose2d {
                filters,
                kernel,
                stride,
                padding,
                output_padding,
                output_size,
            } => Conv2dGeometry::transposed(
                batch,
                (h, w),
                c,
                *filters,
                (*kernel).into(),
                (*stride).into(),
                (*padding).into(),
                (*output_padding).into(),
                output_size.map(Into::into),
            ),
            _ => bail!("{} is not a convolution", self.kind()),
        }
    }

    /// Shape of this layer's output for one image of shape `input`.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let kind = self.kind();
        Ok(match self {
            LayerSpec::Dense { units } => {
                ensure!(input.len() == 1, "dense needs a flat input, got {input:?}: add a flatten");
                ensure!(*units > 0, "dense needs units > 0");
                vec![*units]
            }
            LayerSpec::Conv2d { .. } => {
                let g = self.conv_geometry(1, input)?;
                vec![g.out_h, g.out_w, g.out_c]
            }
            LayerSpec::ConvTranspose2d { .. } => {
                // The geometry is that of the adjoint conv: its input is this layer's output.
                let g = self.conv_geometry(1, input)?;
                vec![g.in_h, g.in_w, g.in_c]
            }
            LayerSpec::BatchNorm { momentum, eps } => {
                ensure!((0.0..1.0).contains(momentum), "batch_norm momentum must be in [0, 1)");
                ensure!(*eps > 0.0, "batch_norm eps must be positive");
                input.to_vec()
            }
            LayerSpec::Dropout { rate } => {
                ensure!((0.0..1.0).contains(rate), "dropout rate must be in [0, 1)");
                input.to_vec()
            }
            LayerSpec::AvgPool2x2 => {
                let (h, w, c) = hwc(input, kind)?;
                ensure!(h >= 2 && w >= 2, "avg_pool2x2 needs at least 2x2, got {h}x{w}");
                vec![h / 2, w / 2, c]
            }
            LayerSpec::Upsample2x => {
                let (h, w, c) = hwc(input, kind)?;
                vec![2 * h, 2 * w, c]
            }
            LayerSpec::Reshape { shape } => {
                ensure!(
                    numel(shape) == numel(input),
                    "reshape to {shape:?} ({} elements) from {input:?} ({} elements)",
                    numel(shape),
                    numel(input)
                );
                ensure!(shape.len() == 1 || shape.len() == 3, "reshape to [n] or [h, w, c]");
                shape.clone()
            }
            LayerSpec::Flatten => vec![numel(input)],
            LayerSpec::Relu | LayerSpec::Tanh | LayerSpec::Sigmoid => input.to_vec(),
            LayerSpec::LeakyRelu { alpha } => {
                ensure!(*alpha >= 0.0, "leaky_relu alpha must be >= 0");
                input.to_vec()
            }
        })
    }

    /// Parameter tensors of this layer (the `index`-th of its network) on `input`.
    pub fn params(&self, index: usize, input: &[usize]) -> Result<Vec<ParamShape>> {
        let name = |t: &str| format!("{index}.{}.{t}", self.kind());
        let trainable = |t: &str, shape: Vec<usize>, init: Init| ParamShape {
            name: name(t),
            shape,
            init,
            trainable: true,
        };
        Ok(match self {
            LayerSpec::Dense { units } => vec![
                trainable(
                    "w",
                    vec![input[0], *units],
                    Init::GlorotUniform { fan_in: input[0], fan_out: *units },
                ),
                trainable("b", vec![*units], Init::Zeros),
            ],
            LayerSpec::Conv2d { .. } | LayerSpec::ConvTranspose2d { .. } => {
                let g = self.conv_geometry(1, input)?;
                let taps = g.kernel_h * g.kernel_w;
                // Stored [kh, kw, conv in, conv out] of the adjoint conv for transposed layers,
                // which is Keras's Conv2DTranspose layout [kh, kw, filters, in].
                let (filters, fan_in, fan_out) = match self {
                    LayerSpec::Conv2d { filters, .. } => (*filters, taps * g.in_c, taps * g.out_c),
                    _ => (g.in_c, taps * g.out_c, taps * g.in_c),
                };
                vec![
                    trainable(
                        "w",
                        vec![g.kernel_h, g.kernel_w, g.in_c, g.out_c],
                        Init::GlorotUniform { fan_in, fan_out },
                    ),
                    trainable("b", vec![filters], Init::Zeros),
                ]
            }
            LayerSpec::BatchNorm { .. } => {
                let c = *input.last().unwrap();
                let state = |t: &str, init| ParamShape {
                    name: name(t),
                    shape: vec![c],
                    init,
                    trainable: false,
                };
                vec![
                    trainable("gamma", vec![c], Init::Ones),
                    trainable("beta", vec![c], Init::Zeros),
                    state("moving_mean", Init::Zeros),
                    state("moving_var", Init::Ones),
                ]
            }
            _ => vec![],
        })
    }
}

impl NetSpec {
    /// The shape after every layer: [input, after layer 0, after layer 1, ...].
    pub fn shapes(&self) -> Result<Vec<Vec<usize>>> {
        let mut shapes = vec![self.input.clone()];
        for (i, layer) in self.layers.iter().enumerate() {
            let next = layer
                .output_shape(shapes.last().unwrap())
                .map_err(|e| anyhow::anyhow!("layer {i} ({}): {e}", layer.kind()))?;
            shapes.push(next);
        }
        Ok(shapes)
    }

    /// Elements of the largest activation (input, a layer's output) for one input: what each
    /// image of a batch adds to the largest buffer a pass binds.
    pub fn widest_activation(&self) -> usize {
        let shapes = self.shapes().expect("a checked NetSpec");
        shapes.iter().map(|s| s.iter().product::<usize>()).max().unwrap()
    }

    /// Shape of the network's output for one input.
    pub fn output(&self) -> Vec<usize> {
        self.shapes().expect("a checked NetSpec").pop().unwrap()
    }

    /// Every parameter and state tensor, in layer order.
    pub fn params(&self) -> Vec<ParamShape> {
        let shapes = self.shapes().expect("a checked NetSpec");
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, layer)| layer.params(i, &shapes[i]).expect("a checked NetSpec"))
            .collect()
    }

    /// Trainable parameters only (what the optimizer updates).
    pub fn trainable_count(&self) -> usize {
        self.params().iter().filter(|p| p.trainable).map(ParamShape::numel).sum()
    }

    /// All parameters, trainable or not (Keras's "Total params").
    pub fn param_count(&self) -> usize {
        self.params().iter().map(ParamShape::numel).sum()
    }

    /// Checks that the layers chain and every parameter is well-formed.
    pub fn check(&self) -> Result<()> {
        ensure!(!self.input.is_empty() && numel(&self.input) > 0, "empty input shape");
        let shapes = self.shapes()?;
        for (i, layer) in self.layers.iter().enumerate() {
            layer.params(i, &shapes[i])?;
        }
        Ok(())
    }

    /// Initial values of every tensor of [`NetSpec::params`], as Keras initialises them.
    pub fn init_params(&self, seed: u64) -> Vec<Vec<f32>> {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(seed);
        self.params()
            .iter()
            .map(|p| match p.init {
                Init::GlorotUniform { fan_in, fan_out } => {
                    let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
                    (0..p.numel()).map(|_| rng.random_range(-limit..limit)).collect()
                }
                Init::Zeros => vec![0.0; p.numel()],
                Init::Ones => vec![1.0; p.numel()],
            })
            .collect()
    }
}
