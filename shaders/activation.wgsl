// Elementwise nonlinearities, in place: the forward pass rewrites x, the backward pass
// rewrites the upstream gradient dy using the forward output y.

// Which nonlinearity: 0 ReLU, 1 leaky ReLU with slope ALPHA below 0, 2 tanh, 3 sigmoid.
override ACT: u32 = 0u;
override ALPHA: f32 = 0.0;

struct Params {
    len: u32,
}

// Forward: x = act(x).
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

// Backward: dy *= act'(.), read off y (its own binding list, separate from the forward's).
@group(0) @binding(0) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read_write> dy: array<f32>;
@group(0) @binding(2) var<uniform> pb: Params;

const WG: u32 = 256u;

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
        case 0u: {
            return max(v, 0.0);
        }
        case 1u: {
            return select(ALPHA * v, v, v > 0.0);
        }
        case 2u: {
            return tanh(clamp(v, -10.0, 10.0));
        }
        default: {
            return sigmoid(v);
        }
    }
}

// act'(x) written in terms of the output o = act(x) (leaky ReLU assumes ALPHA > 0).
fn derivative(o: f32) -> f32 {
    switch ACT {
        case 0u: {
            return select(0.0, 1.0, o > 0.0);
        }
        case 1u: {
            return select(ALPHA, 1.0, o > 0.0);
        }
        case 2u: {
            return 1.0 - o * o;
        }
        default: {
            return o * (1.0 - o);
        }
    }
}

@compute @workgroup_size(WG)
fn activation_forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if i < p.len {
        x[i] = activate(x[i]);
    }
}

@compute @workgroup_size(WG)
fn activation_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if i < pb.len {
        dy[i] *= derivative(y[i]);
    }
}
