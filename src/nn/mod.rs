//! Layers and networks built from the kernels: a network owns its parameters on the GPU, and
//! a [`Pass`] is the recorded forward (and backward) work of that network on one input buffer.
//! Passes are built once and replayed every step, so a step allocates nothing.

pub mod gan;
pub mod spec;

use spec::{LayerSpec, NetSpec, ParamShape};

use crate::gpu::{Gpu, Op, Tensor};
use crate::kernels::conv;
use crate::kernels::{activation, batchnorm, bias, matmul, pool, rng};

/// Training mode uses batch statistics and dropout; inference mode moving statistics and no
/// dropout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Training,
    Inference,
}

/// A network's parameters (and state tensors such as moving means) on the GPU.
pub struct Net {
    pub spec: NetSpec,
    pub shapes: Vec<ParamShape>,
    /// One tensor per entry of `shapes`.
    pub params: Vec<Tensor>,
}

/// What a pass's backward computes besides the gradient flowing through.
#[derive(Clone, Copy)]
pub struct Grads<'a> {
    /// Gradients of the trainable parameters, in [`Net::trainable`] order.
    pub params: Option<&'a [Tensor]>,
    /// Where to write the gradient of the input.
    pub input: Option<&'a Tensor>,
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
        Net { spec, shapes, params }
    }

    /// Indices (into `params`) of the tensors an optimizer updates.
    pub fn trainable(&self) -> Vec<usize> {
        (0..self.shapes.len()).filter(|&i| self.shapes[i].trainable).collect()
    }

    /// Zero tensors shaped like the trainable parameters (gradients, optimizer moments).
    pub fn zeros_like_trainable(&self, gpu: &Gpu) -> Vec<Tensor> {
        self.trainable().iter().map(|&i| gpu.zeros(self.params[i].len)).collect()
    }

    /// Records this network on `input` ([batch, spec.input]). Dropout layer i draws its mask
    /// from RNG stream `stream_base + i` at the step that `step` holds.
    #[allow(clippy::too_many_arguments)]
    pub fn pass(
        &self,
        gpu: &Gpu,
        batch: usize,
        input: &Tensor,
        mode: Mode,
        grads: Grads,
        stream_base: u32,
        step: &wgpu::Buffer,
    ) -> Pass {
        let shapes = self.spec.shapes().expect("a checked NetSpec");
        let numel = |s: &[usize]| s.iter().product::<usize>();
        assert!(input.len >= batch * numel(&shapes[0]));
        let trainable = self.trainable();
        let grad_slot = |param: usize| trainable.iter().position(|&t| t == param);
        let mut forward: Vec<Op> = Vec::new();
        let mut records: Vec<LayerRecord> = Vec::new();
        let mut x = input.clone();
        let mut first_param = 0;
        for (i, layer) in self.spec.layers.iter().enumerate() {
            let (in_shape, out_shape) = (&shapes[i], &shapes[i + 1]);
            let p = &self.params[first_param..];
            let new_output = || gpu.zeros(batch * numel(out_shape));
            let mut stats = None;
            let y = match layer {
                LayerSpec::Dense { units } => {
                    let y = new_output();
                    let (w, b) = (&p[0], &p[1]);
                    let m = matmul::matmul(
                        gpu,
                        &x,
                        w,
                        Some(b),
                        &y,
                        batch,
                        *units,
                        in_shape[0],
                        false,
                        false,
                    );
                    forward.push(m.into());
                    y
                }
                LayerSpec::Conv2d { .. } => {
                    let g = layer.conv_geometry(batch, in_shape).unwrap();
                    let y = new_output();
                    forward.extend(conv::conv2d(gpu, &x, &p[0], Some(&p[1]), &y, &g));
                    y
                }
                LayerSpec::ConvTranspose2d { .. } => {
                    let g = layer.conv_geometry(batch, in_shape).unwrap();
                    let y = new_output();
                    forward.extend(conv::conv_transpose2d(gpu, &x, &p[0], Some(&p[1]), &y, &g));
                    y
                }
                LayerSpec::BatchNorm { momentum, eps } => {
                    let cols = *in_shape.last().unwrap();
                    let rows = batch * numel(in_shape) / cols;
                    let y = new_output();
                    let (gamma, beta, moving_mean, moving_var) = (&p[0], &p[1], &p[2], &p[3]);
                    match mode {
                        Mode::Training => {
                            let (mean, var) = (gpu.zeros(cols), gpu.zeros(cols));
                            // Keras's fused kernel (image inputs) keeps the unbiased variance,
                            // its plain one (dense inputs) the biased one.
                            let unbiased = in_shape.len() == 3;
                            forward.extend(batchnorm::batch_norm_train(
                                gpu,
                                &x,
                                &y,
                                gamma,
                                beta,
                                &mean,
                                &var,
                                moving_mean,
                                moving_var,
                                rows,
                                cols,
                                *eps,
                                *momentum,
                                unbiased,
                            ));
                            stats = Some((mean, var));
                        }
                        Mode::Inference => forward.extend(batchnorm::batch_norm_infer(
                            gpu,
                            &x,
                            &y,
                            gamma,
                            beta,
                            moving_mean,
                            moving_var,
                            rows,
                            cols,
                            *eps,
                        )),
                    }
                    y
                }
                LayerSpec::Dropout { rate } => match mode {
                    Mode::Training => {
                        // Out of place: an activation before it needs its own output intact.
                        let y = new_output();
                        forward.push(copy(&x, &y));
                        let stream = stream_base + i as u32;
                        forward
                            .push(rng::dropout_forward(gpu, &y, y.len, *rate, stream, step).into());
                        y
                    }
                    Mode::Inference => x.clone(),
                },
                LayerSpec::AvgPool2x2 => {
                    let y = new_output();
                    let (h, w, c) = (in_shape[0], in_shape[1], in_shape[2]);
                    forward.push(pool::avg_pool2x2(gpu, &x, &y, batch, h, w, c).into());
                    y
                }
                LayerSpec::Upsample2x => {
                    let y = new_output();
                    let (h, w, c) = (in_shape[0], in_shape[1], in_shape[2]);
                    forward.push(pool::upsample2x(gpu, &x, &y, batch, h, w, c).into());
                    y
                }
                LayerSpec::Reshape { .. } | LayerSpec::Flatten => x.clone(),
                LayerSpec::Relu
                | LayerSpec::LeakyRelu { .. }
                | LayerSpec::Tanh
                | LayerSpec::Sigmoid => {
                    // In place, except on the pass's own input, which belongs to the caller.
                    let y = if x.buffer == input.buffer {
                        let y = new_output();
                        forward.push(copy(&x, &y));
                        y
                    } else {
                        x.clone()
                    };
                    let act = layer.activation().unwrap();
                    forward.push(activation::activation_forward(gpu, &y, y.len, act).into());
                    y
                }
            };
            records.push(LayerRecord { input: x, output: y.clone(), first_param, stats });
            first_param += layer.params(i, in_shape).unwrap().len();
            x = y;
        }
        let output = x;
        let output_grad = gpu.zeros(output.len);

        let mut backward: Vec<Op> = Vec::new();
        if grads.params.is_none() && grads.input.is_none() {
            return Pass { forward, backward, output, output_grad };
        }
        assert_eq!(mode, Mode::Training, "backward through an inference-mode pass");
        // Layers before the first one with trainable parameters need no input gradient,
        // unless the caller wants the pass's input gradient.
        let has_trainable = |i: usize| {
            let layer = &self.spec.layers[i];
            layer.params(i, &shapes[i]).unwrap().iter().any(|p| p.trainable)
        };
        let first_trainable_layer =
            grads.params.and((0..self.spec.layers.len()).find(|&i| has_trainable(i)));
        let needs_dx =
            |i: usize| grads.input.is_some() || first_trainable_layer.is_some_and(|f| i > f);
        let mut gy = output_grad.clone();
        for (i, layer) in self.spec.layers.iter().enumerate().rev() {
            let LayerRecord { input: x, output: y, first_param: first, stats } = &records[i];
            let in_shape = &shapes[i];
            let p = &self.params[*first..];
            let param_grad = |k: usize| grads.params.map(|g| &g[grad_slot(first + k).unwrap()]);
            // The input gradient: a fresh tensor, or the caller's for layer 0.
            let dx_tensor = || match (i, grads.input) {
                (0, Some(t)) => t.clone(),
                _ => gpu.zeros(batch * numel(in_shape)),
            };
            let dx = match layer {
                LayerSpec::Dense { units } => {
                    let width = in_shape[0];
                    if let (Some(dw), Some(db)) = (param_grad(0), param_grad(1)) {
                        backward.push(
                            matmul::matmul(
                                gpu, x, &gy, None, dw, width, *units, batch, true, false,
                            )
                            .into(),
                        );
                        backward.push(bias::bias_grad(gpu, &gy, db, batch, *units).into());
                    }
                    needs_dx(i).then(|| {
                        let dx = dx_tensor();
                        backward.push(
                            matmul::matmul(
                                gpu, &gy, &p[0], None, &dx, batch, width, *units, false, true,
                            )
                            .into(),
                        );
                        dx
                    })
                }
                LayerSpec::Conv2d { filters, .. } => {
                    let g = layer.conv_geometry(batch, in_shape).unwrap();
                    if let (Some(dw), Some(db)) = (param_grad(0), param_grad(1)) {
                        backward.extend(conv::conv2d_backward_weight(gpu, x, &gy, dw, &g));
                        backward.push(
                            bias::bias_grad(gpu, &gy, db, batch * g.out_h * g.out_w, *filters)
                                .into(),
                        );
                    }
                    needs_dx(i).then(|| {
                        let dx = dx_tensor();
                        backward.extend(conv::conv2d_backward_data(gpu, &gy, &p[0], None, &dx, &g));
                        dx
                    })
                }
                LayerSpec::ConvTranspose2d { filters, .. } => {
                    let g = layer.conv_geometry(batch, in_shape).unwrap();
                    if let (Some(dw), Some(db)) = (param_grad(0), param_grad(1)) {
                        backward
                            .extend(conv::conv_transpose2d_backward_weight(gpu, x, &gy, dw, &g));
                        backward.push(
                            bias::bias_grad(gpu, &gy, db, batch * g.in_h * g.in_w, *filters).into(),
                        );
                    }
                    needs_dx(i).then(|| {
                        let dx = dx_tensor();
                        backward
                            .extend(conv::conv_transpose2d_backward_data(gpu, &gy, &p[0], &dx, &g));
                        dx
                    })
                }
                LayerSpec::BatchNorm { eps, .. } => {
                    let cols = *in_shape.last().unwrap();
                    let rows = batch * numel(in_shape) / cols;
                    let (mean, var) = stats.as_ref().unwrap();
                    let scratch = || gpu.zeros(cols);
                    let (dgamma, dbeta) = match (param_grad(0), param_grad(1)) {
                        (Some(dg), Some(db)) => (dg.clone(), db.clone()),
                        _ => (scratch(), scratch()),
                    };
                    let dx = dx_tensor();
                    backward.extend(batchnorm::batch_norm_backward(
                        gpu, x, &gy, &p[0], mean, var, &dx, &dgamma, &dbeta, rows, cols, *eps,
                    ));
                    Some(dx)
                }
                LayerSpec::Dropout { rate } => {
                    let stream = stream_base + i as u32;
                    backward
                        .push(rng::dropout_backward(gpu, &gy, gy.len, *rate, stream, step).into());
                    Some(gy.clone())
                }
                LayerSpec::AvgPool2x2 | LayerSpec::Upsample2x => needs_dx(i).then(|| {
                    let dx = dx_tensor();
                    let (h, w, c) = (in_shape[0], in_shape[1], in_shape[2]);
                    let op = if matches!(layer, LayerSpec::AvgPool2x2) {
                        pool::avg_pool2x2_backward(gpu, &gy, &dx, batch, h, w, c)
                    } else {
                        pool::upsample2x_backward(gpu, &gy, &dx, batch, h, w, c)
                    };
                    backward.push(op.into());
                    dx
                }),
                LayerSpec::Reshape { .. } | LayerSpec::Flatten => Some(gy.clone()),
                LayerSpec::Relu
                | LayerSpec::LeakyRelu { .. }
                | LayerSpec::Tanh
                | LayerSpec::Sigmoid => {
                    let act = layer.activation().unwrap();
                    backward.push(activation::activation_backward(gpu, y, &gy, gy.len, act).into());
                    Some(gy.clone())
                }
            };
            match dx {
                Some(dx) => gy = dx,
                None => break,
            }
        }
        // Layers that pass the gradient through in place leave it in their own buffer.
        if let Some(target) = grads.input
            && target.buffer != gy.buffer
        {
            backward.push(copy(&gy, target));
        }
        Pass { forward, backward, output, output_grad }
    }
}

/// What the forward pass of one layer leaves for its backward pass.
struct LayerRecord {
    input: Tensor,
    output: Tensor,
    /// Index of the layer's first tensor in `Net::params`.
    first_param: usize,
    /// Batch mean and variance of a batch norm in training mode.
    stats: Option<(Tensor, Tensor)>,
}

fn copy(src: &Tensor, dst: &Tensor) -> Op {
    Op::Copy { src: src.clone(), src_offset: 0, dst: dst.clone(), dst_offset: 0, len: src.len }
}

/// The recorded work of one network on one input buffer.
pub struct Pass {
    pub forward: Vec<Op>,
    /// Reads `output_grad`, writes the parameter and input gradients asked for.
    pub backward: Vec<Op>,
    pub output: Tensor,
    pub output_grad: Tensor,
}
