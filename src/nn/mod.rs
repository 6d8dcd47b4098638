//! Layers and networks built from the kernels: a network owns its parameters on the GPU, and
//! a [`Pass`] is the recorded forward (and backward) work of that network on one input buffer.
//! Passes are built once and replayed every step, so a step allocates nothing.

pub mod gan;
pub mod spec;

use spec::{LayerSpec, NetSpec, ParamShape};

use crate::gpu::{Gpu, Op, Tensor};
use crate::kernels::conv;
use crate::kernels::{Activation, Fused, activation, batchnorm, bias, matmul, pool, rng};

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
#[derive(Clone, Copy, Default)]
pub struct Grads<'a> {
    /// Gradients of the trainable parameters, in [`Net::trainable`] order.
    pub params: Option<&'a [Tensor]>,
    /// Where to write the gradient of the input.
    pub input: Option<&'a Tensor>,
    /// The activation that made this pass's input (the last layer of the network before it):
    /// the input gradient is written through its derivative. See [`activation_between`].
    pub input_activation: Option<Activation>,
    /// `output_grad` arrives through the derivative of the network's final activation already
    /// (the next network's pass applied it), so that activation's backward is skipped.
    pub output_grad_activated: bool,
}

/// Whether a layer's kernels (matmul, conv) apply an activation as they store its output, and
/// an activation's derivative as they store its input gradient.
fn stores_through_activation(layer: &LayerSpec) -> bool {
    matches!(
        layer,
        LayerSpec::Dense { .. } | LayerSpec::Conv2d { .. } | LayerSpec::ConvTranspose2d { .. }
    )
}

/// Layers that leave the values as they are (a new shape over the same bytes).
fn passes_through(layer: &LayerSpec) -> bool {
    matches!(layer, LayerSpec::Reshape { .. } | LayerSpec::Flatten)
}

/// The activation that ends `first` when `second`, which takes `first`'s output, can apply its
/// derivative in its input gradient's stores (its first layer, reshapes aside, is dense or
/// conv). Passing it as `second`'s [`Grads::input_activation`] and setting `first`'s
/// [`Grads::output_grad_activated`] saves `first`'s backward a pass over its output.
pub fn activation_between(first: &NetSpec, second: &NetSpec) -> Option<Activation> {
    let act = first.layers.iter().rev().find(|l| !passes_through(l))?.activation()?;
    let head = second.layers.iter().find(|l| !passes_through(l))?;
    stores_through_activation(head).then_some(act)
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
    ///
    /// A batch whose activations would not fit one storage binding runs in chunks of images
    /// (see [`batch_chunks`]), each layer once per chunk: the weight gradients add up over the
    /// chunks, batch norm takes its statistics over all of them, and dropout draws each
    /// chunk's part of the whole batch's mask, so the result is the unsplit pass's.
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
        let chunks = Chunks::new(batch_chunks(gpu, &self.spec, batch));
        let trainable = self.trainable();
        let grad_slot = |param: usize| trainable.iter().position(|&t| t == param);
        let mut forward: Vec<Op> = Vec::new();
        let mut records: Vec<LayerRecord> = Vec::new();
        let mut x = chunks.split(gpu, input, numel(&shapes[0]), &mut forward);
        let mut first_param = 0;
        // The activation after a dense or conv layer runs in that layer's stores.
        let fused = |i: usize| match self.spec.layers.get(i) {
            Some(layer) if stores_through_activation(layer) => {
                self.spec.layers.get(i + 1).and_then(LayerSpec::activation).map(Fused::Activation)
            }
            _ => None,
        };
        for (i, layer) in self.spec.layers.iter().enumerate() {
            let (in_shape, out_shape) = (&shapes[i], &shapes[i + 1]);
            let p = &self.params[first_param..];
            let new_outputs = || chunks.tensors(gpu, numel(out_shape));
            let each = chunks.sizes.iter().enumerate();
            let mut stats = None;
            let y = match layer {
                LayerSpec::Dense { units } => {
                    let y = new_outputs();
                    let (w, b) = (&p[0], &p[1]);
                    for (c, &n) in each {
                        let width = in_shape[0];
                        forward.push(
                            matmul::matmul(
                                gpu,
                                &x[c],
                                w,
                                Some(b),
                                &y[c],
                                n,
                                *units,
                                width,
                                false,
                                false,
                                false,
                                fused(i),
                            )
                            .into(),
                        );
                    }
                    y
                }
                LayerSpec::Conv2d { .. } => {
                    let y = new_outputs();
                    for (c, &n) in each {
                        let g = layer.conv_geometry(n, in_shape).unwrap();
                        let (w, b) = (&p[0], Some(&p[1]));
                        forward.extend(conv::conv2d(gpu, &x[c], w, b, &y[c], &g, fused(i)));
                    }
                    y
                }
                LayerSpec::ConvTranspose2d { .. } => {
                    let y = new_outputs();
                    for (c, &n) in each {
                        let g = layer.conv_geometry(n, in_shape).unwrap();
                        forward.extend(conv::conv_transpose2d(
                            gpu,
                            &x[c],
                            &p[0],
                            Some(&p[1]),
                            &y[c],
                            &g,
                            fused(i),
                        ));
                    }
                    y
                }
                LayerSpec::BatchNorm { momentum, eps } => {
                    let cols = *in_shape.last().unwrap();
                    let rows: Vec<usize> =
                        chunks.sizes.iter().map(|n| n * numel(in_shape) / cols).collect();
                    let y = new_outputs();
                    let (gamma, beta, moving_mean, moving_var) = (&p[0], &p[1], &p[2], &p[3]);
                    match mode {
                        Mode::Training => {
                            let (mean, var) = (gpu.zeros(cols), gpu.zeros(cols));
                            // Keras's fused kernel (image inputs) keeps the unbiased variance,
                            // its plain one (dense inputs) the biased one.
                            let unbiased = in_shape.len() == 3;
                            forward.extend(batchnorm::batch_norm_train_chunks(
                                gpu,
                                &x,
                                &y,
                                gamma,
                                beta,
                                &mean,
                                &var,
                                moving_mean,
                                moving_var,
                                &rows,
                                cols,
                                *eps,
                                *momentum,
                                unbiased,
                            ));
                            stats = Some((mean, var));
                        }
                        Mode::Inference => {
                            for (c, &rows) in rows.iter().enumerate() {
                                forward.extend(batchnorm::batch_norm_infer(
                                    gpu,
                                    &x[c],
                                    &y[c],
                                    gamma,
                                    beta,
                                    moving_mean,
                                    moving_var,
                                    rows,
                                    cols,
                                    *eps,
                                ))
                            }
                        }
                    }
                    y
                }
                LayerSpec::Dropout { rate } => match mode {
                    Mode::Training => {
                        // Out of place: an activation before it needs its own output intact.
                        let y = new_outputs();
                        let stream = stream_base + i as u32;
                        let len = numel(in_shape);
                        for (c, &n) in each {
                            forward.push(copy(&x[c], &y[c]));
                            let first = chunks.starts[c] * len;
                            forward.push(
                                rng::dropout_forward(
                                    gpu,
                                    &y[c],
                                    n * len,
                                    first,
                                    *rate,
                                    stream,
                                    step,
                                )
                                .into(),
                            );
                        }
                        y
                    }
                    Mode::Inference => x.clone(),
                },
                LayerSpec::AvgPool2x2 | LayerSpec::Upsample2x => {
                    let y = new_outputs();
                    let (h, w, ch) = (in_shape[0], in_shape[1], in_shape[2]);
                    for (c, &n) in each {
                        let op = if matches!(layer, LayerSpec::AvgPool2x2) {
                            pool::avg_pool2x2(gpu, &x[c], &y[c], n, h, w, ch)
                        } else {
                            pool::upsample2x(gpu, &x[c], &y[c], n, h, w, ch)
                        };
                        forward.push(op.into());
                    }
                    y
                }
                LayerSpec::Reshape { .. } | LayerSpec::Flatten => x.clone(),
                LayerSpec::Relu
                | LayerSpec::LeakyRelu { .. }
                | LayerSpec::Tanh
                | LayerSpec::Sigmoid
                    if i > 0 && fused(i - 1).is_some() =>
                {
                    // The layer before applied it.
                    x.clone()
                }
                LayerSpec::Relu
                | LayerSpec::LeakyRelu { .. }
                | LayerSpec::Tanh
                | LayerSpec::Sigmoid => {
                    // In place, except on the pass's own input, which belongs to the caller.
                    let y = if x[0].buffer == input.buffer {
                        let y = new_outputs();
                        forward.push(copy(&x[0], &y[0]));
                        y
                    } else {
                        x.clone()
                    };
                    let act = layer.activation().unwrap();
                    for (c, &n) in each {
                        let len = n * numel(out_shape);
                        forward.push(activation::activation_forward(gpu, &y[c], len, act).into());
                    }
                    y
                }
            };
            records.push(LayerRecord { input: x, output: y.clone(), first_param, stats });
            first_param += layer.params(i, in_shape).unwrap().len();
            x = y;
        }
        let output = chunks.join(gpu, &x, numel(shapes.last().unwrap()), &mut forward);
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
        // A dense or conv layer whose input is an activation's output (reshapes aside) applies
        // that activation's derivative as it stores its input gradient, and the activation
        // layer passes the gradient through: activation_before[i] is that activation layer.
        let layers = &self.spec.layers;
        let activation_before: Vec<Option<usize>> = (0..layers.len())
            .map(|i| {
                let j = layers[..i].iter().rposition(|l| !passes_through(l))?;
                let fuses = stores_through_activation(&layers[i]);
                (fuses && layers[j].activation().is_some()).then_some(j)
            })
            .collect();
        // The first layer (reshapes aside) applies the input activation's, if the pass has one.
        let first_layer = layers.iter().position(|l| !passes_through(l));
        if grads.input_activation.is_some() {
            let first = first_layer.map(|i| &layers[i]);
            assert!(first.is_some_and(stores_through_activation), "input activation unused");
        }
        // The final activation (reshapes aside) is skipped, if the pass was told so.
        let skipped_activation = layers.iter().rposition(|l| !passes_through(l));
        if grads.output_grad_activated {
            let last = skipped_activation.map(|j| &layers[j]);
            assert!(last.and_then(LayerSpec::activation).is_some(), "no final activation");
        }
        // What layer i's input-gradient stores of chunk c apply.
        let input_gradient_fused = |i: usize, c: usize| match activation_before[i] {
            Some(j) => Some(Fused::Gradient(layers[j].activation()?, &records[j].output[c])),
            None if Some(i) == first_layer => {
                grads.input_activation.map(|act| Fused::Gradient(act, &records[i].input[c]))
            }
            None => None,
        };
        let out_len = numel(shapes.last().unwrap());
        let mut gy = chunks.split(gpu, &output_grad, out_len, &mut backward);
        for (i, layer) in self.spec.layers.iter().enumerate().rev() {
            let LayerRecord { input: x, output: y, first_param: first, stats } = &records[i];
            let (in_shape, out_shape) = (&shapes[i], &shapes[i + 1]);
            let p = &self.params[*first..];
            let param_grad = |k: usize| grads.params.map(|g| &g[grad_slot(first + k).unwrap()]);
            // The input gradient: fresh tensors, or the caller's for layer 0 of a whole batch.
            let dx_tensors = || match (i, grads.input) {
                (0, Some(t)) if !chunks.is_split() => vec![t.clone()],
                _ => chunks.tensors(gpu, numel(in_shape)),
            };
            let each = chunks.sizes.iter().enumerate();
            let dx = match layer {
                LayerSpec::Dense { units } => {
                    let width = in_shape[0];
                    if let (Some(dw), Some(db)) = (param_grad(0), param_grad(1)) {
                        // Every chunk after the first adds its share.
                        for (c, &n) in each.clone() {
                            backward.extend(matmul::matmul_weight_grad(
                                gpu,
                                &x[c],
                                &gy[c],
                                dw,
                                db,
                                n,
                                width,
                                *units,
                                c > 0,
                            ));
                        }
                    }
                    needs_dx(i).then(|| {
                        let dx = dx_tensors();
                        for (c, &n) in each {
                            backward.push(
                                matmul::matmul(
                                    gpu,
                                    &gy[c],
                                    &p[0],
                                    None,
                                    &dx[c],
                                    n,
                                    width,
                                    *units,
                                    false,
                                    true,
                                    false,
                                    input_gradient_fused(i, c),
                                )
                                .into(),
                            );
                        }
                        dx
                    })
                }
                LayerSpec::Conv2d { filters, .. } | LayerSpec::ConvTranspose2d { filters, .. } => {
                    let transposed = matches!(layer, LayerSpec::ConvTranspose2d { .. });
                    let geometry = |n: usize| layer.conv_geometry(n, in_shape).unwrap();
                    if let (Some(dw), Some(db)) = (param_grad(0), param_grad(1)) {
                        for (c, &n) in each.clone() {
                            let g = geometry(n);
                            let accumulate = c > 0;
                            let (weight_grad, out_pixels) = if transposed {
                                let ops = conv::conv_transpose2d_backward_weight(
                                    gpu, &x[c], &gy[c], dw, &g, accumulate,
                                );
                                (ops, g.in_h * g.in_w)
                            } else {
                                let ops = conv::conv2d_backward_weight(
                                    gpu, &x[c], &gy[c], dw, &g, accumulate,
                                );
                                (ops, g.out_h * g.out_w)
                            };
                            backward.extend(weight_grad);
                            let rows = n * out_pixels;
                            backward.extend(bias::bias_grad(
                                gpu, &gy[c], db, rows, *filters, accumulate,
                            ));
                        }
                    }
                    needs_dx(i).then(|| {
                        let dx = dx_tensors();
                        for (c, &n) in each {
                            let g = geometry(n);
                            let fused = input_gradient_fused(i, c);
                            backward.extend(if transposed {
                                conv::conv_transpose2d_backward_data(
                                    gpu, &gy[c], &p[0], &dx[c], &g, fused,
                                )
                            } else {
                                conv::conv2d_backward_data(
                                    gpu, &gy[c], &p[0], None, &dx[c], &g, fused,
                                )
                            });
                        }
                        dx
                    })
                }
                LayerSpec::BatchNorm { eps, .. } => {
                    let cols = *in_shape.last().unwrap();
                    let rows: Vec<usize> =
                        chunks.sizes.iter().map(|n| n * numel(in_shape) / cols).collect();
                    let (mean, var) = stats.as_ref().unwrap();
                    let scratch = || gpu.zeros(cols);
                    let (dgamma, dbeta) = match (param_grad(0), param_grad(1)) {
                        (Some(dg), Some(db)) => (dg.clone(), db.clone()),
                        _ => (scratch(), scratch()),
                    };
                    let dx = dx_tensors();
                    backward.extend(batchnorm::batch_norm_backward_chunks(
                        gpu, x, &gy, &p[0], mean, var, &dx, &dgamma, &dbeta, &rows, cols, *eps,
                    ));
                    Some(dx)
                }
                LayerSpec::Dropout { rate } => {
                    let stream = stream_base + i as u32;
                    let len = numel(in_shape);
                    for (c, &n) in each {
                        let first = chunks.starts[c] * len;
                        backward.push(
                            rng::dropout_backward(gpu, &gy[c], n * len, first, *rate, stream, step)
                                .into(),
                        );
                    }
                    Some(gy.clone())
                }
                LayerSpec::AvgPool2x2 | LayerSpec::Upsample2x => needs_dx(i).then(|| {
                    let dx = dx_tensors();
                    let (h, w, ch) = (in_shape[0], in_shape[1], in_shape[2]);
                    for (c, &n) in each {
                        let op = if matches!(layer, LayerSpec::AvgPool2x2) {
                            pool::avg_pool2x2_backward(gpu, &gy[c], &dx[c], n, h, w, ch)
                        } else {
                            pool::upsample2x_backward(gpu, &gy[c], &dx[c], n, h, w, ch)
                        };
                        backward.push(op.into());
                    }
                    dx
                }),
                LayerSpec::Reshape { .. } | LayerSpec::Flatten => Some(gy.clone()),
                LayerSpec::Relu
                | LayerSpec::LeakyRelu { .. }
                | LayerSpec::Tanh
                | LayerSpec::Sigmoid => {
                    // Unless the layer after it applied the derivative already, or the next
                    // network's pass did.
                    let applied = activation_before.contains(&Some(i))
                        || (grads.output_grad_activated && Some(i) == skipped_activation);
                    if !applied {
                        let act = layer.activation().unwrap();
                        for (c, &n) in each {
                            let len = n * numel(out_shape);
                            backward.push(
                                activation::activation_backward(gpu, &y[c], &gy[c], len, act)
                                    .into(),
                            );
                        }
                    }
                    Some(gy.clone())
                }
            };
            match dx {
                Some(dx) => gy = dx,
                None => break,
            }
        }
        // Layers that pass the gradient through in place leave it in their own buffers.
        if let Some(target) = grads.input {
            chunks.join_into(&gy, target, numel(&shapes[0]), &mut backward);
        }
        Pass { forward, backward, output, output_grad }
    }
}

/// Images per chunk of a pass of `spec` over `batch` inputs: one chunk when every activation
/// of the whole batch fits one storage binding, else as few chunks as make each fit, of sizes
/// that differ by at most one. A chunk is also kept within the matmul's grid (65535 row tiles
/// of 8 under WebGPU's defaults).
pub fn batch_chunks(gpu: &Gpu, spec: &NetSpec, batch: usize) -> Vec<usize> {
    assert!(batch > 0, "a pass over no inputs");
    let per_input = 4 * spec.widest_activation() as u64;
    let fits = gpu.largest_binding() / per_input;
    assert!(fits > 0, "one input needs {per_input} bytes, past the device's binding limit");
    let grid_rows = gpu.limits.max_compute_workgroups_per_dimension as u64 * 8;
    let largest = fits.min(grid_rows) as usize;
    let count = batch.div_ceil(largest);
    (0..count).map(|i| batch / count + usize::from(i < batch % count)).collect()
}

/// How a pass splits its batch: the images of each chunk and the index of its first.
struct Chunks {
    sizes: Vec<usize>,
    starts: Vec<usize>,
}

impl Chunks {
    fn new(sizes: Vec<usize>) -> Chunks {
        let starts = sizes
            .iter()
            .scan(0, |next, &n| {
                let first = *next;
                *next += n;
                Some(first)
            })
            .collect();
        Chunks { sizes, starts }
    }

    fn is_split(&self) -> bool {
        self.sizes.len() > 1
    }

    /// A zero tensor per chunk, of `per_input` elements per image.
    fn tensors(&self, gpu: &Gpu, per_input: usize) -> Vec<Tensor> {
        self.sizes.iter().map(|n| gpu.zeros(n * per_input)).collect()
    }

    /// `whole` as chunks: itself when the batch is not split, else copies made by `ops`.
    fn split(&self, gpu: &Gpu, whole: &Tensor, per_input: usize, ops: &mut Vec<Op>) -> Vec<Tensor> {
        if !self.is_split() {
            return vec![whole.clone()];
        }
        let parts = self.tensors(gpu, per_input);
        for (part, start) in parts.iter().zip(&self.starts) {
            ops.push(Op::Copy {
                src: whole.clone(),
                src_offset: start * per_input,
                dst: part.clone(),
                dst_offset: 0,
                len: part.len,
            });
        }
        parts
    }

    /// The chunks as one tensor: the only chunk itself, else a new tensor that `ops` fills.
    fn join(&self, gpu: &Gpu, parts: &[Tensor], per_input: usize, ops: &mut Vec<Op>) -> Tensor {
        if !self.is_split() {
            return parts[0].clone();
        }
        let whole = gpu.zeros(self.sizes.iter().sum::<usize>() * per_input);
        self.join_into(parts, &whole, per_input, ops);
        whole
    }

    /// Copies the chunks into `whole`, skipping a chunk that already is `whole`.
    fn join_into(&self, parts: &[Tensor], whole: &Tensor, per_input: usize, ops: &mut Vec<Op>) {
        for ((part, start), n) in parts.iter().zip(&self.starts).zip(&self.sizes) {
            if part.buffer != whole.buffer {
                ops.push(Op::Copy {
                    src: part.clone(),
                    src_offset: 0,
                    dst: whole.clone(),
                    dst_offset: start * per_input,
                    len: n * per_input,
                });
            }
        }
    }
}

/// What the forward pass of one layer leaves for its backward pass (a tensor per chunk).
struct LayerRecord {
    input: Vec<Tensor>,
    output: Vec<Tensor>,
    /// Index of the layer's first tensor in `Net::params`.
    first_param: usize,
    /// Batch mean and variance of a batch norm in training mode.
    stats: Option<(Tensor, Tensor)>,
}

/// Fills `dst` from the start of `src` (which may be a caller's longer buffer).
fn copy(src: &Tensor, dst: &Tensor) -> Op {
    Op::Copy { src: src.clone(), src_offset: 0, dst: dst.clone(), dst_offset: 0, len: dst.len }
}

/// The recorded work of one network on one input buffer.
pub struct Pass {
    pub forward: Vec<Op>,
    /// Reads `output_grad`, writes the parameter and input gradients asked for.
    pub backward: Vec<Op>,
    pub output: Tensor,
    pub output_grad: Tensor,
}
