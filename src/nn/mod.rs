//! Layers and networks built from the kernels: a network owns its parameters on the GPU, and
//! a [`Pass`] is the recorded forward (and backward) work of that network on one input buffer.
//! Passes are built once and replayed every step, so a step allocates nothing.

pub mod presets;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::gpu::{Gpu, Op, Tensor};
use crate::kernels::{Activation, activation, bias, matmul};

/// One layer of a network description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "layer", rename_all = "snake_case")]
pub enum LayerSpec {
    /// Fully connected: y = x·W + b, W stored [in, out] (Keras's layout).
    Dense {
        units: usize,
    },
    Activation {
        activation: Activation,
    },
}

/// A network: its input width and its layers, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetSpec {
    pub input: usize,
    pub layers: Vec<LayerSpec>,
}

/// The shape of one parameter tensor, named as in checkpoints ("dense0.w").
#[derive(Clone, Debug, PartialEq)]
pub struct ParamShape {
    pub name: String,
    pub shape: Vec<usize>,
}

impl ParamShape {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

impl NetSpec {
    /// Width of the network's output.
    pub fn output(&self) -> usize {
        self.layers.iter().fold(self.input, |width, layer| match layer {
            LayerSpec::Dense { units } => *units,
            LayerSpec::Activation { .. } => width,
        })
    }

    /// The parameter tensors in order, two per dense layer (weight [in, out], bias [out]).
    pub fn params(&self) -> Vec<ParamShape> {
        let mut width = self.input;
        let mut params = Vec::new();
        for (i, layer) in self.dense_layers() {
            let units = match layer {
                LayerSpec::Dense { units } => *units,
                LayerSpec::Activation { .. } => unreachable!(),
            };
            params.push(ParamShape { name: format!("dense{i}.w"), shape: vec![width, units] });
            params.push(ParamShape { name: format!("dense{i}.b"), shape: vec![units] });
            width = units;
        }
        params
    }

    pub fn param_count(&self) -> usize {
        self.params().iter().map(ParamShape::numel).sum()
    }

    fn dense_layers(&self) -> impl Iterator<Item = (usize, &LayerSpec)> {
        self.layers.iter().filter(|l| matches!(l, LayerSpec::Dense { .. })).enumerate()
    }

    /// Initial values as Keras gives them: Glorot-uniform weights, zero biases.
    pub fn init_params(&self, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = StdRng::seed_from_u64(seed);
        self.params()
            .iter()
            .map(|p| match p.shape[..] {
                [fan_in, fan_out] => {
                    let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
                    (0..p.numel()).map(|_| rng.random_range(-limit..limit)).collect()
                }
                _ => vec![0.0; p.numel()],
            })
            .collect()
    }
}

/// A network's parameters on the GPU.
pub struct Net {
    pub spec: NetSpec,
    pub params: Vec<Tensor>,
}

impl Net {
    pub fn new(gpu: &Gpu, spec: NetSpec, values: &[Vec<f32>]) -> Net {
        let shapes = spec.params();
        assert_eq!(shapes.len(), values.len());
        let params = shapes
            .iter()
            .zip(values)
            .map(|(shape, v)| {
                assert_eq!(shape.numel(), v.len(), "parameter {}", shape.name);
                gpu.upload(v)
            })
            .collect();
        Net { spec, params }
    }

    /// Zero tensors shaped like the parameters (gradients, optimizer moments).
    pub fn zeros_like_params(&self, gpu: &Gpu) -> Vec<Tensor> {
        self.params.iter().map(|p| gpu.zeros(p.len)).collect()
    }

    /// Records this network on `input` ([batch, spec.input]). With `param_grads`, the backward
    /// pass writes each parameter's gradient there; with `input_grad`, it also writes the
    /// gradient of the input there (the output gradient of the network that made the input).
    pub fn pass(
        &self,
        gpu: &Gpu,
        batch: usize,
        input: &Tensor,
        param_grads: Option<&[Tensor]>,
        input_grad: Option<&Tensor>,
    ) -> Pass {
        assert!(input.len >= batch * self.spec.input);
        let mut forward: Vec<Op> = Vec::new();
        // Each dense layer writes a new activation buffer; activations then work in place on
        // it, so the backward pass finds every layer's input and output still intact.
        let mut acts = vec![input.clone()];
        let mut widths = vec![self.spec.input];
        let mut dense_index = 0;
        for layer in &self.spec.layers {
            let x = acts.last().unwrap().clone();
            let width = *widths.last().unwrap();
            match layer {
                LayerSpec::Dense { units } => {
                    let y = gpu.zeros(batch * units);
                    let (w, b) = (&self.params[2 * dense_index], &self.params[2 * dense_index + 1]);
                    forward.push(
                        matmul::matmul(gpu, &x, w, Some(b), &y, batch, *units, width, false, false)
                            .into(),
                    );
                    acts.push(y);
                    widths.push(*units);
                    dense_index += 1;
                }
                LayerSpec::Activation { activation: act } => {
                    forward
                        .push(activation::activation_forward(gpu, &x, batch * width, *act).into());
                }
            }
        }
        let output = acts.last().unwrap().clone();
        let output_grad = gpu.zeros(output.len);

        let mut backward: Vec<Op> = Vec::new();
        let mut grad = output_grad.clone();
        let mut act_index = acts.len() - 1;
        for layer in self.spec.layers.iter().rev() {
            match layer {
                LayerSpec::Activation { activation: act } => {
                    let y = &acts[act_index];
                    backward
                        .push(activation::activation_backward(gpu, y, &grad, y.len, *act).into());
                }
                LayerSpec::Dense { units } => {
                    dense_index -= 1;
                    act_index -= 1;
                    let x = &acts[act_index];
                    let width = widths[act_index];
                    let w = &self.params[2 * dense_index];
                    if let Some(grads) = param_grads {
                        let (dw, db) = (&grads[2 * dense_index], &grads[2 * dense_index + 1]);
                        backward.push(
                            matmul::matmul(
                                gpu, x, &grad, None, dw, width, *units, batch, true, false,
                            )
                            .into(),
                        );
                        backward.push(bias::bias_grad(gpu, &grad, db, batch, *units).into());
                    }
                    let dx = match input_grad {
                        Some(dx) if act_index == 0 => Some(dx.clone()),
                        _ if act_index > 0 => Some(gpu.zeros(batch * width)),
                        _ => None,
                    };
                    if let Some(dx) = dx {
                        backward.push(
                            matmul::matmul(
                                gpu, &grad, w, None, &dx, batch, width, *units, false, true,
                            )
                            .into(),
                        );
                        grad = dx;
                    }
                }
            }
        }
        Pass { forward, backward, output, output_grad }
    }
}

/// The recorded work of one network on one input buffer.
pub struct Pass {
    pub forward: Vec<Op>,
    /// Reads `output_grad`, writes the parameter and input gradients asked for.
    pub backward: Vec<Op>,
    pub output: Tensor,
    pub output_grad: Tensor,
}
