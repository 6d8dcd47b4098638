// The nonlinearities of activation layers, prepended to the modules that apply them: the
// elementwise kernels (activation.wgsl), and the matmul and conv kernels, whose stores apply
// the activation that follows their layer, so that the layer and its activation take one pass.

// Which nonlinearity: 0 none, 1 ReLU, 2 leaky ReLU with slope ALPHA below 0, 3 tanh,
// 4 sigmoid (src/kernels/activation.rs's `constants`).
override ACT: u32 = 0u;
override ALPHA: f32 = 0.0;

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

