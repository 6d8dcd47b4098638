//! CPU twin of `kernels::activation`.

use crate::kernels::{Activation, Fused};

/// act(x) for one element.
pub(crate) fn forward(x: f32, act: Activation) -> f32 {
    match act {
        Activation::Relu => x.max(0.0),
        Activation::LeakyRelu { alpha } => {
            if x > 0.0 {
                x
            } else {
                alpha * x
            }
        }
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
    }
}

/// act'(x) written in terms of the output y = act(x) (leaky ReLU assumes alpha > 0).
fn derivative(y: f32, act: Activation) -> f32 {
    match act {
        Activation::Relu => {
            if y > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::LeakyRelu { alpha } => {
            if y > 0.0 {
                1.0
            } else {
                alpha
            }
        }
        Activation::Tanh => 1.0 - y * y,
        Activation::Sigmoid => y * (1.0 - y),
    }
}

/// What the matmul and conv twins store for their value `v` at element `e`: as it is, or
/// through what is `fused` into the kernels' stores.
pub(crate) fn fused(v: f32, e: usize, fused: Option<Fused<&[f32]>>) -> f32 {
    match fused {
        None => v,
        Some(Fused::Activation(act)) => forward(v, act),
        Some(Fused::Gradient(act, y)) => v * derivative(y[e], act),
    }
}

/// x = act(x), in place.
pub fn activation_forward(x: &mut [f32], len: usize, act: Activation) {
    for v in &mut x[..len] {
        *v = forward(*v, act);
    }
}

/// dy *= act'(.), with the derivative taken from the forward output `y`, in place.
pub fn activation_backward(y: &[f32], dy: &mut [f32], len: usize, act: Activation) {
    for (g, &y) in dy[..len].iter_mut().zip(&y[..len]) {
        *g *= derivative(y, act);
    }
}
