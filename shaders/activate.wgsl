// The nonlinearities of activation layers and their derivatives, prepended to the modules that
// apply them: the elementwise kernels (activation.wgsl), and the matmul and conv kernels, whose
// stores apply the activation that follows their layer, so that the layer and its activation
// take one pass; in the backward pass they multiply the gradient they produce by the derivative
// of the activation before their layer, for the same reason.

// Which nonlinearity: 0 none, 1 ReLU, 2 leaky ReLU with slope ALPHA below 0, 3 tanh,
// 4 sigmoid (src/kernels/activation.rs's `constants`).
override ACT: u32 = 0u;
override ALPHA: f32 = 0.0;
// The matmul and conv stores: multiply by derivative(o) (GRADIENT) rather than apply
// activate(), o the activation's forward output at the same index, which the module binds.
override GRADIENT: bool = false;

// The logistic function from exp(-|v|), which never overflows.
fn sigmoid(v: f32) -> f32 {
    let e = exp(-abs(v));
    let s = 1.0 / (1.0 + e);
    return select(e * s, s, v >= 0.0);
}

// act(v). tanh is clamped to where f32 tanh is already +-1, so that an implementation
// that divides exponentials cannot produce inf/inf.
fn activate(v: f32) -> f32 {
    switch ACT {
        case 1u: {
            return max(v, 0.0);
        }
        case 2u: {
            return select(ALPHA * v, v, v > 0.0);
        }
        case 3u: {
            return tanh(clamp(v, -10.0, 10.0));
        }
        case 4u: {
            return sigmoid(v);
        }
        default: {
            return v;
        }
    }
}

// act'(x) written in terms of the output o = act(x) (leaky ReLU assumes ALPHA > 0).
fn derivative(o: f32) -> f32 {
    switch ACT {
        case 1u: {
            return select(0.0, 1.0, o > 0.0);
        }
        case 2u: {
            return select(ALPHA, 1.0, o > 0.0);
        }
        case 3u: {
            return 1.0 - o * o;
        }
        case 4u: {
            return o * (1.0 - o);
        }
        default: {
            return 1.0;
        }
    }
}

// activate() of each component.
fn activate_quad(v: vec4<f32>) -> vec4<f32> {
    return vec4(activate(v.x), activate(v.y), activate(v.z), activate(v.w));
}

// derivative() of each component.
fn derivative_quad(o: vec4<f32>) -> vec4<f32> {
    return vec4(derivative(o.x), derivative(o.y), derivative(o.z), derivative(o.w));
}
