//! Host side of `shaders/activation.wgsl`: elementwise nonlinearities and their gradients,
//! in place. One pipeline per nonlinearity, chosen by override constants.

use bytemuck::{Pod, Zeroable};

use super::Activation;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shaders;

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    len: u32,
}

/// The shader's ACT code and ALPHA for a nonlinearity.
fn constants(act: Activation) -> [(&'static str, f64); 2] {
    let (code, alpha) = match act {
        Activation::Relu => (0, 0.0),
        Activation::LeakyRelu { alpha } => (1, alpha),
        Activation::Tanh => (2, 0.0),
        Activation::Sigmoid => (3, 0.0),
    };
    [("ACT", code as f64), ("ALPHA", alpha as f64)]
}

/// x = act(x) for the first `len` elements.
pub fn activation_forward(gpu: &Gpu, x: &Tensor, len: usize, act: Activation) -> Dispatch {
    assert!(len <= x.len, "activation_forward: {len} elements of {}", x.len);
    let params = gpu.uniform(&Params { len: u32::try_from(len).unwrap() });
    let pipeline = gpu.pipeline(&shaders::ACTIVATION, "activation_forward", &constants(act));
    gpu.dispatch(
        "activation_forward",
        &pipeline,
        &[x.binding(), params.as_entire_binding()],
        gpu.grid(len, WG),
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
    let pipeline = gpu.pipeline(&shaders::ACTIVATION, "activation_backward", &constants(act));
    gpu.dispatch(
        "activation_backward",
        &pipeline,
        &[y.binding(), dy.binding(), params.as_entire_binding()],
        gpu.grid(len, WG),
    )
}
