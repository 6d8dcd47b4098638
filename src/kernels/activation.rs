//! Host side of `shaders/activation.wgsl`: elementwise nonlinearities and their gradients,
//! in place, 4 elements per invocation. One pipeline per nonlinearity, chosen by override
//! constants.

use bytemuck::{Pod, Zeroable};

use super::{Activation, Fused, flag};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shaders;

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    len: u32,
}

/// activate.wgsl's ACT code and ALPHA for a nonlinearity, or for none (the identity).
fn constants(act: Option<Activation>) -> [(&'static str, f64); 2] {
    let (code, alpha) = match act {
        None => (0, 0.0),
        Some(Activation::Relu) => (1, 0.0),
        Some(Activation::LeakyRelu { alpha }) => (2, alpha),
        Some(Activation::Tanh) => (3, 0.0),
        Some(Activation::Sigmoid) => (4, 0.0),
    };
    [("ACT", code as f64), ("ALPHA", alpha as f64)]
}

/// activate.wgsl's constants for what a matmul or conv fuses into its stores, and for a
/// gradient the activation output that its `epilogue` binding then holds.
pub(crate) fn fused_constants(
    fused: Option<Fused<&Tensor>>,
) -> ([(&'static str, f64); 3], Option<&Tensor>) {
    let [act, alpha] = constants(fused.map(|f| f.activation()));
    let act_out = match fused {
        Some(Fused::Gradient(_, y)) => Some(y),
        _ => None,
    };
    ([act, alpha, ("GRADIENT", flag(act_out.is_some()))], act_out)
}

/// x = act(x) for the first `len` elements.
pub fn activation_forward(gpu: &Gpu, x: &Tensor, len: usize, act: Activation) -> Dispatch {
    assert!(len <= x.len, "activation_forward: {len} elements of {}", x.len);
    let params = gpu.uniform(&Params { len: u32::try_from(len).unwrap() });
    let pipeline = gpu.pipeline(&shaders::ACTIVATION, "activation_forward", &constants(Some(act)));
    gpu.dispatch(
        "activation_forward",
        &pipeline,
        &[x.binding(), params.as_entire_binding()],
        gpu.grid(len.div_ceil(4), WG),
    )
}

/// dy *= act'(.), the derivative written in terms of the forward output y
/// (ReLU and leaky ReLU: y > 0; tanh: 1 - y^2; sigmoid: y (1 - y)).
pub fn activation_backward(
    gpu: &Gpu,
    y: &Tensor,
    dy: &Tensor,
    len: usize,
    act: Activation,
) -> Dispatch {
    assert!(len <= y.len && len <= dy.len, "activation_backward: tensors too small");
    let params = gpu.uniform(&Params { len: u32::try_from(len).unwrap() });
    let pipeline = gpu.pipeline(&shaders::ACTIVATION, "activation_backward", &constants(Some(act)));
    gpu.dispatch(
        "activation_backward",
        &pipeline,
        &[y.binding(), dy.binding(), params.as_entire_binding()],
        gpu.grid(len.div_ceil(4), WG),
    )
}
